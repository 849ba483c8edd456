"""The song's tempo map and metre: where each beat falls in time, and where each bar begins.

A beat is a quarter note (MIDI's beat). The map holds the tempo changes, (beat, BPM) with the first at beat 0,
the tempo holding until the next change, and the metre changes, (beat, numerator, denominator) with the first
at beat 0. Bars count from each metre change: a bar a change cuts short (a pickup, a file whose change falls
mid-bar) is a bar of its own, as notation programs and DAWs count it.

Plain Python and numpy, no Qt: the song, the views, playback, generation and export all read it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

DEFAULT_TEMPO = 120.0
DEFAULT_METRE = (4, 4)
_EPSILON = 1e-9  # beats: a position this close to a bar line is on it


class BarBeat(NamedTuple):
    """A position as a musician reads it: the bar (from 1), the beat in it (from 1, in the metre's beat unit,
    eighths in 6/8) and how far through that beat (0 to 1)."""

    bar: int
    beat: int
    fraction: float

    def __str__(self) -> str:
        return f"{self.bar}.{self.beat}"


class BarLine(NamedTuple):
    """A bar's start: its beat, its index (0 is bar 1), its length in beats and its metre."""

    beat: float
    index: int
    length: float
    metre: tuple[int, int]


def bar_beats(metre: tuple[int, int]) -> float:
    """A bar's length in quarter-note beats (6/8 is 3)."""
    return metre[0] * 4.0 / metre[1]


@dataclass(frozen=True)
class TempoMap:
    """Tempo and metre changes, and the conversions between beats, seconds and bars."""

    tempi: tuple[tuple[float, float], ...] = ((0.0, DEFAULT_TEMPO),)
    metres: tuple[tuple[float, int, int], ...] = ((0.0, *DEFAULT_METRE),)
    _beats: np.ndarray = field(init=False, repr=False, compare=False)
    _seconds: np.ndarray = field(init=False, repr=False, compare=False)
    _bpm: np.ndarray = field(init=False, repr=False, compare=False)
    _lists: tuple[list[float], list[float], list[float]] = field(init=False, repr=False, compare=False)
    _metre_beats: list[float] = field(init=False, repr=False, compare=False)
    _metre_bars: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tempi = tuple((float(beat), float(bpm)) for beat, bpm in self.tempi) or ((0.0, DEFAULT_TEMPO),)
        metres = tuple((float(beat), int(n), int(d)) for beat, n, d in self.metres) or ((0.0, *DEFAULT_METRE),)
        if tempi[0][0] != 0.0 or metres[0][0] != 0.0:
            raise ValueError("a tempo map starts at beat 0")
        for changes in (tempi, metres):
            if any(later[0] <= earlier[0] for earlier, later in zip(changes, changes[1:], strict=False)):
                raise ValueError("tempo and metre changes must come in order, one a beat")
        if any(not (math.isfinite(bpm) and bpm > 0) for _, bpm in tempi):
            raise ValueError("a tempo must be above 0 BPM")
        object.__setattr__(self, "tempi", tempi)
        object.__setattr__(self, "metres", metres)
        beats = np.array([beat for beat, _ in tempi])
        bpm = np.array([bpm for _, bpm in tempi])
        seconds = np.concatenate([[0.0], np.cumsum(np.diff(beats) * 60.0 / bpm[:-1])])
        object.__setattr__(self, "_beats", beats)
        object.__setattr__(self, "_bpm", bpm)
        object.__setattr__(self, "_seconds", seconds)
        object.__setattr__(self, "_lists", (beats.tolist(), seconds.tolist(), bpm.tolist()))  # for one at a time
        first_bars = [0]
        for (beat, n, d), (next_beat, _, _) in zip(metres, metres[1:], strict=False):
            first_bars.append(first_bars[-1] + math.ceil((next_beat - beat) / bar_beats((n, d)) - _EPSILON))
        object.__setattr__(self, "_metre_beats", [beat for beat, _, _ in metres])
        object.__setattr__(self, "_metre_bars", first_bars)

    @classmethod
    def steady(cls, bpm: float = DEFAULT_TEMPO, metre: tuple[int, int] = DEFAULT_METRE) -> TempoMap:
        """One tempo and one metre throughout."""
        return cls(((0.0, float(bpm)),), ((0.0, int(metre[0]), int(metre[1])),))

    # --- reading -----------------------------------------------------------------------------------------

    @property
    def tempo(self) -> float:
        """The first tempo, in BPM."""
        return self.tempi[0][1]

    @property
    def metre(self) -> tuple[int, int]:
        """The first metre."""
        return self.metres[0][1], self.metres[0][2]

    @property
    def is_steady(self) -> bool:
        """Whether it keeps one tempo and one metre."""
        return len(self.tempi) == 1 and len(self.metres) == 1

    def tempo_at(self, beat: float) -> float:
        """The tempo in force at a beat, in BPM."""
        return float(self._bpm[max(0, int(np.searchsorted(self._beats, beat, "right")) - 1)])

    def metre_at(self, beat: float) -> tuple[int, int]:
        """The metre in force at a beat."""
        _, n, d = self.metres[self._metre_index(beat)]
        return n, d

    def _metre_index(self, beat: float) -> int:
        return max(0, bisect.bisect_right(self._metre_beats, beat + _EPSILON) - 1)

    # --- beats and seconds -------------------------------------------------------------------------------

    def seconds(self, beat: float) -> float:
        """The time of a beat, in seconds from the start (beats before 0 at the first tempo)."""
        beats, seconds, bpm = self._lists
        index = max(0, bisect.bisect_right(beats, beat) - 1)
        return seconds[index] + (beat - beats[index]) * 60.0 / bpm[index]

    def beats(self, seconds: float) -> float:
        """The beat at a time in seconds."""
        beats, times, bpm = self._lists
        index = max(0, bisect.bisect_right(times, seconds) - 1)
        return beats[index] + (seconds - times[index]) * bpm[index] / 60.0

    def seconds_array(self, beats: np.ndarray) -> np.ndarray:
        """`seconds` for many beats at once (playback schedules thousands of notes)."""
        beats = np.asarray(beats, dtype=np.float64)
        index = np.maximum(np.searchsorted(self._beats, beats, "right") - 1, 0)
        return self._seconds[index] + (beats - self._beats[index]) * 60.0 / self._bpm[index]

    def beats_array(self, seconds: np.ndarray) -> np.ndarray:
        """`beats` for many times at once."""
        seconds = np.asarray(seconds, dtype=np.float64)
        index = np.maximum(np.searchsorted(self._seconds, seconds, "right") - 1, 0)
        return self._beats[index] + (seconds - self._seconds[index]) * self._bpm[index] / 60.0

    # --- bars ----------------------------------------------------------------------------------------------

    def bar_at(self, beat: float) -> BarLine:
        """The bar a beat lies in (beats before 0 lie in the first)."""
        index = self._metre_index(beat)
        start, n, d = self.metres[index]
        length = bar_beats((n, d))
        within = max(0, math.floor((beat - start) / length + _EPSILON))
        return BarLine(start + within * length, self._metre_bars[index] + within, length, (n, d))

    def bar_start(self, bar: int) -> float:
        """The beat bar `bar` starts on (0 is bar 1); past the last metre change, bars of its length."""
        index = max(0, bisect.bisect_right(self._metre_bars, bar) - 1)
        start, n, d = self.metres[index]
        return start + (bar - self._metre_bars[index]) * bar_beats((n, d))

    def bar_beat(self, beat: float) -> BarBeat:
        """Where a beat lies as bar.beat (both from 1)."""
        bar = self.bar_at(max(0.0, beat))
        unit = 4.0 / bar.metre[1]  # the metre's beat in quarter notes
        within = max(0.0, beat - bar.beat) / unit
        counted = min(int(math.floor(within + _EPSILON)), bar.metre[0] - 1)
        return BarBeat(bar.index + 1, counted + 1, min(1.0, max(0.0, within - counted)))

    def bar_position(self, beat: float) -> float:
        """Bars from the start as one number (2.5: half-way through bar 3); the bar a change cuts short counts
        whole."""
        bar = self.bar_at(beat)
        following = self.bar_start(bar.index + 1)
        return bar.index + (beat - bar.beat) / max(following - bar.beat, _EPSILON)

    def beat_of_bar_position(self, position: float) -> float:
        """The beat at a number of bars from the start (`bar_position`'s inverse)."""
        index = math.floor(position)
        start, following = self.bar_start(index), self.bar_start(index + 1)
        return start + (position - index) * (following - start)

    def add_bars(self, beat: float, bars: float) -> float:
        """The beat `bars` bars after `beat`, each bar as long as the metre where it lies."""
        return self.beat_of_bar_position(self.bar_position(beat) + bars)

    def bar_line_at_or_after(self, beat: float) -> float:
        """The first bar line at `beat` or after it."""
        bar = self.bar_at(beat)
        return bar.beat if beat - bar.beat <= _EPSILON * 1e3 else self.bar_start(bar.index + 1)

    def bar_lines(self, start: float, end: float, every: int = 1) -> list[BarLine]:
        """The bar lines from `start` to `end` (beats), every `every`-th bar (counted from bar 1)."""
        lines = []
        bar = self.bar_at(max(0.0, start)).index
        bar -= bar % max(1, every)
        while True:
            beat = self.bar_start(bar)
            if beat > end:
                return lines
            nxt = self.bar_start(bar + 1)
            index = self._metre_index(beat)
            _, n, d = self.metres[index]
            lines.append(BarLine(beat, bar, nxt - beat, (n, d)))
            bar += max(1, every)

    def shortest_bar(self, start: float, end: float) -> float:
        """The shortest bar length between two beats (for spacing the lines and labels drawn)."""
        first, last = self._metre_index(start), self._metre_index(end)
        return min(bar_beats((n, d)) for _, n, d in self.metres[first : last + 1])

    # --- changing it (a new map; the song keeps every version in its undo history) -----------------------

    def from_beat(self, beat: float) -> TempoMap:
        """The map as it runs from `beat` on, that beat as 0 (a clip cut from the song at a bar line)."""
        tempi = [(0.0, self.tempo_at(beat))] + [(at - beat, bpm) for at, bpm in self.tempi if at > beat]
        metres = [(0.0, *self.metre_at(beat))] + [(at - beat, n, d) for at, n, d in self.metres if at > beat]
        return TempoMap(tuple(tempi), tuple(metres))

    def with_tempo(self, bpm: float, low: float, high: float) -> TempoMap:
        """The map with its first tempo `bpm`, every later one scaled alike (within low..high BPM)."""
        factor = float(bpm) / self.tempo
        tempi = ((0.0, float(bpm)),) + tuple(
            (beat, round(min(max(tempo * factor, low), high), 6)) for beat, tempo in self.tempi[1:]
        )
        return TempoMap(tempi, self.metres)

    def with_metre(self, numerator: int, denominator: int) -> TempoMap:
        """The map with its first metre changed, the later changes kept where they are."""
        return TempoMap(self.tempi, ((0.0, int(numerator), int(denominator)),) + self.metres[1:])

    def with_tempo_change(self, beat: float, bpm: float) -> TempoMap:
        """The map with the tempo `bpm` from `beat` on (until the next change; at beat 0, the first tempo)."""
        kept = [change for change in self.tempi if abs(change[0] - beat) > _EPSILON]
        return TempoMap(tuple(sorted([*kept, (max(0.0, float(beat)), float(bpm))])), self.metres)

    def without_tempo_change(self, beat: float) -> TempoMap:
        """The map without the tempo change at `beat` (the one before holds on; the first stays)."""
        return TempoMap(self.tempi[:1] + tuple(c for c in self.tempi[1:] if abs(c[0] - beat) > _EPSILON), self.metres)

    def with_metre_change(self, beat: float, numerator: int, denominator: int) -> TempoMap:
        """The map with the metre n/d from `beat` on (until the next change; at beat 0, the first metre)."""
        kept = [change for change in self.metres if abs(change[0] - beat) > _EPSILON]
        return TempoMap(self.tempi, tuple(sorted([*kept, (max(0.0, float(beat)), int(numerator), int(denominator))])))

    def without_metre_change(self, beat: float) -> TempoMap:
        """The map without the metre change at `beat` (the metre before holds on; the first stays)."""
        return TempoMap(self.tempi, self.metres[:1] + tuple(c for c in self.metres[1:] if abs(c[0] - beat) > _EPSILON))

    def tempo_change_at(self, beat: float) -> bool:
        """Whether a tempo change (after the first tempo) comes in at `beat`."""
        return any(abs(change[0] - beat) <= _EPSILON for change in self.tempi[1:])

    def metre_change_at(self, beat: float) -> bool:
        """Whether a metre change (after the first) comes in at `beat`."""
        return any(abs(change[0] - beat) <= _EPSILON for change in self.metres[1:])
