"""Accompaniment: a new part written around notes the musician keeps (a left hand for a melody, a tune over a bass).

The model reads the kept notes as the music unfolds, each at its own time, and writes only in the pitches it is
given. One stream holds both parts, as in training (`KeptPerformance`). At each step, when the next kept event's
time has come, it is fed to the model instead of a sampled token: a kept note-off at once, a kept note-on (with the
velocity event it needs) once the new part's note-offs and note-ons below it at that instant are in, the order
`encode` gives the notes of one instant, none below it after it (forced first, the melody's note-on was followed by
notes above it, as in training, and the new part climbed over the melody). Otherwise a token is sampled: a time
shift that would pass the next kept event lands on it instead (the chance of waiting at least that long goes to
waiting exactly that long, as `generate` does at its end), and a note-on or note-off the model draws outside the
range to write in (a note of the kept part, as the model would play it) becomes a short wait, KEPT_WAIT_TICKS (or
up to the next kept event, if sooner), after which the model draws again. How long that wait is sets how busy the
new part is (bench/accompany.py, 12 held-out POP909 songs and 12 rolls, 3 seeds; the real other hand plays 4.3 and
2.9 notes a second): masked instead, that chance went to the new part's own notes, 14.9 notes a second; a wait of
10 ms gives 10.1 and 10.4, 50 ms 4.5 and 2.7, 100 ms 3.4 and 1.5, and waiting up to the next kept event 1.5 and
1.1, a part a third as busy as a real one. A model taught
accompaniment windows (`events.has_anticipation`) also hears each kept note announced `events.ANTICIPATION_TICKS`
ahead (ANTICIPATE(pitch), fed at its tick before anything else there, as `events.encode` places it in training),
so that the part it writes knows where the kept part goes next; a model without those tokens hears the kept notes
only as they sound. The decoding loop is `continuation.stream`'s: one step a token through the decoder's cache,
the window sliding.

What comes out is the new part alone (`OwnPart`), as tokens from `start` that `events.decode(tokens, start)`
turns into its notes; the kept notes are the caller's own, given back unchanged (`accompany_notes`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from . import events, limits
from .continuation import stream
from .events import (
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    NUM_PITCHES,
    VELOCITY_OFFSET,
    Note,
    anticipate,
    is_anticipation,
    is_note_off,
    is_note_on,
    is_time_shift,
    is_velocity,
    note_off,
    note_on,
    velocity_event,
    velocity_to_bin,
)
from .keys import pitch_name
from .model import MusicTransformer
from .performance import BLOCKED, Performance, forbidden_note_ons
from .sampling import DEFAULT_MAX_NOTE_SECONDS, MAX_SECONDS, Cancel, Sampling

KeptEvent = tuple[int, int, int, int]  # (tick from the start, AHEAD / 0 = note-off / 1 = note-on, pitch, velocity bin)
AHEAD = -1  # a kept note announced ANTICIPATION_TICKS before it begins (a model taught the ANTICIPATE tokens)
KEPT_WAIT_TICKS = 5  # a note of the kept part the model draws: this long a wait (50 ms) before it draws again


class KeptPerformance(Performance):
    """A stream's rules with kept notes in it: each kept event is fed at its tick (a note-on after the new part's
    notes below it at that instant, with the velocity event it needs), a note of the kept part the model draws
    is a short wait, and a time shift never passes the next kept event. The hold limit and the closing
    note-offs are the new part's."""

    def __init__(self, vocab_size: int, forbidden: np.ndarray | None, writable: np.ndarray,
                 kept: Sequence[KeptEvent], repetition_penalty: float = 0.0) -> None:
        super().__init__(vocab_size, forbidden, repetition_penalty)
        self.writable = writable  # (NUM_PITCHES,) bool: the pitches the new part may use
        self.kept = list(kept)  # the kept events from the start on, in the order they are fed
        self.next_kept = 0  # index of the next kept event to feed
        self.voicing = False  # the velocity event of the due kept note-on is in: the note-on follows
        self.struck: tuple[int, int] | None = None  # (tick, pitch) of the last kept note-on

    def copy(self) -> KeptPerformance:
        """An independent copy."""
        twin = KeptPerformance.__new__(KeptPerformance)
        twin.__dict__.update(super().copy().__dict__)
        twin.writable, twin.kept = self.writable, self.kept  # never changed: shared
        twin.next_kept, twin.voicing, twin.struck = self.next_kept, self.voicing, self.struck
        return twin

    def start_continuation(self) -> None:
        """The kept notes before the start have been read: from here on kept events are fed as they come."""
        super().start_continuation()
        self.next_kept, self.struck = 0, None

    def update(self, token: int) -> None:
        """Follows one token; an ANTICIPATE token, or a note-on or note-off outside the range written in, is the
        next kept event's."""
        if is_anticipation(token):
            self.next_kept += 1
            return
        super().update(token)
        if (is_note_on(token) or is_note_off(token)) and not self.writable[token % NUM_PITCHES]:
            self.next_kept += 1
            self.voicing = False
            if is_note_on(token):
                self.struck = (self.tick, token - NOTE_ON_OFFSET)

    def _due(self) -> KeptEvent | None:
        """The next kept event, if its tick has come."""
        if self.next_kept < len(self.kept) and self.kept[self.next_kept][0] <= self.tick:
            return self.kept[self.next_kept]
        return None

    def rules(self, tokens_left: int | None, ticks_left: int | None, hold_ticks: int | None,
              mask: np.ndarray) -> tuple[int | None, int]:
        """A kept note's announcement or note-off when its tick has come (before anything else at that tick), a
        kept note-on once its velocity event is in; else `Performance.rules`, a time shift reaching the next kept
        event at most."""
        due = self._due()
        if due is not None and due[1] == AHEAD:
            return anticipate(due[2]), 0
        if due is not None and not due[1]:
            return note_off(due[2]), 0
        if due is not None and self.voicing:
            return note_on(due[2]), 0
        forced, limit = super().rules(tokens_left, ticks_left, hold_ticks, mask)
        if forced is None and self.next_kept < len(self.kept):
            limit = min(limit, max(0, self.kept[self.next_kept][0] - self.tick))
        if forced is None and self.struck is not None and self.struck[0] == self.tick:
            mask[NOTE_ON_OFFSET:NOTE_ON_OFFSET + self.struck[1]] = BLOCKED  # at one instant, notes go upwards
        return forced, limit

    def drawn(self, token: int, shift_limit: int) -> int:
        """The token a draw writes. While a kept note-on is due, the new part's own note-offs, velocity events and
        note-ons below it come first, as `encode` orders the notes of one instant; anything else the model draws
        then (a wait, a note above it, a note of the kept part) is the kept note-on (its velocity event first
        where the loudness changes). Otherwise a note of the kept part drawn (the model would play or end one)
        is a wait of KEPT_WAIT_TICKS (up to its next event at most), and a time shift lands on that event at the
        latest."""
        due = self._due()
        pitch = token % NUM_PITCHES
        own_note = (is_note_on(token) or is_note_off(token)) and self.writable[pitch]
        if due is not None:
            if (own_note and (is_note_off(token) or pitch < due[2])) or is_velocity(token):
                return token
            if self.velocity_bin != due[3]:
                self.voicing = True
                return velocity_event(due[3])
            return note_on(due[2])
        if (is_note_on(token) or is_note_off(token)) and not own_note:
            return events.time_shift(max(1, min(shift_limit, KEPT_WAIT_TICKS)))
        return super().drawn(token, shift_limit)

    def _own(self) -> dict[int, int]:
        """The new part's sounding notes: pitch -> tick it started."""
        return {pitch: tick for pitch, tick in self.sounding.items() if self.writable[pitch]}

    def ticks_until_limit(self, hold_ticks: int | None) -> int:
        """How far time may move before the new part's longest-held note reaches the hold limit."""
        own = self._own()
        if hold_ticks is None or not own:
            return events.NUM_TIME_SHIFTS
        return max(1, hold_ticks - (self.tick - min(own.values())))

    def oldest_note_older_than(self, ticks: int) -> int | None:
        """A pitch of the new part that has sounded for `ticks` or more (the longest-held first); a kept note
        lasts as long as it was given."""
        own = self._own()
        if not own:
            return None
        start = min(own.values())
        if self.tick - start < ticks:
            return None
        return next(pitch for pitch, begun in own.items() if begun == start)

    def finished(self, tokens_left: int | None, ticks_left: int | None) -> bool:
        """True when the music has reached its end (or the token budget covers only the closing note-offs)."""
        return (ticks_left is not None and ticks_left <= 0) or \
            (tokens_left is not None and tokens_left <= len(self._own()))

    def closing(self) -> list[int]:
        """Note-offs for the new part's sounding notes, the longest-held first, after a tick if one just began."""
        own = self._own()
        shift = [events.time_shift(1)] if self.tick in own.values() else []
        return shift + [NOTE_OFF_OFFSET + pitch for pitch in sorted(own, key=own.get)]


class OwnPart:
    """The new part's tokens out of the stream of both parts: its note-ons and note-offs, every time shift, and a
    velocity event before a note-on whenever the loudness in force (which a kept note may have set) is not the
    one the new part last said. `events.decode` of what it passes gives the new part's notes exactly."""

    def __init__(self, writable: np.ndarray, velocity_bin: int | None) -> None:
        self.writable = writable
        self.velocity_bin = velocity_bin  # in force in the stream of both parts
        self.said: int | None = None  # the last the new part's own tokens said

    def __call__(self, token: int) -> list[int]:
        """The new part's tokens for one token of the stream (none, one, or a velocity event and a note-on)."""
        if is_time_shift(token):
            return [token]
        if is_velocity(token):
            self.velocity_bin = token - VELOCITY_OFFSET
            return []
        if not (is_note_on(token) or is_note_off(token)) or not self.writable[token % NUM_PITCHES]:
            return []
        if is_note_on(token) and self.velocity_bin is not None and self.velocity_bin != self.said:
            self.said = self.velocity_bin
            return [velocity_event(self.velocity_bin), token]
        return [token]


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a time in seconds, not {value!r}")
    return float(value)


def checked_keep(keep: Sequence[Note]) -> list[Note]:
    """The kept notes, refused with a ValueError that names what is wrong: none, not notes, a time that is not a
    number, a note that ends before it starts or lies before 0 s or past the longest piece, a pitch off MIDI's."""
    if isinstance(keep, (str, bytes)) or not isinstance(keep, Iterable):
        raise ValueError(f"keep must be a list of notes, not {keep!r}")
    keep = list(keep)
    if not keep:
        raise ValueError("there are no notes to keep: give the notes the new part accompanies")
    for index, note in enumerate(keep):
        if not isinstance(note, Note):
            raise ValueError(f"kept note {index + 1} is not a note: {note!r}")
        what = f"kept note {index + 1} ({note.pitch} at {note.start!r} s)"
        if isinstance(note.pitch, bool) or not isinstance(note.pitch, (int, np.integer)) \
                or not limits.MIN_PITCH <= note.pitch <= limits.MAX_PITCH:
            raise ValueError(f"{what}: its pitch must be a MIDI pitch 0..127")
        for name, value in (("start", note.start), ("end", note.end)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value):
                raise ValueError(f"{what}: its {name} must be a time in seconds, not {value!r}")
        if note.start < 0:
            raise ValueError(f"{what}: it starts before 0 s")
        if note.end <= note.start:
            raise ValueError(f"{what}: its times are out of order (it ends at {note.end:g} s, not after it starts)")
        if note.end > MAX_SECONDS:
            raise ValueError(f"{what}: it ends past the longest piece Continuo handles ({MAX_SECONDS / 3600:g} hours)")
    return keep


def checked_range(write_range: Iterable[int]) -> frozenset[int]:
    """The pitches to write in, as a set; refused if it is not a set of MIDI pitches or is empty."""
    if isinstance(write_range, (str, bytes)) or not isinstance(write_range, Iterable):
        raise ValueError(f"write_range must be a set of MIDI pitches, not {write_range!r}")
    pitches = set()
    for pitch in write_range:
        if isinstance(pitch, bool) or not isinstance(pitch, (int, np.integer)) \
                or not limits.MIN_PITCH <= pitch <= limits.MAX_PITCH:
            raise ValueError(f"the range to write in holds MIDI pitches 0..127, not {pitch!r}")
        pitches.add(int(pitch))
    if not pitches:
        raise ValueError("the range to write in is empty: give the pitches the new part may use")
    return frozenset(pitches)


def _pitch_names(pitches: Iterable[int]) -> str:
    ordered = sorted(set(pitches))
    shown = ", ".join(pitch_name(pitch) for pitch in ordered[:4])
    return shown + (f" and {len(ordered) - 4} more" if len(ordered) > 4 else "")


def _tokens(kept: Sequence[KeptEvent], until: int) -> list[int]:
    """The tokens of kept events (ticks from 0, in order) as `encode` writes them, then silence up to `until`."""
    tokens: list[int] = []
    now, velocity_bin = 0, None
    for tick, kind, pitch, bin_index in kept:
        tokens += events.shift_tokens(tick - now)
        now = tick
        if kind == AHEAD:
            tokens.append(anticipate(pitch))
            continue
        if kind and bin_index != velocity_bin:
            tokens.append(velocity_event(bin_index))
            velocity_bin = bin_index
        tokens.append(note_on(pitch) if kind else note_off(pitch))
    return tokens + events.shift_tokens(max(0, until - now))


def _accompanying(model: MusicTransformer, keep: Sequence[Note], write_range: Iterable[int], start: float,
                  end: float, seeds: list[int | None], temperature: float, top_k: int | None, top_p: float | None,
                  window: int | None, max_note_seconds: float | None, cpu_threads: int | None, style: str,
                  allowed_pitches: Iterable[int] | None, repetition_penalty: float):
    """Checks everything and lays out the stream: (context, one performance and one `OwnPart` per row, sampling)."""
    keep = checked_keep(keep)
    writable_pitches = checked_range(write_range)
    start, end = _number("start", start), _number("end", end)
    if start < 0:
        raise ValueError(f"start must be 0 s or later, not {start:g} s")
    first, last = events.to_ticks(start), events.to_ticks(end)
    if last <= first:
        raise ValueError(f"the times are out of order: the end ({end:g} s) must come after the start ({start:g} s)")
    clashing = {note.pitch for note in keep} & writable_pitches
    if clashing:
        raise ValueError(f"the ranges overlap: kept notes at {_pitch_names(clashing)} lie in the range to write in; "
                         "the kept part and the new part need pitches of their own")
    sampling = Sampling.checked(model, temperature, top_k, top_p, seeds, window, None, (last - first) / 100,
                                max_note_seconds, cpu_threads, style, repetition_penalty)
    quantized = events.quantize_notes(keep)
    if not any(note_start < last and note_end > first for note_start, note_end, _, _ in quantized):
        raise ValueError(f"no kept note sounds between {start:g} s and {end:g} s: there is nothing to accompany")
    allowed = writable_pitches if allowed_pitches is None else writable_pitches & _allowed(allowed_pitches)
    if not allowed:
        raise ValueError("no pitch of the key lock lies in the range to write in: widen the range")
    # the key lock's masked pitches in the range written in; a note outside it the model draws waits instead
    locked = np.asarray([note_on(pitch) for pitch in sorted(writable_pitches - allowed)], dtype=np.int64)
    forbidden = locked if len(locked) else None
    ahead = events.has_anticipation(model.config.vocab_size)  # each kept note announced ahead, as in training
    timeline: list[KeptEvent] = []
    for note_start, note_end, pitch, velocity in quantized:
        timeline += [(note_start, 1, pitch, velocity_to_bin(velocity)), (note_end, 0, pitch, 0)]
        if ahead:
            timeline.append((max(0, note_start - events.ANTICIPATION_TICKS), AHEAD, pitch, 0))
    # at one tick: announcements, note-offs, then note-ons, each in pitch order (as `events.encode` orders them)
    timeline.sort(key=lambda event: (event[0], event[1], event[2]))
    before = [event for event in timeline if event[0] < first]
    during = [(tick - first, kind, pitch, bin_index) for tick, kind, pitch, bin_index in timeline
              if first <= tick < last]
    primer = _tokens(before, first)
    writable = np.zeros(NUM_PITCHES, dtype=bool)
    writable[sorted(writable_pitches)] = True
    performance = KeptPerformance(model.config.vocab_size, forbidden, writable, during, sampling.repetition_penalty)
    for token in primer:
        performance.update(token)
    performance.start_continuation()
    rows = len(sampling.seeds)
    performances = [performance] + [performance.copy() for _ in range(rows - 1)]
    parts = [OwnPart(writable, performance.velocity_bin) for _ in range(rows)]
    context = events.header(style, model.config.vocab_size) + primer
    return context, performances, parts, sampling


def _allowed(pitches: Iterable[int]) -> frozenset[int]:
    forbidden = forbidden_note_ons(pitches)
    return frozenset(range(NUM_PITCHES)) - {int(token) - NOTE_ON_OFFSET for token in forbidden}


def _own_tokens(rows: Iterator[tuple[int, int]], parts: list[OwnPart]) -> Iterator[tuple[int, int]]:
    for row, token in rows:
        for own in parts[row](token):
            yield row, own


def accompany(model: MusicTransformer, keep: Sequence[Note], write_range: Iterable[int], start: float, end: float, *,
              temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
              seed: int | None = None, window: int | None = None, cancel: Cancel = None,
              max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, cpu_threads: int | None = 1,
              style: str = "any", allowed_pitches: Iterable[int] | None = None,
              repetition_penalty: float = limits.DEFAULT_REPETITION_PENALTY) -> Iterator[int]:
    """Writes a new part in the pitches `write_range` from `start` to `end` seconds around the notes `keep`,
    yielding each of its tokens as it is written (decode them with `events.decode(tokens, start)`).

    The model hears each kept note at its own time: kept notes that begin before `start` are the music it reads
    first, the others are fed to it as the stream reaches them, so what it writes answers what it has heard so
    far. The new part's notes all begin in [start, end) and are closed at `end` at the latest. No kept pitch may
    lie in `write_range`. The sampling arguments are `generate`'s (beam search aside), checked when it is called
    (ValueError): so are `keep` (notes, at least one sounding between `start` and `end`, times in order and
    numbers) and `write_range` (MIDI pitches, at least one; `allowed_pitches`, e.g. a key lock, narrows it).
    `cancel` stops it, closing the new part's notes.
    """
    context, performances, parts, sampling = _accompanying(
        model, keep, write_range, start, end, [seed], temperature, top_k, top_p, window, max_note_seconds,
        cpu_threads, style, allowed_pitches, repetition_penalty)
    return (token for _, token in _own_tokens(stream(model, context, performances, sampling, cancel), parts))


def accompany_variations(model: MusicTransformer, keep: Sequence[Note], write_range: Iterable[int], start: float,
                         end: float, *, seeds: Sequence[int], temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, window: int | None = None, cancel: Cancel = None,
                         max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, cpu_threads: int | None = 1,
                         style: str = "any", allowed_pitches: Iterable[int] | None = None,
                         repetition_penalty: float = limits.DEFAULT_REPETITION_PENALTY) -> Iterator[tuple[int, int]]:
    """One accompaniment per seed, written side by side as the rows of one batch (as `generate_variations`
    writes continuations), yielding (variation, token); the arguments are `accompany`'s."""
    most = limits.MAX_VARIATIONS
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not 1 <= len(seeds) <= most:
        raise ValueError(f"seeds must be a list of 1 to {most} seeds, one per variation, not {seeds!r}")
    context, performances, parts, sampling = _accompanying(
        model, keep, write_range, start, end, list(seeds), temperature, top_k, top_p, window, max_note_seconds,
        cpu_threads, style, allowed_pitches, repetition_penalty)
    return _own_tokens(stream(model, context, performances, sampling, cancel), parts)


def accompany_notes(model: MusicTransformer, keep: Sequence[Note], write_range: Iterable[int], start: float,
                    end: float, **options) -> tuple[list[Note], list[Note]]:
    """(the kept notes, exactly as given; the new part's notes): `accompany` run to its end."""
    tokens = list(accompany(model, keep, write_range, start, end, **options))
    return list(keep), events.decode(tokens, start)
