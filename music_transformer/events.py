"""The performance-event vocabulary of Oore et al. (2018), as used by the Music Transformer.

Tokens, in order: 128 NOTE_ON(pitch), 128 NOTE_OFF(pitch), 100 TIME_SHIFT(k) meaning k x 10 ms,
32 VELOCITY(bin), then the control tokens: PAD (batch filler), START (opens a sequence) and END (a
piece ends); one STYLE token per idiom (`STYLES`), which follows START and names where the music comes
from; the three fill-in-the-middle markers SUFFIX, PREFIX and MIDDLE (Bavarian et al. 2022; the
layout of an infilling sequence is in `fim_header`); and one ANTICIPATE(pitch) a pitch, which announces a
note of a kept part two seconds before it begins (accompaniment; `encode`'s `kept`).

Models made before styles and infilling have the first 391 tokens only (`LEGACY_VOCAB_SIZE`); the
new tokens come after, so every old token keeps its number and old models load and play unchanged. A model
has the ANTICIPATE tokens (`has_anticipation`) only once training has taught it them (`train.TrainConfig`'s
`accompany_rate`).

`encode` turns notes into a canonical token sequence and `decode` turns any token sequence back into
notes, so that `encode(decode(tokens)) == tokens` for every sequence that `encode` can produce without a
kept part (announcements are not notes: `decode` passes over them).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .limits import MAX_PIECE_SECONDS

NUM_PITCHES = 128
NUM_TIME_SHIFTS = 100
NUM_VELOCITY_BINS = 32
TICKS_PER_SECOND = 100  # the 10 ms grid
SECONDS_PER_TICK = 1.0 / TICKS_PER_SECOND

NOTE_ON_OFFSET = 0
NOTE_OFF_OFFSET = NOTE_ON_OFFSET + NUM_PITCHES
TIME_SHIFT_OFFSET = NOTE_OFF_OFFSET + NUM_PITCHES
VELOCITY_OFFSET = TIME_SHIFT_OFFSET + NUM_TIME_SHIFTS
NUM_EVENTS = VELOCITY_OFFSET + NUM_VELOCITY_BINS  # 388, the paper's vocabulary

PAD = NUM_EVENTS
START = NUM_EVENTS + 1
END = NUM_EVENTS + 2
LEGACY_VOCAB_SIZE = NUM_EVENTS + 3  # 391: the vocabulary of models without styles and infilling

# The idioms a style token names: "any" for music of no known source (and, in training, for 15 % of
# the pieces of every source, so that an unlabelled motif is continued well too). The first five came with
# the model v2, before the fill-in-the-middle markers; "classical" (the reproducing-piano rolls of
# pianolatron: classical and salon repertoire as pianists of about 1910 played it) came later and takes the
# next free number, after the markers, so that a model of 399 tokens keeps every token's meaning.
STYLES = ("any", "pop-piano", "chorale", "renaissance", "folk", "classical")
FIRST_STYLES = 5  # the styles numbered from STYLE_OFFSET; the rest follow MIDDLE
STYLE_OFFSET = LEGACY_VOCAB_SIZE
SUFFIX = STYLE_OFFSET + FIRST_STYLES  # fill-in-the-middle: the music after the gap follows
PREFIX = SUFFIX + 1  # the music before the gap follows
MIDDLE = SUFFIX + 2  # the gap's contents follow
STYLES_VOCAB_SIZE = MIDDLE + 1  # 399: the vocabulary of the model v2 (styles and infilling)
STYLE_TOKENS = {style: STYLE_OFFSET + index if index < FIRST_STYLES else STYLES_VOCAB_SIZE + index - FIRST_STYLES
                for index, style in enumerate(STYLES)}
TOKEN_STYLES = {token: style for style, token in STYLE_TOKENS.items()}
# Accompaniment (`accompaniment.py`): ANTICIPATE(p) says that a note of the kept part, pitch p, begins
# ANTICIPATION_TICKS from here. In a stream of both parts each kept note-on is announced that long ahead,
# so that the part being written knows where the kept part is going (the melody of the next beats), in the
# spirit of the Anticipatory Music Transformer (Thickstun et al. 2023) with one fixed interval.
ANTICIPATE_OFFSET = max(STYLE_TOKENS.values()) + 1  # 400
ANTICIPATION_SECONDS = 2.0
ANTICIPATION_TICKS = round(ANTICIPATION_SECONDS * TICKS_PER_SECOND)
ANTICIPATION_VOCAB_SIZE = ANTICIPATE_OFFSET + NUM_PITCHES  # 528
VOCAB_SIZE = ANTICIPATION_VOCAB_SIZE
SPECIAL_TOKENS = tuple(range(NUM_EVENTS, VOCAB_SIZE))  # everything that is not a performance event

DEFAULT_VELOCITY = 64  # for note-ons that come before any velocity event


@dataclass(frozen=True, slots=True)
class Note:
    """One sounding note: MIDI pitch and velocity, start and end in seconds."""

    pitch: int
    velocity: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


# --- token constructors and predicates -------------------------------------------------------


def style_token(style: str, vocab_size: int = VOCAB_SIZE) -> int:
    """The STYLE token of an idiom in `STYLES`; a ValueError for one that a model of `vocab_size` does not know."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    if STYLE_TOKENS[style] >= vocab_size:
        raise ValueError(f"this model was made before the style {style!r}; it knows "
                         f"{', '.join(known_styles(vocab_size)) or 'no styles'}")
    return STYLE_TOKENS[style]


def has_styles(vocab_size: int) -> bool:
    """Whether a model with this vocabulary knows the style tokens and the fill-in-the-middle markers."""
    return vocab_size >= STYLES_VOCAB_SIZE


def known_styles(vocab_size: int) -> tuple[str, ...]:
    """The styles a model with this vocabulary knows, in `STYLES`' order (none before the model v2)."""
    return tuple(style for style in STYLES if STYLE_TOKENS[style] < vocab_size) if has_styles(vocab_size) else ()


def is_style(token: int) -> bool:
    """True for STYLE tokens."""
    return token in TOKEN_STYLES


def has_anticipation(vocab_size: int) -> bool:
    """Whether a model with this vocabulary knows the ANTICIPATE tokens (a kept part announced ahead)."""
    return vocab_size >= ANTICIPATION_VOCAB_SIZE


def header(style: str | None, vocab_size: int = VOCAB_SIZE) -> list[int]:
    """The tokens that open every sequence: START, then the style token where the vocabulary has one."""
    return [START, style_token(style or "any", vocab_size)] if has_styles(vocab_size) else [START]


def note_on(pitch: int) -> int:
    """The NOTE_ON token for a MIDI pitch."""
    return NOTE_ON_OFFSET + pitch


def note_off(pitch: int) -> int:
    """The NOTE_OFF token for a MIDI pitch."""
    return NOTE_OFF_OFFSET + pitch


def anticipate(pitch: int) -> int:
    """The ANTICIPATE token for a MIDI pitch: a kept note of that pitch begins ANTICIPATION_TICKS later."""
    return ANTICIPATE_OFFSET + pitch


def is_anticipation(token: int) -> bool:
    """True for ANTICIPATE tokens."""
    return ANTICIPATE_OFFSET <= token < ANTICIPATE_OFFSET + NUM_PITCHES


def time_shift(ticks: int) -> int:
    """The TIME_SHIFT token for 1..100 ticks of 10 ms."""
    if not 1 <= ticks <= NUM_TIME_SHIFTS:
        raise ValueError(f"a time shift covers 1..{NUM_TIME_SHIFTS} ticks, not {ticks}")
    return TIME_SHIFT_OFFSET + ticks - 1


def velocity_event(bin_index: int) -> int:
    """The VELOCITY token for a velocity bin 0..31."""
    return VELOCITY_OFFSET + bin_index


def velocity_to_bin(velocity: int) -> int:
    """The bin 0..31 of a MIDI velocity 1..127 (four velocities a bin)."""
    velocity = min(max(int(velocity), 1), 127)
    return (velocity - 1) * NUM_VELOCITY_BINS // 128


def bin_to_velocity(bin_index: int) -> int:
    """The MIDI velocity in the middle of a bin."""
    return bin_index * 128 // NUM_VELOCITY_BINS + 2


def is_note_on(token: int) -> bool:
    """True for NOTE_ON tokens."""
    return NOTE_ON_OFFSET <= token < NOTE_OFF_OFFSET


def is_note_off(token: int) -> bool:
    """True for NOTE_OFF tokens."""
    return NOTE_OFF_OFFSET <= token < TIME_SHIFT_OFFSET


def is_time_shift(token: int) -> bool:
    """True for TIME_SHIFT tokens."""
    return TIME_SHIFT_OFFSET <= token < VELOCITY_OFFSET


def is_velocity(token: int) -> bool:
    """True for VELOCITY tokens."""
    return VELOCITY_OFFSET <= token < NUM_EVENTS


def shift_ticks(token: int) -> int:
    """How many 10 ms ticks a token advances time (0 for everything but TIME_SHIFT)."""
    return token - TIME_SHIFT_OFFSET + 1 if is_time_shift(token) else 0


def token_name(token: int) -> str:
    """A readable name, e.g. NOTE_ON(60) or TIME_SHIFT(250ms)."""
    if is_note_on(token):
        return f"NOTE_ON({token - NOTE_ON_OFFSET})"
    if is_note_off(token):
        return f"NOTE_OFF({token - NOTE_OFF_OFFSET})"
    if is_time_shift(token):
        return f"TIME_SHIFT({shift_ticks(token) * 10}ms)"
    if is_velocity(token):
        return f"VELOCITY({token - VELOCITY_OFFSET})"
    if token in TOKEN_STYLES:
        return f"STYLE({TOKEN_STYLES[token]})"
    if is_anticipation(token):
        return f"ANTICIPATE({token - ANTICIPATE_OFFSET})"
    return {PAD: "PAD", START: "START", END: "END", SUFFIX: "SUFFIX", PREFIX: "PREFIX",
            MIDDLE: "MIDDLE"}.get(token, f"INVALID({token})")


# --- notes <-> tokens ---------------------------------------------------------------------------


def to_ticks(seconds: float) -> int:
    """Absolute time in seconds to the nearest 10 ms tick."""
    return int(round(seconds * TICKS_PER_SECOND))


def start_tick(seconds: float) -> int:
    """The tick the codec strikes a note that starts at `seconds` on: the nearest, 0 at the earliest."""
    return max(to_ticks(seconds), 0)


def quantize_notes(notes: Iterable[Note]) -> list[tuple[int, int, int, int]]:
    """Notes as (start_tick, end_tick, pitch, velocity), cleaned up by `canonical_notes`' rule so they
    can be encoded."""
    return [(start, end, pitch, velocity) for start, end, pitch, velocity, _, _ in _canonical(notes)]


def canonical_notes(notes: Iterable[Note]) -> list[Note]:
    """The notes the codec would encode, sorted by start then pitch: `decode(encode(n))` gives them back
    within 10 ms, and the same count.

    One rule, applied on the 10 ms grid of absolute times (so rounding errors do not add up along a
    piece): a note whose end rounds to its start's tick ends one tick later; two strikes of one pitch at the
    same tick are one note (the longer end, the louder velocity); a pitch struck again while it sounds ends the
    earlier note at the restrike. Times the rule does not change keep their exact seconds. So every note ends
    in a later tick than it starts, but in seconds it may last less than 10 ms (1.004 s to 1.006 s spans two
    ticks and is kept so; a restrike 1 ms after a strike in the tick before ends it there). A pitch outside
    0..127, a time that is not a finite number, or a note past `limits.MAX_PIECE_SECONDS` is a ValueError.
    """
    cleaned = [Note(pitch, velocity, start, end) for _, _, pitch, velocity, start, end in _canonical(notes)]
    cleaned.sort(key=lambda n: (n.start, n.pitch))
    return cleaned


def _canonical(notes: Iterable[Note]) -> list[tuple[int, int, int, int, float, float]]:
    """`canonical_notes`' rule: (start_tick, end_tick, pitch, velocity, start, end in seconds), sorted by
    start tick then pitch."""
    by_pitch: dict[int, list[tuple[int, int, int, float, float]]] = {}
    for note in notes:
        if not 0 <= note.pitch < NUM_PITCHES:
            raise ValueError(f"pitch {note.pitch} is outside MIDI's 0..127")
        if not (math.isfinite(note.start) and math.isfinite(note.end)):
            raise ValueError(f"a note's start and end must be times in seconds, not {note.start} and {note.end}")
        if max(note.start, note.end) > MAX_PIECE_SECONDS:
            raise ValueError(f"a note at {max(note.start, note.end) / 3600:.1f} hours is past the longest piece "
                             f"Continuo handles ({MAX_PIECE_SECONDS / 3600:g} hours)")
        start = start_tick(note.start)
        start_seconds = max(float(note.start), 0.0)
        end = max(to_ticks(note.end), start + 1)
        end_seconds = float(note.end) if end == to_ticks(note.end) else end * SECONDS_PER_TICK
        by_pitch.setdefault(int(note.pitch), []).append(
            (start, end, min(max(int(note.velocity), 1), 127), start_seconds, end_seconds))
    cleaned = []
    for pitch, strikes in by_pitch.items():
        strikes.sort()
        kept: list[list] = []
        for start, end, velocity, start_seconds, end_seconds in strikes:
            if kept and kept[-1][0] == start:  # the same key struck twice at once: one note, the longer
                if end >= kept[-1][1]:
                    kept[-1][1], kept[-1][4] = end, end_seconds
                kept[-1][2] = max(kept[-1][2], velocity)
                continue
            if kept and kept[-1][1] > start:
                kept[-1][1], kept[-1][4] = start, start_seconds
            elif kept and kept[-1][1] == start:  # ends in the restrike's tick: not after it, in seconds either
                kept[-1][4] = min(kept[-1][4], start_seconds)
            kept.append([start, end, velocity, start_seconds, end_seconds])
        cleaned.extend((start, end, pitch, velocity, start_seconds, end_seconds)
                       for start, end, velocity, start_seconds, end_seconds in kept)
    cleaned.sort(key=lambda n: (n[0], n[2]))
    return cleaned


def shift_tokens(ticks: int) -> list[int]:
    """Time shifts that advance `ticks` (0 or more): as many 1-second shifts as fit, then the rest."""
    tokens = [time_shift(NUM_TIME_SHIFTS)] * (ticks // NUM_TIME_SHIFTS)
    if ticks % NUM_TIME_SHIFTS:
        tokens.append(time_shift(ticks % NUM_TIME_SHIFTS))
    return tokens


def encode(notes: Iterable[Note], kept: Callable[[int, int], bool] | None = None) -> list[int]:
    """Notes to the canonical performance-event token sequence (time starts at 0 s).

    At one instant, note-offs come before note-ons, each in pitch order; a VELOCITY event precedes a
    note-on only when the velocity bin changes.

    `kept(pitch, start_tick)`, when given, names the notes of a kept part (`accompaniment.py`): each of
    them is also announced by ANTICIPATE(pitch) ANTICIPATION_TICKS before it begins (at tick 0 at the
    earliest), before anything else at that instant, so that a time shift across that instant is split.
    """
    events: list[tuple[int, int, int, int]] = []  # (tick, -1 = ahead / 0 = off / 1 = on, pitch, velocity)
    for start, end, pitch, velocity in quantize_notes(notes):
        events.append((start, 1, pitch, velocity))
        events.append((end, 0, pitch, 0))
        if kept is not None and kept(pitch, start):
            events.append((max(0, start - ANTICIPATION_TICKS), -1, pitch, 0))
    events.sort()
    tokens: list[int] = []
    now = 0
    current_bin = None
    for tick, kind, pitch, velocity in events:
        if tick > now:
            tokens.extend(shift_tokens(tick - now))
            now = tick
        if kind <= 0:
            tokens.append(note_off(pitch) if kind == 0 else anticipate(pitch))
            continue
        velocity_bin = velocity_to_bin(velocity)
        if velocity_bin != current_bin:
            tokens.append(velocity_event(velocity_bin))
            current_bin = velocity_bin
        tokens.append(note_on(pitch))
    return tokens


class NoteDecoder:
    """Turns tokens into notes one at a time; the streaming half of `decode`.

    Tolerates any token sequence: a NOTE_OFF with no sounding note is ignored, a NOTE_ON on a pitch
    that already sounds ends the earlier note there, and special tokens are skipped.

    A decoder made with `after` takes up where a primer leaves off, as the model does: the velocity in
    force at the seam and the notes still sounding there carry over. `feed` and `finish` return the new
    notes only; a primer note that the tokens end (its note-off, or a restrike) goes to `extended`, with
    its start in the primer and the end the tokens give it, so a caller can lengthen it rather than cut
    it at the seam. A primer note the tokens never end is not the decoder's to close: it stays as it was.
    """

    def __init__(self, time_offset: float = 0.0) -> None:
        self.time_offset = time_offset
        self.tick = 0
        self.velocity = DEFAULT_VELOCITY
        self.sounding: dict[int, tuple[int, int]] = {}  # pitch -> (start tick, velocity)
        self.carried: set[int] = set()  # the sounding pitches struck in the primer
        self.extended: list[Note] = []  # the primer's notes the tokens ended, in the order they ended

    @classmethod
    def after(cls, primer: Iterable[int], time_offset: float = 0.0) -> NoteDecoder:
        """A decoder for the tokens that continue `primer` (tokens ending at the seam, placed at `time_offset`
        seconds): the primer's last velocity and its notes still sounding carry over."""
        decoder = cls(time_offset)
        for token in primer:
            decoder.feed(int(token))
        seam = decoder.tick  # the primer's notes keep their starts, before time 0 of the continuation
        decoder.tick = 0
        decoder.sounding = {pitch: (start - seam, velocity) for pitch, (start, velocity) in decoder.sounding.items()}
        decoder.carried = set(decoder.sounding)
        return decoder

    @property
    def seconds(self) -> float:
        """The current time in seconds, offset included."""
        return self.time_offset + self.tick * SECONDS_PER_TICK

    def _note(self, pitch: int, start: int, velocity: int, end: int) -> Note:
        return Note(pitch, velocity, self.time_offset + start * SECONDS_PER_TICK,
                    self.time_offset + end * SECONDS_PER_TICK)

    def _end(self, pitch: int, end: int) -> list[Note]:
        """Ends the sounding note of `pitch` at tick `end`: the new note, or none if it was the primer's."""
        start, velocity = self.sounding.pop(pitch)
        note = self._note(pitch, start, velocity, end)
        if pitch in self.carried:
            self.carried.discard(pitch)
            self.extended.append(note)
            return []
        return [note]

    def feed(self, token: int) -> list[Note]:
        """Consumes one token; returns the new notes it completes (at most one, except at the end)."""
        if not 0 <= token < VOCAB_SIZE:
            raise ValueError(f"token {token} is outside the vocabulary of {VOCAB_SIZE}")
        if is_time_shift(token):
            self.tick += shift_ticks(token)
        elif is_velocity(token):
            self.velocity = bin_to_velocity(token - VELOCITY_OFFSET)
        elif is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
            done = []
            if pitch in self.sounding:
                if self.tick > self.sounding[pitch][0]:
                    done = self._end(pitch, self.tick)
                else:  # struck twice at one tick: one note
                    self.sounding.pop(pitch)
                    self.carried.discard(pitch)
            self.sounding[pitch] = (self.tick, self.velocity)
            return done
        elif is_note_off(token):
            pitch = token - NOTE_OFF_OFFSET
            if pitch in self.sounding:
                return self._end(pitch, max(self.tick, self.sounding[pitch][0] + 1))
        return []

    def finish(self) -> list[Note]:
        """Ends every new note still sounding at the current time (one tick long at least); the primer's notes
        the tokens never ended stay as they were."""
        done = [self._note(pitch, start, velocity, max(self.tick, start + 1))
                for pitch, (start, velocity) in sorted(self.sounding.items()) if pitch not in self.carried]
        self.sounding.clear()
        self.carried.clear()
        return done


def decode(tokens: Sequence[int], start: float = 0.0) -> list[Note]:
    """Token sequence to notes, sorted by start then pitch; notes still sounding at the end close there.

    `start` places time 0 of the tokens (a continuation begins where its motif ends)."""
    return decode_after((), tokens, start)[0]


def decode_after(primer: Sequence[int], tokens: Sequence[int], start: float = 0.0) -> tuple[list[Note], list[Note]]:
    """The notes of `tokens` that continue `primer` (tokens ending where `tokens` begin, at `start` seconds),
    decoded as the model wrote them: the primer's velocity and its notes sounding at the seam carry over.

    Returns (the new notes, sorted by start then pitch; the primer's notes that `tokens` end, with their
    start in the primer and their new end). With no primer it is `decode`, and no note is extended.
    """
    decoder = NoteDecoder.after(primer, time_offset=start)
    notes: list[Note] = []
    for token in tokens:
        notes.extend(decoder.feed(int(token)))
    notes.extend(decoder.finish())
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes, decoder.extended


def token_ticks(tokens: Iterable[int]) -> list[int]:
    """The time in ticks after each token (the time shifts so far, that token's included)."""
    return list(itertools.accumulate(shift_ticks(token) for token in tokens))


def duration_seconds(tokens: Iterable[int]) -> float:
    """Seconds of music a token sequence spans (the sum of its time shifts)."""
    return sum(shift_ticks(t) for t in tokens) * SECONDS_PER_TICK


# --- fill-in-the-middle ---------------------------------------------------------------------------


def split_at(tokens: Sequence[int], tick: int) -> tuple[list[int], list[int]]:
    """Cuts a token sequence at a time: (what happens before `tick`, what happens from it on).

    The first part ends exactly at `tick` (a time shift across the cut is split in two, and a sequence
    that ends earlier is padded with silence); events at `tick` itself go to the second part, which
    starts there.
    """
    now = 0
    for index, token in enumerate(tokens):
        if is_time_shift(token):
            ticks = shift_ticks(token)
            if now + ticks >= tick:
                return list(tokens[:index]) + shift_tokens(tick - now), \
                    shift_tokens(now + ticks - tick) + list(tokens[index + 1:])
            now += ticks
        elif now >= tick:
            return list(tokens[:index]), list(tokens[index:])
    return list(tokens) + shift_tokens(tick - now), []


def fim_context(style: str | None, gap_ticks: int, suffix: Sequence[int], prefix: Sequence[int],
                vocab_size: int = VOCAB_SIZE) -> list[int]:
    """The opening of a fill-in-the-middle sequence, up to the MIDDLE marker after which the gap is written.

    START, the style, the gap's length as time shifts, SUFFIX and the music after the gap (time 0 at
    the gap's end), PREFIX and the music before it (ending exactly where the gap begins), MIDDLE: the
    suffix-prefix-middle order of Bavarian et al. (2022), in which the middle directly continues the
    prefix. The gap's contents then run from its start to its end, and the notes begun in it are closed
    there.
    """
    return header(style, vocab_size) + shift_tokens(gap_ticks) + [SUFFIX, *suffix, PREFIX, *prefix, MIDDLE]


def closing_offs(tokens: Sequence[int]) -> list[int]:
    """Note-offs for the notes begun in `tokens` and still sounding at their end, the earliest begun first."""
    sounding: dict[int, int] = {}
    now = 0
    for token in tokens:
        if is_time_shift(token):
            now += shift_ticks(token)
        elif is_note_on(token):
            sounding.pop(token - NOTE_ON_OFFSET, None)
            sounding[token - NOTE_ON_OFFSET] = now
        elif is_note_off(token):
            sounding.pop(token - NOTE_OFF_OFFSET, None)
    return [note_off(pitch) for pitch in sorted(sounding, key=sounding.get)]
