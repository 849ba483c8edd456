"""The playback scheduler: one thread that sends each note at its absolute `time.perf_counter()` deadline.

    scheduler = Scheduler([FluidSynthSink()])
    scheduler.play(note_events(notes), start=0.0)        # song seconds; the thread does the rest
    scheduler.position()                                  # where playback is, in song seconds
    scheduler.stop()                                      # every sounding note off

Time is kept as an origin: song time t sounds at `origin + t` on the perf_counter clock, so a late event
never delays the ones after it. The thread sleeps most of the gap to the next deadline and spins the last
millisecond, because sleep() wakes up to a millisecond late and the goal is a p99 error of 3 ms while a
model is generating on the same CPU.

A `LiveFeed` carries notes while a continuation is being written: the generation worker appends events
with a horizon (every event before it is known). Playback never passes the horizon; when it gets there it
waits, holding the notes that sound, and the clock resumes when more music arrives. So a slow model makes
the music pause, never glitch.

No Qt here: the studio, the benchmarks and the MIDI keyboard input drive it from any thread. The callbacks
(`on_error`, `on_finished`) run on the scheduler thread; the studio turns them into Qt signals.
"""

from __future__ import annotations

import bisect
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import mido

from music_transformer import Note

from ..backends.base import Sink, SinkError

# An event is a plain tuple (seconds, kind, pitch, velocity, channel): cheap to build by the ten thousand and
# sorted by time with note-offs first, so that a note repeated right after itself is struck again.
NOTE_OFF = 0
NOTE_ON = 1
Event = tuple[float, int, int, int, int]

SPIN_SECONDS = 0.0015  # the last stretch before a deadline is spun, not slept
EPSILON = 1e-6  # events this close to the last one sent count as sent (beats-to-seconds rounding)
CHECK_INTERVAL = 0.5  # how often the sinks are asked whether they are still there
LIVE_POLL = 0.002  # how often a stalled or live playback looks for newly written music


REALTIME_PRIORITY = 20  # SCHED_FIFO priority, below JACK's (which runs at 70 and more)


def _raise_priority() -> bool:
    """Asks the OS to run the calling thread first, as audio software does; True if it agreed.

    On Linux that is SCHED_FIFO, allowed for root or for users with an rtprio limit (the `audio` group of
    a JACK setup). Elsewhere, or without the right, playback keeps the normal priority: it still works, a
    busy machine just shows in the timing (bench/studio_realtime.py).
    """
    if os.environ.get("CONTINUO_NO_REALTIME") or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))  # 0: this thread
        return True
    except (OSError, AttributeError):
        return False


def note_events(notes: Iterable[Note], channel: int = 0) -> list[Event]:
    """The note-on and note-off events of notes in seconds, sorted for the scheduler."""
    events: list[Event] = []
    for note in notes:
        events.append((float(note.start), NOTE_ON, int(note.pitch), int(note.velocity), channel))
        events.append((float(max(note.end, note.start)), NOTE_OFF, int(note.pitch), 0, channel))
    events.sort()
    return events


def event_message(event: Event) -> mido.Message:
    """The MIDI message of an event."""
    _, kind, pitch, velocity, channel = event
    if kind == NOTE_ON:
        return mido.Message("note_on", channel=channel, note=pitch, velocity=max(1, velocity))
    return mido.Message("note_off", channel=channel, note=pitch, velocity=0)


class LiveFeed:
    """Events of a continuation being written: appended in time order by one thread, read by the scheduler."""

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []
        self.horizon = float(start)  # every event before this time has arrived
        self.done = False

    def extend(self, events: Sequence[Event], horizon: float) -> None:
        """Adds events (none earlier than the last horizon) and moves the horizon forward."""
        with self._lock:
            self.events.extend(events)
            self.horizon = max(self.horizon, float(horizon))

    def finish(self) -> None:
        """No more events will come: playback may run to the end."""
        with self._lock:
            self.done = True

    def snapshot(self) -> tuple[int, float, bool]:
        """(how many events have arrived, the horizon, whether it is finished), consistent with each other."""
        with self._lock:
            return len(self.events), self.horizon, self.done


class Scheduler:
    """Plays events to sinks on one thread; play, stop, loop, seek, live feeds. Thread-safe."""

    def __init__(
        self,
        sinks: Iterable[Sink] = (),
        on_error: Callable[[Sink, SinkError], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        record_timing: bool = False,
    ) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.on_error = on_error
        self.on_finished = on_finished
        self.timing: list[tuple[float, float]] | None = [] if record_timing else None  # (deadline, sent)
        self._condition = threading.Condition()
        self._events: list[Event] = []
        self._live: LiveFeed | None = None
        self._loop: tuple[float, float] | None = None
        self._index = 0
        self._live_index = 0
        self._playing = False
        self._origin = 0.0  # perf_counter time of song time 0
        self._stalled_at: float | None = None  # song time where playback waits for the live feed
        self._sent_until = 0.0
        self._sounding: set[tuple[int, int]] = set()  # (channel, pitch) the scheduler turned on
        self._reconcile = False
        self._quit = False
        self._next_check = 0.0
        self.realtime = False  # whether the thread got a real-time priority (see _raise_priority)
        # A generation thread holding the GIL would delay our wake-up by up to the switch interval (5 ms by
        # default); 1 ms keeps the hand-over well inside the timing budget at a negligible cost.
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.001)
        self._thread = threading.Thread(target=self._run, name="continuo-playback", daemon=True)
        self._thread.start()

    # --- control (any thread) ---------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """Whether playback is running (it may be waiting for the live feed)."""
        return self._playing

    @property
    def waiting(self) -> bool:
        """Whether playback is held at the live feed's horizon, waiting for the model to write more."""
        return self._playing and self._stalled_at is not None

    def set_sinks(self, sinks: Iterable[Sink]) -> None:
        """Replaces the outputs; notes sounding on a sink that is dropped are turned off."""
        sinks = list(sinks)
        with self._condition:
            dropped = [sink for sink in self.sinks if sink not in sinks]
            self.sinks = sinks
        for sink in dropped:
            sink.reset()

    def play(
        self,
        events: Sequence[Event],
        start: float = 0.0,
        live: LiveFeed | None = None,
        loop: tuple[float, float] | None = None,
    ) -> None:
        """Starts playing `events` (sorted, as `note_events` makes them) from `start` seconds."""
        self.stop()
        with self._condition:
            self._events = list(events)
            self._live = live
            self._loop = self._checked_loop(loop)
            self._seek_locked(float(start))
            self._playing = True
            self._condition.notify()

    def stop(self) -> None:
        """Stops playback and turns every note off on every sink."""
        with self._condition:
            was_playing = self._playing
            self._playing = False
            self._stalled_at = None
            self._sounding.clear()
            self._condition.notify()
            sinks = list(self.sinks)
        if was_playing:
            for sink in sinks:
                sink.reset()

    def seek(self, seconds: float) -> None:
        """Moves playback to another time (the notes sounding now stop)."""
        with self._condition:
            self._silence_locked()
            self._seek_locked(float(seconds))
            self._condition.notify()

    def set_events(self, events: Sequence[Event], live: LiveFeed | None | bool = True) -> None:
        """Replaces the events while playing (the song was edited); playback carries on where it is.

        `live`: True keeps the live feed; None or another feed swaps it in the same step, so that a
        continuation that has just been written into the song moves from the feed to the events without
        a note sounding twice or not at all.
        """
        with self._condition:
            self._events = list(events)
            self._index = bisect.bisect_left(self._events, (self._sent_until + EPSILON,))
            if live is not True:
                self._set_live_locked(live)
            self._reconcile = True
            self._condition.notify()

    def set_loop(self, loop: tuple[float, float] | None) -> None:
        """Loops between two times in seconds, or not (None)."""
        with self._condition:
            self._loop = self._checked_loop(loop)
            self._condition.notify()

    def position(self) -> float:
        """Where playback is, in song seconds (held still while waiting for the live feed)."""
        stalled = self._stalled_at
        if stalled is not None:
            return stalled
        return time.perf_counter() - self._origin

    def close(self) -> None:
        """Stops playback, turns every note off and ends the thread (the sinks stay open: their owner closes them)."""
        self.stop()
        with self._condition:
            self._quit = True
            self._condition.notify()
        self._thread.join(timeout=2.0)

    # --- the thread --------------------------------------------------------------------------------

    @staticmethod
    def _checked_loop(loop: tuple[float, float] | None) -> tuple[float, float] | None:
        if loop is None or loop[1] - loop[0] < 0.01:
            return None
        return float(loop[0]), float(loop[1])

    def _seek_locked(self, start: float) -> None:
        self._origin = time.perf_counter() - start
        self._stalled_at = None
        self._sent_until = start - 2 * EPSILON
        self._index = bisect.bisect_left(self._events, (start - EPSILON,))
        live = self._live
        self._live_index = (
            0 if live is None else bisect.bisect_left(live.events[: live.snapshot()[0]], (start - EPSILON,))
        )

    def _silence_locked(self) -> None:
        """Note-offs for the notes this scheduler turned on (not for keys the musician is auditioning)."""
        for channel, pitch in sorted(self._sounding):
            self._send_locked(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
        self._sounding.clear()

    def _set_live_locked(self, live: LiveFeed | None) -> None:
        self._live = live
        self._live_index = (
            0 if live is None else bisect.bisect_left(live.events[: live.snapshot()[0]], (self._sent_until + EPSILON,))
        )
        if live is None and self._stalled_at is not None:
            self._resume_locked(time.perf_counter())

    def _resume_locked(self, now: float) -> None:
        self._origin = now - self._stalled_at
        self._stalled_at = None

    def _run(self) -> None:
        self.realtime = _raise_priority()
        with self._condition:
            while not self._quit:
                if not self._playing:
                    self._condition.wait()
                    continue
                self._step_locked()

    def _step_locked(self) -> None:
        """One pass: send what is due, or wait (sleep, then spin) for the next deadline."""
        now = time.perf_counter()
        if self._reconcile:
            self._reconcile = False
            self._end_orphans_locked()
        live = self._live
        live_count, horizon, live_done = live.snapshot() if live is not None else (0, float("inf"), True)
        if live_done:
            horizon = float("inf")
        if self._stalled_at is not None:
            if horizon > self._stalled_at + EPSILON:
                self._resume_locked(now)
            else:
                self._condition.wait(LIVE_POLL)
                return
        position = now - self._origin
        loop_end = self._loop[1] if self._loop is not None else float("inf")
        following = self._next_event(live, live_count)
        if following is None or following[0] >= horizon:
            if horizon != float("inf"):  # the model has not written this far yet
                if position >= horizon:
                    self._stalled_at = horizon  # hold the sounding notes and wait for more
                else:
                    self._wait_until(self._origin + horizon, now, LIVE_POLL)
                return
            if self._loop is None:
                self._finish_locked()
                return
            target = loop_end
        else:
            target = min(following[0], loop_end)
        if target >= loop_end and position >= loop_end:
            self._wrap_locked()
            return
        deadline = self._origin + target
        if now < deadline:
            limit = LIVE_POLL * 2.5 if live is not None and not live_done else None
            self._wait_until(deadline, now, limit)
            return
        self._send_due_locked(live, live_count, min(horizon, loop_end), position)

    def _next_event(self, live: LiveFeed | None, live_count: int) -> Event | None:
        candidates = []
        if self._index < len(self._events):
            candidates.append(self._events[self._index])
        if live is not None and self._live_index < live_count:
            candidates.append(live.events[self._live_index])
        return min(candidates) if candidates else None

    def _wait_until(self, deadline: float, now: float, limit: float | None) -> None:
        """Sleeps (wakeable by any change) until a little before the deadline, then spins to it."""
        remaining = deadline - now
        if remaining > SPIN_SECONDS:
            timeout = remaining - SPIN_SECONDS
            self._condition.wait(min(timeout, limit) if limit is not None else timeout)
            return
        while time.perf_counter() < deadline:
            pass

    def _send_due_locked(self, live: LiveFeed | None, live_count: int, limit: float, position: float) -> None:
        """Sends every event due by now (and before the horizon and the loop end), in time order."""
        events = self._events
        while True:
            static = events[self._index] if self._index < len(events) else None
            streamed = live.events[self._live_index] if live is not None and self._live_index < live_count else None
            if static is not None and (streamed is None or static <= streamed):
                event, from_live = static, False
            elif streamed is not None:
                event, from_live = streamed, True
            else:
                break
            if event[0] > position or event[0] >= limit:
                break
            if from_live:
                self._live_index += 1
            else:
                self._index += 1
            self._send_event_locked(event)
        if self._next_check <= time.perf_counter():
            self._check_sinks_locked()

    def _send_event_locked(self, event: Event) -> None:
        key = (event[4], event[2])
        if event[1] == NOTE_ON:
            if key in self._sounding:  # the same pitch struck again while it sounds: end the first one
                self._send_locked(mido.Message("note_off", channel=key[0], note=key[1], velocity=0))
            self._sounding.add(key)
        elif key in self._sounding:
            self._sounding.discard(key)
        else:
            return  # the note's start was never sent (playback began in its middle): nothing to end
        deadline = self._origin + event[0]
        self._send_locked(event_message(event))
        if self.timing is not None:
            self.timing.append((deadline, time.perf_counter()))
        self._sent_until = max(self._sent_until, event[0])

    def _send_locked(self, message: mido.Message) -> None:
        for sink in list(self.sinks):
            try:
                sink.send(message)
            except SinkError as error:
                self._drop_sink_locked(sink, error)

    def _check_sinks_locked(self) -> None:
        self._next_check = time.perf_counter() + CHECK_INTERVAL
        for sink in list(self.sinks):
            try:
                sink.check()
            except SinkError as error:
                self._drop_sink_locked(sink, error)

    def _drop_sink_locked(self, sink: Sink, error: SinkError) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
        sink.reset()  # whatever still listens on a half-gone port gets its notes ended
        if self.on_error is not None:
            self.on_error(sink, error)

    def _wrap_locked(self) -> None:
        """At the loop end: the sounding notes stop and playback jumps back to the loop start, in time."""
        start, end = self._loop
        self._silence_locked()
        origin = self._origin + (end - start)  # from the deadline, not from now: the groove stays steady
        self._seek_locked(start)
        self._origin = origin

    def _finish_locked(self) -> None:
        self._silence_locked()
        self._playing = False
        self._stalled_at = None
        if self.on_finished is not None:
            self.on_finished()

    def _end_orphans_locked(self) -> None:
        """After the events changed under a playing song: end sounding notes whose note-off is gone."""
        live = self._live
        if live is not None and not live.snapshot()[2]:
            return  # a note being written has no note-off yet; the feed will end it
        upcoming = self._events[self._index :]
        if live is not None:
            upcoming = upcoming + live.events[self._live_index : live.snapshot()[0]]
        for key in list(self._sounding):
            channel, pitch = key
            ends = False
            for event in upcoming:
                if event[2] == pitch and event[4] == channel:
                    ends = event[1] == NOTE_OFF
                    break
            if not ends:
                self._sounding.discard(key)
                self._send_locked(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
