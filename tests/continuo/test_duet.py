"""Duet mode on a real JACK graph: a test keyboard plays a phrase, pauses, and the model's answer is heard on the
studio's output and lands in the roll; playing again interrupts it. The answers come from the studio's
generation worker, with the one model Continue uses. A small random model (same code path)."""

from __future__ import annotations

import dataclasses
import threading
import time

import mido
import pytest
from pytestqt.exceptions import TimeoutError as WaitTimedOut

import continuo.generation.worker
from continuo.song import CONTINUATION, MOTIF
from music_transformer.events import START, style_token
from tests.continuo.helpers import PHRASE, off, on, opening_tokens, small_checkpoint

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small random model: answers are quick to write and the code path is the default model's."""
    return small_checkpoint(tmp_path_factory.mktemp("duet") / "small.pt", seed=1)


def load_model(qtbot, window, model_path) -> None:
    """The studio's model, which Continue and the duet both use."""
    window.generation.choose_model(model_path)
    qtbot.waitUntil(lambda: window.generation.model_source == str(model_path), timeout=20000)


def enable_duet(qtbot, window, model_path) -> None:
    """The studio's model loaded, then Duet Mode on."""
    load_model(qtbot, window, model_path)
    window.duet.start()
    qtbot.waitUntil(lambda: window.duet.enabled, timeout=20000)


def start_duet(qtbot, window, model_path) -> None:
    enable_duet(qtbot, window, model_path)
    window.duet.duet.seed = 3  # the same answer every run
    assert window.midi.recorder.recording  # the duet records both phrases


def answer_notes(probe, after: float) -> list[tuple[float, str, int, int]]:
    return [note for note in probe.notes() if note[0] > after]


def heard_phrase_end(qtbot, keyboard, probe) -> float:
    """What the answer comes after: when the probe heard the studio's thru echo of the keyboard's last
    message, which a busy machine delays past any fixed margin; 50 ms after it was sent if the echo is not
    heard within 2 s."""
    sent_at, message = keyboard.sent[-1]
    kind = "on" if message.type == "note_on" and message.velocity > 0 else "off"

    def echo() -> float | None:
        return next((n[0] for n in probe.notes() if n[0] >= sent_at and n[1] == kind and n[2] == message.note), None)

    try:
        qtbot.waitUntil(lambda: echo() is not None, timeout=2000)
    except WaitTimedOut:
        return sent_at + 0.05
    return echo()


def test_after_a_pause_the_model_answers_and_both_phrases_land_in_the_roll(qtbot, graph, model_path):
    window, keyboard, probe = graph
    start_duet(qtbot, window, model_path)
    keyboard.play(PHRASE)
    phrase_end = heard_phrase_end(qtbot, keyboard, probe)
    qtbot.waitUntil(lambda: bool(window.song.notes(CONTINUATION)), timeout=30000)  # the answer, heard, landed
    answer = answer_notes(probe, phrase_end)
    ons = [note for note in answer if note[1] == "on"]
    assert ons and ons[0][0] >= keyboard.sent[-1][0] + window.duet.pause  # it waited for the pause
    # Every answering note ends (the last note-offs cross the graph a period after the answer is done).
    qtbot.waitUntil(lambda: sum(n[1] == "off" for n in answer_notes(probe, phrase_end)) == len(ons), timeout=5000)
    window.duet.stop()
    song = window.song
    assert [(n.pitch, n.velocity) for n in song.notes(MOTIF)] == [(60, 90), (64, 70), (67, 110), (72, 50)]
    answered = song.notes(CONTINUATION)
    assert len(answered) == len(ons)
    assert min(n.start for n in answered) > max(n.start for n in song.notes(MOTIF))
    assert song.undo_stack.undoText() == "Record"  # the duet is one undo step, editable and exportable
    song.undo_stack.undo()
    assert song.notes() == []


def test_playing_again_interrupts_the_answer_and_keeps_only_what_was_heard(qtbot, graph, model_path):
    window, keyboard, probe = graph
    start_duet(qtbot, window, model_path)
    duet = window.duet.duet
    duet.pause = 0.3
    keyboard.play(PHRASE[:2])
    phrase_end = heard_phrase_end(qtbot, keyboard, probe)
    qtbot.waitUntil(lambda: any(n[1] == "on" for n in answer_notes(probe, phrase_end)), timeout=30000)
    assert duet.answering
    keyboard.play([(0.0, on(50, 100)), (0.1, off(50))])  # the musician plays again: the answer stops
    interrupted_at = keyboard.sent[-2][0]
    qtbot.waitUntil(lambda: not duet.answering, timeout=5000)

    def echoed() -> bool:  # thru played the key again, on then off (the answer may have played a 50 of its own)
        again = [
            (kind, velocity) for at, kind, pitch, velocity in probe.notes() if pitch == 50 and at >= interrupted_at
        ]
        return ("on", 100) in again and again[-1][0] == "off"  # the answer stopped before the key sounded

    qtbot.waitUntil(echoed, timeout=5000)
    sounding = {}
    for _at, kind, pitch, _ in probe.notes():  # nothing of the answer sounds on after the interruption
        sounding[pitch] = kind == "on"
    assert not any(sounding.values())
    window.duet.stop()
    song = window.song
    answered = song.notes(CONTINUATION)
    assert answered  # the part that was heard is kept ...
    recorder = window.midi.recorder
    start_of = {round(recorder.origin + song.to_seconds(n.start - recorder.start_beat), 3) for n in answered}
    assert max(start_of) < interrupted_at + 0.01  # ... and nothing written ahead of the music
    assert (50, 100) in [(n.pitch, n.velocity) for n in song.notes(MOTIF)]


def test_the_duet_alone_answers_into_any_sink_and_a_key_cuts_the_answer_short(model_path):
    """The Duet without Qt or a MIDI system: messages fed directly, the answer heard by a recorder sink."""

    from continuo.duet import Duet
    from continuo.generation import GenerationWorker, ModelLoaded
    from continuo.playback import RecorderSink

    worker = GenerationWorker()
    worker.load(str(model_path), "cpu")
    assert isinstance(worker.outbox.get(timeout=20), ModelLoaded)
    output = RecorderSink()
    answers: list = []
    answered = threading.Event()
    duet = Duet(worker, lambda: [output], lambda answer: (answers.append(answer), answered.set()), pause=0.2, seed=5)
    try:

        def play(pitch: int) -> None:
            import time

            now = time.perf_counter()
            duet.feed(now, mido.Message("note_on", note=pitch, velocity=90))
            duet.feed(now + 0.1, mido.Message("note_off", note=pitch, velocity=0))

        play(60)
        assert output.wait_for(lambda messages: any(m.type == "note_on" for _, m in messages), 30)
        assert duet.answering
        duet.pause = 60.0  # no second answer while this one is checked
        play(62)  # a key: the answer stops, only its own notes are turned off
        assert answered.wait(10)
        assert not any(m.type == "control_change" for _, m in output.messages)  # not an all-notes-off
        assert not output.sounding()
        heard = answers[0].notes
        assert heard and all(note.end > note.start for note in heard)
        assert len(answers) == 1 and answers[0].latency > 0  # it began to sound after the pause
    finally:
        duet.close()
        assert worker.stop()


def test_the_duet_answers_in_the_style_chosen_in_the_panel(qtbot, window, model_path):
    """The duet's model is primed with the Continue panel's style (the small model here knows styles)."""
    song = window.song
    song.set_settings(dataclasses.replace(song.settings, style="chorale"))
    enable_duet(qtbot, window, model_path)
    duet = window.duet.duet
    try:
        with opening_tokens(window.generation.worker.model) as seen:
            now = time.perf_counter()
            duet.feed(now, on(60, 90))
            duet.feed(now + 0.1, off(60))
            qtbot.waitUntil(lambda: bool(seen), timeout=20000)
    finally:
        window.duet.stop()
    assert seen[0] == [START, style_token("chorale")]


def test_the_duet_and_continue_share_the_one_model_the_worker_loaded(qtbot, window, model_path, monkeypatch):
    """One model in memory: the duet asks the studio's generation worker for its answers, and that worker loads
    the model once, for Continue and the duet alike."""
    loads: list[str] = []
    real_load = continuo.generation.worker.load_checkpoint

    def counted_load(path, *args, **kwargs):
        loads.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(continuo.generation.worker, "load_checkpoint", counted_load)
    window.generation.listen = False
    enable_duet(qtbot, window, model_path)
    duet = window.duet.duet
    duet.seed = 3
    assert duet.worker is window.generation.worker
    model = window.generation.worker.model
    with opening_tokens(model) as seen:
        now = time.perf_counter()
        duet.feed(now, on(60, 90))
        duet.feed(now + 0.1, off(60))
        qtbot.waitUntil(lambda: bool(seen), timeout=30000)  # the duet's answer primed the worker's model
        qtbot.waitUntil(lambda: not duet.answering, timeout=30000)
        window.duet.stop()
        answered = len(seen)
        song = window.song
        song.set_settings(dataclasses.replace(song.settings, length=0.5, seed=1))
        assert window.generation.continue_song()
        qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=30000)
        assert len(seen) > answered  # Continue primed the same model
    assert window.generation.worker.model is model
    assert loads.count(str(model_path)) == 1  # loaded once, for both


def test_an_answer_waiting_for_a_continue_is_dropped_when_the_musician_plays_again(model_path):
    """The worker writes one thing at a time: an answer asked for while a Continue is written waits for it; a key
    played meanwhile drops the answer at once (the worker skips it later), and the next pause is answered."""
    from continuo.duet import Duet
    from continuo.generation import GenerationRequest, GenerationWorker, ModelLoaded
    from continuo.playback import RecorderSink
    from music_transformer import Note

    worker = GenerationWorker()
    worker.load(str(model_path), "cpu")
    assert isinstance(worker.outbox.get(timeout=20), ModelLoaded)
    worker.generate(GenerationRequest(motif=[Note(60, 90, 0.0, 0.5)], start=0.5, seconds=3600.0, seeds=[1]))
    output = RecorderSink()
    answers: list = []
    duet = Duet(worker, lambda: [output], answers.append, pause=0.2, seed=5)

    def play(pitch: int) -> None:
        now = time.perf_counter()
        duet.feed(now, on(pitch, 90))
        duet.feed(now + 0.1, off(pitch))

    def within(seconds: float, condition) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    try:
        play(60)
        assert within(5, lambda: duet.answering)
        time.sleep(0.3)
        assert duet.answering and not output.messages  # waiting for the worker, which writes the Continue
        duet.pause = 60.0
        play(62)  # the musician plays again: the answer that never began is dropped at once
        assert within(2, lambda: not duet.answering)
        assert not answers
        worker.cancel.set()  # the Continue ends; the worker passes over the dropped answer
        duet.pause = 0.2
        play(64)
        assert output.wait_for(lambda messages: any(m.type == "note_on" for _, m in messages), 30)
    finally:
        duet.close()
        assert worker.stop()
