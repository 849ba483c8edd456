"""How each step's token is drawn: the checked settings of a stream, the logit filters, the sampler and the
steps that feed the model.

`Sampling.checked` refuses every setting a stream could not run with, against the bounds `limits` names
(temperature, top-k, top-p, window), with a ValueError a musician can read. `filter_logits` applies top-k
over the vocabulary and top-p within each kind of token; `peak_waits` moves a drawn wait to the likeliest
one within a tick or two of it.

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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import events, limits
from .attention import KVCache
from .decoder import CapturedStep, Decoder, fast_path
from .events import (
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    NUM_EVENTS,
    NUM_TIME_SHIFTS,
    STYLES,
    TIME_SHIFT_OFFSET,
    VELOCITY_OFFSET,
)
from .model import MusicTransformer, mixed_precision
from .performance import BLOCKED, Performance

Cancel = Callable[[], bool] | threading.Event | None

DEFAULT_MAX_NOTE_SECONDS = 8.0
MAX_SECONDS = limits.MAX_PIECE_SECONDS  # the longest piece written at once
NOISE_BLOCK = 64  # steps of random noise drawn at once per row


def is_cancelled(cancel: Cancel) -> bool:
    """Whether `cancel` (None, an Event or a callable) says to stop now."""
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


def peak_waits(scores: torch.Tensor, tokens: torch.Tensor, ticks: int) -> torch.Tensor:
    """`tokens` (rows,) drawn from `scores` (rows, vocab: logits, blocked tokens at -inf), each time shift moved
    to the likeliest time shift within `ticks` of it (itself among equals).

    A draw then picks which of the model's waits to make (a beat, half a bar, a long rest) with the
    probability the model gives it and the waits near it, and makes it as the model most expects it: the
    tick or two either side that sampling would add is the jitter that loses a beat. On all the held-out
    POP909 songs (quantised to their beat) continuations kept to their primer's gaps between onsets 0.75 of
    the time with ticks=2 and 0.66 without, at the same pace; on the rolls they sounded fewer notes at once
    (5.6 against 6.7, real 4.4) and held half as many to the cap (bench/README, "The lesson's seams, and the beat").
    A blocked wait is never chosen. Only tensor operations, so a captured CUDA graph can hold it.
    """
    if ticks <= 0 or scores.shape[-1] < TIME_SHIFT_OFFSET + NUM_TIME_SHIFTS:
        return tokens
    waits = scores[:, TIME_SHIFT_OFFSET:TIME_SHIFT_OFFSET + NUM_TIME_SHIFTS]
    around = F.pad(waits, (ticks, ticks), value=BLOCKED).unfold(-1, 2 * ticks + 1, 1)  # (rows, waits, 2t + 1)
    drawn = (tokens - TIME_SHIFT_OFFSET).clamp(0, NUM_TIME_SHIFTS - 1)
    near = around.gather(1, drawn[:, None, None].expand(-1, 1, 2 * ticks + 1))[:, 0]  # (rows, 2t + 1)
    best = torch.where(near[:, ticks] >= near.amax(dim=-1), ticks, near.argmax(dim=-1))
    peak = drawn + best - ticks + TIME_SHIFT_OFFSET
    is_wait = (tokens >= TIME_SHIFT_OFFSET) & (tokens < TIME_SHIFT_OFFSET + NUM_TIME_SHIFTS)
    return torch.where(is_wait, peak, tokens)


@dataclass
class Sampling:
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
    repetition_penalty: float = 0.0  # what each row's `performance.Repetition` charges (0: off)
    wait_peak_ticks: int = 0  # how far a drawn wait moves to the likeliest near it (`peak_waits`; 0: not at all)

    @classmethod
    def checked(cls, model: MusicTransformer, temperature: float, top_k: int | None, top_p: float | None,
                seeds: list[int | None], window: int | None, max_tokens: int | None, seconds: float | None,
                max_note_seconds: float | None, cpu_threads: int | None, style: str,
                repetition_penalty: float = 0.0,
                wait_peak_ticks: int = limits.DEFAULT_WAIT_PEAK_TICKS) -> Sampling:
        """Refuses, with a ValueError a musician can read, every setting a stream could not run with; the
        sampling settings (temperature, top-k, top-p, window, repetition penalty, wait peak) against the bounds
        `limits` names."""
        def number(name: str, value, low: float, high: float | None = None, *, integer: bool = False,
                   above: bool = False) -> None:
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
                    or value < low or (above and value == low) or (high is not None and value > high):
                if high is None:
                    bound = f"of more than {low:g}" if above else f"of {low:g} or more"
                else:
                    bound = f"more than {low:g} and at most {high:,g}" if above else f"from {low:g} to {high:,g}"
                raise ValueError(f"{name} must be {'a whole number' if integer else 'a number'} {bound}, "
                                 f"not {value!r}")

        number("temperature", temperature, limits.MIN_TEMPERATURE, limits.MAX_TEMPERATURE)
        number("repetition_penalty", repetition_penalty, limits.MIN_REPETITION_PENALTY, limits.MAX_REPETITION_PENALTY)
        for name, value, low, high, integer, above in (
                ("top_k", top_k, limits.MIN_TOP_K, limits.MAX_TOP_K, True, False),  # 0: off, as None
                ("top_p", top_p, limits.MIN_TOP_P, limits.MAX_TOP_P, False, True),
                ("window", window, limits.MIN_WINDOW, limits.MAX_WINDOW, True, False),
                ("max_tokens", max_tokens, 0, None, True, False), ("seconds", seconds, 0.0, None, False, False),
                ("max_note_seconds", max_note_seconds, 0.0, None, False, True),
                ("cpu_threads", cpu_threads, 0, None, True, False),
                ("wait_peak_ticks", wait_peak_ticks, limits.MIN_WAIT_PEAK_TICKS, limits.MAX_WAIT_PEAK_TICKS, True,
                 False)):
            if value is not None:
                number(name, value, low, high, integer=integer, above=above)
        for seed in seeds:
            if seed is not None:
                limits.check_seed(seed, "seed")
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
        if style != "any" and events.has_styles(model.config.vocab_size):
            events.style_token(style, model.config.vocab_size)  # a ValueError for a style the model predates
        if seconds is not None and seconds > MAX_SECONDS:
            raise ValueError(f"at most {MAX_SECONDS // 60:.0f} minutes of music at once, not {seconds:g} s")
        seeds = [seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1 for seed in seeds]
        if temperature < limits.MIN_SAMPLING_TEMPERATURE:  # 1 / 1e-47 overflows the scores: the likeliest, as 0
            temperature = 0.0
        return cls(temperature=temperature, top_k=top_k, top_p=top_p, seeds=seeds,
                   window=window or model.default_window, max_tokens=max_tokens,
                   max_ticks=None if seconds is None else events.to_ticks(seconds),
                   hold_ticks=None if max_note_seconds is None else max(1, events.to_ticks(max_note_seconds)),
                   cpu_threads=cpu_threads, repetition_penalty=float(repetition_penalty),
                   wait_peak_ticks=wait_peak_ticks)

    def left(self, state: Performance, generated: int) -> tuple[int | None, int | None]:
        """(tokens, ticks) the stream may still write, None for no limit."""
        return (None if self.max_tokens is None else self.max_tokens - generated,
                None if self.max_ticks is None else self.max_ticks - state.tick)


class Sampler:
    """Each row's next token from its logits: the rules' mask, temperature, top-k, top-p, and a draw from the
    row's own random stream.

    Gumbel-max: argmax(scores + g), with g ~ Gumbel(0, 1) drawn independently per token, is a draw from
    softmax(scores), exactly. So one argmax draws for every row at once, each row's noise coming from its
    own generator (seeded with its seed, on the model's device, NOISE_BLOCK steps at a time). `draw` only
    runs tensor operations on the device, so a CUDA graph can hold it; `prepare` moves the step's masks
    (written by the rules into `masks`, on the host) and noise into place before it.
    """

    def __init__(self, sampling: Sampling, rows: int, vocab_size: int, device: torch.device) -> None:
        self.temperature, self.top_k, self.top_p = sampling.temperature, sampling.top_k, sampling.top_p
        self.wait_peak_ticks = sampling.wait_peak_ticks
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
        return peak_waits(scores, torch.argmax(scores + self.noise, dim=-1), self.wait_peak_ticks)


class Steps:
    """Feeds one token per row and returns what comes next: through `decoder.Decoder` (on a GPU, one CUDA
    graph replays the step and the draw), or through the model's forward pass when hooks watch it or its
    class changes it (the hooks then see every step, under the same mixed precision as the context)."""

    def __init__(self, model: MusicTransformer, cache: KVCache, rows: int, sampler: Sampler | None) -> None:
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
