"""Continue in the studio, end to end with pytest-qt: a real model (the bundled one when it is there, else a
small random one), real playback sinks, real files read back. No mocks of our code."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import pretty_midi
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QScrollArea, QToolBar

from continuo.playback import RecorderSink
from continuo.song import CONTINUATION, MOTIF
from music_transformer import Note, limits, write_midi
from music_transformer.events import SPECIAL_TOKENS, START, style_token
from tests.continuo.helpers import (
    answer_next_dialog,
    draw_note,
    key,
    opening_tokens,
    read_wav,
    require_fluidsynth,
    rms,
    small_checkpoint,
    summary,
    wait_done,
)

pytestmark = pytest.mark.timeout(90)


def set_length(window, beats: float, **changes) -> None:
    """A length of `beats` quarter notes: bars of the test song's 4/4."""
    song = window.song
    song.set_settings(dataclasses.replace(song.settings, length=beats / 4, **changes))


def draw_motif(qtbot, roll) -> None:
    """Four notes drawn with the mouse: C E G C, a bar long."""
    for index, pitch in enumerate((60, 64, 67, 72)):
        draw_note(qtbot, roll, pitch, index, 1)


def test_draw_continue_hear_export_and_read_back(qtbot, studio, roll, tmp_path):
    require_fluidsynth()
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 8.0, seed=7)
    window.recorder.clear()  # drawing sounded the motif's notes
    qtbot.mouseClick(window.generation_panel.continue_button, Qt.LeftButton)
    assert window.generation.generating and song.is_writing and window.transport.playing
    wait_done(qtbot, window)
    continuation = song.notes(CONTINUATION)
    motif = song.notes(MOTIF)
    assert continuation and len(motif) == 4
    assert min(note.start for note in continuation) >= 4.0 - 1e-6  # it starts where the motif ends
    assert max(note.start for note in continuation) <= 4.0 + 8.0 + 1e-6
    assert song.undo_stack.undoText() == "Continue"
    # Playback started at the seam and played the continuation while it was written.
    qtbot.waitUntil(lambda: not window.transport.playing, timeout=20000)
    heard = [pitch for _, kind, pitch, _ in window.recorder.notes() if kind == "on"]
    assert sorted(heard) == sorted(note.pitch for note in continuation)
    assert not window.recorder.sounding()

    midi_path = tmp_path / "song.mid"
    assert window.document.export_midi(midi_path)
    read = sorted((n.pitch, n.start) for i in pretty_midi.PrettyMIDI(str(midi_path)).instruments for n in i.notes)
    seconds = 60 / song.tempo
    expected = sorted((n.pitch, n.start * seconds) for n in song.notes())
    assert [pitch for pitch, _ in read] == [pitch for pitch, _ in expected]
    assert [start for _, start in read] == pytest.approx([start for _, start in expected], abs=2e-3)

    wav_path = tmp_path / "song.wav"
    with qtbot.waitSignal(window.document.audio_exported, timeout=30000) as exported:
        assert window.document.export_audio(wav_path)
    assert exported.args == [str(wav_path), True]
    samples, rate = read_wav(wav_path)
    first = min(note.start for note in continuation) * seconds
    assert rms(samples, rate, 0.05, 0.4) > 0.005  # the motif's first note
    assert rms(samples, rate, first + 0.01, first + 0.1) > 0.001  # the continuation's first note
    assert len(samples) / rate >= max(n.end for n in song.notes()) * seconds


def test_notes_stream_in_while_written_and_cancel_keeps_them_undoably(qtbot, studio, roll):
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 400.0)  # 200 s at 120 BPM: far longer than the test waits
    seen_while_writing = []
    song.notes_changed.connect(lambda: song.is_writing and seen_while_writing.append(len(song.notes(CONTINUATION))))
    panel = window.generation_panel
    assert not panel.progress_bar.isVisible() and panel.outcome_label.text() == ""  # idle: no empty bar
    assert window.generation.continue_song()
    qtbot.waitUntil(lambda: len(song.notes(CONTINUATION)) >= 10, timeout=30000)
    assert song.is_writing and len(set(seen_while_writing)) >= 2  # they arrived in several batches
    assert panel.progress_bar.isVisible()
    key(qtbot, roll, "Ctrl+.")  # Cancel
    wait_done(qtbot, window, 10000)
    assert not panel.progress_bar.isVisible() and panel.outcome_label.text() == "Stopped"
    assert not window.transport.playing and not window.recorder.sounding()
    kept = [note.id for note in song.notes(CONTINUATION)]
    assert len(kept) >= 10
    assert "kept" in window.statusBar().currentMessage()
    song.undo_stack.undo()
    assert song.notes(CONTINUATION) == [] and len(song.notes(MOTIF)) == 4
    song.undo_stack.redo()
    assert [note.id for note in song.notes(CONTINUATION)] == kept


def test_variations_are_written_and_one_can_be_picked_and_undone(qtbot, studio, roll):
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 8.0, variations=3, seed=11)
    window.generation_panel.listen_box.setChecked(False)
    assert window.generation.continue_song()
    qtbot.waitUntil(lambda: len(window.generation.variations) == 3, timeout=60000)
    wait_done(qtbot, window)
    variations = window.generation.variations
    assert [v.seed for v in variations] == [11, 12, 13]
    assert window.generation_panel.variation_list.count() == 3
    first = [(n.pitch, round(n.start, 4)) for n in song.notes(CONTINUATION)]
    item = window.generation_panel.variation_list.item(1)
    rect = window.generation_panel.variation_list.visualItemRect(item)
    qtbot.mouseClick(window.generation_panel.variation_list.viewport(), Qt.LeftButton, pos=rect.center())
    second = [(n.pitch, round(n.start, 4)) for n in song.notes(CONTINUATION)]
    assert len(second) == len(variations[1].notes) and song.undo_stack.undoText() == "Variation 2"
    song.undo_stack.undo()
    assert [(n.pitch, round(n.start, 4)) for n in song.notes(CONTINUATION)] == first
    # With "Play while writing" on, picking a variation plays it from the seam: an audition.
    window.generation_panel.listen_box.setChecked(True)
    window.recorder.clear()
    assert window.generation.choose_variation(2)
    assert window.transport.playing and window.transport.playhead == pytest.approx(4.0, abs=0.1)
    third = sorted(variations[2].notes, key=lambda n: (n.start, n.pitch))
    assert window.recorder.wait_for(lambda m: any(x.type == "note_on" for _, x in m), 10)
    assert window.recorder.notes()[0][2] in {n.pitch for n in third if n.start == third[0].start}
    window.transport.set_playing(False)


def test_same_fixed_seed_writes_the_same_continuation(qtbot, studio, roll):
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 8.0, seed=5)
    window.generation.listen = False
    results = []
    for _ in range(2):
        assert window.generation.continue_song()
        wait_done(qtbot, window)
        results.append([(n.pitch, round(n.start, 4), round(n.length, 4)) for n in song.notes(CONTINUATION)])
    assert results[0] == results[1] and results[0]


def longest_pitch_streak(notes) -> int:
    """The most onsets in a row (notes struck together are one) on which one pitch is struck."""
    onsets: dict[float, set[int]] = {}
    for note in notes:
        onsets.setdefault(round(note.start, 4), set()).add(note.pitch)
    runs: dict[int, int] = {}
    longest = 0
    for start in sorted(onsets):
        runs = {pitch: runs.get(pitch, 0) + 1 for pitch in onsets[start]}
        longest = max(longest, *runs.values())
    return longest


def test_continue_at_a_low_temperature_strikes_no_pitch_on_more_than_eight_onsets_in_a_row(qtbot, studio, roll):
    """The bundled model at temperature 0.8 loops on one pitch with Avoid loops off (more than 8 onsets in a row:
    seed 4 struck one pitch on 20 when waits were drawn as they fell, and 8 once they went to their peak, so
    the seeds are tried from 4 on until one loops); with it on, the same seed strikes no pitch on more."""
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    panel = window.generation_panel
    window.generation.listen = False
    tried = []
    for seed in range(4, 10):
        set_length(window, 32.0, seed=seed)
        panel.temperature_box.setValue(0.8)
        streaks = []
        for penalty in (0.0, limits.DEFAULT_REPETITION_PENALTY):
            panel.repetition_box.setValue(penalty)
            assert song.settings.repetition_penalty == penalty
            assert window.generation.continue_song()
            wait_done(qtbot, window)
            streaks.append(longest_pitch_streak(song.notes(CONTINUATION)))
            if streaks[0] <= 8:
                break  # this seed does not loop: nothing to keep from looping
        tried.append(streaks)
        if len(streaks) == 2:
            assert streaks[1] <= 8, tried
            return
    pytest.fail(f"no seed looped with Avoid loops off: {tried}")


def test_a_checkpoint_that_fails_to_load_keeps_the_previous_model(qtbot, studio, roll, tmp_path):
    window = studio
    previous = window.generation.model_source
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a model")
    window.generation.choose_model(bad)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=10000)
    assert "broken.pt" in window.last_error and "Still using" in window.last_error
    assert window.generation.model_source == previous and window.song.model != str(bad)
    dialog = window.findChild(QMessageBox, "error_dialog")
    assert dialog is not None and dialog.isVisible()
    dialog.close()
    draw_motif(qtbot, roll)
    set_length(window, 16.0, seed=1)
    assert window.generation.continue_song()  # the previous model still continues
    wait_done(qtbot, window)
    assert window.song.notes(CONTINUATION)


def test_a_model_path_that_is_a_fifo_is_refused_in_words_not_waited_on(qtbot, window, tmp_path):
    """A FIFO as the model blocked the loader forever, and Continue silently never ran."""
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    window.generation.choose_model(fifo)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=10000)
    assert "model.pt: is a pipe (FIFO), not a file" in window.last_error
    assert window.generation.model_source != str(fifo) and window.song.model != str(fifo)
    dialog = window.findChild(QMessageBox, "error_dialog")
    assert dialog is not None
    dialog.close()


def test_a_missing_bundled_model_is_said_and_another_can_be_loaded(qtbot, home, tmp_path, monkeypatch, model_path):
    from continuo.main_window import MainWindow

    monkeypatch.setenv("CONTINUO_MODEL", str(tmp_path / "not-there" / "default.pt"))
    window = MainWindow(home=home, use_autosave=False)
    window.show()
    try:
        panel = window.generation_panel
        qtbot.waitUntil(lambda: "bundled model is missing" in panel.model_label.text(), timeout=10000)
        assert not panel.continue_button.isEnabled() and not window.studio_actions.continue_action.isEnabled()
        assert not window.generation.continue_song()
        assert "missing" in window.statusBar().currentMessage()
        window.generation.choose_model(model_path)
        qtbot.waitUntil(lambda: panel.continue_button.isEnabled(), timeout=20000)
        assert window.song.model == str(model_path) and "M parameters" in panel.model_label.text()
    finally:
        window.song.undo_stack.setClean()
        window.close()


def test_load_offers_safetensors_and_pt_models_and_loads_a_safetensors_one(qtbot, studio, tmp_path, monkeypatch):
    from continuo import generation_panel
    from music_transformer import load_checkpoint, save_checkpoint

    window = studio
    shipped = tmp_path / "shipped.safetensors"  # the form the bundled model ships in, its .json beside it
    save_checkpoint(load_checkpoint(small_checkpoint(tmp_path / "small.pt", seed=2), device="cpu"), shipped)
    asked = []

    def answer(parent, caption, folder, filters):
        asked.append(filters)
        return str(shipped), filters.split(";;")[0]

    monkeypatch.setattr(generation_panel.QFileDialog, "getOpenFileName", answer)
    window.generation_panel.load_button.click()
    qtbot.waitUntil(lambda: window.generation.model_source == str(shipped), timeout=20000)
    assert "*.safetensors" in asked[0].split(";;")[0] and "*.pt" in asked[0].split(";;")[0]
    assert window.song.model == str(shipped) and "M parameters" in window.generation_panel.model_label.text()


def test_closing_the_window_while_generating_stops_the_worker_and_keeps_the_notes(qtbot, studio, roll):
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 400.0)
    assert window.generation.continue_song()
    qtbot.waitUntil(lambda: len(song.notes(CONTINUATION)) >= 3, timeout=30000)
    worker = window.generation.worker
    threads_before = {thread.name for thread in threading.enumerate()}
    assert "continuo-generation" in threads_before and "continuo-playback" in threads_before
    asked = []
    answer_next_dialog("Discard", asked)  # the notes just written are unsaved work: the studio asks
    window.close()
    assert asked and "Save the changes" in asked[0]
    assert not worker.alive and not window.generation.generating
    assert not song.is_writing and song.notes(CONTINUATION)  # what was written stays
    assert song.undo_stack.undoText() == "Continue"
    assert not window.player.scheduler._thread.is_alive()
    assert not window.recorder.sounding()


@contextlib.contextmanager
def out_of_memory_at_call(model, call, message):
    """The model's `call`-th forward pass raises what torch raises when memory runs out (a fault injected)."""
    calls = []

    def exhaust(module, inputs):
        calls.append(1)
        if len(calls) == call:
            raise torch.cuda.OutOfMemoryError(message)

    handle = model.register_forward_pre_hook(exhaust)
    try:
        yield
    finally:
        handle.remove()


def test_out_of_memory_during_generation_is_a_message_not_a_crash(qtbot, studio, roll):
    """A forward hook raises the error torch raises when memory runs out (a fault injected into torch)."""
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 400.0, seed=2)  # a fixed seed: the 39 tokens before the fault hold notes
    with out_of_memory_at_call(window.generation.worker.model, 40, "CUDA out of memory. Tried to allocate 2.00 GiB"):
        assert window.generation.continue_song()
        wait_done(qtbot, window, 30000)
    # On the CPU there is nowhere to retry: the musician reads why, the notes written stay, the studio runs.
    assert "out of memory" in window.statusBar().currentMessage().lower()
    assert song.notes(CONTINUATION) and song.undo_stack.undoText() == "Continue"
    set_length(window, 16.0, seed=1)
    assert window.generation.continue_song()
    wait_done(qtbot, window)
    assert song.notes(CONTINUATION)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_out_of_memory_retries_on_the_cpu(qtbot, studio, roll):
    window, song = studio, studio.song
    window.generation.set_device("cuda")
    qtbot.waitUntil(lambda: window.generation.worker.model.device.type == "cuda", timeout=30000)
    draw_motif(qtbot, roll)
    set_length(window, 16.0)
    with out_of_memory_at_call(window.generation.worker.model, 20, "CUDA out of memory."):
        assert window.generation.continue_song()
        wait_done(qtbot, window)
    assert window.generation.worker.model.device.type == "cpu"
    said = window.statusBar().currentMessage()
    assert "on the CPU" in said or window.generation_panel.device_label.text() == "Running on CPU"
    assert song.notes(CONTINUATION)


WITHOUT_QT = """
import sys

from PySide6.QtCore import QCoreApplication

from continuo.generation import Finished, GenerationRequest, GenerationWorker, LoadFailed, ModelLoaded, Variation
from music_transformer import Note

worker = GenerationWorker()
worker.load("/no/such/model.pt", "cpu")
failed = worker.outbox.get(timeout=30)
assert isinstance(failed, LoadFailed) and "no such model file" in failed.text, failed
worker.load(sys.argv[1], "cpu")
loaded = worker.outbox.get(timeout=60)
assert isinstance(loaded, ModelLoaded), loaded
worker.generate(GenerationRequest(motif=[Note(60, 90, 0.0, 0.5)], start=0.5, seconds=1.0, seeds=[1]))
messages = [worker.outbox.get(timeout=60)]
while not isinstance(messages[-1], Finished):
    messages.append(worker.outbox.get(timeout=60))
assert not (messages[-1].cancelled or messages[-1].failed), messages
assert [m.number for m in messages if isinstance(m, Variation)] == [0], messages
assert worker.stop()
assert QCoreApplication.instance() is None and "PySide6.QtWidgets" not in sys.modules  # no application, no widgets
print("written without a Qt application")
"""


def test_the_worker_loads_and_writes_in_a_process_without_a_qt_application(tmp_path):
    """The worker needs no Qt event loop and no widgets: a script without a QApplication hears a missing model,
    loads one and writes a continuation (the studio's tests share one application: this runs in a process of its
    own)."""
    model_path = small_checkpoint(tmp_path / "small.pt")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_QT, str(model_path)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "written without a Qt application"


def test_a_studio_without_the_c_step_says_so_once_when_a_model_loads(tmp_path, monkeypatch):
    from continuo.generation import GenerationWorker, ModelLoaded, Notice
    from music_transformer import native

    monkeypatch.delenv("CONTINUO_NATIVE", raising=False)
    monkeypatch.setattr(native, "FOLDER", tmp_path / "_native")  # a package built without a C compiler
    monkeypatch.setattr(native, "MANIFEST", tmp_path / "_native" / "variants.json")
    native.library.cache_clear()
    model_path = small_checkpoint(tmp_path / "small.pt")
    worker = GenerationWorker()
    try:
        worker.load(str(model_path), "cpu")
        assert isinstance(worker.outbox.get(timeout=60), ModelLoaded)
        notice = worker.outbox.get(timeout=10)
        assert isinstance(notice, Notice) and "without the C step" in notice.text and "no C step" in notice.text
        worker.load(str(model_path), "cpu")
        assert isinstance(worker.outbox.get(timeout=60), ModelLoaded)
        assert worker.outbox.empty()  # once
    finally:
        assert worker.stop()
        native.library.cache_clear()


def test_the_style_chosen_in_the_panel_opens_what_the_model_reads(qtbot, window, roll, tmp_path):
    """Continue primes the model with START and the style chosen; a model made before styles gets START alone."""
    window.player.use_sinks([RecorderSink()])
    window.generation.listen = False
    draw_motif(qtbot, roll)
    panel = window.generation_panel
    for styles, expected in ((True, [START, style_token("folk")]), (False, [START])):
        model_path = small_checkpoint(tmp_path / f"styles-{styles}.pt", styles=styles)
        window.generation.choose_model(model_path)
        qtbot.waitUntil(lambda path=model_path: window.generation.model_source == str(path), timeout=20000)
        if styles:
            panel.style_box.setFocus()
            qtbot.keyClicks(panel.style_box, "Fo")
        assert window.song.settings.style == "folk"
        set_length(window, 2.0, seed=4)
        with opening_tokens(window.generation.worker.model, len(expected) + 1) as seen:
            qtbot.mouseClick(panel.continue_button, Qt.LeftButton)
            wait_done(qtbot, window)
        assert seen and seen[0][: len(expected)] == expected and seen[0][len(expected)] not in SPECIAL_TOKENS


# --- variations: one batch, one set per continuation ---------------------------------------------------------


def write_variations(qtbot, window, roll, count: int = 3, seed: int = 11) -> None:
    draw_motif(qtbot, roll)
    set_length(window, 8.0, variations=count, seed=seed)
    window.generation.listen = False
    assert window.generation.continue_song()
    qtbot.waitUntil(lambda: len(window.generation.variations) == count, timeout=60000)
    wait_done(qtbot, window)


def click_variation(qtbot, panel, row: int) -> None:
    item = panel.variation_list.item(row)
    rect = panel.variation_list.visualItemRect(item)
    qtbot.mouseClick(panel.variation_list.viewport(), Qt.LeftButton, pos=rect.center())


def marked(panel) -> list[int]:
    """The rows of the variations list that carry the ▶ marker."""
    items = [panel.variation_list.item(row) for row in range(panel.variation_list.count())]
    return [row for row, item in enumerate(items) if item.text().startswith("▶")]


@pytest.mark.parametrize("ending", ["Ctrl+Shift+Return", "Ctrl+Backspace"])
def test_accepting_or_discarding_ends_the_variations_and_undo_and_redo_bring_them_back(qtbot, studio, roll, ending):
    window, song, panel = studio, studio.song, studio.generation_panel
    write_variations(qtbot, window, roll)
    first = summary(song, CONTINUATION)
    click_variation(qtbot, panel, 1)
    assert song.undo_stack.undoText() == "Variation 2" and marked(panel) == [1]
    before = summary(song)
    key(qtbot, roll, ending)  # Accept or Discard
    assert song.variations is None and not panel.variation_list.isEnabled()
    assert panel.variation_list.count() == 3  # greyed out, still readable
    after = summary(song)
    click_variation(qtbot, panel, 2)
    assert not window.generation.choose_variation(2)
    assert summary(song) == after  # nothing put in again: accepting twice no longer doubles the notes
    if ending == "Ctrl+Shift+Return":
        assert len(after) == len(before) and not song.notes(CONTINUATION)
    key(qtbot, roll, "Ctrl+Z")  # undoing the accept brings the continuation back, and its variations with it
    assert summary(song) == before
    assert panel.variation_list.isEnabled() and song.variations.chosen == 1 and marked(panel) == [1]
    key(qtbot, roll, "Ctrl+Shift+Z")  # redone: ended again
    assert summary(song) == after and song.variations is None and not panel.variation_list.isEnabled()
    key(qtbot, roll, "Ctrl+Z")
    key(qtbot, roll, "Ctrl+Z")  # the pick undone: the marker names the variation the song holds, the first
    assert summary(song, CONTINUATION) == first and song.variations.chosen == 0 and marked(panel) == [0]
    key(qtbot, roll, "Ctrl+Shift+Z")
    assert song.variations.chosen == 1 and marked(panel) == [1]
    click_variation(qtbot, panel, 2)  # and the set still takes picks
    assert song.undo_stack.undoText() == "Variation 3" and marked(panel) == [2]


def test_the_continue_panel_keeps_its_place_after_accept_and_open(qtbot, studio, roll, tmp_path):
    window, panel = studio, studio.generation_panel
    window.resize(900, 600)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (900, 600), timeout=3000)
    write_variations(qtbot, window, roll, count=2)
    bar = window.findChild(QScrollArea).verticalScrollBar()
    assert bar.maximum() > 0  # at 900x600 the panel scrolls
    click_variation(qtbot, panel, 1)  # the focus is in the variations list
    bar.setValue(bar.maximum() // 3)
    place = bar.value()
    accept = window.findChild(QToolBar, "tools").widgetForAction(window.studio_actions.accept_action)
    qtbot.mouseClick(accept, Qt.LeftButton)  # Accept greys the list out: the panel stays where it was
    assert window.song.variations is None and bar.value() == place and roll.canvas.hasFocus()
    key(qtbot, roll, "Ctrl+Z")
    click_variation(qtbot, panel, 0)
    bar.setValue(0)
    path = tmp_path / "other.mid"
    write_midi([Note(60, 90, 0.0, 1.0)], path)
    window.song.undo_stack.setClean()
    assert window.open_path(path, ask_to_save=False)  # the new song has no variations: the list greys out
    qtbot.wait(50)
    assert not panel.variation_list.isEnabled() and bar.value() == 0  # Length and Style still in view
    assert panel.length_box.visibleRegion().boundingRect().height() == panel.length_box.height()


def test_undoing_a_pick_keeps_the_set_and_a_new_continue_starts_a_new_one(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    write_variations(qtbot, window, roll)
    first = summary(song, CONTINUATION)
    click_variation(qtbot, panel, 2)
    song.undo_stack.undo()
    assert summary(song, CONTINUATION) == first and song.variations is not None
    assert window.generation.choose_variation(1) and panel.variation_list.isEnabled()
    set_length(window, 4.0, variations=2, seed=30)
    assert window.generation.continue_song()
    assert panel.variation_list.count() == 0  # the old set is gone as the new one is written
    qtbot.waitUntil(lambda: len(window.generation.variations) == 2, timeout=60000)
    wait_done(qtbot, window)
    assert [variation.seed for variation in window.generation.variations] == [30, 31]


def test_the_variations_travel_with_the_session_until_accepted(qtbot, studio, roll, tmp_path):
    window, song, panel = studio, studio.song, studio.generation_panel
    write_variations(qtbot, window, roll)
    written = window.generation.variations
    path = tmp_path / "song.continuo"
    assert window.document.save_to(path)
    song.load([])
    assert panel.variation_list.count() == 0 and not window.generation.variations
    assert window.open_path(path, ask_to_save=False)
    assert window.generation.variations == written
    assert song.variations.settings.seed == 11 and song.variations.count == 3
    assert panel.variation_list.count() == 3 and "seed 13" in panel.variation_list.item(2).text()
    click_variation(qtbot, panel, 2)
    third = written[2]
    assert sorted((n.pitch, round(n.start, 6)) for n in song.notes(CONTINUATION)) == sorted(
        (n.pitch, round(n.start, 6)) for n in third.notes
    )
    assert song.undo_stack.undoText() == "Variation 3"
    window.studio_actions.accept_action.trigger()
    assert window.document.save_to(path)
    assert window.open_path(path, ask_to_save=False)
    assert song.variations is None and not window.generation.variations


def test_the_heard_variation_is_written_first_and_cancel_stops_them_all(qtbot, studio, roll):
    window, song = studio, studio.song
    draw_motif(qtbot, roll)
    set_length(window, 400.0, variations=3, seed=1)
    window.generation.listen = False
    progress = []
    window.generation.progress.connect(lambda number, count, fraction: progress.append((number, count)))
    assert window.generation.continue_song()
    bar = window.generation_panel.progress_bar
    qtbot.waitUntil(lambda: len(song.notes(CONTINUATION)) >= 6, timeout=30000)
    assert bar.format().startswith("Variation 1 of 3: ")  # the heard one's progress, first
    key(qtbot, roll, "Ctrl+.")  # Cancel
    wait_done(qtbot, window, 10000)
    variations = window.generation.variations
    assert [v.number for v in variations] == [0] and not variations[0].complete  # the others never began
    assert {number for number, _ in progress} == {0}
    assert len(song.notes(CONTINUATION)) == len(variations[0].notes)


def test_a_note_stream_on_the_grid_plays_exactly_what_it_writes(tmp_path):
    """NoteStream, without Qt: tokens of a random model in, notes on the grid out, and the live feed's events
    are those notes' events, handed over in time order and never behind what was announced."""
    from continuo.generation import NoteStream
    from continuo.playback.scheduler import NOTE_OFF, NOTE_ON, LiveFeed
    from music_transformer import generate, load_checkpoint

    model = load_checkpoint(small_checkpoint(tmp_path / "small.pt"), device="cpu")
    grid = 0.125
    for seed in range(3):
        feed = LiveFeed(1.0)
        stream = NoteStream(1.0, feed, grid=grid, velocities=(40, 90))
        notes, announced = [], 1.0
        for token in generate(model, [], seconds=6.0, seed=seed, temperature=1.3):
            handed = len(feed.events)
            notes.extend(stream.feed(token))
            assert all(event[0] >= announced - 1e-9 for event in feed.events[handed:])  # none behind the horizon
            assert feed.horizon >= announced
            announced = feed.horizon
        notes.extend(stream.finish())
        assert len(notes) >= 5 and feed.done
        for note in notes:
            assert note.start >= 1.0 - 1e-9 and note.end - note.start >= grid - 1e-9 and 40 <= note.velocity <= 90
            assert abs(note.start / grid - round(note.start / grid)) < 1e-6
            assert abs(note.end / grid - round(note.end / grid)) < 1e-6
        times = [event[0] for event in feed.events]
        assert times == sorted(times)
        expected = sorted(
            [(n.start, NOTE_ON, n.pitch, n.velocity) for n in notes] + [(n.end, NOTE_OFF, n.pitch, 0) for n in notes]
        )
        assert sorted(event[:4] for event in feed.events) == expected


def test_variations_of_a_song_replaced_while_they_are_written_never_reach_the_new_one(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    draw_motif(qtbot, roll)
    set_length(window, 400.0, variations=2, seed=3)
    window.generation.listen = False
    assert window.generation.continue_song()
    qtbot.waitUntil(lambda: len(song.notes(CONTINUATION)) >= 3, timeout=30000)
    song.load([])  # a new song (or one opened) while they are written: the writing stops
    wait_done(qtbot, window, 10000)
    window.generation.drain()
    assert len(song) == 0 and song.variations is None
    assert panel.variation_list.count() == 0 and not window.generation.choose_variation(0)
