"""Fill-in-the-middle: the music of a gap between two passages, in the gap's exact length.

The model reads what comes after the gap, then what comes before (`events.fim_context`), and writes the
gap's contents through the same loop as a continuation (`continuation.stream`), under a gap's rules
(`GapPerformance`): the fill joins the music after it instead of being cut off where the gap ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from . import events
from .continuation import stream
from .events import (
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    NUM_PITCHES,
    VELOCITY_OFFSET,
    Note,
    encode,
    is_note_off,
    is_time_shift,
    shift_ticks,
    time_shift,
)
from .limits import MAX_PIECE_SECONDS
from .model import MusicTransformer
from .performance import BLOCKED, Performance, forbidden_note_ons
from .sampling import DEFAULT_MAX_NOTE_SECONDS, Cancel, Sampling

MIN_NOTE_TICKS = 5  # 50 ms: no note a fill begins is shorter than this, unless the model writes it so
AROUND_SECONDS = 4.0  # the music before and after a gap whose loudness the fill keeps to


def loudness_around(before: Sequence[Note], after: Sequence[Note], start: float, end: float) -> tuple[int, int] | None:
    """The velocity bins a fill keeps to: from the 10th to the 90th percentile of the velocities of the notes
    that begin in the 4 s before the gap and the 4 s after it (None: no such note)."""
    velocities = sorted([note.velocity for note in before if start - AROUND_SECONDS <= note.start < start]
                        + [note.velocity for note in after if end <= note.start < end + AROUND_SECONDS])
    if not velocities:
        return None
    low, high = velocities[len(velocities) // 10], velocities[-1 - len(velocities) // 10]
    return events.velocity_to_bin(low), events.velocity_to_bin(high)


class GapPerformance(Performance):
    """A gap's rules on top of a stream's: every note the fill begins ends before the gap's end, or is handed
    over to the note of its pitch that the music after the gap strikes right at the end.

    In training the gap's notes were cut where it ends (`data.fim_sequence`), so the model holds notes up
    to the end; left alone, they all stop there at once. Here a time shift the model draws that would
    reach the end while a note of the fill sounds (one not handed over) releases that note instead, the
    longest-held first: the model's wish to hold a note past the end becomes the note's release, at the
    time the model chose to move on. A note younger than `MIN_NOTE_TICKS` is not ended so (that would be a
    stub the model did not write): time moves on by half of what is left of the gap first, or until it is
    old enough, and the note ends at the next such draw. A note may begin only
    if it can last `MIN_NOTE_TICKS` before it has to end, so no stub is left at the end. Its velocity events
    keep to `loudness` (bins: the music around the gap's, `loudness_around`), so the fill is as loud as what
    surrounds it rather than as the model's habit.
    """

    def __init__(self, vocab_size: int, forbidden: np.ndarray | None, end: int, handed: Iterable[int],
                 loudness: tuple[int, int] | None = None) -> None:
        super().__init__(vocab_size, forbidden)
        self.end = end  # the gap's end, in ticks from its start
        self.handed = frozenset(handed)  # pitches the music after the gap strikes at its first tick
        self.loudness = loudness  # the velocity bins the fill's velocity events keep to (None: any)

    def copy(self) -> GapPerformance:
        """An independent copy."""
        twin = GapPerformance.__new__(GapPerformance)
        twin.__dict__.update(super().copy().__dict__)
        twin.end, twin.handed, twin.loudness = self.end, self.handed, self.loudness
        return twin

    def releasing(self) -> list[int]:
        """The notes of the fill that must end before the gap's end, the longest-held first."""
        return sorted((pitch for pitch in self.sounding if pitch not in self.handed), key=self.sounding.get)

    def rules(self, tokens_left: int | None, ticks_left: int | None, hold_ticks: int | None,
              mask: np.ndarray) -> tuple[int | None, int]:
        """`Performance.rules`, and the gap's: no note begun too late to last `MIN_NOTE_TICKS`."""
        forced, limit = super().rules(tokens_left, ticks_left, hold_ticks, mask)
        if forced is not None:
            return forced, limit
        left = self.end - self.tick  # ticks to the gap's end
        if self.loudness is not None:
            low, high = self.loudness
            mask[VELOCITY_OFFSET:VELOCITY_OFFSET + low] = BLOCKED
            mask[VELOCITY_OFFSET + high + 1:VELOCITY_OFFSET + events.NUM_VELOCITY_BINS] = BLOCKED
        if left - 1 < MIN_NOTE_TICKS:  # a new note would have to end within 50 ms
            ons = mask[NOTE_ON_OFFSET:NOTE_ON_OFFSET + NUM_PITCHES]
            kept = [pitch for pitch in self.handed if left >= MIN_NOTE_TICKS and ons[pitch] == 0.0]
            ons[:] = BLOCKED
            ons[kept] = 0.0
            if not kept:
                mask[VELOCITY_OFFSET:VELOCITY_OFFSET + events.NUM_VELOCITY_BINS] = BLOCKED  # no note follows
        return None, limit

    def drawn(self, token: int, shift_limit: int) -> int:
        """A time shift to the gap's end while a note of the fill must end before it releases that note."""
        releasing = self.releasing()
        if releasing and is_time_shift(token) and self.tick + shift_ticks(token) >= self.end:
            age = self.tick - self.sounding[releasing[0]]
            if age >= MIN_NOTE_TICKS:
                return NOTE_OFF_OFFSET + releasing[0]
            # ended now it would be a stub the model did not write: it sounds for half the time left first,
            # 50 ms at least
            left = self.end - self.tick
            return time_shift(max(1, min(left - 1, shift_limit, max(MIN_NOTE_TICKS - age, left // 2))))
        return super().drawn(token, shift_limit)


def check_gap(start: float, end: float) -> None:
    """Refuses, with a ValueError in words, a gap that cannot be filled: not a time, past the longest piece
    (`limits.MAX_PIECE_SECONDS`: the memory a fill takes never grows with where its gap lies), or shorter than
    one 10 ms step."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= MAX_PIECE_SECONDS:
            shown = f"{value:g} s" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
            raise ValueError(f"the gap's {name} must be a time from 0 to {MAX_PIECE_SECONDS:,} seconds (the longest "
                             f"piece, {MAX_PIECE_SECONDS / 3600:g} hours), not {shown[:40]}")
    if events.to_ticks(end) <= events.to_ticks(start):
        raise ValueError(f"the gap must end at least {events.SECONDS_PER_TICK * 1000:g} ms after it starts "
                         f"(from {start:.3f} s to {end:.3f} s)")


def infill(model: MusicTransformer, before: Sequence[Note], after: Sequence[Note], start: float, end: float, *,
           style: str = "any", temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, cancel: Cancel = None, max_tokens: int | None = None,
           max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, window: int | None = None,
           cpu_threads: int | None = 1, allowed_pitches: Iterable[int] | None = None) -> Iterator[int]:
    """Fills the gap [`start`, `end`) seconds between `before` and `after`, yielding each token as it is sampled.

    The tokens run from `start` (decode them with `continuation_notes(tokens, start, before)`): the new notes all
    begin in the gap and the stream stops exactly at `end`. A new note ends before `end`, released when the
    model moves on past it, unless `after` strikes its pitch right at `end`, when it may last up to that note
    (`GapPerformance`); none is shorter than 50 ms unless the model writes it so. Its velocities keep to
    those of the music in the 4 s before and after the gap (`loudness_around`). Notes of `before` that sound
    across `start` stay as they are: their note-offs come in the stream when they are due, and new
    notes never restrike them while they sound. `before` is the music that starts before `start` and
    `after` what starts at `end` or later (on the 10 ms grid); notes that start inside the gap are the
    ones being replaced and are not read.

    The model reads the whole context in one window: what follows the gap (up to a third of the room),
    then as much as fits of what precedes it, leaving room for the gap's own tokens (about 48 a second).
    Needs a model trained to fill gaps (`events.has_styles`); the sampling arguments (`allowed_pitches`
    too) are those of `generate`, checked when it is called.
    """
    config = model.config
    if not events.has_styles(config.vocab_size):
        raise ValueError("this model cannot fill gaps (it was made before infilling); use the bundled model")
    check_gap(start, end)
    first, last = events.to_ticks(start), events.to_ticks(end)
    sampling = Sampling.checked(model, temperature, top_k, top_p, [seed], window, max_tokens,
                                (last - first) / 100, max_note_seconds, cpu_threads, style)
    forbidden = forbidden_note_ons(allowed_pitches)
    before_tokens = encode([note for note in before if events.to_ticks(note.start) < first])
    suffix = encode([Note(note.pitch, note.velocity, note.start - end, note.end - end)
                     for note in after if events.to_ticks(note.start) >= last])
    prefix, rest = events.split_at(before_tokens, first)
    due: dict[int, int | None] = {}  # the notes of `before` sounding on: pitch -> tick of their note-off
    now = 0
    for token in rest:
        now += shift_ticks(token)
        if is_note_off(token):
            due[token - NOTE_OFF_OFFSET] = now if now < last - first else None
    room = max(0, sampling.window - len(events.fim_context(style, last - first, [], [])))
    room -= min(room // 2, max(64, 48 * (last - first) // 100))  # kept for the gap's own tokens
    suffix = suffix[:room // 3]
    prefix = prefix[max(0, len(prefix) - (room - len(suffix))):]
    handed = {note.pitch for note in after if events.to_ticks(note.start) == last}
    performance = GapPerformance(config.vocab_size, forbidden, last - first, handed,
                                 loudness_around(before, after, start, end))
    for token in prefix:
        performance.update(token)
    performance.hand_over(due)
    context = events.fim_context(style, last - first, suffix, prefix, config.vocab_size)
    return (token for _, token in stream(model, context, [performance], sampling, cancel))
