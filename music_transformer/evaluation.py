"""Scoring a model on held-out music: the valid NLL the training loop reports (`validation_nll`) and the NLL by
position that `music-transformer eval` prints (`position_nll`), past the training length through the
windowed decoder as `generate` continues a piece."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import data as data_module
from .distributed import ALONE, Distributed
from .events import PAD
from .model import MusicTransformer, mixed_precision


@torch.no_grad()
def validation_nll(model: MusicTransformer, batches: list[np.ndarray], device: torch.device,
                   dist: Distributed = ALONE, pad: int = PAD) -> float:
    """Mean NLL per token (nats) over validation batches; each process scores its share of every batch's rows."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for array in batches:
        mine = array[dist.rank::dist.world_size]
        if not len(mine):
            continue
        batch = torch.from_numpy(mine).to(device)
        with mixed_precision(device):
            logits = model(batch[:, :-1])
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                              ignore_index=pad, reduction="sum")
        total += torch.stack([nll.double(), (batch[:, 1:] != pad).sum().double()])
    dist.all_reduce(total)
    model.train(was_training)
    return float(total[0] / total[1].clamp(min=1))


def position_nll(model: MusicTransformer, pieces, window: int | None = None,
                 device: torch.device | None = None, style: str | None = None,
                 on_piece: Callable[[list[int], np.ndarray], None] | None = None, span: int | None = None) -> dict:
    """NLL per token overall and by position [0, L), [L, 2L), [2L, 4L) (L = the model's train_length).

    Each piece is scored up to `span` tokens (default 4L; models of other training lengths compared on the
    same music need the same span) with the windowed decoder: every position attends to at most
    `window` of the latest positions (default: the model's decoding window, `default_window`, L unless its
    file names one), exactly as `generate` continues past the training length. The buckets use only pieces
    of 4L tokens or more, so each bucket sees the same pieces.
    Each piece opens with the header the model knows (START, and `style` or the piece's own style).
    `on_piece(tokens, nll)`, when given, sees each piece's scored tokens and the NLL of each (nll[i] of
    tokens[i + 1]), so that other figures can come from the same passes.
    """
    length = model.config.train_length
    window = window or model.default_window
    device = device or model.device
    buckets = {"[0,L)": (1, length), "[L,2L)": (length, 2 * length), "[2L,4L)": (2 * length, 4 * length)}
    sums = {name: [0.0, 0] for name in ["overall", *buckets]}
    long_pieces = 0
    model.eval()
    with torch.inference_mode():
        for piece in pieces:
            tokens = data_module.piece_tokens(piece.notes, style or piece.style, model.config.vocab_size)
            is_long = len(tokens) >= 4 * length
            tokens = tokens[:span or 4 * length]
            if len(tokens) < 2:
                continue
            x = torch.tensor([tokens], device=device)
            with mixed_precision(device):
                logits = model(x[:, :-1], window=window)
            nll = F.cross_entropy(logits[0].float(), x[0, 1:], reduction="none").cpu().numpy()
            if on_piece is not None:
                on_piece(tokens, nll)
            sums["overall"][0] += float(nll.sum())
            sums["overall"][1] += len(nll)
            if is_long:
                long_pieces += 1
                for name, (first, last) in buckets.items():  # nll[i] predicts token i + 1
                    part = nll[first - 1:last - 1]
                    sums[name][0] += float(part.sum())
                    sums[name][1] += len(part)
    result = {name: (total / count if count else float("nan")) for name, (total, count) in sums.items()}
    result["tokens"] = {name: count for name, (_, count) in sums.items()}
    result["pieces"] = len(pieces)
    result["long_pieces"] = long_pieces
    result["train_length"] = length
    result["window"] = window
    return result
