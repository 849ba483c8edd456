"""Streaming generation with the key/value cache: sampling, windowed decoding past the training length.

`generate` yields one token at a time as soon as it is sampled, so a caller can decode and play the
music while it is being written. Each step feeds only the newest token through the model; the cache
holds the keys and values of the last `window` positions, so the cost per token and the memory stay
flat however long the piece grows, far past the length the model was trained on.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Iterator, Sequence

import torch

from . import events
from .events import (NOTE_OFF_OFFSET, NOTE_ON_OFFSET, NUM_PITCHES, NUM_VELOCITY_BINS, SECONDS_PER_TICK,
                     SPECIAL_TOKENS, START, VELOCITY_OFFSET, Note, encode, is_note_off, is_note_on, is_time_shift,
                     is_velocity, shift_ticks, time_shift)
from .model import MusicTransformer, mixed_precision

Cancel = Callable[[], bool] | threading.Event | None

DEFAULT_MAX_NOTE_SECONDS = 8.0


def primer_tokens(notes: Sequence[Note], until: float | None = None) -> list[int]:
    """The tokens of a motif, followed by the silence up to `until` seconds (e.g. the end of its bar)."""
    tokens = encode(notes)
    if until is not None:
        rest = events.to_ticks(until) - sum(shift_ticks(t) for t in tokens)
        while rest > 0:
            step = min(rest, events.NUM_TIME_SHIFTS)
            tokens.append(time_shift(step))
            rest -= step
    return tokens


def _is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Sets to -inf every logit outside the top k and outside the smallest set with probability >= top_p."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        threshold = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p; the most likely one always stays.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class _Performance:
    """What is sounding while tokens stream out: keeps the output valid, canonical music.

    Masks what `encode` never writes: a note-off without its note, a note struck while it sounds, a
    note ending at the tick it started, a velocity event that repeats the current one or is not
    followed by a note. So at one instant only finitely many tokens fit, and time has to move on.
    """

    def __init__(self, vocab_size: int, device: torch.device) -> None:
        self.allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
        self.allowed[list(SPECIAL_TOKENS)] = False
        self.allowed[NOTE_OFF_OFFSET:NOTE_OFF_OFFSET + NUM_PITCHES] = False  # nothing sounds yet
        self.sounding: dict[int, int] = {}  # pitch -> tick it started
        self.tick = 0
        self.velocity_bin: int | None = None

    def update(self, token: int) -> None:
        """Follows one token."""
        if is_time_shift(token):
            self.tick += shift_ticks(token)
            if self.sounding:  # every sounding note may end now
                self.allowed[[NOTE_OFF_OFFSET + pitch for pitch in self.sounding]] = True
        elif is_velocity(token):
            self.velocity_bin = token - VELOCITY_OFFSET
            self.allowed[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = False  # a note comes next
        elif is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
            self.sounding[pitch] = self.tick
            self.allowed[token] = False
            self.allowed[NOTE_OFF_OFFSET + pitch] = False  # not before time moves on
            self.allowed[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = True
            if self.velocity_bin is not None:
                self.allowed[VELOCITY_OFFSET + self.velocity_bin] = False
        elif is_note_off(token):
            pitch = token - NOTE_OFF_OFFSET
            if self.sounding.pop(pitch, None) is not None:
                self.allowed[token] = False
                self.allowed[NOTE_ON_OFFSET + pitch] = True

    def start_continuation(self) -> None:
        """Time from here on is the continuation's; notes still sounding from the primer may end."""
        self.tick = 0
        self.sounding = dict.fromkeys(self.sounding, 0)
        if self.sounding:
            self.allowed[[NOTE_OFF_OFFSET + pitch for pitch in self.sounding]] = True

    def copy(self) -> "_Performance":
        """An independent copy (each beam of a beam search has its own)."""
        twin = _Performance.__new__(_Performance)
        twin.allowed, twin.sounding, twin.tick = self.allowed.clone(), dict(self.sounding), self.tick
        twin.velocity_bin = self.velocity_bin
        return twin

    def rules(self, tokens_left: int | None, ticks_left: int | None,
              hold_ticks: int | None) -> tuple[int | None, torch.Tensor | None, int]:
        """What the next token may be: (a forced note-off for a note held too long, or None; the allowed
        tokens; how many ticks a time shift may advance)."""
        stuck = None if hold_ticks is None else self.oldest_note_older_than(hold_ticks)
        if stuck is not None:
            return NOTE_OFF_OFFSET + stuck, None, 0
        allowed = self.allowed
        spare = None if tokens_left is None else tokens_left - len(self.sounding)  # beyond the closing offs
        if spare is not None and spare < 3:
            allowed = allowed.clone()  # no room for a new note: its velocity, itself, a shift, its note-off
            allowed[NOTE_ON_OFFSET:NOTE_ON_OFFSET + NUM_PITCHES] = False
            allowed[VELOCITY_OFFSET:VELOCITY_OFFSET + NUM_VELOCITY_BINS] = False
            if spare == 1 and self.tick in self.sounding.values():
                allowed[:] = False  # the last spare token moves time on, so no note ends where it began
                allowed[events.TIME_SHIFT_OFFSET:VELOCITY_OFFSET] = True
        limit = min(self.ticks_until_limit(hold_ticks), events.NUM_TIME_SHIFTS)
        if ticks_left is not None:
            limit = min(limit, ticks_left)
        return None, allowed, limit

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
        pitch, start = min(self.sounding.items(), key=lambda item: item[1])
        return pitch if self.tick - start >= ticks else None


def generate(model: MusicTransformer, primer: Sequence[int] | Sequence[Note] = (), *,
             max_tokens: int | None = None, seconds: float | None = None, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             window: int | None = None, cancel: Cancel = None,
             max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, beam_size: int = 1,
             length_penalty: float = 0.6, cpu_threads: int | None = 1) -> Iterator[int]:
    """Continues `primer` (tokens, or notes to encode), yielding each new token as it is sampled.

    Stops after `max_tokens` tokens, after `seconds` of music, or when `cancel` (a callable or an
    Event, checked before every token) says so; with none of them it goes on until the caller stops
    iterating. The music stays valid: no note-off without its note, no special tokens, no note held
    longer than `max_note_seconds`, and when the stream stops every sounding note is closed (those
    note-offs are part of the stream and count towards `max_tokens`).

    `window` is how many positions each new token attends to (default: the model's training length);
    past it the oldest fall out of the cache, which is what lets the model run on indefinitely.
    temperature 0 picks the most likely token. The same seed repeats a run exactly on one device.

    beam_size > 1 searches for the most likely continuation instead of sampling (temperature, top-k,
    top-p and seed do not apply), ranking finished beams by log-probability / ((5 + n) / 6) ** α with
    α = `length_penalty` (Wu et al., 2016). It streams the tokens every beam agrees on.

    On the CPU, decoding runs on `cpu_threads` torch threads (None: torch's setting) and puts the
    setting back when the stream ends. One is right for single-token steps: with more, torch's
    threads wait on each other, and on a busy 2-core machine decoding ran 10 to 70 times slower.
    """
    if primer and isinstance(primer[0], Note):
        primer = encode(primer)  # type: ignore[arg-type]
    primer = [int(t) for t in primer]
    config = model.config
    for token in primer:
        if not 0 <= token < config.vocab_size:
            raise ValueError(f"primer token {token} is outside the vocabulary of {config.vocab_size}")
    if temperature < 0:
        raise ValueError("temperature must be 0 or more")
    if beam_size < 1:
        raise ValueError("beam_size must be 1 or more")
    window = window or config.train_length
    device = model.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    max_ticks = None if seconds is None else events.to_ticks(seconds)
    hold_ticks = None if max_note_seconds is None else max(1, events.to_ticks(max_note_seconds))

    performance = _Performance(config.vocab_size, device)
    for token in primer:
        performance.update(token)
    performance.start_continuation()

    def left(state: _Performance, generated: int) -> tuple[int | None, int | None]:
        return (None if max_tokens is None else max_tokens - generated,
                None if max_ticks is None else max_ticks - state.tick)

    was_training = model.training
    model.eval()
    threads_before = torch.get_num_threads()
    if device.type == "cpu" and cpu_threads:
        torch.set_num_threads(cpu_threads)
    try:
        with torch.inference_mode(), mixed_precision(device):
            cache = model.new_cache(window)
            context = [START] + primer
            for start in range(0, len(context), window):  # the primer, a window at a time
                logits = model(torch.tensor([context[start:start + window]], device=device), cache=cache)
            if beam_size > 1:
                yield from _beam_search(model, cache, logits[:, -1], performance, beam_size, length_penalty,
                                        left, hold_ticks, cancel, max_tokens)
                return
            logits = logits[0, -1].float()
            generated = 0
            while True:
                tokens_left, ticks_left = left(performance, generated)
                if _is_cancelled(cancel) or performance.finished(tokens_left, ticks_left):
                    yield from performance.closing()[:tokens_left]
                    return
                token, allowed, shift_limit = performance.rules(tokens_left, ticks_left, hold_ticks)
                if token is None:
                    token = _sample(logits, allowed, temperature, top_k, top_p, generator)
                    if is_time_shift(token):  # land exactly on the end, or on a held note's limit
                        token = time_shift(min(shift_ticks(token), shift_limit))
                performance.update(token)
                generated += 1
                yield token
                logits = model(torch.tensor([[token]], device=device), cache=cache)[0, -1].float()
    finally:
        model.train(was_training)
        torch.set_num_threads(threads_before)


def _beam_search(model: MusicTransformer, cache, logits: torch.Tensor, performance: _Performance,
                 beam_size: int, length_penalty: float, left, hold_ticks: int | None, cancel: Cancel,
                 max_tokens: int | None) -> Iterator[int]:
    """Beam search on the shared cache (one batch row per beam); yields the prefix all beams share."""
    device = logits.device
    beams = [(0.0, [], performance)]  # (log-probability, tokens, what sounds)
    finished: list[tuple[float, list[int], _Performance]] = []  # (length-normalised score, ...)
    committed = 0

    def normalised(score: float, tokens: list[int]) -> float:
        return score / ((5 + len(tokens)) / 6) ** length_penalty

    while beams and not _is_cancelled(cancel):
        log_probabilities = torch.log_softmax(logits.float(), dim=-1)
        candidates = []
        for row, (score, tokens, state) in enumerate(beams):
            forced, allowed, shift_limit = state.rules(*left(state, len(tokens)), hold_ticks)
            if forced is not None:
                candidates.append((score + float(log_probabilities[row, forced]), row, forced))
                continue
            scores = log_probabilities[row].masked_fill(~allowed, float("-inf"))
            scores[time_shift(shift_limit) + 1:time_shift(events.NUM_TIME_SHIFTS) + 1] = float("-inf")
            best = torch.topk(scores, beam_size)
            candidates += [(score + float(value), row, int(token))
                           for value, token in zip(best.values, best.indices) if value > float("-inf")]
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
            cache.reorder(torch.tensor(rows, device=device))
            logits = model(torch.tensor([[tokens[-1]] for _, tokens, _ in beams], device=device), cache=cache)[:, -1]
    ranked = finished + [(normalised(score, tokens), tokens, state) for score, tokens, state in beams]
    if not ranked:
        return
    _, tokens, state = max(ranked, key=lambda hypothesis: hypothesis[0])
    yield from tokens[committed:]
    budget = None if max_tokens is None else max_tokens - len(tokens)
    yield from state.closing()[:budget]


def _sample(logits: torch.Tensor, allowed: torch.Tensor, temperature: float, top_k: int | None,
            top_p: float | None, generator: torch.Generator) -> int:
    logits = logits.masked_fill(~allowed, float("-inf"))
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = filter_logits(logits / temperature, top_k, top_p)
    probabilities = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))


def continuation_notes(tokens: Sequence[int], start: float = 0.0) -> list[Note]:
    """Notes of generated tokens, placed so the continuation begins at `start` seconds."""
    return events.decode(tokens, start=start)


__all__ = ["generate", "primer_tokens", "filter_logits", "continuation_notes", "SECONDS_PER_TICK"]
