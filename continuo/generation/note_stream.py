"""Generated tokens in, notes out as they are completed, on the song's grid if asked, and the events that play
them while they are written."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from music_transformer import Note
from music_transformer.events import (
    NOTE_ON_OFFSET,
    SECONDS_PER_TICK,
    NoteDecoder,
    is_note_on,
    is_time_shift,
    shift_ticks,
)

from ..playback.scheduler import NOTE_OFF, NOTE_ON, Event, LiveFeed


class NoteStream:
    """Generated tokens in, notes out as they are completed; with a live feed, also the events that play them
    while they are written. Continue, Fill and the duet all stream through it.

    `skip_leading_rest` starts the music at its first note (the duet answers at once, after the pause).
    `grid` (seconds from the song's start) puts each note's start and end on the nearest grid line, at least
    one step long, as it streams: what is heard while it is written is what lands in the roll. A note that
    would start on the same line as the last one of its pitch is left out. `velocities` (low, high) keeps
    every velocity within that range.

    `primer` is the tokens the model read before it (ending at `start`): the notes take up where it leaves off,
    its last velocity in force until the model writes one and its notes sounding at the seam the primer's, not
    new ones (those the model ends are in `extended`, with the ends it gave them). `held` names those of the
    song's notes sounding across `start` that the stream writes again with the end the model gives them (From
    Playhead, which replaces them): each comes out when the model ends it, or as it was if the model never does.
    """

    def __init__(
        self,
        start: float = 0.0,
        live: LiveFeed | None = None,
        skip_leading_rest: bool = False,
        grid: float | None = None,
        velocities: tuple[int, int] | None = None,
        primer: Sequence[int] = (),
        held: Sequence[Note] = (),
    ) -> None:
        self.decoder = NoteDecoder.after(primer, time_offset=start)
        self._held = {note.pitch: note for note in held if note.pitch in self.decoder.carried}
        self._joined = 0  # how many of the decoder's extended notes have been looked at
        self.live = live
        self._skip_rest = skip_leading_rest
        self._sounding: set[int] = set()  # pitches the live feed has turned on and not yet off
        self._start = start
        self._grid = grid if grid is not None and grid > 0 else None
        self._velocities = velocities
        self._placed: dict[int, float] = {}  # pitch -> the grid line its sounding note starts on
        self._last_line: dict[int, float] = {}  # pitch -> the line its last note started on
        self._left_out: set[int] = set()  # pitches whose sounding note shares a line with the one before
        self._pending: list[Event] = []  # a heap of events on the grid not yet handed to the live feed

    @property
    def seconds(self) -> float:
        """How far the music is written, in seconds."""
        return self.decoder.seconds

    @property
    def extended(self) -> list[Note]:
        """The primer's notes sounding at the seam that the model has ended, with the ends it gave them."""
        return self.decoder.extended

    def _velocity(self, velocity: int) -> int:
        if self._velocities is None:
            return velocity
        low, high = self._velocities
        return min(max(velocity, low), high)

    def _line(self, seconds: float) -> float:
        """The grid line nearest a time, never before the stream's start."""
        grid = self._grid
        line = round(seconds / grid) * grid
        if line < self._start - 1e-9:
            line = math.ceil(self._start / grid - 1e-9) * grid
        return line

    def _rejoined(self) -> list[Note]:
        """The held notes the model has ended since the last look, from their start to the end it gave them."""
        extended = self.decoder.extended
        rejoined = []
        for note in extended[self._joined :]:
            held = self._held.pop(note.pitch, None)
            if held is not None:
                end = note.end if self._grid is None else self._line(note.end)
                rejoined.append(Note(held.pitch, held.velocity, held.start, max(end, self._start)))
        self._joined = len(extended)
        return rejoined

    def feed(self, token: int) -> list[Note]:
        """Consumes one token; returns the notes it completes and sends its events to the live feed."""
        return self._feed(token) + self._rejoined()

    def _feed(self, token: int) -> list[Note]:
        decoder = self.decoder
        if self._skip_rest and is_time_shift(token):
            decoder.time_offset -= shift_ticks(token) * SECONDS_PER_TICK  # the clock stays at the start
        done = decoder.feed(token)
        if is_note_on(token):
            self._skip_rest = False
        if self._grid is not None:
            return self._feed_on_grid(token, done)
        if self._velocities is not None:
            done = [Note(note.pitch, self._velocity(note.velocity), note.start, note.end) for note in done]
        if self.live is not None:
            now = decoder.seconds
            ended = {note.pitch for note in done} | {pitch for pitch in self._sounding if pitch not in decoder.sounding}
            events: list[Event] = [(now, NOTE_OFF, pitch, 0, 0) for pitch in sorted(ended & self._sounding)]
            self._sounding -= ended
            if is_note_on(token):
                pitch = token - NOTE_ON_OFFSET
                events.append((now, NOTE_ON, pitch, self._velocity(decoder.sounding[pitch][1]), 0))
                self._sounding.add(pitch)
            self.live.extend(events, now)
        return done

    def _feed_on_grid(self, token: int, done: list[Note]) -> list[Note]:
        """Places notes on the grid. Lines are rounded from the written times, so the order of notes of one
        pitch is kept; events wait until the writing is half a step past them, when no later note can land
        before them, and go to the live feed in time order."""
        grid = self._grid
        placed = []
        for note in done:
            if note.pitch in self._left_out:
                self._left_out.discard(note.pitch)
                continue
            start = self._placed.pop(note.pitch)
            end = max(self._line(note.end), start + grid)
            placed.append(Note(note.pitch, self._velocity(note.velocity), start, end))
            heapq.heappush(self._pending, (end, NOTE_OFF, note.pitch, 0, 0))
        if is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
            line = self._line(self.decoder.seconds)
            if line <= self._last_line.get(pitch, -1.0) + 1e-9:
                self._left_out.add(pitch)
            else:
                self._placed[pitch] = self._last_line[pitch] = line
                velocity = self._velocity(self.decoder.sounding[pitch][1])
                heapq.heappush(self._pending, (line, NOTE_ON, pitch, velocity, 0))
        self._release(self.decoder.seconds - grid / 2)
        return placed

    def _release(self, until: float) -> None:
        events = []
        while self._pending and self._pending[0][0] <= until:
            events.append(heapq.heappop(self._pending))
        if self.live is not None:
            self.live.extend(events, until)

    def finish(self) -> list[Note]:
        """Ends every note still sounding (the live feed's too, which then finishes); returns those notes, and the
        held notes the model never ended, as they were."""
        never_ended = list(self._held.values())
        self._held.clear()
        return self._finish() + never_ended

    def _finish(self) -> list[Note]:
        rest = self.decoder.finish()
        if self._grid is not None:
            rest = self._feed_on_grid(-1, rest)
            self._release(math.inf)
            if self.live is not None:
                self.live.finish()
            return rest
        if self._velocities is not None:
            rest = [Note(note.pitch, self._velocity(note.velocity), note.start, note.end) for note in rest]
        if self.live is not None:
            now = self.decoder.seconds
            self.live.extend([(now, NOTE_OFF, pitch, 0, 0) for pitch in sorted(self._sounding)], now)
            self._sounding.clear()
            self.live.finish()
        return rest
