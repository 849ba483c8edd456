"""MIDI input ports: one open input with its reader thread, and a watcher that notices keyboards come and go.
No Qt: the controller turns their callbacks into signals; benchmarks and scripts use them alone."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import mido

from ..backends.base import CLIENT_NAME, SinkError
from ..backends.rtmidi import VIRTUAL_INPUT_NAME, open_midi_input, open_rtmidi_client, other_programs
from ..backends.servers import audio_servers

VIRTUAL_INPUT = "virtual"  # the studio's own input port, for a program that plays into it
READ_INTERVAL = 0.0005  # the reader thread looks at rtmidi's queue this often: at most half a millisecond late
POLL_SECONDS = 0.5  # hot-plug: how often the port list is read (a cheap call on a client kept open)
# rtmidi drops messages past its queue when our reader is late: a burst of 5,000 notes (10,000 messages, played
# in 0.1 s by a sequencer) must fit while the GUI thread holds the GIL (drawing them, say). 2 MB of queue.
QUEUE_SIZE = 65536
CLOCK_MEMORY = 64  # ArrivalClock: how many of the latest messages its estimate of the clocks' offset rests on


class MidiInputError(Exception):
    """An input port that cannot be opened or has gone away; the message names it and says what to do."""


def is_ignored(data: Sequence[int]) -> bool:
    """Clock, start/stop, active sensing, sysex and every other system message: the studio does not record them."""
    return not data or data[0] >= 0xF0


class ArrivalClock:
    """When each message arrived, on the `time.perf_counter()` clock, from the MIDI system's own time stamps.

    The reader thread sees a message only when it gets the GIL: while the model writes on the CPU (a duet, a
    continuation) that can be 5 ms and more after the key went down, and a stamp taken on reading moves the
    note by as much. rtmidi stamps each message in C++ as the MIDI system hands it over (JACK's process
    cycle, ALSA's event time), as the time since the message before it. Summed, those deltas place every
    message exactly relative to the first; what is left is where that chain sits on perf_counter's clock.
    Every message was read at or after it arrived, so `read - chain` is at least the clocks' true offset
    and is closest to it for the message read most promptly: the smallest of the latest `memory` messages'
    offsets is the estimate. A message is stamped `chain + estimate`, never later than it was read.

    A message rtmidi dropped (its queue full) takes its delta with it, so the chain falls behind; the
    estimate follows within `memory` messages, because older offsets are forgotten.
    """

    def __init__(self, memory: int = CLOCK_MEMORY) -> None:
        self.memory = memory
        self._chain: float | None = None  # seconds since the first message, on the MIDI system's clock
        self._count = 0
        self._offsets: deque[tuple[int, float]] = deque()  # (message number, offset), offsets increasing

    def stamp(self, read_at: float, delta: float) -> float:
        """The arrival time of a message read at `read_at` (perf_counter) that came `delta` seconds after the
        message before it (rtmidi's delta time; ignored for the first message, and a NaN or negative one
        starts the chain again from this message's read time)."""
        if self._chain is None or not 0.0 <= delta < math.inf:  # the first message, or a delta that says nothing
            self._chain = 0.0
            self._offsets.clear()  # a new chain: the offsets of the old one do not hold for it
        else:
            self._chain += delta
        number, offset = self._count, read_at - self._chain
        self._count += 1
        offsets = self._offsets
        while offsets and offsets[-1][1] >= offset:
            offsets.pop()
        offsets.append((number, offset))
        while offsets[0][0] <= number - self.memory:
            offsets.popleft()
        return min(self._chain + offsets[0][1], read_at)


class MidiInput:
    """One input: a connection to a keyboard's port, or the studio's own virtual input port.

    `on_message(time, message)` runs on the input's reader thread for every message that is not ignored,
    stamped with the `time.perf_counter()` time it arrived (`ArrivalClock`: the MIDI system's own stamps,
    not the moment our thread got to it); keep it short (send thru, queue, notify). `queue_size`: how many
    messages rtmidi keeps for the reader (default `QUEUE_SIZE`).

    Why a reader thread and not rtmidi's callback: on JACK, rtmidi calls the callback from the JACK process
    thread, so a Python callback there waits for the GIL and makes the whole graph miss its deadline (a flood
    of 1,000 messages a second lost one in ten). rtmidi's own queue is filled in C++ on that thread, without
    the GIL; our thread empties it every half millisecond.
    """

    def __init__(
        self,
        port_name: str,
        on_message: Callable[[float, mido.Message], None],
        client_name: str = CLIENT_NAME + " input",
        queue_size: int | None = None,
    ) -> None:
        self.virtual = port_name == VIRTUAL_INPUT
        self.port_name = VIRTUAL_INPUT_NAME if self.virtual else port_name
        self.name = f"MIDI input “{self.port_name}”"
        self.client_name = client_name
        self.on_message = on_message
        try:
            self._port = open_midi_input(None if self.virtual else port_name, client_name, queue_size or QUEUE_SIZE)
        except SinkError as error:
            raise MidiInputError(str(error)) from None
        # What the reader did with each message, counted (by the reader thread only; read them from any thread):
        # taken from rtmidi's queue, ignored (system messages), malformed, handed to on_message, failed there.
        self.counts = {"read": 0, "ignored": 0, "malformed": 0, "handed": 0, "failed": 0}
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="continuo-midi-input", daemon=True)
        self._reader.start()

    @property
    def closed(self) -> bool:
        """Whether the input has been closed."""
        return self._port.closed

    def _read(self) -> None:
        """The reader thread: takes every waiting message from rtmidi's queue, then sleeps a moment."""
        client = self._port.client
        clock = ArrivalClock()
        while not self._stop.is_set():
            try:
                event = client.get_message()
            except Exception:  # noqa: BLE001 - the client was closed under us
                return
            if event is None:
                time.sleep(READ_INTERVAL)
                continue
            raw, delta = event
            at = clock.stamp(time.perf_counter(), delta)  # every message read, ignored ones too: the chain is whole
            counts = self.counts
            counts["read"] += 1
            if is_ignored(raw):
                counts["ignored"] += 1
                continue
            try:
                message = mido.Message.from_bytes(raw)
            except (ValueError, TypeError):  # a malformed message from a broken device: skip it, keep the rest
                counts["malformed"] += 1
                continue
            try:
                self.on_message(at, message)
                counts["handed"] += 1
            except Exception:  # noqa: BLE001 - the reader must outlive a failing listener; that message is lost
                counts["failed"] += 1

    def present(self, ports: Sequence[str]) -> bool:
        """Whether the connected port is among these (the virtual port always is)."""
        return self.virtual or self.port_name in ports

    def close(self) -> None:
        """Stops the reader and releases the port; closing twice is harmless."""
        self._stop.set()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
        self._port.close()


class PortWatcher:
    """Hot-plug: a thread that reads the list of other programs' MIDI outputs every half second (on a client
    kept open, so the call is cheap) and calls `on_change(names)` when it differs; and, as often, which sound
    servers run (JACK, PipeWire, PulseAudio: a look at their sockets), calling `on_servers(servers)` when that
    changes, so that Automatic output can choose again. No Qt."""

    def __init__(
        self, on_change: Callable[[list[str]], None], on_servers: Callable[[list[str]], None] | None = None
    ) -> None:
        self.on_change = on_change
        self.on_servers = on_servers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="continuo-midi-hotplug", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        client = None
        last: list[str] | None = None
        servers = audio_servers()
        retry_at = 0.0  # when to try opening a MIDI client again while there is no MIDI system
        while not self._stop.wait(POLL_SECONDS if last is not None else 0.0):
            now_servers = audio_servers()
            if now_servers != servers:
                servers, retry_at = now_servers, 0.0  # a server came or went: look for MIDI at once too
                if self.on_servers is not None:
                    try:
                        self.on_servers(list(servers))
                    except RuntimeError:  # the studio was deleted under us
                        break
            if client is None and time.monotonic() < retry_at:
                continue
            try:
                if client is None:
                    client = open_rtmidi_client("in", CLIENT_NAME + " (scan)")
                names = other_programs(client.get_ports())
            except Exception:  # noqa: BLE001 - no MIDI system (yet): an empty list, try again later
                names = []
                retry_at = time.monotonic() + POLL_SECONDS * 10  # no MIDI system: look again now and then, quietly
                if client is not None:
                    try:
                        client.delete()
                    except Exception:  # noqa: BLE001 - a client half gone: nothing more to release
                        pass
                client = None
            if names != last:
                last = names
                try:
                    self.on_change(names)
                except RuntimeError:  # the studio was deleted under us
                    break
        if client is not None:
            client.delete()

    def close(self, timeout: float = 2.0) -> None:
        """Ends the thread."""
        self._stop.set()
        self._thread.join(timeout)
