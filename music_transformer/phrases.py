"""Phrase endings: where a continuation stops so that it ends on a bar line, and how long before it no new note
starts, so that the last notes sound into the bar line and are released there instead of cut mid-bar."""

from __future__ import annotations

import math

from . import limits
from .sampling import MAX_SECONDS

_TOLERANCE = 1e-6  # seconds: a length this close to a bar line ends on it


def _number(name: str, value, low: float, *, above: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (above and value == low):
        raise ValueError(f"{name} must be a number {'above' if above else 'of at least'} {low:g}, not {value!r}")
    return float(value)


def bar_seconds(bpm: float, time_signature: tuple[int, int] = (4, 4)) -> float:
    """The length of one bar in seconds at `bpm` quarter notes a minute (6/8 is three quarter notes)."""
    bpm = _number("bpm", bpm, 0.0, above=True)
    numerator, denominator = time_signature
    if isinstance(numerator, bool) or not isinstance(numerator, int) or not 1 <= numerator <= limits.MAX_NUMERATOR \
            or isinstance(denominator, bool) or denominator not in limits.DENOMINATORS:
        raise ValueError(f"a time signature is 1 to {limits.MAX_NUMERATOR} beats over "
                         f"{', '.join(map(str, limits.DENOMINATORS))}, not {numerator!r}/{denominator!r}")
    return numerator * 4.0 / denominator * 60.0 / bpm


def phrase_seconds(start: float, seconds: float, bar: float, downbeat: float = 0.0) -> float:
    """How long a continuation from `start` writes to end on the first bar line at or after `start + seconds`
    (bars of `bar` seconds from `downbeat`): the length asked for, honoured to within a bar."""
    start = _number("start", start, 0.0)
    seconds = _number("seconds", seconds, 0.0, above=True)
    bar = _number("a bar", bar, 0.0, above=True)
    downbeat = _number("downbeat", downbeat, 0.0)
    end = start + seconds
    line = downbeat + math.ceil((end - downbeat) / bar - _TOLERANCE / bar) * bar
    if line > start + MAX_SECONDS:
        raise ValueError(f"at most {MAX_SECONDS // 60:.0f} minutes of music at once, not {line - start:g} s")
    return line - start


def phrase_release(seconds: float, beat: float) -> float:
    """How long before its end a phrase of `seconds` starts no new note: its last beat (a quarter note of
    `beat` seconds), at most half the phrase, so a short one still has music."""
    return min(_number("beat", beat, 0.0, above=True), _number("seconds", seconds, 0.0) / 2)
