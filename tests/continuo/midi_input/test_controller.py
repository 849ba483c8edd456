"""The MIDI input controller: a flood of messages handed over from the reader thread, and a controller without
a window or an input."""

from __future__ import annotations

import threading
import time

import pytest

from continuo.midi_input import VIRTUAL_INPUT, MidiInputController
from continuo.playback import RecorderSink
from continuo.song import Song
from tests.continuo.helpers import event_loop_ticks, off, on, require_jack

pytestmark = pytest.mark.timeout(60)


def test_a_flood_of_messages_loses_no_note_and_the_gui_keeps_running(qtbot, window):
    """2,000 messages in one second (twice the issue's rate) handed in as the input's reader thread does.

    The JACK graph is left out on purpose: without real-time rights on a busy machine its clients miss deadlines and
    JACK itself drops messages; bench/midi_input.py floods a window through a real JACK graph.
    """
    thru = RecorderSink()
    window.player.use_sinks([thru])
    midi, song = window.midi, window.song
    require_jack()
    midi.open_input(VIRTUAL_INPUT, wait=True)  # the studio's own port: nothing plays into it but this test
    qtbot.waitUntil(lambda: midi.input is not None, timeout=5000)
    assert midi.start_recording()

    def flood() -> None:
        origin = time.perf_counter()
        for index in range(1000):
            pitch = 36 + index % 60
            while time.perf_counter() < origin + index * 0.001:
                time.sleep(0.0002)
            midi.receive(time.perf_counter(), on(pitch, 1 + index % 127))
            midi.receive(time.perf_counter(), off(pitch))

    with event_loop_ticks(5) as ticks:
        thread = threading.Thread(target=flood)
        thread.start()
        while thread.is_alive():
            qtbot.wait(5)
        thread.join()
        flooded = list(ticks)
    qtbot.waitUntil(lambda: len(song.notes()) == 1000, timeout=10000)  # every note landed, drained by the timer
    assert midi.stop_recording() == 1000
    assert sorted(n.velocity for n in song.notes()) == sorted(1 + index % 127 for index in range(1000))
    assert len(thru.notes()) == 2000  # every message went through
    assert len(flooded) > 10  # the event loop ran during the flood (its timing is in bench/midi_input.py)
    window.player.use_sinks([])


def test_input_controller_without_a_window_reports_no_input(qtbot):
    song = Song()
    midi = MidiInputController(song, poll=False)
    messages: list[str] = []
    midi.message.connect(messages.append)
    assert not midi.start_recording()
    assert "Choose a MIDI input" in messages[0]
    midi.open_input("no such keyboard:out", wait=True)
    qtbot.waitUntil(lambda: len(messages) == 2, timeout=5000)
    assert "no such keyboard" in messages[1] and midi.input is None
    midi.close()
