"""The MIDI input controller: a flood of messages handed over from the reader thread, and a controller without
a window or an input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from continuo.midi_input import VIRTUAL_INPUT, MidiInputController
from continuo.playback import RecorderSink
from continuo.song import Song
from tests.continuo.helpers import event_loop_ticks, off, on, require_jack, wait_until

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


BURST_PLAYER = """
import os, sys, time
import rtmidi
port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=os.environ["PLAYER_NAME"])
port.open_virtual_port("out")
print("ready", flush=True)
sys.stdin.readline()
for index in range(int(os.environ["NOTES"])):
    port.send_message([0x90, 36 + index % 60, 1 + index % 127])
    port.send_message([0x80, 36 + index % 60, 0])
    if index % 200 == 199:
        time.sleep(0.002)  # the player's own JACK buffer holds a few thousand bytes: let the graph take them
print("done", flush=True)
time.sleep(30)
"""


def test_a_burst_of_5000_notes_is_read_whole_while_the_gui_thread_holds_the_gil(qtbot):
    """5,000 notes in one burst: the studio read 849 fewer messages than a second client on the same port, its
    rtmidi queue (8,192 messages) full while the GUI thread held the GIL. A witness client with a queue that
    holds any burst counts what the graph delivered; the studio's input reads as many."""
    import rtmidi

    from tests.continuo.helpers import unique
    from tests.continuo.midi_input.test_ports import _gil_hold

    require_jack()
    name, notes = unique("burst"), 5000
    player = subprocess.Popen([sys.executable, "-c", BURST_PLAYER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PLAYER_NAME": name, "NOTES": str(notes)})  # fmt: skip
    witness = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=unique("witness"), queue_size_limit=1 << 17)
    midi = MidiInputController(Song(), poll=False)
    try:
        assert player.stdout.readline().strip() == "ready"
        port = f"{name}:out"
        assert wait_until(lambda: port in witness.get_ports(), 10.0)
        witness.open_port(witness.get_ports().index(port))
        midi.open_input(port, wait=True)
        qtbot.waitUntil(lambda: midi.input is not None, timeout=10000)
        time.sleep(0.3)  # the connections settle
        player.stdin.write("go\n")
        player.stdin.flush()
        _gil_hold(0.6)()  # the burst arrives while no thread of this process runs (the GUI drawing, say)
        assert player.stdout.readline().strip() == "done"
        delivered = 0
        quiet = time.monotonic() + 1.0
        while time.monotonic() < quiet:  # what the graph delivered, read until a second passes without more
            if witness.get_message() is not None:
                delivered += 1
                quiet = time.monotonic() + 1.0
            else:
                time.sleep(0.001)
        assert delivered >= notes  # the graph took at least half the burst (here, usually all of it)
        wait_until(lambda: midi.input.counts["read"] >= delivered, 5.0)
        assert midi.input.counts["read"] == delivered, f"the studio read {midi.input.counts['read']} of {delivered}"
        midi.drain(budget=None)
        assert midi.drained == delivered  # every message read went on to the recorder's queue
    finally:
        player.kill()
        player.wait(10)
        midi.close()
        witness.close_port()
        witness.delete()
