"""MIDI input ports on a real JACK graph: what is ignored, a keyboard unplugged mid-take and plugged in again, and
when each message arrived (the MIDI system's stamps, even while the studio's reader thread waits)."""

from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from continuo.midi_input import ArrivalClock, MidiInput, MidiInputError, is_ignored
from continuo.midi_input.ports import CLOCK_MEMORY
from tests.continuo.helpers import Keyboard, jack_period_seconds, off, on, require, require_jack, unique, wait_until

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


# --- when a message arrived: the MIDI system's stamps, not the reader's --------------------------------------


def _stamped(arrivals: list[float], delays: list[float], offset: float = 1234.5, drop: frozenset[int] = frozenset()):
    """Feeds an ArrivalClock messages that arrived at `arrivals` (perf_counter) and were read `delays` later,
    with rtmidi's deltas taken on a MIDI clock `offset` away; the messages in `drop` were lost in rtmidi's queue
    (their deltas with them). Returns (arrival, read, stamp) of each message read."""
    clock, out, last = ArrivalClock(), [], None
    for index, (arrival, delay) in enumerate(zip(arrivals, delays, strict=True)):
        midi_time = arrival - offset
        delta = 0.0 if last is None else midi_time - last
        last = midi_time
        if index in drop:
            continue
        out.append((arrival, arrival + delay, clock.stamp(arrival + delay, delta)))
    return out


def _in_order(arrivals: list[float], delays: list[float]) -> list[float]:
    """The delays made consistent with a reader that takes the messages in order (none before the one ahead)."""
    out, last_read = [], -math.inf
    for arrival, delay in zip(arrivals, delays, strict=True):
        last_read = max(last_read, arrival + delay)
        out.append(last_read - arrival)
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 0.2)),  # gap before the message, how late it was read
        min_size=1,
        max_size=200,
    )
)
def test_a_stamp_lies_between_the_arrival_and_the_read_and_never_goes_back(steps):
    arrivals, delays, at = [], [], 100.0
    for gap, delay in steps:
        at += gap
        arrivals.append(at)
        delays.append(delay)
    result = _stamped(arrivals, _in_order(arrivals, delays))
    stamps = [stamp for _, _, stamp in result]
    for arrival, read, stamp in result:
        assert arrival - 1e-9 <= stamp <= read
    assert stamps == sorted(stamps)


def test_notes_read_late_while_the_gil_was_busy_keep_the_times_they_were_played():
    # 200 notes; every tenth is read within 0.3 ms, the others up to 40 ms late (the model writing on the CPU).
    arrivals = [0.05 * index + 0.01 * (index % 3) for index in range(200)]
    delays = [0.0003 if index % 10 == 0 else 0.04 * ((index * 7) % 10) / 10 for index in range(200)]
    result = _stamped(arrivals, _in_order(arrivals, delays))
    assert max(read - arrival for arrival, read, _ in result) > 0.03  # the reads are late ...
    assert max(abs(stamp - arrival) for arrival, _, stamp in result) <= 0.0003 + 1e-9  # ... the stamps are not


def test_a_message_lost_in_rtmidis_queue_costs_accuracy_for_a_while_only():
    arrivals = [0.1 * index for index in range(300)]
    delays = [0.0002] * 300
    result = _stamped(arrivals, delays, drop=frozenset({100}))  # its 0.1 s delta went with it
    errors = [stamp - arrival for arrival, _, stamp in result]
    assert max(abs(error) for error in errors[:100]) <= 0.0002 + 1e-9
    assert all(error < 0 for error in errors[100 : 100 + CLOCK_MEMORY - 1])  # the chain fell 0.1 s behind ...
    assert max(abs(error) for error in errors[100 + CLOCK_MEMORY :]) <= 0.0002 + 1e-9  # ... and caught up
    assert all(stamp <= read for _, read, stamp in result)


def test_strange_deltas_do_not_break_the_clock():
    clock = ArrivalClock()
    assert clock.stamp(10.0, 0.0) == 10.0  # the first message: nothing better than when it was read
    assert clock.stamp(10.5, float("nan")) == 10.5  # a NaN or negative delta starts the chain again
    assert clock.stamp(11.0, -3.0) == 11.0
    assert clock.stamp(11.2, 0.1) == pytest.approx(11.1)  # 0.1 s after the last: read 0.1 s late
    assert clock.stamp(11.3, float("inf")) == 11.3


def test_notes_played_while_the_studio_holds_the_gil_are_stamped_when_they_were_played():
    """A real JACK graph: another process plays a phrase while this one holds the GIL for half a second (as the
    model's worker can hold it between operations). Stamped on reading, the notes would all land at the end of
    the hold; stamped from rtmidi's deltas, each is within the graph's own delay of the time it was sent."""
    require_jack()
    name = unique("player")
    player = subprocess.Popen(
        [sys.executable, "-c", PLAYER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PLAYER_NAME": name},
    )
    got: list[tuple[float, int]] = []
    midi_input = None
    try:
        assert player.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while midi_input is None:
            try:
                midi_input = MidiInput(f"{name}:out", lambda at, message: got.append((at, message.note)))
            except MidiInputError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        sent = _play(player, "1")  # read at once: the clocks are matched
        assert wait_until(lambda: len(got) == 1, 5.0), "the first note did not arrive"
        hold = _gil_hold(0.5)
        player.stdin.write("8\n")
        player.stdin.flush()
        time.sleep(0.02)  # the player has begun
        held_from = time.perf_counter()
        hold()  # no other thread of this process runs meanwhile
        held_to = time.perf_counter()
        sent += [float(player.stdout.readline()) for _ in range(8)]
        assert wait_until(lambda: len(got) == 9, 5.0), f"{len(got)} of 9 notes arrived"
    finally:
        player.stdin.close()
        player.wait(timeout=10)
        if midi_input is not None:
            midi_input.close()
    assert [note for _, note in got] == [60 + index for index in range(9)]
    played_in_hold = [at for at in sent[1:] if held_from <= at <= held_to - 0.1]
    assert len(played_in_hold) >= 3, (held_from, held_to, sent)  # the reader could not have read those in time
    period = jack_period_seconds()
    require(period is not None and period <= 0.005, "a JACK server with a period under 5 ms (run-tests.sh: -p 128)")
    # The graph takes up to two periods (one to leave the player's client, one to reach ours); our reader adds
    # nothing, though it read most of these notes a quarter of a second or more after they came.
    errors = [abs(at - when) for (at, _), when in zip(got, sent, strict=True)]
    assert max(errors) <= 2 * period + 0.001, errors


PLAYER = """
import os, sys, time
import rtmidi
port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=os.environ["PLAYER_NAME"])
port.open_virtual_port("out")
print("ready", flush=True)
note = 60
for line in sys.stdin:
    for _ in range(int(line)):
        time.sleep(0.04)
        port.send_message([0x90, note, 100])
        print(repr(time.perf_counter()), flush=True)
        note += 1
port.close_port()
"""


def _play(player: subprocess.Popen, count: str) -> list[float]:
    player.stdin.write(count + "\n")
    player.stdin.flush()
    return [float(player.stdout.readline()) for _ in range(int(count))]


def _gil_hold(seconds: float):
    """A call that holds the GIL for `seconds`: libc's usleep called through `ctypes.PyDLL`, which (unlike
    `ctypes.CDLL`) keeps the GIL during the call, so no other thread of this process runs meanwhile."""
    usleep = ctypes.PyDLL(None).usleep
    return lambda: usleep(int(seconds * 1e6))
