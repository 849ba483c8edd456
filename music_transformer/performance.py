"""The rules of a stream of tokens: what is sounding as the tokens come, and so what may come next.

`Performance` follows one stream (one row of a batch, one beam of a search) token by token and keeps it
valid, canonical music: it masks the tokens `encode` never writes at that point, forces the note-offs
that are due (a note held too long, a note that sounds on from before a gap) and closes every sounding
note when the stream stops. `forbidden_note_ons` turns a key lock and a range into the note-ons it masks.

With a repetition penalty it also keeps the stream from looping (`Repetition`): a pitch struck on onset
after onset, and the notes of the last few beats played over and over, cost their note-ons log-probability.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import events
from .errors import GenerationError
from .events import (
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    NUM_EVENTS,
    NUM_PITCHES,
    NUM_VELOCITY_BINS,
    VELOCITY_OFFSET,
    is_note_off,
    is_note_on,
    is_time_shift,
    is_velocity,
    shift_ticks,
    time_shift,
)
from .limits import MAX_TOKENS_WITHOUT_TIME

BLOCKED = float("-inf")  # a mask entry: added to a token's logit, it can never be drawn

# The repetition penalty's shape (its strength is generate()'s `repetition_penalty`, bounded in limits.py).
# A pitch may be struck on FREE_STRIKES successive onsets (a chord counts as one onset) at no cost; each onset
# past them costs one penalty more, and past MOST_STRIKES it is not struck again (the sampled studio output had
# E4 on 50 successive sixteenths; repeated notes and chords in real melodies and accompaniment run 3 to 8).
FREE_STRIKES = 4
MOST_STRIKES = 8
# A figure of 2 to LONGEST_LOOP notes (a bar of sixteenths over a bass) may be played twice; each note that
# plays it a third time or more costs one penalty more per time round (Most likely looped C3-C4-E4-G4 for
# eight bars).
LONGEST_LOOP = 20


class Performance:
    """What is sounding while tokens stream out: keeps the output valid, canonical music.

    Masks what `encode` never writes: a note-off without its note, a note struck while it sounds, a
    note ending at the tick it started, a velocity event that repeats the current one or is not
    followed by a note. So at one instant only finitely many tokens fit, and time has to move on.

    Notes that sound on from before a gap (`hand_over`) are not the stream's to end: each one's note-off
    is forced at the tick it is due, if that is within the gap, and is never sampled. `forbidden` holds the
    note-ons of the pitches outside a key lock or a range, never sampled either.
    """

    def __init__(self, vocab_size: int, forbidden: np.ndarray | None = None, repetition_penalty: float = 0.0) -> None:
        self.forbidden = forbidden
        self.repetition = Repetition(repetition_penalty)
        self.mask = np.zeros(vocab_size, dtype=np.float32)  # added to the logits: 0 allowed, -inf not
        self.mask[NUM_EVENTS:] = BLOCKED  # no control tokens in the music
        self.mask[NOTE_OFF_OFFSET:NOTE_OFF_OFFSET + NUM_PITCHES] = BLOCKED  # nothing sounds yet
        self.sounding: dict[int, int] = {}  # pitch -> tick it started
        self.held: dict[int, int | None] = {}  # pitch sounding from before -> tick its note-off is due
        self.tick = 0
        self.velocity_bin: int | None = None
        self.release_ticks = 0  # the last ticks of the stream start no note: a phrase's end sounds, not cut
        self.still = 0  # tokens since time last moved on (`check_time_moves`)

    def update(self, token: int) -> None:
        """Follows one token."""
        mask = self.mask
        self.still += 1
        if is_time_shift(token):
            self.still = 0
            self.tick += shift_ticks(token)
            self.repetition.onset_over = True
            if self.sounding:  # every sounding note may end now
                mask[[NOTE_OFF_OFFSET + pitch for pitch in self.sounding]] = 0.0
        elif is_velocity(token):
            self.velocity_bin = token - VELOCITY_OFFSET
            mask[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = BLOCKED  # a note comes next
        elif is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
            self.repetition.strike(pitch)
            self.sounding[pitch] = self.tick
            mask[token] = BLOCKED
            mask[NOTE_OFF_OFFSET + pitch] = BLOCKED  # not before time moves on
            mask[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = 0.0
            if self.velocity_bin is not None:
                mask[VELOCITY_OFFSET + self.velocity_bin] = BLOCKED
        elif is_note_off(token):
            pitch = token - NOTE_OFF_OFFSET
            if self.sounding.pop(pitch, None) is not None or pitch in self.held:
                self.held.pop(pitch, None)
                mask[token] = BLOCKED
                mask[NOTE_ON_OFFSET + pitch] = 0.0

    def start_continuation(self) -> None:
        """Time from here on is the continuation's; notes still sounding from the primer may end."""
        self.repetition.start_continuation()
        self.tick = 0
        self.still = 0
        self.sounding = dict.fromkeys(self.sounding, 0)
        if self.sounding:
            self.mask[[NOTE_OFF_OFFSET + pitch for pitch in self.sounding]] = 0.0

    def hand_over(self, due: dict[int, int | None]) -> None:
        """Time from here on is a gap's: the notes sounding from before it are held, and so are those in
        `due` (pitch -> tick of their note-off in the gap, None past it): their note-offs are forced when
        due and never sampled."""
        self.tick = 0
        self.still = 0
        self.held = {**dict.fromkeys(self.sounding), **due}
        self.sounding = {}
        pitches = list(self.held)
        if pitches:
            self.mask[[NOTE_OFF_OFFSET + pitch for pitch in pitches]] = BLOCKED
            self.mask[[NOTE_ON_OFFSET + pitch for pitch in pitches]] = BLOCKED

    def copy(self) -> Performance:
        """An independent copy (each beam of a beam search has its own)."""
        twin = Performance.__new__(Performance)
        twin.forbidden = self.forbidden  # never changed: shared
        twin.mask, twin.sounding, twin.tick = self.mask.copy(), dict(self.sounding), self.tick
        twin.held, twin.velocity_bin = dict(self.held), self.velocity_bin
        twin.repetition = self.repetition.copy()
        twin.release_ticks, twin.still = self.release_ticks, self.still
        return twin

    def check_time_moves(self) -> None:
        """Raises GenerationError when the stream has written `limits.MAX_TOKENS_WITHOUT_TIME` events at one
        instant: music moves on (a chord of 88 keys is under 300 events), a broken model or sampler need not."""
        if self.still > MAX_TOKENS_WITHOUT_TIME:
            raise GenerationError(
                f"the model wrote {self.still:,} events with no time passing, which is not music: its checkpoint "
                "may be damaged (weights out of range), or the sampling settings broken")

    def rules(self, tokens_left: int | None, ticks_left: int | None, hold_ticks: int | None,
              mask: np.ndarray) -> tuple[int | None, int]:
        """What the next token may be: (a forced note-off for a note held too long, or None; how many ticks a
        time shift may advance). Unless a token is forced, `mask` gets the allowed tokens (0, else -inf)."""
        due = self.next_due()
        if due is not None and due[0] <= self.tick:
            return NOTE_OFF_OFFSET + due[1], 0
        stuck = None if hold_ticks is None else self.oldest_note_older_than(hold_ticks)
        if stuck is not None:
            return NOTE_OFF_OFFSET + stuck, 0
        mask[:] = self.mask
        if self.repetition.penalty:
            mask[NOTE_ON_OFFSET:NOTE_ON_OFFSET + NUM_PITCHES] += self.repetition.costs()
        if self.forbidden is not None:
            mask[self.forbidden] = BLOCKED
        spare = None if tokens_left is None else tokens_left - len(self.sounding)  # beyond the closing offs
        if ticks_left is not None and ticks_left <= self.release_ticks:  # the phrase ends: what sounds is released
            mask[NOTE_ON_OFFSET:NOTE_ON_OFFSET + NUM_PITCHES] = BLOCKED
            mask[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = BLOCKED
        if spare is not None and spare < 3:
            # no room for a new note: its velocity, itself, a shift, its note-off
            mask[NOTE_ON_OFFSET:NOTE_ON_OFFSET + NUM_PITCHES] = BLOCKED
            mask[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = BLOCKED
            if spare == 1 and self.tick in self.sounding.values():
                mask[:] = BLOCKED  # the last spare token moves time on, so no note ends where it began
                mask[events.TIME_SHIFT_OFFSET:VELOCITY_OFFSET] = 0.0
        limit = min(self.ticks_until_limit(hold_ticks), events.NUM_TIME_SHIFTS)
        if ticks_left is not None:
            limit = min(limit, ticks_left)
        if due is not None:
            limit = min(limit, due[0] - self.tick)
        return None, limit

    def drawn(self, token: int, shift_limit: int) -> int:
        """The token a draw writes: a time shift lands exactly on the end, or on a held note's limit."""
        return time_shift(min(shift_ticks(token), shift_limit)) if is_time_shift(token) else token

    def next_due(self) -> tuple[int, int] | None:
        """(tick, pitch) of the next held note's forced note-off, if one is due at a known tick."""
        due = [(tick, pitch) for pitch, tick in self.held.items() if tick is not None]
        return min(due) if due else None

    def finished(self, tokens_left: int | None, ticks_left: int | None) -> bool:
        """True when the music has reached its length, or the token budget only covers closing notes."""
        return (ticks_left is not None and ticks_left <= 0) or \
            (tokens_left is not None and tokens_left <= len(self.sounding))

    def closing(self) -> list[int]:
        """Note-offs for every sounding note, the longest-held first, after a tick if one just began."""
        shift = [time_shift(1)] if self.tick in self.sounding.values() else []
        return shift + [NOTE_OFF_OFFSET + pitch for pitch in sorted(self.sounding, key=self.sounding.get)]

    def ticks_until_limit(self, hold_ticks: int | None) -> int:
        """How far time may move before the longest-held note reaches the hold limit."""
        if hold_ticks is None or not self.sounding:
            return events.NUM_TIME_SHIFTS
        return max(1, hold_ticks - (self.tick - min(self.sounding.values())))

    def oldest_note_older_than(self, ticks: int) -> int | None:
        """A pitch that has sounded for `ticks` or more, if any (the longest-held first)."""
        if not self.sounding:
            return None
        start = min(self.sounding.values())
        if self.tick - start < ticks:
            return None
        return next(pitch for pitch, begun in self.sounding.items() if begun == start)


class Repetition:
    """What a stream has been repeating, and what its next note-ons cost for it (`costs`, added to their logits).

    Two rules, both scaled by `penalty` (0: off, nothing costs anything). A pitch struck on each of the last
    onsets (the notes struck at one instant are one onset) costs `penalty` for each onset past FREE_STRIKES
    it would make, and cannot be struck on more than MOST_STRIKES in a row. A figure of notes (their pitches,
    in the order struck, over more than one onset) played twice over may go on, but each note that plays it
    further costs `penalty` times the share of a third, fourth... time round it completes. A primer that
    repeats a pitch on more onsets than that already allows the continuation as many.
    """

    def __init__(self, penalty: float = 0.0) -> None:
        self.penalty = float(penalty)
        self.free_strikes, self.most_strikes = FREE_STRIKES, MOST_STRIKES
        self.strikes = np.zeros(NUM_PITCHES, dtype=np.int32)  # onsets in a row each pitch was struck on, to the last
        self.before = np.zeros(NUM_PITCHES, dtype=np.int32)  # the same, to the onset before the last
        self.onset_over = True  # time has moved since the last note-on: the next one begins an onset
        self.onsets = 0  # onsets so far
        self.longest = 0  # the most onsets in a row one pitch was struck on
        self.recent: list[tuple[int, int]] = []  # the last LONGEST_LOOP + 1 notes struck: (pitch, onset)
        self.runs = np.zeros(LONGEST_LOOP + 1, dtype=np.int32)  # [n]: notes in a row equal to the note n before

    def strike(self, pitch: int) -> None:
        """Follows a note-on."""
        if self.onset_over:
            self.before, self.strikes = self.strikes, np.zeros_like(self.strikes)
            self.onset_over = False
            self.onsets += 1
        self.strikes[pitch] = self.before[pitch] + 1
        self.longest = max(self.longest, int(self.strikes[pitch]))
        recent = self.recent
        for period in range(2, min(len(recent), LONGEST_LOOP) + 1):
            self.runs[period] = self.runs[period] + 1 if recent[-period][0] == pitch else 0
        recent.append((pitch, self.onsets))
        if len(recent) > LONGEST_LOOP + 1:
            del recent[0]

    def start_continuation(self) -> None:
        """The primer ends here: as many onsets in a row on one pitch as it has are the continuation's too."""
        extra = max(0, self.longest - MOST_STRIKES)
        self.free_strikes, self.most_strikes = FREE_STRIKES + extra, MOST_STRIKES + extra

    def costs(self) -> np.ndarray:
        """What striking each pitch next costs (NUM_PITCHES,): 0 or less, -inf where it may not be struck."""
        strikes = (self.strikes if self.onset_over else self.before) + 1  # the onsets in a row it would make
        costs = -self.penalty * np.maximum(strikes - self.free_strikes, 0).astype(np.float32)
        costs[strikes > self.most_strikes] = BLOCKED
        recent, runs = self.recent, self.runs
        for period in range(2, min(len(recent), LONGEST_LOOP) + 1):
            played = runs[period] + 1 - period  # notes past the figure's second time round, with this one
            if played <= 0 or recent[-1][1] == recent[-period][1] \
                    or any(runs[part] >= runs[period] for part in range(2, period) if period % part == 0):
                continue  # not looping yet; one onset over and over (the strikes' rule); or a shorter figure's loop
            pitch = recent[-period][0]
            costs[pitch] = min(costs[pitch], -self.penalty * played / period)
        return costs

    def copy(self) -> Repetition:
        """An independent copy."""
        twin = Repetition.__new__(Repetition)
        twin.__dict__.update(self.__dict__)
        twin.strikes, twin.before, twin.runs = self.strikes.copy(), self.before.copy(), self.runs.copy()
        twin.recent = list(self.recent)
        return twin


def forbidden_note_ons(allowed_pitches: Iterable[int] | None) -> np.ndarray | None:
    """The note-on tokens of the pitches outside `allowed_pitches` (None: no limit); refuses a bad set."""
    if allowed_pitches is None:
        return None
    if isinstance(allowed_pitches, (str, bytes)) or not isinstance(allowed_pitches, Iterable):
        raise ValueError(f"allowed_pitches must be a set of MIDI pitches, not {allowed_pitches!r}")
    pitches = set()
    for pitch in allowed_pitches:
        if isinstance(pitch, bool) or not isinstance(pitch, (int, np.integer)) or not 0 <= pitch < NUM_PITCHES:
            raise ValueError(f"allowed pitches are MIDI pitches 0..127, not {pitch!r}")
        pitches.add(int(pitch))
    if not pitches:
        raise ValueError("no pitch is allowed: choose a key and a range that hold at least one note")
    return np.asarray([NOTE_ON_OFFSET + p for p in range(NUM_PITCHES) if p not in pitches], dtype=np.int64)
