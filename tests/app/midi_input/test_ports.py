"""MIDI input ports on a real JACK graph: what is ignored, and a keyboard unplugged mid-take and plugged in again."""

from __future__ import annotations

import pytest

from app.midi_input import is_ignored
from tests.app.helpers import Keyboard, off, on

pytestmark = pytest.mark.timeout(60)


def test_clock_active_sensing_and_sysex_are_ignored():
    assert is_ignored([0xF8]) and is_ignored([0xFE]) and is_ignored([0xF0, 0x7E, 0x7F, 0xF7]) and is_ignored([0xFA])
    assert not is_ignored([0x90, 60, 100]) and not is_ignored([0xB0, 64, 127])


def test_unplugging_the_keyboard_mid_take_keeps_the_take_and_says_so(qtbot, graph):
    window, keyboard, probe = graph
    midi, song = window.midi, window.song
    messages: list[str] = []
    midi.message.connect(messages.append)
    assert midi.start_recording()
    keyboard.play([(0.0, on(60, 90)), (0.1, off(60)), (0.15, on(62, 91))])  # 62 is held when it goes away
    try:
        qtbot.waitUntil(lambda: sum(n[1] == "on" for n in probe.notes()) == 2, timeout=5000)
    except qtbot.TimeoutError:  # say where the notes stopped: at the input (the take) or on the way out (thru)
        raise AssertionError(
            f"thru heard {probe.notes()}; the take holds {[(n.pitch, n.velocity) for n in song.notes()]}; "
            f"input {midi.input.port_name if midi.input else None}, recording {midi.recorder.recording}"
        ) from None
    keyboard.close()
    qtbot.waitUntil(lambda: not midi.recorder.recording, timeout=5000)
    assert [(n.pitch, n.velocity) for n in song.notes()] == [(60, 90), (62, 91)]
    assert any("went away" in text and keyboard.port_name in text for text in messages)
    assert midi.input is None
    qtbot.waitUntil(lambda: keyboard.port_name not in midi.available, timeout=5000)  # hot-plug: it is gone
    assert song.undo_stack.undoText() == "Record"
    # Plugged in again, it reconnects by itself and records.
    again = Keyboard(keyboard.name)
    try:
        qtbot.waitUntil(lambda: midi.input is not None and midi.input.port_name == again.port_name, timeout=5000)
        assert midi.start_recording()
        again.play([(0.0, on(64, 55)), (0.1, off(64))])
        qtbot.waitUntil(lambda: len(song.notes()) == 3, timeout=5000)
        midi.stop_recording()
    finally:
        again.close()
