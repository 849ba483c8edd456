"""Recording takes: a Take turns messages into notes; on a real JACK graph, takes land in the roll with the
pedal, quantize, count-in, metronome and overdub."""

from __future__ import annotations

import os
import subprocess
import time

import mido
import pytest

from continuo.midi_input import ACCENT_CLICK, METRONOME_CHANNEL, VIRTUAL_INPUT, Take, metronome_events
from continuo.song import MOTIF
from tests.continuo.helpers import (
    PHRASE,
    Keyboard,
    jack_period_seconds,
    off,
    on,
    pedal,
    require,
    studio_port_with_listener,
)

pytestmark = pytest.mark.timeout(60)


ONSET_TOLERANCE = 0.005  # the bound: recorded onset within 5 ms of the time the keyboard sent it


def recorded_onsets(window) -> list[tuple[float, int, int]]:
    """(perf_counter time, pitch, velocity) of the take's notes, from their beats in the song."""
    recorder, song = window.midi.recorder, window.song
    return sorted(
        (recorder.origin + song.to_seconds(note.start - recorder.start_beat), note.pitch, note.velocity)
        for note in song.notes(MOTIF)
    )


def test_take_records_velocity_sustain_restrikes_and_closes_held_notes_at_the_stop():
    take = Take()
    done = take.feed(0.0, on(60, 90)) + take.feed(0.5, off(60))
    assert [(n.pitch, n.velocity, n.start, n.end) for n in done] == [(60, 90, 0.0, 0.5)]
    # The pedal holds a released key until it comes up; a key struck again ends its earlier note there.
    assert take.feed(1.0, pedal(True)) == []
    assert take.feed(1.0, on(62, 40)) + take.feed(1.2, off(62)) == []
    assert take.sounding
    assert [(n.pitch, n.start, n.end) for n in take.feed(1.5, on(62, 60))] == [(62, 1.0, 1.5)]
    take.feed(1.6, off(62))
    assert [(n.pitch, n.velocity, n.end) for n in take.feed(2.0, pedal(False))] == [(62, 60, 2.0)]
    # Velocity 0 is a note-off; held notes end at the stop time.
    take.feed(3.0, on(64, 100))
    take.feed(3.1, on(67, 100))
    assert [(n.pitch, n.end) for n in take.feed(3.2, mido.Message("note_on", note=64, velocity=0))] == [(64, 3.2)]
    assert [(n.pitch, n.start, n.end) for n in take.close(4.0)] == [(67, 3.1, 4.0)]
    assert not take.sounding


def test_metronome_accents_the_first_beat_of_each_bar():
    events = metronome_events(8, 4, 0.5)
    ons = [(at, pitch) for at, kind, pitch, _, channel in events if kind == 1 and channel == METRONOME_CHANNEL]
    assert [at for at, _ in ons] == [0.5 * beat for beat in range(8)]
    assert [pitch == ACCENT_CLICK for _, pitch in ons] == [True, False, False, False] * 2


def test_a_phrase_played_on_the_keyboard_lands_in_the_roll_and_is_heard_through(qtbot, graph):
    window, keyboard, probe = graph
    midi, song = window.midi, window.song
    assert midi.start_recording()
    # Clock, active sensing and sysex from the keyboard are not recorded (and not sent through).
    keyboard.send(mido.Message("clock"))
    keyboard.send(mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01]))
    keyboard.sent.clear()
    keyboard.play(PHRASE)
    qtbot.waitUntil(lambda: len([n for n in probe.notes() if n[1] == "off"]) >= 4, timeout=5000)
    assert midi.stop_recording() == 4
    # Thru: the listener heard every note, pitch and velocity as played, and nothing else.
    heard = [(kind, pitch, velocity) for _, kind, pitch, velocity in probe.notes()]
    assert heard == [("on" if m.velocity else "off", m.note, m.velocity) for _, m in keyboard.sent]
    assert all(message[0] & 0xF0 in (0x80, 0x90) for _, message in probe.received)
    # The roll: pitch, velocity, and each onset within 5 ms of the time the keyboard sent it.
    played = [(at, m.note, m.velocity) for at, m in keyboard.sent if m.type == "note_on" and m.velocity]
    recorded = recorded_onsets(window)
    assert [(p, v) for _, p, v in recorded] == [(p, v) for _, p, v in played]
    assert song.undo_stack.undoText() == "Record"
    period = jack_period_seconds()
    if period is not None and period > ONSET_TOLERANCE:
        require(
            False,
            f"a JACK server with a period under 5 ms (this one delivers MIDI every "
            f"{period * 1000:.1f} ms; run-tests.sh starts jackd with -p 128)",
        )
    errors = [abs(got - sent) for (got, _, _), (sent, _, _) in zip(recorded, played, strict=True)]
    assert max(errors) <= ONSET_TOLERANCE, errors
    # One undo step takes the whole take back.
    song.undo_stack.undo()
    assert song.notes() == []


def test_sustain_and_held_notes_and_quantize_on_the_way_in(qtbot, graph):
    window, keyboard, probe = graph
    midi, song = window.midi, window.song
    song.set_tempo(120.0)
    midi.recorder.set_quantize(0.5)  # eighth notes: 0.25 s at 120 BPM
    assert midi.start_recording()
    keyboard.play(
        [
            (0.0, pedal(True)),
            (0.03, on(48, 80)),
            (0.2, off(48)),
            (0.27, on(55, 81)),
            (0.35, off(55)),
            (0.5, pedal(False)),
            (0.52, on(60, 99)),
        ]
    )  # the last key is still down at the stop
    qtbot.waitUntil(lambda: sum(n[1] == "on" for n in probe.notes()) >= 3, timeout=5000)
    qtbot.waitUntil(lambda: len(song.notes()) == 2, timeout=5000)  # the pedal came up: two notes ended
    stop_beat = song.to_beats(time.perf_counter() - midi.recorder.origin)
    assert midi.stop_recording() == 3
    notes = sorted(song.notes(), key=lambda n: n.pitch)
    assert [(n.pitch, n.velocity) for n in notes] == [(48, 80), (55, 81), (60, 99)]
    assert all(n.start * 2 == round(n.start * 2) for n in notes)  # on the eighth-note grid
    # The pedal held both notes until it came up (~1 beat after the start); the held key ended at the stop.
    assert notes[0].end == pytest.approx(1.0, abs=0.1) and notes[1].end == pytest.approx(1.0, abs=0.1)
    assert notes[2].end == pytest.approx(stop_beat, abs=0.1)
    midi.recorder.set_quantize(None)


def test_count_in_clicks_then_records_and_the_virtual_input_takes_another_programs_notes(qtbot, window):
    with studio_port_with_listener(window, "clicks") as probe:
        midi = window.midi
        midi.open_input(VIRTUAL_INPUT, wait=True)
        qtbot.waitUntil(lambda: midi.input is not None, timeout=5000)
        keyboard = Keyboard(f"program {os.getpid()}")
        try:
            studio_port = f"{midi.input.client_name}:{midi.input.port_name}"  # Continuo input:Continuo in
            subprocess.run(["jack_connect", keyboard.port_name, studio_port], check=True, timeout=5)
            window.song.set_tempo(240.0)  # a short bar: 1 s
            midi.recorder.set_count_in(1)
            counts: list[int] = []
            midi.recorder.counting_in.connect(counts.append)
            assert midi.start_recording()
            qtbot.waitUntil(lambda: bool(counts) and counts[-1] == 0, timeout=5000)
            clicks = [m for _, m in probe.received if m[0] == 0x90 | METRONOME_CHANNEL and m[2] > 0]
            assert len(clicks) == 4 and clicks[0][1] == ACCENT_CLICK
            keyboard.play([(0.0, on(65, 77)), (0.1, off(65))])
            qtbot.waitUntil(lambda: len(window.song.notes()) == 1, timeout=5000)
            note = window.song.notes()[0]
            assert (note.pitch, note.velocity) == (65, 77) and note.start >= 0.0
            midi.stop_recording()
        finally:
            midi.recorder.set_count_in(0)
            keyboard.close()


def test_overdub_plays_the_song_with_the_metronome_while_the_take_records(qtbot, graph):
    window, keyboard, probe = graph
    midi, song = window.midi, window.song
    song.add_notes([song.new_note(40, 64, 0.0, 0.5)])  # the song already has a bass note at the start
    midi.recorder.set_overdub(True)
    midi.recorder.set_metronome(True)
    try:
        assert midi.start_recording()
        assert window.transport.playing
        keyboard.play([(0.3, on(76 - 12, 88)), (0.4, off(76 - 12))])
        qtbot.waitUntil(lambda: any(n[2] == 64 and n[1] == "off" for n in probe.notes()), timeout=5000)
        heard = {(message[0], message[1]) for _, message in probe.received if message[0] & 0xF0 == 0x90}
        assert (0x90, 40) in heard  # the song played
        assert (0x90 | METRONOME_CHANNEL, ACCENT_CLICK) in heard  # the metronome clicked
        assert midi.stop_recording() == 1
        assert not window.transport.playing
        assert sorted(n.pitch for n in song.notes()) == [40, 64]
    finally:
        midi.recorder.set_overdub(False)
        midi.recorder.set_metronome(False)
