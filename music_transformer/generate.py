"""Streaming generation with the key/value cache: sampling, windowed decoding past the training length.

`generate` yields one token at a time as soon as it is sampled, so a caller can decode and play the
music while it is being written. Each step feeds only the newest token through the model; the cache
holds the keys and values of the last `window` positions, so the cost per token and the memory stay
flat however long the piece grows, far past the length the model was trained on.

`infill` writes the music of a gap between two passages instead: the model reads what comes after the
gap, then what comes before, and writes the gap's contents in its exact length (fill-in-the-middle,
`events.fim_context`). `generate_variations` writes several continuations of one primer at once, as the
rows of one batch that read the primer's keys once.

After the context, steps run through `decoder.Decoder` (one token per row, the weights laid out for it;
on a GPU one CUDA graph per step, sampling included). Sampling is Gumbel-max: each row adds noise drawn
from its own seed's random stream to its scores and takes the largest, so rows never share a generator
and a row's draws do not depend on how many rows there are.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import events, limits
from .attention import KVCache
from .decoder import CapturedStep, Decoder, fast_path
from .events import (
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    NUM_EVENTS,
    NUM_PITCHES,
    NUM_VELOCITY_BINS,
    SECONDS_PER_TICK,
    STYLES,
    TIME_SHIFT_OFFSET,
    VELOCITY_OFFSET,
    Note,
    encode,
    is_note_off,
    is_note_on,
    is_time_shift,
    is_velocity,
    shift_ticks,
    time_shift,
)
from .model import MusicTransformer, mixed_precision

Cancel = Callable[[], bool] | threading.Event | None

DEFAULT_MAX_NOTE_SECONDS = 8.0
MAX_SECONDS = limits.MAX_PIECE_SECONDS  # the longest piece written at once
MAX_VARIATIONS = 64  # rows of one batch
NOISE_BLOCK = 64  # steps of random noise drawn at once per row
BLOCKED = float("-inf")  # a mask entry: added to a token's logit, it can never be drawn


def primer_tokens(notes: Sequence[Note], until: float | None = None) -> list[int]:
    """The tokens of a motif, followed by the silence up to `until` seconds (e.g. the end of its bar)."""
    if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))
                              or not 0 <= until <= MAX_SECONDS):
        raise ValueError(f"a primer ends between 0 s and {MAX_SECONDS // 3600:g} hours, not at {until!r}")
    tokens = encode(notes)
    if until is not None:
        tokens += events.shift_tokens(max(0, events.to_ticks(until) - sum(shift_ticks(t) for t in tokens)))
    return tokens


def _is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


# Kinds of token, in vocabulary order: note-on, note-off, time shift, velocity, then the control tokens.
_KIND_STARTS = (NOTE_ON_OFFSET, NOTE_OFF_OFFSET, TIME_SHIFT_OFFSET, VELOCITY_OFFSET, NUM_EVENTS)
NUCLEUS_KINDS = (0, 1, 3)  # top-p picks among pitches (to strike, to release) and loudnesses, never among waits


@dataclass(frozen=True)
class _Kinds:
    """A vocabulary's kinds of token, laid out per token for `filter_logits` (each a (vocab,) tensor): a sort
    key that keeps the kinds apart, where the token's kind starts and ends (indices into a cumulative sum
    with one 0 in front), and whether top-p leaves the kind whole."""

    sort_key: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    whole: torch.Tensor

    def totals(self, values: torch.Tensor) -> torch.Tensor:
        """Each token's kind's sum of `values` (rows, vocab): differences of one cumulative sum, in float64
        so that a kind with little probability keeps its digits (and, unlike an index_add, the same on
        every run of a GPU)."""
        running = F.pad(values.double().cumsum(dim=-1), (1, 0))
        return (running.index_select(-1, self.end) - running.index_select(-1, self.start)).to(values.dtype)


@functools.lru_cache(maxsize=8)
def _kinds(vocab_size: int, device: torch.device) -> _Kinds:
    starts = [start for start in _KIND_STARTS if start < vocab_size]
    ends = [*starts[1:], vocab_size]
    kind = torch.repeat_interleave(torch.arange(len(starts)), torch.tensor(ends) - torch.tensor(starts))
    whole = torch.tensor([index not in NUCLEUS_KINDS for index in range(len(starts))])
    return _Kinds(sort_key=(2.0 * kind).to(device), start=torch.tensor(starts)[kind].to(device),
                  end=torch.tensor(ends)[kind].to(device), whole=whole[kind].to(device))


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """The logits (rows, vocab) with the tokens outside the top k, and outside each kind's top-p set, at -inf.

    Top-k ranks the whole vocabulary. Top-p works within each kind of event: among the note-ons, the
    note-offs and the velocities it keeps the smallest set of the most likely that holds `top_p` of that
    kind's probability, and rescales them so that every kind keeps the probability the model gave it.
    Time shifts are never narrowed. So top-p takes out unlikely pitches and loudnesses, but the choice
    between playing and waiting, and how long to wait, stay the model's: a nucleus over the whole
    vocabulary cuts the long waits (each one unlikely, together a good share), and the music gets denser
    than the model's: on 44 held-out pop songs, 7.9 notes a second against 6.9 this way (the songs: 6.2).
    Only tensor operations, with no decision on the host, so a captured CUDA graph can hold it.
    """
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        threshold = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, BLOCKED)
    if top_p is None or not 0.0 < top_p < 1.0:
        return logits
    kinds, tiny = _kinds(logits.shape[-1], logits.device), torch.finfo(logits.dtype).tiny
    peak = logits.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).min)
    weights = torch.exp(logits - peak)  # 0 where blocked
    within = weights / kinds.totals(weights).clamp_min(tiny)  # each token's chance within its kind
    order = torch.argsort(kinds.sort_key - within, dim=-1, stable=True)  # kind by kind, the most likely first
    ranked = within.gather(-1, order)
    total = ranked.cumsum(dim=-1)
    before = total - ranked - F.pad(total, (1, 0)).index_select(-1, kinds.start)  # within the kind, ranked higher
    kept = torch.empty_like(before, dtype=torch.bool).scatter_(-1, order, before < top_p).logical_or_(kinds.whole)
    rescale = kinds.totals(within * kept).clamp_min_(tiny).log_()
    return torch.where(kept, logits - rescale, BLOCKED)


class _Performance:
    """What is sounding while tokens stream out: keeps the output valid, canonical music.

    Masks what `encode` never writes: a note-off without its note, a note struck while it sounds, a
    note ending at the tick it started, a velocity event that repeats the current one or is not
    followed by a note. So at one instant only finitely many tokens fit, and time has to move on.

    Notes that sound on from before a gap (`hand_over`) are not the stream's to end: each one's note-off
    is forced at the tick it is due, if that is within the gap, and is never sampled. `forbidden` holds the
    note-ons of the pitches outside a key lock or a range, never sampled either.
    """

    def __init__(self, vocab_size: int, forbidden: np.ndarray | None = None) -> None:
        self.forbidden = forbidden
        self.mask = np.zeros(vocab_size, dtype=np.float32)  # added to the logits: 0 allowed, -inf not
        self.mask[NUM_EVENTS:] = BLOCKED  # no control tokens in the music
        self.mask[NOTE_OFF_OFFSET:NOTE_OFF_OFFSET + NUM_PITCHES] = BLOCKED  # nothing sounds yet
        self.sounding: dict[int, int] = {}  # pitch -> tick it started
        self.held: dict[int, int | None] = {}  # pitch sounding from before -> tick its note-off is due
        self.tick = 0
        self.velocity_bin: int | None = None

    def update(self, token: int) -> None:
        """Follows one token."""
        mask = self.mask
        if is_time_shift(token):
            self.tick += shift_ticks(token)
            if self.sounding:  # every sounding note may end now
                mask[[NOTE_OFF_OFFSET + pitch for pitch in self.sounding]] = 0.0
        elif is_velocity(token):
            self.velocity_bin = token - VELOCITY_OFFSET
            mask[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = BLOCKED  # a note comes next
        elif is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
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
        self.tick = 0
        self.sounding = dict.fromkeys(self.sounding, 0)
        if self.sounding:
            self.mask[[NOTE_OFF_OFFSET + pitch for pitch in self.sounding]] = 0.0

    def hand_over(self, due: dict[int, int | None]) -> None:
        """Time from here on is a gap's: the notes sounding from before it are held, and so are those in
        `due` (pitch -> tick of their note-off in the gap, None past it): their note-offs are forced when
        due and never sampled."""
        self.tick = 0
        self.held = {**dict.fromkeys(self.sounding), **due}
        self.sounding = {}
        pitches = list(self.held)
        if pitches:
            self.mask[[NOTE_OFF_OFFSET + pitch for pitch in pitches]] = BLOCKED
            self.mask[[NOTE_ON_OFFSET + pitch for pitch in pitches]] = BLOCKED

    def copy(self) -> _Performance:
        """An independent copy (each beam of a beam search has its own)."""
        twin = _Performance.__new__(_Performance)
        twin.forbidden = self.forbidden  # never changed: shared
        twin.mask, twin.sounding, twin.tick = self.mask.copy(), dict(self.sounding), self.tick
        twin.held, twin.velocity_bin = dict(self.held), self.velocity_bin
        return twin

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
        if self.forbidden is not None:
            mask[self.forbidden] = BLOCKED
        spare = None if tokens_left is None else tokens_left - len(self.sounding)  # beyond the closing offs
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


def generate(model: MusicTransformer, primer: Sequence[int] | Sequence[Note] = (), *,
             max_tokens: int | None = None, seconds: float | None = None, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             window: int | None = None, cancel: Cancel = None,
             max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, beam_size: int = 1,
             length_penalty: float = 0.6, cpu_threads: int | None = 1, style: str = "any",
             allowed_pitches: Iterable[int] | None = None) -> Iterator[int]:
    """Continues `primer` (tokens, or notes to encode), yielding each new token as it is sampled.

    Stops after `max_tokens` tokens, after `seconds` of music, or when `cancel` (a callable or an
    Event, checked before every token) says so; with none of them it goes on until the caller stops
    iterating. The music stays valid: no note-off without its note, no special tokens, no note held
    longer than `max_note_seconds`, and when the stream stops every sounding note is closed (those
    note-offs are part of the stream and count towards `max_tokens`).

    `style` names the idiom to continue in (`events.STYLES`; "any" lets the model tell from the
    primer); a model made before styles ignores it. `allowed_pitches` (MIDI pitches, e.g. a key lock and a
    range from `keys.allowed_pitches`; None: all) is every pitch a new note may have: the note-ons of the
    others are masked, so what is written comes from the model's distribution restricted to them.
    `window` is how many positions each new token
    attends to (default: the model's training length); past it the oldest fall out of the cache, which
    is what lets the model run on indefinitely. temperature 0 picks the most likely token. The same
    seed repeats a run exactly on one device (the first variation of `generate_variations` with that seed
    draws the same random numbers, so it usually repeats it too, but not always: see there).

    beam_size > 1 searches for the most likely continuation instead of sampling (temperature, top-k,
    top-p and seed do not apply), ranking finished beams by log-probability / ((5 + n) / 6) ** α with
    α = `length_penalty` (Wu et al., 2016). It streams the tokens every beam agrees on.

    On the CPU, decoding runs on `cpu_threads` torch threads (None: torch's setting) and puts the
    setting back when the stream ends. One is right for single-token steps: with more, torch's
    threads wait on each other, and on a busy 2-core machine decoding ran 10 to 70 times slower.

    The arguments are checked when it is called (ValueError), before the first token is asked for.
    """
    context, performance = _continuing(model, primer, allowed_pitches)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a whole number of 1 or more, not {beam_size!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a number, not {length_penalty!r}")
    sampling = _Sampling.checked(model, temperature, top_k, top_p, [seed], window, max_tokens, seconds,
                                 max_note_seconds, cpu_threads, style)
    context = events.header(style, model.config.vocab_size) + context
    return (token for _, token in _stream(model, context, [performance], sampling, cancel, beam_size, length_penalty))


def generate_variations(model: MusicTransformer, primer: Sequence[int] | Sequence[Note] = (), *, seeds: Sequence[int],
                        max_tokens: int | None = None, seconds: float | None = None, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None, window: int | None = None,
                        cancel: Cancel = None, max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS,
                        cpu_threads: int | None = 1, style: str = "any",
                        allowed_pitches: Iterable[int] | None = None) -> Iterator[tuple[int, int]]:
    """Writes one continuation of `primer` per seed, all at once, yielding (variation, token) as each is sampled.

    The variations are the rows of one batch: each step writes one token of every variation still going,
    in order (variation 0 first), and the model reads the primer's keys once for all of them, so eight
    variations take far less than eight times one. Variation 0 can be played while it is written. Each
    stops on its own (`max_tokens`, `seconds`), closing its notes; `cancel` stops them all, each closing
    its notes. The other arguments are `generate`'s, checked when it is called.

    Variation i draws from the random stream of `seeds[i]`, the same draws as `generate(..., seed=seeds[i])`,
    and its logits equal that stream's to float rounding (the batch sums in another order). So it usually
    writes the same tokens, but a near tie can tip the other way and the two then part; what always holds
    is that the same seeds repeat the same variations exactly on one device.
    """
    context, performance = _continuing(model, primer, allowed_pitches)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not 1 <= len(seeds) <= MAX_VARIATIONS:
        raise ValueError(f"seeds must be a list of 1 to {MAX_VARIATIONS} seeds, one per variation, not {seeds!r}")
    sampling = _Sampling.checked(model, temperature, top_k, top_p, list(seeds), window, max_tokens, seconds,
                                 max_note_seconds, cpu_threads, style)
    context = events.header(style, model.config.vocab_size) + context
    return _stream(model, context, [performance.copy() for _ in seeds], sampling, cancel)


def _forbidden_note_ons(allowed_pitches: Iterable[int] | None) -> np.ndarray | None:
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


def _continuing(model: MusicTransformer, primer: Sequence[int] | Sequence[Note],
                allowed_pitches: Iterable[int] | None = None) -> tuple[list[int], _Performance]:
    """The primer's tokens (from tokens or notes, checked) and what sounds at its end."""
    if primer and isinstance(primer[0], Note):
        primer = encode(primer)  # type: ignore[arg-type]
    primer = [int(t) for t in primer]
    config = model.config
    for token in primer:
        if not 0 <= token < config.vocab_size:
            raise ValueError(f"primer token {token} is outside the vocabulary of {config.vocab_size}")
    performance = _Performance(config.vocab_size, _forbidden_note_ons(allowed_pitches))
    for token in primer:
        performance.update(token)
    performance.start_continuation()
    return primer, performance


def infill(model: MusicTransformer, before: Sequence[Note], after: Sequence[Note], start: float, end: float, *,
           style: str = "any", temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, cancel: Cancel = None, max_tokens: int | None = None,
           max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, window: int | None = None,
           cpu_threads: int | None = 1, allowed_pitches: Iterable[int] | None = None) -> Iterator[int]:
    """Fills the gap [`start`, `end`) seconds between `before` and `after`, yielding each token as it is sampled.

    The tokens run from `start` (decode them with `continuation_notes(tokens, start)`): the new notes all
    begin in the gap and end by `end`, and the stream stops exactly there. Notes of `before` that sound
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
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"the gap's {name} must be a time of 0 seconds or more, not {value!r}")
    first, last = events.to_ticks(start), events.to_ticks(end)
    if last <= first:
        raise ValueError(f"the gap must end after it starts (from {start:.3f} s to {end:.3f} s)")
    sampling = _Sampling.checked(model, temperature, top_k, top_p, [seed], window, max_tokens,
                                 (last - first) / 100, max_note_seconds, cpu_threads, style)
    forbidden = _forbidden_note_ons(allowed_pitches)
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
    performance = _Performance(config.vocab_size, forbidden)
    for token in prefix:
        performance.update(token)
    performance.hand_over(due)
    context = events.fim_context(style, last - first, suffix, prefix)
    return (token for _, token in _stream(model, context, [performance], sampling, cancel))


@dataclass
class _Sampling:
    """The checked settings of one stream (`generate`, `infill`)."""

    temperature: float
    top_k: int | None
    top_p: float | None
    seeds: list[int]  # one per row
    window: int
    max_tokens: int | None
    max_ticks: int | None
    hold_ticks: int | None
    cpu_threads: int | None

    @classmethod
    def checked(cls, model: MusicTransformer, temperature: float, top_k: int | None, top_p: float | None,
                seeds: list[int | None], window: int | None, max_tokens: int | None, seconds: float | None,
                max_note_seconds: float | None, cpu_threads: int | None, style: str) -> _Sampling:
        """Refuses, with a ValueError a musician can read, every setting a stream could not run with."""
        def number(name: str, value, low: float, *, integer: bool = False, above: bool = False) -> None:
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
                    or value < low or (above and value == low):
                bound = f"more than {low:g}" if above else f"{low:g} or more"
                raise ValueError(f"{name} must be {'a whole number' if integer else 'a number'} of {bound}, "
                                 f"not {value!r}")

        number("temperature", temperature, 0.0)
        for name, value, low, integer, above in (("top_k", top_k, 0, True, False), ("top_p", top_p, 0.0, False, True),
                                                 ("window", window, 1, True, False),
                                                 ("max_tokens", max_tokens, 0, True, False),
                                                 ("seconds", seconds, 0.0, False, False),
                                                 ("max_note_seconds", max_note_seconds, 0.0, False, True),
                                                 ("cpu_threads", cpu_threads, 0, True, False)):
            if value is not None:
                number(name, value, low, integer=integer, above=above)
        if top_p is not None and top_p > 1.0:
            raise ValueError(f"top_p must be at most 1, not {top_p!r}")
        if window is not None and window > limits.MAX_LENGTH:
            raise ValueError(f"window must be at most {limits.MAX_LENGTH:,} positions, not {window!r}")
        for seed in seeds:
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
                raise ValueError(f"seed must be a whole number of 0 or more, not {seed!r}")
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
        if seconds is not None and seconds > MAX_SECONDS:
            raise ValueError(f"at most {MAX_SECONDS // 60:.0f} minutes of music at once, not {seconds:g} s")
        seeds = [seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1 for seed in seeds]
        return cls(temperature=temperature, top_k=top_k, top_p=top_p, seeds=seeds,
                   window=window or model.config.train_length, max_tokens=max_tokens,
                   max_ticks=None if seconds is None else events.to_ticks(seconds),
                   hold_ticks=None if max_note_seconds is None else max(1, events.to_ticks(max_note_seconds)),
                   cpu_threads=cpu_threads)

    def left(self, state: _Performance, generated: int) -> tuple[int | None, int | None]:
        """(tokens, ticks) the stream may still write, None for no limit."""
        return (None if self.max_tokens is None else self.max_tokens - generated,
                None if self.max_ticks is None else self.max_ticks - state.tick)


def _stream(model: MusicTransformer, context: list[int], performances: list[_Performance], sampling: _Sampling,
            cancel: Cancel, beam_size: int = 1, length_penalty: float = 0.6) -> Iterator[tuple[int, int]]:
    """Reads `context` into the cache, then writes a token for each row (each performance) at every step,
    under that row's rules; yields (row, token)."""
    device = model.device
    window = sampling.window
    was_training = model.training
    model.eval()
    threads_before = torch.get_num_threads()
    if device.type == "cpu" and sampling.cpu_threads:
        torch.set_num_threads(sampling.cpu_threads)
    try:
        with torch.inference_mode():
            cache = model.new_cache(window)
            with mixed_precision(device):
                for start in range(0, len(context), window):  # the context, a window at a time
                    logits = model(torch.tensor([context[start:start + window]], device=device), cache=cache)
            logits = logits[:, -1].float()
            if beam_size > 1:
                steps = _Steps(model, cache, beam_size, None)
                yield from ((0, token) for token in _beam_search(steps, logits, performances[0], beam_size,
                                                                 length_penalty, sampling, cancel))
                return
            sampler = _Sampler(sampling, len(performances), model.config.vocab_size, device)
            yield from _write(_Steps(model, cache, len(performances), sampler), logits, performances, sampling,
                              cancel)
    finally:
        model.train(was_training)
        torch.set_num_threads(threads_before)


def _write(steps: _Steps, logits: torch.Tensor, performances: list[_Performance], sampling: _Sampling,
           cancel: Cancel) -> Iterator[tuple[int, int]]:
    """Samples a token for every row still writing at each step; a row that is done (or cancelled) closes its
    notes and stops."""
    rows = len(performances)
    masks = steps.sampler.masks
    written = [0] * rows
    going = list(range(rows))
    fed: list[int] | None = None  # the tokens the next step feeds, one per row
    while True:
        forced: dict[int, tuple[int | None, int]] = {}
        cancelled = _is_cancelled(cancel)
        for row in list(going):
            performance = performances[row]
            tokens_left, ticks_left = sampling.left(performance, written[row])
            if cancelled or performance.finished(tokens_left, ticks_left):
                yield from ((row, token) for token in performance.closing()[:tokens_left])
                going.remove(row)
            else:
                forced[row] = performance.rules(tokens_left, ticks_left, sampling.hold_ticks, masks[row])
        if not going:
            return
        drawn = steps.first(logits) if fed is None else steps.next(fed)
        fed = fed or [0] * rows
        for row in going:
            token, shift_limit = forced[row]
            if token is None:
                token = drawn[row]
                if is_time_shift(token):  # land exactly on the end, or on a held note's limit
                    token = time_shift(min(shift_ticks(token), shift_limit))
            performances[row].update(token)
            written[row] += 1
            fed[row] = token
            yield row, token


class _Sampler:
    """Each row's next token from its logits: the rules' mask, temperature, top-k, top-p, and a draw from the
    row's own random stream.

    Gumbel-max: argmax(scores + g), with g ~ Gumbel(0, 1) drawn independently per token, is a draw from
    softmax(scores), exactly. So one argmax draws for every row at once, each row's noise coming from its
    own generator (seeded with its seed, on the model's device, NOISE_BLOCK steps at a time). `draw` only
    runs tensor operations on the device, so a CUDA graph can hold it; `prepare` moves the step's masks
    (written by the rules into `masks`, on the host) and noise into place before it.
    """

    def __init__(self, sampling: _Sampling, rows: int, vocab_size: int, device: torch.device) -> None:
        self.temperature, self.top_k, self.top_p = sampling.temperature, sampling.top_k, sampling.top_p
        self._host = torch.zeros(rows, vocab_size, pin_memory=device.type == "cuda")
        self.masks = self._host.numpy()
        self.mask = self._host if device.type == "cpu" else torch.zeros(rows, vocab_size, device=device)
        self.noise = torch.zeros(rows, vocab_size, device=device)
        self._block = torch.empty(rows, NOISE_BLOCK, vocab_size, device=device)
        self._generators = [torch.Generator(device=device).manual_seed(seed) for seed in sampling.seeds]
        self._drawn = 0

    def prepare(self) -> None:
        """Puts this step's masks and noise where `draw` reads them."""
        if self.mask is not self._host:
            self.mask.copy_(self._host, non_blocking=True)
        if self.temperature == 0:
            return
        step = self._drawn % NOISE_BLOCK
        if step == 0:
            for block, generator in zip(self._block, self._generators, strict=True):
                torch.rand(block.shape, generator=generator, device=block.device, out=block)
            self._block.log_().neg_().log_().neg_()  # -log(-log(u)): Gumbel(0, 1)
        self.noise.copy_(self._block[:, step])
        self._drawn += 1

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token of each row (rows,), from logits (rows or 1, vocab)."""
        if self.temperature == 0:
            return torch.argmax(logits + self.mask, dim=-1)
        scores = filter_logits(torch.add(self.mask, logits, alpha=1 / self.temperature), self.top_k, self.top_p)
        return torch.argmax(scores + self.noise, dim=-1)


class _Steps:
    """Feeds one token per row and returns what comes next: through `decoder.Decoder` (on a GPU, one CUDA
    graph replays the step and the draw), or through the model's forward pass when hooks watch it or its
    class changes it (the hooks then see every step, under the same mixed precision as the context)."""

    def __init__(self, model: MusicTransformer, cache: KVCache, rows: int, sampler: _Sampler | None) -> None:
        self.rows, self.device, self.sampler = rows, model.device, sampler
        self.captured: CapturedStep | None = None
        on_gpu = self.device.type == "cuda"
        self._host = torch.zeros(rows, dtype=torch.long, pin_memory=on_gpu)  # the tokens fed, written here
        self._fed = torch.zeros(rows, dtype=torch.long, device=self.device) if on_gpu else self._host
        if fast_path(model):
            decoder = Decoder(model, cache, rows)
            self.logits, self._reorder = decoder.step, decoder.reorder
            if decoder.static and decoder.device.type == "cuda" and sampler is not None:
                try:
                    self.captured = CapturedStep(decoder, sampler.draw)
                    self._fed = self.captured.tokens
                except Exception as error:  # noqa: BLE001  (the same step runs uncaptured)
                    warnings.warn(f"decoding without a CUDA graph ({type(error).__name__}: {error})", stacklevel=2)
        else:
            if rows > 1:
                cache.reorder(torch.zeros(rows, dtype=torch.long, device=self.device))  # the context in every row

            def forward(tokens: torch.Tensor) -> torch.Tensor:
                with mixed_precision(self.device):
                    return model(tokens[:, None], cache=cache)[:, -1].float()

            self.logits, self._reorder = forward, cache.reorder

    def first(self, logits: torch.Tensor) -> list[int]:
        """Each row's first token, drawn from the logits the context ended with (1, vocab)."""
        self.sampler.prepare()
        return self.sampler.draw(logits).tolist()

    def next(self, tokens: list[int]) -> list[int]:
        """Feeds `tokens` (one per row) and draws each row's next one."""
        self._host.numpy()[:] = tokens
        if self._fed is not self._host:
            self._fed.copy_(self._host, non_blocking=True)  # read back with the drawn tokens, before the next write
        self.sampler.prepare()
        if self.captured is not None:
            return self.captured(self._fed).tolist()
        return self.sampler.draw(self.logits(self._fed)).tolist()

    def reorder(self, rows: list[int]) -> None:
        """Keeps rows `rows` (one per row of the batch, repeats allowed: beam search)."""
        self._reorder(torch.tensor(rows, device=self.device))


def _beam_search(steps: _Steps, logits: torch.Tensor, performance: _Performance, beam_size: int,
                 length_penalty: float, sampling: _Sampling, cancel: Cancel) -> Iterator[int]:
    """Beam search with one batch row per beam; yields the prefix all beams share."""
    device = logits.device
    left, hold_ticks = sampling.left, sampling.hold_ticks
    beams = [(0.0, [], performance)]  # (log-probability, tokens, what sounds)
    finished: list[tuple[float, list[int], _Performance]] = []  # (length-normalised score, ...)
    committed = 0
    mask = np.zeros(logits.shape[-1], dtype=np.float32)
    if performance.finished(*left(performance, 0)):  # nothing to write (no seconds or no tokens): close
        yield from performance.closing()[:sampling.max_tokens]
        return

    def normalised(score: float, tokens: list[int]) -> float:
        return score / ((5 + len(tokens)) / 6) ** length_penalty

    while beams and not _is_cancelled(cancel):
        log_probabilities = torch.log_softmax(logits.float(), dim=-1)
        candidates = []
        for row, (score, tokens, state) in enumerate(beams):
            forced, shift_limit = state.rules(*left(state, len(tokens)), hold_ticks, mask)
            if forced is not None:
                candidates.append((score + float(log_probabilities[row, forced]), row, forced))
                continue
            scores = log_probabilities[row] + torch.from_numpy(mask).to(device)
            scores[time_shift(shift_limit) + 1:time_shift(events.NUM_TIME_SHIFTS) + 1] = float("-inf")
            best = torch.topk(scores, beam_size)
            candidates += [(score + float(value), row, int(token))
                           for value, token in zip(best.values, best.indices, strict=True) if value > float("-inf")]
        candidates.sort(key=lambda candidate: candidate[0], reverse=True)
        alive, rows = [], []
        for score, row, token in candidates[:beam_size]:
            state = beams[row][2].copy()
            state.update(token)
            tokens = beams[row][1] + [token]
            if state.finished(*left(state, len(tokens))):
                finished.append((normalised(score, tokens), tokens, state))
            else:
                alive.append((score, tokens, state))
                rows.append(row)
        beams = alive if len(finished) < beam_size else []
        hypotheses = [tokens for _, tokens, _ in beams] + [tokens for _, tokens, _ in finished]
        while all(len(h) > committed and h[committed] == hypotheses[0][committed] for h in hypotheses):
            yield hypotheses[0][committed]
            committed += 1
        if beams:
            spare = steps.rows - len(beams)  # rows past the beams repeat the last one
            steps.reorder(rows + rows[-1:] * spare)
            fed = [tokens[-1] for _, tokens, _ in beams]
            logits = steps.logits(torch.tensor(fed + fed[-1:] * spare, device=device))
    ranked = finished + [(normalised(score, tokens), tokens, state) for score, tokens, state in beams]
    if not ranked:
        return
    _, tokens, state = max(ranked, key=lambda hypothesis: hypothesis[0])
    yield from tokens[committed:]
    budget = None if sampling.max_tokens is None else sampling.max_tokens - len(tokens)
    yield from state.closing()[:budget]


def continuation_notes(tokens: Sequence[int], start: float = 0.0) -> list[Note]:
    """Notes of generated tokens, placed so the continuation begins at `start` seconds."""
    return events.decode(tokens, start=start)


__all__ = ["generate", "generate_variations", "infill", "primer_tokens", "filter_logits", "continuation_notes",
           "SECONDS_PER_TICK"]
