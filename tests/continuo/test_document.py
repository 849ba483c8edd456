"""The document: MIDI import and export read back with pretty_midi, sessions, bad input, unsaved changes,
atomic saves, drag and drop."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pretty_midi
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QPushButton

from continuo import limits
from continuo.session import FORMAT_VERSION, SessionError, read_session, write_session
from continuo.song import CONTINUATION, GenerationSettings, Song
from music_transformer import Note, write_midi
from tests.continuo.helpers import answer_next_dialog, draw_note, event_loop_ticks, key, summary


def test_export_everything_motif_and_continuation_read_back(qtbot, window, roll, tmp_path):
    window.song.set_tempo(100)
    draw_note(qtbot, roll, 60, 0, 1)
    draw_note(qtbot, roll, 64, 1, 0.5)
    song = window.song
    song.add_notes([song.new_note(67, 90, 4, 2, CONTINUATION)])
    seconds = 60 / 100
    expected = {
        "everything": [(60, 0, 1), (64, 1, 1.5), (67, 4, 6)],
        "motif": [(60, 0, 1), (64, 1, 1.5)],
        "continuation": [(67, 4, 6)],
    }
    for what, notes in expected.items():
        path = tmp_path / f"{what}.mid"
        assert window.document.export_midi(path, what)
        midi = pretty_midi.PrettyMIDI(str(path))
        read = sorted((n.pitch, n.start, n.end) for i in midi.instruments for n in i.notes)
        assert [p for p, _, _ in read] == [p for p, _, _ in notes]
        for (_, start, end), (_, beat, end_beat) in zip(read, notes, strict=True):
            assert start == pytest.approx(beat * seconds, abs=2e-3)
            assert end == pytest.approx(end_beat * seconds, abs=2e-3)
        assert midi.get_tempo_changes()[1][0] == pytest.approx(100)
    song.discard_continuation()
    assert not window.document.export_midi(tmp_path / "nothing.mid", "continuation")
    assert "nothing to export" in window.last_error
    assert not (tmp_path / "nothing.mid").exists()


def test_open_a_midi_file_uses_its_tempo_for_the_grid(window, tmp_path):
    path = tmp_path / "motif.mid"
    write_midi([Note(60, 80, 0.0, 0.5), Note(62, 90, 0.5, 1.0)], path, bpm=90)
    assert window.open_path(path)
    assert window.song.tempo == 90
    assert summary(window.song) == [(60, 0.0, 0.75, 80), (62, 0.75, 0.75, 90)]
    assert "motif.mid" in window.windowTitle()


# The first file's track is cut short: music_transformer.midi says "truncated" (before 2fda2a0, "damaged").
@pytest.mark.parametrize(
    "content, words",
    [
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff\x00\x90", "truncated"),
        (b"this is a text file, not MIDI", "not a MIDI file"),
        (b"", "empty"),
    ],
)
def test_a_bad_midi_file_names_the_problem_and_leaves_the_song(qtbot, window, roll, tmp_path, content, words):
    draw_note(qtbot, roll, 60, 0, 1)
    before, steps = summary(window.song), window.song.undo_stack.count()
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    assert not window.open_path(bad)
    assert not window.document.import_motif(bad)
    assert words in window.last_error and "bad.mid" in window.last_error
    dialog = window.findChild(QMessageBox, "error_dialog")
    assert dialog is not None and dialog.isVisible() and words in dialog.text()
    assert summary(window.song) == before and window.song.undo_stack.count() == steps


def test_drum_only_file_is_refused(window, tmp_path):
    midi = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(0, is_drum=True)
    drums.notes.append(pretty_midi.Note(100, 36, 0, 0.5))
    midi.instruments.append(drums)
    midi.write(str(tmp_path / "drums.mid"))
    assert not window.open_path(tmp_path / "drums.mid")
    assert "drum" in window.last_error


def test_session_round_trip_with_settings_view_and_recent_files(qtbot, window, roll, tmp_path, home):
    from continuo.main_window import MainWindow

    draw_note(qtbot, roll, 60, 0, 1)
    window.song.add_notes([window.song.new_note(72, 50, 2, 1, CONTINUATION)])
    window.song.set_tempo(96)
    window.song.set_time_signature(3, 4)
    window.song.set_settings(GenerationSettings(temperature=0.8, top_k=32))
    window.song.set_model("tiny.pt")
    roll.transport.set_loop(2, 6, True)
    path = tmp_path / "song.continuo"
    assert window.document.save_as(path)
    assert not window.isWindowModified()
    other = MainWindow(home=home, use_autosave=False)
    try:
        assert other.open_path(path)
        assert summary(other.song) == summary(window.song)
        assert [n.part for n in other.song.notes()] == ["motif", "continuation"]
        assert other.song.meta() == window.song.meta()
        assert (other.transport.loop_start, other.transport.loop_end, other.transport.loop_enabled) == (2, 6, True)
        assert other.preferences.recent_files()[0] == str(path.resolve())
        assert other.signature_box.currentText() == "3/4" and other.tempo_box.value() == 96
    finally:
        other.close()


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda data: data.update(version=FORMAT_VERSION + 1), "newer version of Continuo"),
        (lambda data: data.update(notes=[[1, 60, 500, 0, 1, "motif"]]), "damaged"),
        (lambda data: data.update(format="something-else"), "not a Continuo session"),
        (None, "damaged"),
    ],
)
def test_a_newer_or_damaged_session_is_refused_and_nothing_is_overwritten(qtbot, window, roll, tmp_path, mutate, words):
    draw_note(qtbot, roll, 60, 0, 1)
    mine = tmp_path / "mine.continuo"
    window.document.save_as(mine)
    draw_note(qtbot, roll, 62, 1, 1)
    before = summary(window.song)
    data = json.loads(mine.read_text())
    bad = tmp_path / "bad.continuo"
    if mutate is None:
        bad.write_text(mine.read_text()[:40])  # cut short
    else:
        mutate(data)
        bad.write_text(json.dumps(data))
    bad_bytes, mine_bytes = bad.read_bytes(), mine.read_bytes()
    assert not window.open_path(bad)
    assert words in window.last_error
    assert summary(window.song) == before and window.document.path == mine
    assert bad.read_bytes() == bad_bytes and mine.read_bytes() == mine_bytes
    assert window.document.save()  # saves to the document it had, never over the file that failed
    assert bad.read_bytes() == bad_bytes


def _session_with(tmp_path: Path, settings: dict | None = None, variations: dict | None = None) -> Path:
    """A session file of an empty song whose settings (and variations) hold these values."""
    path = tmp_path / "bounds.continuo"
    write_session(Song(), path)
    data = json.loads(path.read_text())
    data["settings"].update(settings or {})
    if variations is not None:
        data["variations"] = {"kind": "continue", "start": 0.0, "settings": {}, "variations": []} | variations
    path.write_text(json.dumps(data))
    return path


JUST_INSIDE = 1e-3
SETTINGS_AT_THE_BOUNDS = [  # (the value a session holds, what it opens as; None: refused, naming the bound)
    ("temperature", limits.MIN_TEMPERATURE, limits.MIN_TEMPERATURE, None),  # 0: the likeliest event every step
    ("temperature", limits.MIN_TEMPERATURE - JUST_INSIDE, None, "temperature -0.001 is outside 0..10"),
    ("temperature", limits.MAX_TEMPERATURE, limits.MAX_TEMPERATURE, None),
    ("temperature", limits.MAX_TEMPERATURE + JUST_INSIDE, None, "is outside 0..10"),
    ("top_k", limits.MIN_TOP_K, 0, None),
    ("top_k", limits.MIN_TOP_K - 1, None, "top-k -1 is outside 0..400 (0: off)"),
    ("top_k", limits.MAX_TOP_K, limits.MAX_TOP_K, None),
    ("top_k", limits.MAX_TOP_K + 1, 0, None),  # an older session's: past the vocabulary it kept every event: off
    ("top_k", limits.MAX_SESSION_TOP_K, 0, None),  # the most an older session could hold
    ("top_k", limits.MAX_SESSION_TOP_K + 1, None, "top-k 1001 is outside 0..400 (0: off)"),
    ("top_p", JUST_INSIDE, JUST_INSIDE, None),
    ("top_p", limits.MIN_TOP_P, None, "top-p 0.0 must be above 0 and at most 1"),
    ("top_p", limits.MAX_TOP_P, limits.MAX_TOP_P, None),
    ("top_p", limits.MAX_TOP_P + JUST_INSIDE, None, "must be above 0 and at most 1"),
    ("variations", 1, 1, None),
    ("variations", 0, None, "0 variations: choose 1 to 8"),
    ("variations", limits.MAX_VARIATIONS, limits.MAX_VARIATIONS, None),
    ("variations", limits.MAX_VARIATIONS + 1, None, "9 variations: choose 1 to 8"),
]


@pytest.mark.parametrize(
    "name, value, opened, words", SETTINGS_AT_THE_BOUNDS, ids=[f"{row[0]}={row[1]}" for row in SETTINGS_AT_THE_BOUNDS]
)
def test_a_sessions_settings_open_within_the_sampling_bounds_and_past_them_are_refused_in_words(
    tmp_path, name, value, opened, words
):
    path = _session_with(tmp_path, {name: value})
    if words is None:
        assert getattr(read_session(path).meta["settings"], name) == opened
    else:
        with pytest.raises(SessionError, match="damaged") as refused:
            read_session(path)
        assert words in str(refused.value)


@pytest.mark.parametrize("count, opens", [(1, True), (0, False), (limits.MAX_VARIATIONS, True), (9, False)])
def test_a_sessions_variations_to_pick_from_are_as_many_as_one_continue_writes(tmp_path, count, opens):
    path = _session_with(tmp_path, variations={"count": count})
    if opens:
        assert read_session(path).meta["variations"].count == count
    else:
        with pytest.raises(SessionError, match=f"the variations are damaged \\({count} variations\\)"):
            read_session(path)


def test_an_older_session_with_top_k_1000_opens_with_top_k_off(qtbot, window, tmp_path):
    path = _session_with(tmp_path, {"top_k": 1000, "temperature": 0.7})
    assert window.open_path(path)
    assert window.song.settings.top_k == 0 and window.song.settings.temperature == 0.7
    assert window.generation_panel.top_k_box.text() == "off"


def test_unsaved_changes_ask_before_closing(qtbot, home, tmp_path):
    from continuo.main_window import MainWindow

    win = MainWindow(home=home, use_autosave=False)
    win.show()
    draw_note(qtbot, win.roll, 60, 0, 1)
    asked = []
    answer_next_dialog("Cancel", asked)
    assert not win.close()
    assert win.isVisible() and "Save the changes" in asked[0]
    path = tmp_path / "kept.continuo"
    win.document.path = path
    answer_next_dialog("Save")
    assert win.close()
    assert path.exists()
    win2 = MainWindow(home=home, use_autosave=False)
    win2.show()
    draw_note(qtbot, win2.roll, 61, 0, 1)
    answer_next_dialog("Discard")
    assert win2.close()


def test_every_save_is_atomic(window, tmp_path, monkeypatch):
    path = tmp_path / "song.continuo"
    window.song.add_notes([window.song.new_note(60, 100, 0, 1)])
    window.document.save_as(path)
    good = path.read_bytes()
    window.song.add_notes([window.song.new_note(62, 100, 1, 1)])

    def broken_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    assert not window.document.save()
    assert "No space left" in window.last_error
    assert path.read_bytes() == good  # the old file is whole
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert window.isWindowModified()


def test_drop_a_midi_file_to_make_it_the_motif(qtbot, window, tmp_path):
    path = tmp_path / "dropped.mid"
    write_midi([Note(65, 100, 0, 0.5)], path, bpm=120)
    window.song.add_notes([window.song.new_note(60, 100, 0, 1)])
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(300, 300), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(300, 300), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, drop)
    qtbot.waitUntil(lambda: [n.pitch for n in window.song.notes()] == [65], timeout=2000)
    window.song.undo_stack.undo()
    assert [n.pitch for n in window.song.notes()] == [60]


def cancel_next_file_dialog(seen: list) -> None:
    """Notes the file the next file dialog proposes, then cancels it (it blocks in its own event loop)."""

    def attempt() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, QFileDialog):
            seen.append(Path(dialog.selectedFiles()[0]).name)
            dialog.reject()
        else:
            QTimer.singleShot(20, attempt)

    QTimer.singleShot(20, attempt)


def test_every_dialog_suggests_the_documents_name(qtbot, window, tmp_path):
    """After opening motif.mid, Save As, the exports and the title all say "motif"; after a save, the session's name."""
    path = tmp_path / "motif.mid"
    write_midi([Note(60, 80, 0.0, 0.5)], path, bpm=120)
    assert window.document.open_path(path)
    actions = window.studio_actions
    dialogs = [
        actions.save_as_action,
        actions.export_actions[0],
        actions.export_actions[2],
        actions.export_audio_action,
    ]

    def suggestions() -> list[str]:
        seen: list[str] = []
        for action in dialogs:
            cancel_next_file_dialog(seen)
            action.trigger()
        return seen

    assert suggestions() == ["motif.continuo", "motif.mid", "motif-continuation.mid", "motif.wav"]
    assert window.windowTitle().startswith("motif.mid")
    assert window.document.save_to(tmp_path / "song.continuo")
    assert suggestions() == ["song.continuo", "song.mid", "song-continuation.mid", "song.wav"]
    assert window.windowTitle().startswith("song.continuo")


# --- faithful import and reading in the background (issues 25 and 28) -------------------------------------


def _metred_file(path: Path) -> list[tuple[float, float]]:
    """Für Elise's opening: 3/8 at 72 BPM, a tempo change to 90 BPM and to 2/4 at that moment; the
    (start, end) seconds of its notes as pretty_midi reads them."""
    import mido

    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("time_signature", numerator=3, denominator=8, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(72), time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=480 * 6),
            mido.MetaMessage("time_signature", numerator=2, denominator=4, time=0),
        ]
    )
    notes = mido.MidiTrack()
    for pitch in (76, 75, 76, 75, 76, 71, 74, 72, 69, 60, 64, 69, 71, 64, 68, 71, 72):
        notes.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        notes.append(mido.Message("note_off", note=pitch, time=240))
    midi.tracks += [conductor, notes]
    midi.save(path)
    return [(note.start, note.end) for note in pretty_midi.PrettyMIDI(str(path)).instruments[0].notes]


def test_a_midi_file_in_3_8_opens_in_3_8_and_keeps_its_tempo_and_metre_changes(qtbot, window, tmp_path):
    path = tmp_path / "elise.mid"
    seconds = _metred_file(path)
    assert window.open_path(path, wait=False)  # as File ▸ Open does: in the background
    qtbot.waitUntil(lambda: len(window.song) == len(seconds), timeout=20000)
    song = window.song
    assert song.time_signature == (3, 8) and song.tempo == 72
    assert window.signature_box.currentText() == "3/8" and window.tempo_box.value() == 72
    # The notes keep their times in seconds (the file's 666,666 µs a beat is 90.00009 BPM; the song keeps 90 BPM,
    # a microsecond a beat) and lie on the file's beats, so that its bars are the song's: the second tempo and the
    # 2/4 come in at beat 6, bar 5 (four bars of 3/8, each a dotted quarter).
    for note, (start, end) in zip(song.notes(), seconds, strict=True):
        assert song.to_seconds(note.start) == pytest.approx(start, abs=1e-5)
        assert song.to_seconds(note.end) == pytest.approx(end, abs=1e-5)
        assert note.start == pytest.approx(round(note.start * 2) / 2, abs=1e-9)  # on the file's eighths
    assert song.tempo_map.tempi == ((0.0, 72.0), (6.0, 90.0))
    assert song.tempo_map.metres == ((0.0, 3, 8), (6.0, 2, 4))
    assert song.bar_beat(6.0) == (5, 1, 0.0) and song.time_signature_at(6.0) == (2, 4)
    message = window.statusBar().currentMessage()
    assert "elise.mid" in message and "72 BPM in 3/8" in message
    assert "changes tempo 1 time (72–90 BPM)" in message and "changes metre (3/8, 2/4)" in message


def test_a_midi_file_with_its_tempo_map_beside_the_notes_opens_as_the_standard_one(qtbot, window, tmp_path):
    """Some converters write the tempo and metre into the notes' track and add chunks of their own: the notes,
    the grid and the remarks are those of the same music written the standard way."""
    import mido

    seconds = _metred_file(tmp_path / "standard.mid")
    standard = mido.MidiFile(tmp_path / "standard.mid")
    merged = mido.MidiTrack(mido.merge_tracks(standard.tracks))
    path = tmp_path / "converted.mid"
    mido.MidiFile(type=1, ticks_per_beat=480, tracks=[mido.MidiTrack(), merged]).save(path)
    data = path.read_bytes()
    other = b"XFIH" + struct.pack(">I", 4) + b"\x00\x00\x01\x00"  # a chunk of the converter's own
    path.write_bytes(data[:14] + other + data[14:])
    assert window.open_path(path)
    song = window.song
    assert song.time_signature == (3, 8) and song.tempo == 72
    for note, (start, end) in zip(song.notes(), seconds, strict=True):
        assert song.to_seconds(note.start) == pytest.approx(start, abs=1e-5)
        assert song.to_seconds(note.end) == pytest.approx(end, abs=1e-5)
    assert song.tempo_map.metres == ((0.0, 3, 8), (6.0, 2, 4))
    message = window.statusBar().currentMessage()
    assert "changes tempo 1 time (72–90 BPM)" in message and "changes metre (3/8, 2/4)" in message


def test_notes_a_midi_file_never_releases_are_held_and_said(window, tmp_path):
    """A recording stopped with two keys down: they sound to the end of the track, and the studio says why."""
    import mido

    track = mido.MidiTrack()
    for pitch in (60, 64, 67):
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
    track += [mido.Message("note_off", note=67, time=480), mido.MetaMessage("end_of_track", time=960)]
    mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track]).save(tmp_path / "take.mid")
    assert window.open_path(tmp_path / "take.mid")
    # 120 BPM: the track ends three beats in
    assert summary(window.song) == [(60, 0.0, 3.0, 80), (64, 0.0, 3.0, 80), (67, 0.0, 1.0, 80)]
    message = window.statusBar().currentMessage()
    assert "2 notes in the file are never released, so they sound to the end of their track" in message


def test_importing_a_motif_takes_its_metre_and_tempo_in_one_undo_step(qtbot, window, roll, tmp_path):
    draw_note(qtbot, roll, 60, 0, 1)
    path = tmp_path / "elise.mid"
    _metred_file(path)
    assert window.document.import_motif(path, wait=False)
    qtbot.waitUntil(lambda: window.song.time_signature == (3, 8), timeout=20000)
    assert window.song.tempo == 72 and len(window.song) == 17
    assert "changes tempo" in window.statusBar().currentMessage()
    key(qtbot, roll, "Ctrl+Z")
    assert window.song.time_signature == (4, 4) and window.song.tempo == 120 and summary(window.song)[0][0] == 60


def test_every_time_signature_a_musician_needs_is_offered_and_others_can_be_typed(qtbot, window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    box = window.signature_box
    offered = [box.itemText(index) for index in range(box.count())]
    for signature in ("2/4", "3/4", "4/4", "5/4", "6/8", "3/8", "7/8", "9/8", "12/8"):
        assert signature in offered
    box.setCurrentText("3/8")
    assert window.song.time_signature == (3, 8) and window.song.beats_per_bar == 1.5
    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("11/16", True))
    box.setCurrentIndex(box.findText("Other…"))
    assert window.song.time_signature == (11, 16) and box.currentText() == "11/16"
    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("7/5", True))
    box.setCurrentIndex(box.findText("Other…"))
    assert window.song.time_signature == (11, 16) and box.currentText() == "11/16"
    assert "7/5" in window.statusBar().currentMessage()


@pytest.mark.timeout(120)
def test_a_big_file_is_read_in_the_background_with_progress_and_cancel(qtbot, window, tmp_path):
    from PySide6.QtWidgets import QProgressDialog

    path = tmp_path / "big.mid"
    write_midi([Note(40 + i % 40, 90, i * 0.02, i * 0.02 + 0.1) for i in range(40_000)], path)
    with event_loop_ticks(10) as ticks:
        assert window.open_path(path, wait=False)
        progress = None

        def shown() -> bool:
            nonlocal progress
            progress = window.findChild(QProgressDialog, "reading_progress")
            return progress is not None and progress.isVisible()

        qtbot.waitUntil(shown, timeout=5000)
        assert "big.mid" in progress.labelText()
        qtbot.mouseClick(progress.findChild(QPushButton), Qt.LeftButton)  # Cancel
        assert "Stopped reading big.mid" in window.statusBar().currentMessage()
        qtbot.wait(4000)  # the reading ends meanwhile: its notes never reach the song
        assert len(window.song) == 0 and window.document.reading is False
        applied = []
        window.song.reset.connect(lambda: applied.append(time.perf_counter()))
        assert window.open_path(path, wait=False)
        started = time.perf_counter()
        qtbot.waitUntil(lambda: len(window.song) == 40_000, timeout=60000)
    reading = [tick for tick in ticks if started < tick < applied[0]]  # until the song takes the notes
    gaps = [later - earlier for earlier, later in zip(reading, reading[1:], strict=False)]
    # The window kept answering while the file was read (reading it on the GUI thread stalled it for 4 s): ticks
    # came on time but for a few, which a machine loaded on both cores (the reading thread holds the GIL in
    # 5 ms slices) delays by a few hundred milliseconds at worst.
    gaps.sort()
    assert len(reading) > 20 and gaps[len(gaps) // 2] < 0.05, f"median gap {gaps[len(gaps) // 2] * 1000:.0f} ms"
    assert gaps[-1] < 1.0, f"longest stall {gaps[-1] * 1000:.0f} ms"


def _answer_export_audio(path: Path, normalize: bool | None = None, gain: float | None = None, seen=None) -> None:
    """Fills in the Export Audio dialog once it opens: the file, the level choices; notes what it offered."""
    from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QLineEdit

    def attempt() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QFileDialog):
            QTimer.singleShot(20, attempt)
            return
        normalize_box, gain_box = dialog.findChild(QCheckBox, "normalize"), dialog.findChild(QDoubleSpinBox, "gain_db")
        if seen is not None:
            seen.append((normalize_box.isChecked(), gain_box.value()))
        if normalize is not None:
            normalize_box.setChecked(normalize)
        if gain is not None:
            gain_box.setValue(gain)

        def choose() -> None:  # typed into the name box, as a musician does, once the dialog has read its folder
            dialog.findChild(QLineEdit, "fileNameEdit").setText(str(path))
            dialog.accept()

        QTimer.singleShot(300, choose)

    QTimer.singleShot(20, attempt)


@pytest.mark.timeout(120)
def test_audio_export_is_normalised_by_default_with_a_gain_and_exports_get_the_usual_mode(qtbot, window, tmp_path):
    from continuo.playback.render import render_wav
    from tests.continuo.helpers import require_fluidsynth
    from tests.continuo.playback.test_render import _peak_db

    require_fluidsynth()
    song = window.song
    song.add_notes([song.new_note(60, 20, 0, 1), song.new_note(64, 25, 1, 1)])  # a soft phrase
    previous = os.umask(0o022)
    try:
        offered = []
        _answer_export_audio(tmp_path / "soft.wav", seen=offered)
        with qtbot.waitSignal(window.document.audio_exported, timeout=60000):
            window.studio_actions.export_audio_action.trigger()
        assert offered == [(True, 0.0)]  # normalised, no gain: the default
        assert _peak_db(tmp_path / "soft.wav") == pytest.approx(-1.0, abs=0.01)
        assert "loudest peak at -1.0 dBFS" in window.statusBar().currentMessage()
        _answer_export_audio(tmp_path / "as-played.wav", normalize=False, gain=6.0)
        with qtbot.waitSignal(window.document.audio_exported, timeout=60000) as exported:
            window.studio_actions.export_audio_action.trigger()
        assert exported.args == [str(tmp_path / "as-played.wav"), True], window.last_error
        as_played = render_wav(song.performance_notes(), tmp_path / "reference.wav", normalize=False)
        assert _peak_db(tmp_path / "as-played.wav") == pytest.approx(as_played.peak_db + 6, abs=0.05)
        assert as_played.peak_db < -20  # the synth's own level: what the export used to be
        _answer_export_audio(tmp_path / "again.wav", seen=offered)
        with qtbot.waitSignal(window.document.audio_exported, timeout=60000):
            window.studio_actions.export_audio_action.trigger()
        assert offered[-1] == (False, 6.0)  # the last choice is kept
        # Every file the musician exports or saves gets the mode of any new file (0644 under this umask).
        assert window.document.export_midi(tmp_path / "song.mid")
        assert window.document.save_as(tmp_path / "song.continuo")
        for name in ("soft.wav", "as-played.wav", "song.mid", "song.continuo"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    finally:
        os.umask(previous)


def test_edits_made_while_a_file_is_read_at_launch_are_asked_about_not_dropped(qtbot, window, roll, tmp_path):
    path = tmp_path / "elise.mid"
    _metred_file(path)
    asked = []
    assert window.open_path(path, ask_to_save=False, wait=False)  # as `continuo FILE` opens it
    draw_note(qtbot, roll, 60, 0, 1)  # drawn before the reading is done (its result waits for the event loop)
    answer_next_dialog("Cancel", asked)  # "save changes?": the musician keeps the drawing
    qtbot.waitUntil(lambda: not window.document.reading and bool(asked), timeout=20000)
    assert [note.pitch for note in window.song.notes()] == [60]  # asked, and the drawing kept


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/dev/urandom"])
def test_a_device_or_a_fifo_is_refused_at_once_and_the_song_kept(qtbot, window, tmp_path, kind):
    """`continuo /dev/zero` read until memory ran out; a FIFO as the session hung forever."""
    window.song.add_notes([window.song.new_note(60, 100, 0, 1)])
    window.song.undo_stack.setClean()
    for name in ("song.continuo", "song.mid"):
        path = tmp_path / f"{kind.strip('/').replace('/', '-')}-{name}"
        os.mkfifo(path) if kind == "fifo" else path.symlink_to(kind)
        started = time.perf_counter()
        assert not window.open_path(path, ask_to_save=False)
        assert time.perf_counter() - started < 5
        assert "not a file" in window.last_error and path.name in window.last_error, window.last_error
        assert [note.pitch for note in window.song.notes()] == [60]


def test_a_save_keeps_the_files_mode_and_writes_through_a_link(window, tmp_path):
    """Re-saving a 0600 session made it 0644; saving onto a link replaced the link and left its target stale."""
    window.song.add_notes([window.song.new_note(60, 100, 0, 1)])
    private = tmp_path / "private.continuo"
    assert window.document.save_as(private)
    os.chmod(private, 0o600)
    window.song.add_notes([window.song.new_note(62, 100, 1, 1)])
    assert window.document.save()
    assert os.stat(private).st_mode & 0o777 == 0o600
    assert window.document.export_midi(tmp_path / "private.mid")
    os.chmod(tmp_path / "private.mid", 0o600)
    assert window.document.export_midi(tmp_path / "private.mid")
    assert os.stat(tmp_path / "private.mid").st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere" / "song.continuo"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.continuo"
    link.symlink_to(target)
    assert window.document.save_as(link)
    assert link.is_symlink() and len(read_session(target).notes) == 2
    null = tmp_path / "null.continuo"
    null.symlink_to("/dev/null")
    assert not window.document.save_as(null)
    assert "is a device, not a file" in window.last_error and null.is_symlink()
