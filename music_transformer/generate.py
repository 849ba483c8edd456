"""Streaming generation with the key/value cache: sampling, windowed decoding past the training length.

`generate` yields one token at a time as soon as it is sampled, so a caller can decode and play the
music while it is being written. Each step feeds only the newest token through the model; the cache
holds the keys and values of the last `window` positions, so the cost per token and the memory stay
flat however long the piece grows, far past the length the model was trained on.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Callable, Iterator, Sequence

import torch

from . import events
from .events import (NOTE_OFF_OFFSET, NOTE_ON_OFFSET, NUM_PITCHES, SECONDS_PER_TICK, SPECIAL_TOKENS, START,
                     Note, encode, is_note_off, is_note_on, is_time_shift, shift_ticks, time_shift)
from .model import MusicTransformer

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


def _autocast(device: torch.device):
    # bfloat16 halves the memory traffic of decoding on GPUs that support it; the CPU stays in float32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    """What is sounding while tokens stream out: keeps the output valid music."""

    def __init__(self, vocab_size: int, device: torch.device) -> None:
        self.allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
        self.allowed[list(SPECIAL_TOKENS)] = False
        self.allowed[NOTE_OFF_OFFSET:NOTE_OFF_OFFSET + NUM_PITCHES] = False  # nothing sounds yet
        self.sounding: dict[int, int] = {}  # pitch -> tick it started
        self.tick = 0

    def update(self, token: int) -> None:
        if is_time_shift(token):
            self.tick += shift_ticks(token)
        elif is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
            self.sounding[pitch] = self.tick
            self.allowed[token] = False
            self.allowed[NOTE_OFF_OFFSET + pitch] = True
        elif is_note_off(token):
            pitch = token - NOTE_OFF_OFFSET
            if self.sounding.pop(pitch, None) is not None:
                self.allowed[token] = False
                self.allowed[NOTE_ON_OFFSET + pitch] = True

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
             max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS) -> Iterator[int]:
    """Continues `primer` (tokens, or notes to encode), yielding each new token as it is sampled.

    Stops after `max_tokens` tokens, after `seconds` of music, or when `cancel` (a callable or an
    Event, checked before every token) says so; with none of them it goes on until the caller stops
    iterating. The music stays valid: no note-off without its note, no special tokens, no note held
    longer than `max_note_seconds`, and when the stream stops every sounding note is closed (those
    note-offs are part of the stream and count towards `max_tokens`).

    `window` is how many positions each new token attends to (default: the model's training length);
    past it the oldest fall out of the cache, which is what lets the model run on indefinitely.
    temperature 0 picks the most likely token. The same seed repeats a run exactly on one device.
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
    window = window or config.train_length
    device = model.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    max_ticks = None if seconds is None else events.to_ticks(seconds)
    hold_ticks = None if max_note_seconds is None else max(1, events.to_ticks(max_note_seconds))

    performance = _Performance(config.vocab_size, device)
    for token in primer:
        performance.update(token)
    performance.tick = 0  # time from here on is the continuation's
    performance.sounding = dict.fromkeys(performance.sounding, 0)
    generated = 0

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(device):
            cache = model.new_cache(window)
            context = [START] + primer
            for start in range(0, len(context), window):  # the primer, a window at a time
                logits = model(torch.tensor([context[start:start + window]], device=device), cache=cache)
            logits = logits[0, -1].float()
            while True:
                closing = sorted(performance.sounding, key=performance.sounding.get)
                done = (_is_cancelled(cancel)
                        or (max_ticks is not None and performance.tick >= max_ticks)
                        or (max_tokens is not None and generated + len(closing) >= max_tokens))
                if done:
                    for pitch in closing:  # close every sounding note, within the token budget
                        if max_tokens is not None and generated >= max_tokens:
                            break
                        generated += 1
                        yield NOTE_OFF_OFFSET + pitch
                    return
                stuck = None if hold_ticks is None else performance.oldest_note_older_than(hold_ticks)
                if stuck is not None:
                    token = NOTE_OFF_OFFSET + stuck
                else:
                    allowed = performance.allowed
                    if max_tokens is not None and max_tokens - generated - len(closing) < 2:
                        allowed = allowed.clone()  # no room left for a new note and its note-off
                        allowed[NOTE_ON_OFFSET:NOTE_ON_OFFSET + NUM_PITCHES] = False
                    token = _sample(logits, allowed, temperature, top_k, top_p, generator)
                    if is_time_shift(token):  # land exactly on the end, or on a held note's limit
                        limit = performance.ticks_until_limit(hold_ticks)
                        if max_ticks is not None:
                            limit = min(limit, max_ticks - performance.tick)
                        token = time_shift(min(shift_ticks(token), limit))
                performance.update(token)
                generated += 1
                yield token
                logits = model(torch.tensor([[token]], device=device), cache=cache)[0, -1].float()
    finally:
        model.train(was_training)


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
    decoder = events.Decoder(time_offset=start)
    notes: list[Note] = []
    for token in tokens:
        notes.extend(decoder.feed(int(token)))
    notes.extend(decoder.finish())
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


__all__ = ["generate", "primer_tokens", "filter_logits", "continuation_notes", "SECONDS_PER_TICK"]
