"""Beam search: the most likely continuation under the stream's rules, one batch row per beam."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from . import events
from .errors import GenerationError
from .events import time_shift
from .performance import Performance
from .sampling import Cancel, Sampling, Steps, is_cancelled


def beam_search(steps: Steps, logits: torch.Tensor, performance: Performance, beam_size: int,
                length_penalty: float, sampling: Sampling, cancel: Cancel) -> Iterator[int]:
    """Beam search with one batch row per beam; yields the prefix all beams share."""
    device = logits.device
    left, hold_ticks = sampling.left, sampling.hold_ticks
    beams = [(0.0, [], performance)]  # (log-probability, tokens, what sounds)
    finished: list[tuple[float, list[int], Performance]] = []  # (length-normalised score, ...)
    committed = 0
    mask = np.zeros(logits.shape[-1], dtype=np.float32)
    if performance.finished(*left(performance, 0)):  # nothing to write (no seconds or no tokens): close
        yield from performance.closing()[:sampling.max_tokens]
        return

    def normalised(score: float, tokens: list[int]) -> float:
        return score / ((5 + len(tokens)) / 6) ** length_penalty

    while beams and not is_cancelled(cancel):
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
        if not candidates:  # every score NaN or -inf: the model's numbers are not numbers (a damaged checkpoint)
            raise GenerationError("the model's scores for the next event are not numbers: its checkpoint may be "
                                  "damaged (weights out of range)")
        candidates.sort(key=lambda candidate: candidate[0], reverse=True)
        alive, rows = [], []
        for score, row, token in candidates[:beam_size]:
            state = beams[row][2].copy()
            state.update(token)
            state.check_time_moves()
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
