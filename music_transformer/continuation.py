"""Streaming generation with the key/value cache: continuations and their variations, past the training length.

`generate` yields one token at a time as soon as it is sampled, so a caller can decode and play the
music while it is being written. Each step feeds only the newest token through the model; the cache
holds the keys and values of the last `window` positions, so the cost per token and the memory stay
flat however long the piece grows, far past the length the model was trained on.

`generate_variations` writes several continuations of one primer at once, as the rows of one batch that
read the primer's keys once. `stream` is the loop both share with `infilling.infill`: it reads a context,
then writes a token for every row at each step under that row's `performance.Performance`; the draw is
`sampling`'s, and `beam.beam_search` replaces it when a search is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import torch

from . import events, limits
from .beam import beam_search
from .events import Note, encode, shift_ticks
from .model import MusicTransformer, mixed_precision, sounding_after
from .performance import Performance, forbidden_note_ons
from .sampling import DEFAULT_MAX_NOTE_SECONDS, MAX_SECONDS, Cancel, Sampler, Sampling, Steps, is_cancelled


def primer_tokens(notes: Sequence[Note], until: float | None = None) -> list[int]:
    """The tokens of a motif, followed by the silence up to `until` seconds (e.g. the end of its bar)."""
    if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))
                              or not 0 <= until <= MAX_SECONDS):
        raise ValueError(f"a primer ends between 0 s and {MAX_SECONDS // 3600:g} hours, not at {until!r}")
    tokens = encode(notes)
    if until is not None:
        tokens += events.shift_tokens(max(0, events.to_ticks(until) - sum(shift_ticks(t) for t in tokens)))
    return tokens


def generate(model: MusicTransformer, primer: Sequence[int] | Sequence[Note] = (), *,
             max_tokens: int | None = None, seconds: float | None = None, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             window: int | None = None, cancel: Cancel = None,
             max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, beam_size: int = 1,
             length_penalty: float = 0.6, cpu_threads: int | None = 1, style: str = "any",
             allowed_pitches: Iterable[int] | None = None,
             repetition_penalty: float = limits.DEFAULT_REPETITION_PENALTY,
             release_seconds: float = 0.0, wait_peak_ticks: int = limits.DEFAULT_WAIT_PEAK_TICKS) -> Iterator[int]:
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
    `repetition_penalty` (0 to `limits.MAX_REPETITION_PENALTY`; 0: off) keeps the music from looping: a
    pitch struck on onset after onset costs its note-on that much log-probability per onset past the fourth
    and is not struck a ninth time, and a figure played twice over costs as much per further time round
    (`performance.Repetition`; a primer that repeats more allows as much). It applies to beam search too.
    `release_seconds` (with `seconds`) is how long before the end no new note starts: the notes sounding
    then are held or released as the model likes, and any still sounding at the end end there (a phrase's
    end, e.g. its last beat before a bar line from `phrases.phrase_seconds`, not notes struck and cut).
    `wait_peak_ticks` (0 to `limits.MAX_WAIT_PEAK_TICKS`; 0: off) moves each wait drawn to the likeliest wait
    within that many ticks of it (`sampling.peak_waits`), so the music keeps the beat the model hears.
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

    The arguments are checked when it is called (ValueError), before the first token is asked for: the
    sampling ones (temperature, top_k, top_p, window) against the bounds `limits` names.
    """
    sampling = Sampling.checked(model, temperature, top_k, top_p, [seed], window, max_tokens, seconds,
                                max_note_seconds, cpu_threads, style, repetition_penalty, wait_peak_ticks)
    context, performance = _continuing(model, primer, allowed_pitches, sampling.repetition_penalty, release_seconds)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a whole number of 1 or more, not {beam_size!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a number, not {length_penalty!r}")
    context = events.header(style, model.config.vocab_size) + context
    return (token for _, token in stream(model, context, [performance], sampling, cancel, beam_size, length_penalty))


def generate_variations(model: MusicTransformer, primer: Sequence[int] | Sequence[Note] = (), *, seeds: Sequence[int],
                        max_tokens: int | None = None, seconds: float | None = None, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None, window: int | None = None,
                        cancel: Cancel = None, max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS,
                        cpu_threads: int | None = 1, style: str = "any",
                        allowed_pitches: Iterable[int] | None = None,
                        repetition_penalty: float = limits.DEFAULT_REPETITION_PENALTY,
                        release_seconds: float = 0.0,
                        wait_peak_ticks: int = limits.DEFAULT_WAIT_PEAK_TICKS) -> Iterator[tuple[int, int]]:
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
    most = limits.MAX_VARIATIONS
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not 1 <= len(seeds) <= most:
        raise ValueError(f"seeds must be a list of 1 to {most} seeds, one per variation, not {seeds!r}")
    sampling = Sampling.checked(model, temperature, top_k, top_p, list(seeds), window, max_tokens, seconds,
                                max_note_seconds, cpu_threads, style, repetition_penalty, wait_peak_ticks)
    context, performance = _continuing(model, primer, allowed_pitches, sampling.repetition_penalty, release_seconds)
    context = events.header(style, model.config.vocab_size) + context
    return stream(model, context, [performance.copy() for _ in seeds], sampling, cancel)


def _continuing(model: MusicTransformer, primer: Sequence[int] | Sequence[Note],
                allowed_pitches: Iterable[int] | None = None,
                repetition_penalty: float = 0.0,
                release_seconds: float = 0.0) -> tuple[list[int], Performance]:
    """The primer's tokens (from tokens or notes, checked) and what sounds at its end (and what it repeats)."""
    if isinstance(release_seconds, bool) or not isinstance(release_seconds, (int, float)) \
            or not 0 <= release_seconds <= MAX_SECONDS:
        raise ValueError(f"release_seconds must be a number from 0 to {MAX_SECONDS:g}, not {release_seconds!r}")
    if primer and isinstance(primer[0], Note):
        primer = encode(primer)  # type: ignore[arg-type]
    primer = [int(t) for t in primer]
    config = model.config
    for token in primer:
        if not 0 <= token < config.vocab_size:
            raise ValueError(f"primer token {token} is outside the vocabulary of {config.vocab_size}")
    performance = Performance(config.vocab_size, forbidden_note_ons(allowed_pitches), repetition_penalty)
    for token in primer:
        performance.update(token)
    performance.start_continuation()
    performance.release_ticks = events.to_ticks(release_seconds)
    return primer, performance


def stream(model: MusicTransformer, context: list[int], performances: list[Performance], sampling: Sampling,
           cancel: Cancel, beam_size: int = 1, length_penalty: float = 0.6) -> Iterator[tuple[int, int]]:
    """Reads `context` into the cache, then writes a token for each row (each performance) at every step,
    under that row's rules; yields (row, token).

    Only the last `window` tokens of the context are read: no new token can attend to an earlier one, so reading
    them costs time (a minute and more for a long song) and changes nothing the cache keeps but what they left
    in the later positions' keys and values through the layers below. The time to the first note stays flat in
    the primer's length. What sounds at the seam, the velocity in force and what repeats were taken from the
    whole primer by the caller (`performance.Performance`), so the notes still continue it from the start."""
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
            skipped = max(0, len(context) - window)
            cache.position = skipped  # where an absolute model's positions and local attention's blocks go on
            if model.config.sounding_input and skipped:  # what sounds at the window's start, from the whole primer
                cache.sounding = sounding_after(context[:skipped]).view(1, -1).to(device)
            with mixed_precision(device):
                logits = model(torch.tensor([context[skipped:]], device=device), cache=cache)
            logits = logits[:, -1].float()
            if beam_size > 1:
                steps = Steps(model, cache, beam_size, None)
                yield from ((0, token) for token in beam_search(steps, logits, performances[0], beam_size,
                                                                length_penalty, sampling, cancel))
                return
            sampler = Sampler(sampling, len(performances), model.config.vocab_size, device)
            yield from _write(Steps(model, cache, len(performances), sampler), logits, performances, sampling,
                              cancel)
    finally:
        model.train(was_training)
        torch.set_num_threads(threads_before)


def _write(steps: Steps, logits: torch.Tensor, performances: list[Performance], sampling: Sampling,
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
        cancelled = is_cancelled(cancel)
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
                token = performances[row].drawn(drawn[row], shift_limit)
            performances[row].update(token)
            performances[row].check_time_moves()  # a damaged model writing event after event at one instant
            written[row] += 1
            fed[row] = token
            yield row, token


def continuation_notes(tokens: Sequence[int], start: float = 0.0,
                       primer: Sequence[int] | Sequence[Note] = ()) -> list[Note]:
    """Notes of generated tokens, placed so the continuation begins at `start` seconds, decoded from where
    `primer` leaves off.

    `primer` is what the tokens continue: the tokens the model read (those given to `generate`, ending at
    the seam), or notes (those that begin before `start`, cut there as `infill` reads them). Its last
    velocity stays in force until the tokens write one of their own, as it does for the model; a note
    it leaves sounding is the primer's, not a new one (`events.decode_after` gives the primer's notes the
    tokens end, with their new ends). With no primer, notes before the first velocity event are at 64.
    """
    if len(primer) and isinstance(primer[0], Note):
        first = events.to_ticks(start)
        before = encode([note for note in primer if events.to_ticks(note.start) < first])  # type: ignore[union-attr]
        primer = events.split_at(before, first)[0]
    return events.decode_after(primer, tokens, start)[0]  # type: ignore[arg-type]
