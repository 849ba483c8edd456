"""Relative multi-head self-attention (Shaw et al., 2018) computed with the Music Transformer's skewing.

Per head, with queries Q, keys K, values V (L x D) and a learned table E of relative embeddings:

    S_rel[i, j] = q_i . e_(j-i)                                   (Huang et al. 2019, section 3.4)
    Attention = softmax((Q K^T + S_rel) / sqrt(D)) V              (their equation 3)

Shaw et al. gather an L x L x D tensor of embeddings to get S_rel. The skewing procedure gets the same
matrix from the L x L product Q E^T, so the relative term costs O(L D) memory on top of the logits.
Training goes further: queries are processed in blocks whose activations are recomputed in the
backward pass, so that no L x L matrix is ever held for all heads at once.

Relative embeddings are per head, one row per distance 0..M-1 (M = max_relative_distance). Past the
maximum distance there is no relative term at all (a zero embedding), as in Magenta's code: attention
there relies on content alone, which is what lets a cached decoder with a window wider than M run on.

Decoding uses a cache of keys and values; because nothing in it depends on absolute position, a sliding
window of the last W positions continues a piece indefinitely at a flat cost per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .native import KEY_BLOCK  # columns of keys to a block of the C step's rings


def skew(rel_logits: torch.Tensor) -> torch.Tensor:
    """The paper's skewing: relative logits by distance to logits by key position.

    Input (..., c, n): row i' is the query at absolute position n-c+i' (the last c of n positions),
    column r holds q . e_(r-(n-1)), distances -(n-1)..0. Output (..., c, n): entry (i', j) holds
    q . e_(j-i) for every key j <= i; entries for j > i are left over and must be masked.

    Pad one zero column on the left, flatten each matrix, drop its first c elements, reshape. For a
    square input (c = n = L) this is exactly the paper's "reshape to (L+1, L), drop the first row".
    Check: flat index c + i'n + j = i'(n+1) + (c-i'+j), so it lands in padded row i', column c-i'+j,
    which is unpadded column j + (c-1-i') = j - i + (n-1), the distance j - i.
    """
    *batch, c, n = rel_logits.shape
    padded = torch.cat((rel_logits.new_zeros(*batch, c, 1), rel_logits), dim=-1)  # one zero column, left
    flat = padded.reshape(*batch, c * (n + 1))
    return flat[..., c:].reshape(*batch, c, n)


def relative_table(embeddings: torch.Tensor, length: int) -> torch.Tensor:
    """Rows for distances -(length-1)..0 (H, length, D) from a table of M rows for -(M-1)..0.

    Distances past the table's reach get zero rows: no relative term there.
    """
    rows = embeddings.shape[-2]
    if length <= rows:
        return embeddings[..., rows - length:, :]
    return F.pad(embeddings, (0, 0, length - rows, 0))


def shaw_relative_logits(q: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """S_rel by Shaw et al.'s direct formula, gathering an (L, L, D) tensor: for tests and benchmarks.

    q: (..., H, L, D); embeddings: (H, M, D). Returns (..., H, L, L) with q_i . e_(j-i) for j <= i and
    zero above the diagonal.
    """
    length = q.shape[-2]
    table = relative_table(embeddings, length)  # row r: distance r-(L-1)
    positions = torch.arange(length, device=q.device)
    distance = positions[None, :] - positions[:, None]  # j - i
    index = (distance + length - 1).clamp(max=length - 1)
    gathered = table[:, index]  # (H, L, L, D): the O(L^2 D) tensor skewing avoids
    logits = torch.einsum("...hid,hijd->...hij", q, gathered)
    return logits.masked_fill(distance > 0, 0.0)


@dataclass(frozen=True)
class Visibility:
    """Which keys each query may see: causal, and optionally a sliding window or local blocks.

    window W: the W most recent positions, itself included. local b: relative local attention (Huang
    et al., section 3.5, after the Image Transformer): the sequence is cut into blocks of b positions,
    and a query sees its own block up to itself and the whole previous block. offset: the absolute
    position of key 0 (local blocks are aligned to absolute positions; a cache starts mid-piece).
    """

    window: int | None = None
    local: int | None = None
    offset: int = 0

    @property
    def plain_causal(self) -> bool:
        """True when a query sees every earlier position."""
        return self.window is None and self.local is None

    def first_visible(self, position: int) -> int:
        """The earliest absolute position that the query at `position` sees."""
        first = 0
        if self.window is not None:
            first = max(first, position - self.window + 1)
        if self.local is not None:
            first = max(first, (position // self.local - 1) * self.local)
        return first

    def shifted(self, keys: int) -> Visibility:
        """The same rule for keys that start `keys` positions later."""
        return replace(self, offset=self.offset + keys) if keys else self

    def mask(self, queries: int, keys: int, device=None) -> torch.Tensor:
        """Boolean (queries, keys): True where the query (the last `queries` of `keys`) may look."""
        query_positions = torch.arange(keys - queries, keys, device=device)[:, None] + self.offset
        key_positions = torch.arange(keys, device=device)[None, :] + self.offset
        allowed = key_positions <= query_positions
        if self.window is not None:
            allowed &= key_positions > query_positions - self.window
        if self.local is not None:
            allowed &= key_positions >= torch.div(query_positions, self.local, rounding_mode="floor") \
                * self.local - self.local
        return allowed


def per_head_matmul(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """x (B, H, c, a) @ table (H, a, b) -> (B, H, c, b), without copying the table once per batch row.

    Broadcasting would expand the table over the batch and copy it; when that copy is the larger one,
    the batch is folded into the rows instead (one copy of x).
    """
    batch, heads, c, _ = x.shape
    if batch == 1:
        return (x[0] @ table)[None]
    if x.numel() >= batch * table.numel():
        return x @ table
    folded = x.transpose(0, 1).reshape(heads, batch * c, x.shape[-1]) @ table
    return folded.view(heads, batch, c, table.shape[-1]).transpose(0, 1)


def relative_logits(q: torch.Tensor, embeddings: torch.Tensor, keys: int) -> torch.Tensor:
    """S_rel for c queries, the last c of `keys` positions: (..., c, keys), valid where j <= i.

    Only the M distances the table holds are multiplied; farther distances get zeros (no relative
    term), padded on the left of the distance axis before skewing. A single query (the decoding
    step) needs no skew: q_t E^T read over the cached keys is already in key order.
    """
    rows = min(keys, embeddings.shape[-2])
    by_distance = per_head_matmul(q, embeddings[..., embeddings.shape[-2] - rows:, :].transpose(-1, -2))
    if rows < keys:
        by_distance = F.pad(by_distance, (keys - rows, 0))
    return by_distance if q.shape[-2] == 1 else skew(by_distance)


def relative_attention_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, embeddings: torch.Tensor,
                             visibility: Visibility = Visibility(), dropout: float = 0.0) -> torch.Tensor:
    """Attention of c queries (the last c of n positions) over n keys, with the relative term (autograd).

    q: (B, H, c, D); k, v: (B, H, n, D); embeddings: (H, M, D). Returns (B, H, c, D).
    """
    c, n = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    rel = relative_logits(q, embeddings, n)  # (B, H, c, n)
    logits = torch.baddbmm(rel.flatten(0, 1), q.flatten(0, 1), k.flatten(0, 1).transpose(-1, -2))
    logits = logits.view_as(rel) * scale
    logits = logits.masked_fill(~visibility.mask(c, n, q.device), float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    if dropout > 0.0:
        weights = F.dropout(weights, dropout, training=True)
    return weights @ v


def _blocks(queries: int, keys: int, block_size: int, visibility: Visibility):
    """(first query, end query, first key, end key) of each query block: the keys it may see."""
    for start in range(0, queries, block_size):
        end = min(start + block_size, queries)
        last_key = keys - queries + end
        first_position = visibility.offset + keys - queries + start
        first_key = max(0, visibility.first_visible(first_position) - visibility.offset)
        yield start, end, first_key, last_key


def _scores(q: torch.Tensor, k: torch.Tensor, embeddings: torch.Tensor, visibility: Visibility) -> torch.Tensor:
    """(QK^T + S_rel) / sqrt(D), masked, for c queries (the last c of n keys); no autograd.

    The scale is folded into the (small) queries; the skewed relative term is added to QK^T in place.
    For plain causal attention the mask touches only the last c columns, the only ones it can hide.
    A block that spans the previous local block and its own gets both of the paper's skews at once:
    the rectangular skew is the unmasked variant over the previous block and the masked one over its own.
    """
    c, n = q.shape[-2], k.shape[-2]
    q = q * (1.0 / math.sqrt(q.shape[-1]))
    scores = (q @ k.transpose(-1, -2)).add_(relative_logits(q, embeddings, n))
    if not visibility.plain_causal and not (visibility.local is None and n <= visibility.window):
        scores.masked_fill_(~visibility.mask(c, n, q.device), float("-inf"))
    elif c > 1:
        hidden = torch.ones(c, c, dtype=torch.bool, device=q.device).triu_(1)
        scores[..., n - c:].masked_fill_(hidden, float("-inf"))
    return scores


def _unskew(grad: torch.Tensor) -> torch.Tensor:
    """The adjoint of `skew`: gradients by key position back to gradients by distance."""
    *batch, c, n = grad.shape
    padded = grad.new_empty(*batch, c * (n + 1))
    padded[..., :c].zero_()  # everything after is overwritten
    padded[..., c:] = grad.reshape(*batch, c * n)
    return padded.view(*batch, c, n + 1)[..., 1:]


def _attend_blocks(q, k, v, embeddings, visibility, block_size, keep_logsumexp):
    out = torch.empty_like(q)
    logsumexp = q.new_empty(q.shape[:-1]) if keep_logsumexp else None
    for start, end, first_key, last_key in _blocks(q.shape[-2], k.shape[-2], block_size, visibility):
        weights = _scores(q[:, :, start:end], k[:, :, first_key:last_key], embeddings,
                          visibility.shifted(first_key))
        peak = weights.amax(dim=-1, keepdim=True)  # every query sees itself: finite
        weights.sub_(peak).exp_()
        total = weights.sum(dim=-1, keepdim=True)
        weights.div_(total)
        out[:, :, start:end] = weights @ v[:, :, first_key:last_key]
        if keep_logsumexp:
            logsumexp[:, :, start:end] = (peak + total.log()).squeeze(-1)
    return out, logsumexp


class _RelativeAttention(torch.autograd.Function):
    """Blocked relative attention with a hand-written backward that recomputes each block's weights.

    Like FlashAttention, only the output and each row's log-sum-exp are kept between the passes, so
    peak memory is a few (c x n) blocks per head whatever the sequence length. The backward of the
    relative term runs the skew in reverse (`_unskew`) and multiplies by the embeddings, never
    forming Shaw's (L, L, D) tensor.
    """

    @staticmethod
    def forward(ctx, q, k, v, embeddings, visibility, block_size):
        out, logsumexp = _attend_blocks(q, k, v, embeddings, visibility, block_size, keep_logsumexp=True)
        ctx.save_for_backward(q, k, v, embeddings, out, logsumexp)
        ctx.visibility, ctx.block_size = visibility, block_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        with torch.autocast(grad_out.device.type, enabled=False):  # float32, as the forward pass was
            return _RelativeAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        q, k, v, embeddings, out, logsumexp = ctx.saved_tensors
        scale = 1.0 / math.sqrt(q.shape[-1])
        distances = embeddings.shape[-2]
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        grad_embeddings = torch.zeros_like(embeddings)
        grad_out = grad_out.contiguous()  # so that every block below is a plain strided batch
        row_dot = (grad_out * out).sum(dim=-1, keepdim=True)  # D_i = dO_i . O_i
        for start, end, first_key, last_key in _blocks(q.shape[-2], k.shape[-2], ctx.block_size, ctx.visibility):
            q_block, grad_block = q[:, :, start:end], grad_out[:, :, start:end]
            k_block, v_block = k[:, :, first_key:last_key], v[:, :, first_key:last_key]
            weights = _scores(q_block, k_block, embeddings, ctx.visibility.shifted(first_key))
            weights.sub_(logsumexp[:, :, start:end, None]).exp_()
            grad_v[:, :, first_key:last_key] += weights.transpose(-1, -2) @ grad_block
            grad_scores = grad_block @ v_block.transpose(-1, -2)  # dP
            grad_scores.sub_(row_dot[:, :, start:end]).mul_(weights).mul_(scale)  # dS, scale folded in
            del weights
            grad_q[:, :, start:end] += grad_scores @ k_block
            grad_k[:, :, first_key:last_key] += grad_scores.transpose(-1, -2) @ q_block
            keys = last_key - first_key
            rows = min(keys, distances)
            by_distance = _unskew(grad_scores)[..., keys - rows:]  # distances past M had no term
            del grad_scores
            table = embeddings[:, distances - rows:]
            grad_q[:, :, start:end] += per_head_matmul(by_distance, table)
            grad_embeddings[:, distances - rows:] += (by_distance.transpose(-1, -2) @ q_block).sum(0)
        return grad_q, grad_k, grad_v, grad_embeddings, None, None


def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, embeddings: torch.Tensor,
                       window: int | None = None, dropout: float = 0.0, block_size: int | None = 64,
                       local: int | None = None, offset: int = 0) -> torch.Tensor:
    """Causal relative self-attention of c queries, the last c of the n positions in k and v, in blocks.

    Each block of queries only needs the keys it can see (causality, and the window or the local
    blocks), so the work is the visible part of c x n, and memory holds one block's logits at a time,
    in training too (a fused backward that recomputes them). With attention dropout in training,
    autograd runs through each block, recomputed in the backward pass (activation checkpointing).
    block_size None computes the whole matrix with the paper's single skew. `local` is the block
    length of relative local attention and `offset` the absolute position of the first key.
    """
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, embeddings))
    if needs_grad and torch.is_autocast_enabled(q.device.type):
        # Training under autocast: the relative term, the softmax and the fused backward stay in float32
        # (decoding and scoring keep autocast's bfloat16, where the cached keys already are).
        with torch.autocast(q.device.type, enabled=False):
            return relative_attention(q.float(), k.float(), v.float(), embeddings.float(), window, dropout,
                                      block_size, local, offset)
    queries, keys = q.shape[-2], k.shape[-2]
    block_size = block_size or queries
    visibility = Visibility(window, local, offset)
    if not needs_grad and dropout == 0.0:
        with torch.no_grad():
            return _attend_blocks(q, k, v, embeddings, visibility, block_size, keep_logsumexp=False)[0]
    if dropout == 0.0:
        return _RelativeAttention.apply(q, k, v, embeddings, visibility, block_size)
    outputs = []
    for start, end, first_key, last_key in _blocks(queries, keys, block_size, visibility):
        args = (q[:, :, start:end], k[:, :, first_key:last_key], v[:, :, first_key:last_key], embeddings,
                visibility.shifted(first_key), dropout)
        outputs.append(checkpoint(relative_attention_block, *args, use_reentrant=False)
                       if queries > block_size else relative_attention_block(*args))
    return torch.cat(outputs, dim=2)


class KVCache:
    """Keys and values of the positions seen so far, per layer, for incremental decoding.

    `window` W: each new query attends to the W most recent positions. `local` b: the model uses
    relative local attention, so no query looks further back than 2b-1 positions. The cache keeps
    only what a new query can still see. Storage is a buffer of twice that span, shifted down once
    per span, so appending is O(1) amortised and the kept keys stay in time order, which relative
    attention needs.
    """

    def __init__(self, n_layers: int, window: int | None = None, local: int | None = None) -> None:
        self.window = window
        self.local = local
        spans = [span for span in (window, None if local is None else 2 * local) if span is not None]
        self.span = min(spans) if spans else None  # the most positions one query sees
        self.position = 0  # tokens seen so far: the absolute position of the next one
        self._keys: list[torch.Tensor | None] = [None] * n_layers
        self._values: list[torch.Tensor | None] = [None] * n_layers
        self._lengths = [0] * n_layers

    def __len__(self) -> int:
        return self._lengths[0]

    @property
    def layers(self) -> int:
        """How many layers the cache holds keys for."""
        return len(self._keys)

    def kept(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The keys and values (B, H, n, D) of `layer` that the next new token may still see."""
        if self._keys[layer] is None:
            return None, None
        length = self._lengths[layer]
        first = 0 if self.span is None else max(0, length - (self.span - 1))
        return self._keys[layer][:, :, first:length], self._values[layer][:, :, first:length]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends new keys and values (B, H, T, D); returns all the keys and values a new query may see."""
        new = k.shape[2]
        length = self._lengths[layer]
        buffer_k, buffer_v = self._keys[layer], self._values[layer]
        keep = None if self.span is None else self.span - 1
        needed = length + new
        if buffer_k is None or needed > buffer_k.shape[2]:
            if keep is not None and length > keep:  # drop what the window has passed
                buffer_k = buffer_k[:, :, length - keep:length]
                buffer_v = buffer_v[:, :, length - keep:length]
                length = keep
                needed = length + new
            capacity = max(needed, 2 * self.span if self.span else 2 * needed, 64)
            grown_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            grown_v = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
            if buffer_k is not None and length:
                grown_k[:, :, :length] = buffer_k[:, :, :length]
                grown_v[:, :, :length] = buffer_v[:, :, :length]
            buffer_k, buffer_v = grown_k, grown_v
            self._keys[layer], self._values[layer] = buffer_k, buffer_v
        buffer_k[:, :, length:needed] = k
        buffer_v[:, :, length:needed] = v
        self._lengths[layer] = needed
        first = 0 if keep is None else max(0, needed - new - keep)
        return buffer_k[:, :, first:needed], buffer_v[:, :, first:needed]

    def reorder(self, index: torch.Tensor) -> None:
        """Keeps batch rows `index` (for beam search)."""
        for layer in range(len(self._keys)):
            if self._keys[layer] is not None:
                self._keys[layer] = self._keys[layer].index_select(0, index)
                self._values[layer] = self._values[layer].index_select(0, index)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with relative positions (the paper's) or none (for absolute models)."""

    def __init__(self, d_model: int, n_heads: int, attention_dropout: float = 0.0,
                 max_relative_distance: int | None = None, block_size: int | None = 64,
                 local: int | None = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.attention_dropout = attention_dropout
        self.block_size = block_size
        self.local = local
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.relative = max_relative_distance is not None
        if self.relative:
            # Row r is distance r-(M-1): the last row is distance 0, the current token itself.
            self.relative_embeddings = nn.Parameter(
                torch.randn(n_heads, max_relative_distance, self.head_dim) * self.head_dim ** -0.5)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                window: int | None = None) -> torch.Tensor:
        """x: (B, T, d_model). With a cache, x holds the newest T positions and the cache the earlier ones."""
        batch, length, _ = x.shape
        # (3, B, H, T, D), made contiguous once so the attention's blocks are slices that need no copy
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4) \
            .contiguous()
        dropout = self.attention_dropout if self.training else 0.0
        offset = 0  # absolute position of the first key
        if cache is not None:
            window = cache.window
            k, v = cache.update(layer, k, v)
            offset = cache.position + length - k.shape[2]
        if self.relative:
            y = relative_attention(q, k, v, self.relative_embeddings, window, dropout, self.block_size,
                                   self.local, offset)
        else:
            visibility = Visibility(window, self.local, offset)
            mask = None if (visibility.plain_causal and k.shape[2] == length) else \
                visibility.mask(length, k.shape[2], x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                               is_causal=mask is None and length > 1)
        return self.out(y.transpose(1, 2).reshape(batch, length, -1))


def _into_blocks(blocks: torch.Tensor, columns: torch.Tensor) -> None:
    """Writes keys (H, D, L) as the first L columns of rings kept in blocks (H, L' / KEY_BLOCK, D, KEY_BLOCK)."""
    heads, head_dim, length = columns.shape
    whole, rest = divmod(length, KEY_BLOCK)
    blocks[:, :whole] = columns[..., :whole * KEY_BLOCK].reshape(heads, head_dim, whole, KEY_BLOCK).transpose(1, 2)
    if rest:
        blocks[:, whole, :, :rest] = columns[..., whole * KEY_BLOCK:]


def padded_rows(*shape: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """An empty buffer of `shape` whose last dimension's rows lie an odd number of 64-byte lines apart, as
    a view of the first shape[-1] columns.

    Keys (and E^T) are kept as rows of positions (D, columns) that a step reads across, all D rows at
    once. Rows a power of two apart (1,024 float32 columns, 4 KB) all fall into the same few sets of the
    CPU's caches, which then hold only a dozen of them. Measured on the C step (an AVX-512 CPU, the rings'
    keys then in rows too): with the keys and E^T so apart, one stream at a 2,048-token window went from
    730 to 850 tokens/s, and eight variations from 3.3x the time of one to 3.1x."""
    line = max(64 // torch.empty((), dtype=dtype).element_size(), 1)
    stride = -(-shape[-1] // line) * line
    if stride // line % 2 == 0:
        stride += line
    return torch.empty(*shape[:-1], stride, dtype=dtype, device=device)[..., :shape[-1]]


@dataclass
class _StepViews:
    """What `StreamCache.begin_step` works out once for every layer of a step (views into its buffers)."""

    first: int  # the first column the new token sees
    end: int  # one past the last: the new token's own
    context: int  # how many of the columns seen are the context's
    column: int  # the buffer column the new token's key and value go to
    needed: int  # how many distances of q E^T the step needs
    scores: torch.Tensor  # (H, rows, end - first)
    relative: torch.Tensor  # where q E^T goes: (H, rows, needed)
    terms: list  # (columns of the scores, their relative term): added
    hidden: list  # columns of the scores out of sight: -inf
    ring: tuple[int, int]  # the ring's buffer columns seen (several rows)
    ring_scores: torch.Tensor  # (H * rows, 1, columns of the ring seen), several rows
    ring_target: torch.Tensor  # the same columns of the scores


class StepPlan(NamedTuple):
    """Where a step's new tokens read and write (the C step's input). Columns count from the first context
    column through the rings' (a row's scores: the context's columns seen, then its ring's)."""

    first: int  # the first column seen
    end: int  # one past the last: the new token's own
    context: int  # how many of the columns seen are the context's (first .. first + context - 1)
    ring: tuple[int, int]  # the ring's buffer columns seen
    column: int  # the ring's buffer column the new token's key and value go to
    needed: int  # how many distances of q E^T the step needs (the last `needed` columns of E^T)
    terms: list[tuple[int, int, int]]  # (score column from `first`, column of E^T, width): the relative term
    hidden: list[tuple[int, int]]  # (score column from `first`, width): out of sight


class StreamCache:
    """Keys and values for one-token steps of `rows` streams that all continue one shared context.

    The context (the keys and values a `KVCache` kept after the model read the primer) takes P columns,
    and each row's own tokens a ring of `span` columns after them, written in place. Keys are kept
    transposed, (D, positions) per head, so that a new query's scores are a row-major matrix-vector
    product per head. Several rows read the context once, as one small matrix product for all their
    queries, then each its own ring. One row (not static) keeps the context in its ring, as the tokens
    written before its own: the ring is then the window and nothing else, so a step reads whole rows of
    keys with no gaps between them (the C step reads a 2,048-token window of one layer in 118 us so,
    against 192 from a buffer of P + span columns, the static layout; torch's products show no
    difference). Everything is allocated here: a step moves no stored key and allocates no buffer.

    The relative term for one query needs no skew: `q E^T` holds it by distance, and each key takes the
    entry for its own distance. Until a ring wraps, distances fall by one per column, so the term is
    one slice of `q E^T` added to the scores; once it wraps, the ring's columns are two such runs. Order
    matters nowhere else: softmax and the weighted sum of values do not care in which order keys come.

    static=False: each step attends to exactly the keys in its window (the CPU). static=True: every step
    attends to all P + span columns, each key taking its relative entry, a zero (past the table) or -inf
    (not visible, not written yet) through an index worked out on the device from the position; so one
    captured step replays as is (CUDA graphs, torch.compile).

    native=True: for the C step (decoder.py), which reads each step's `plan` and not the views `attend`
    uses, so only the plan is made; and the rings' keys are kept in blocks of KEY_BLOCK columns,
    (H, rows, span / KEY_BLOCK, D, KEY_BLOCK), so that a new key's D values lie in one block instead of
    on D pages, and a ring is read a block straight through at a time. With eight rows, their rings'
    keys as rows of span columns took a page each: the first step faulted in 8,192 pages (a twentieth of
    writing 256 tokens), and every step after wrote its keys across as many; in blocks, eight variations
    took 2.9x the time of one instead of 3.1x (measured on the C step, an AVX-512 CPU).
    """

    def __init__(self, context: KVCache, rows: int, span: int, max_distance: int | None,
                 dtype: torch.dtype | None = None, static: bool = False, native: bool = False) -> None:
        kept = [context.kept(layer) for layer in range(context.layers)]
        if kept[0][0] is None or kept[0][0].shape[0] != 1:
            raise ValueError("a stream cache continues one context that the model has read")
        _, heads, length, head_dim = kept[0][0].shape
        device = kept[0][0].device
        dtype = dtype or kept[0][0].dtype
        self.heads, self.head_dim, self.rows, self.span, self.static = heads, head_dim, rows, span, static
        self.window = min(context.window or span, span)  # a ring of `span` columns keeps no more than that
        self.local = context.local
        self.distances = max_distance or 0  # M; 0: no relative term
        self.position = context.position  # absolute position of the next token
        self.written = 0  # tokens each row has written to its ring
        if rows == 1 and not static:  # the context in the ring: the last span - 1 positions, all a new token sees
            self.written = min(length, span - 1)
            kept = [(k[:, :, length - self.written:], v[:, :, length - self.written:]) for k, v in kept]
            length = 0
        self.context_length = length  # P: the context's columns before the ring
        self.context_start = context.position - length  # absolute position of context column 0
        columns = length + span
        # one row: context and ring side by side (static) or the context in the ring, read as one run;
        # several: the context once, then the rings
        ring = columns if rows == 1 else span
        new = torch.zeros if static else torch.empty  # static steps multiply columns not written yet by 0
        self.blocked = native and not static
        if self.blocked:  # the C step's (see above)
            self.keys = [torch.empty(heads, rows, -(-ring // KEY_BLOCK), head_dim, KEY_BLOCK, dtype=dtype,
                                     device=device) for _ in kept]
        else:
            self.keys = [new(heads, rows, head_dim, ring, dtype=dtype, device=device) if static  # (a graph's shapes)
                         else padded_rows(heads, rows, head_dim, ring, dtype=dtype, device=device) for _ in kept]
        self.values = [new(heads, rows, ring, head_dim, dtype=dtype, device=device) for _ in kept]
        if rows == 1:  # the context in the first columns: before the ring (static) or as the ring's first tokens
            for (k, v), keys, values in zip(kept, self.keys, self.values, strict=True):
                if self.blocked:
                    _into_blocks(keys[:, 0], k[0].transpose(-1, -2))
                else:
                    keys[:, 0, :, :k.shape[2]] = k[0].transpose(-1, -2)
                values[:, 0, :k.shape[2]] = v[0]
            self.context_keys = [keys[:, 0, :, :length] for keys in self.keys] if not self.blocked else []
            self.context_values = [values[:, 0, :length] for values in self.values]
        else:
            self.context_keys = [padded_rows(heads, head_dim, length, dtype=dtype, device=device)
                                 .copy_(k[0].transpose(-1, -2)) for k, _ in kept]  # (H, D, P)
            self.context_values = [v[0].to(dtype).contiguous() for _, v in kept]  # (H, P, D)
        self._ring_start = length if rows == 1 else 0  # the buffers' column of ring column 0
        if self.blocked:  # no views: the C step reads the buffers
            self._runs = []
        elif rows == 1:  # (H, D, columns) and (H, columns, D): views sliced at every step
            self._runs = [(keys[:, 0], values[:, 0]) for keys, values in zip(self.keys, self.values, strict=True)]
        else:  # (H * rows, D, span) and (H * rows, span, D)
            self._runs = [(keys.flatten(0, 1), values.view(heads * rows, span, head_dim))
                          for keys, values in zip(self.keys, self.values, strict=True)]
        self._scores = torch.empty(heads * rows * columns, dtype=dtype, device=device)
        self._ring_scores = torch.empty(heads * rows * span, dtype=dtype, device=device)
        # q E^T by distance: column M-1-d holds distance d; then a zero (past the table) and -inf (hidden)
        self._relative = torch.zeros(heads, rows, self.distances + 2, dtype=dtype, device=device)
        self._relative[..., -1] = float("-inf")
        self.output = torch.empty(heads, rows, head_dim, dtype=dtype, device=device)  # what `attend` returns
        if static:
            self._column = torch.zeros(1, dtype=torch.long, device=device)
            self._position = torch.tensor(self.position, device=device)
            self._offsets = torch.cat((self.context_start + torch.arange(length, device=device),
                                       torch.arange(span, device=device)))
            self._index = torch.zeros(heads, rows, columns, dtype=torch.long, device=device)
            self._gathered = torch.empty(heads, rows, columns, dtype=dtype, device=device)
        self._step: _StepViews | None = None
        self.plan: StepPlan | None = None
        self.views = not native  # False: each step makes its plan only (the C step's), not the views `attend` uses
        if static:  # every column, every step: the views never change
            self._plan(0, length + span, 0, (), (), needed=self.distances)

    def __len__(self) -> int:
        """Positions a new token may attend to at most: the context and the ring."""
        return self.context_length + self.span

    def begin_step(self) -> None:
        """Works out, once for every layer, which columns the next token sees and their relative entries.

        The layout: (first column, end column, the new token's column, runs (column from, column to,
        distance at `column to` - 1) that take the relative term, hidden runs (column from, column to)).
        """
        if self.static:
            self._device_layout()
            return
        position, span, context = self.position, self.span, self.context_length
        reach = position - Visibility(self.window, self.local).first_visible(position)  # the farthest distance seen
        newest = self.written % span  # the ring column the new token goes to, after the context's
        if self.written < span:  # distances fall by one per column, down to 0 at the new token
            end = context + newest + 1
            first = max(0, end - 1 - reach)
            self._plan(first, end, context + newest, ((first, end, 0),), ())
            return
        # a full ring: columns up to the new token's fall to 0, those after it to newest + 1; with local
        # attention the farthest of them may be out of sight
        runs, hidden = [], []
        for start, stop, low in ((context, context + newest + 1, 0),
                                 (context + newest + 1, context + span, newest + 1)):
            seen = max(start, stop - max(reach - low + 1, 0))
            if seen > start:
                hidden.append((start, seen))
            runs.append((seen, stop, low))
        self._plan(context, context + span, context + newest, runs, hidden)

    def _plan(self, first: int, end: int, column: int, runs, hidden, needed: int | None = None) -> None:
        """This step's plan and views, the same for every layer: columns `first`..`end`-1 seen, the new
        token's `column`, `runs` of columns (from, to, distance at to - 1) taking the relative term, `hidden`
        runs. With `views` off (the C step reads the plan) only the plan is made."""
        heads, rows, distances = self.heads, self.rows, self.distances
        if needed is None:
            needed = min(distances, max((stop - start + low for start, stop, low in runs), default=0))
        widths = [(start, stop, low, min(stop - start, distances - low)) for start, stop, low in runs]
        context = max(self.context_length - first, 0)
        ring = (first + context + self._ring_start - self.context_length, end + self._ring_start - self.context_length)
        plan = self.plan = StepPlan(  # runs: columns start..stop-1 at distances stop-1+low-start .. low
            first, end, context, ring, column + self._ring_start - self.context_length, needed,
            [(stop - width - first, distances - low - width, width) for start, stop, low, width in widths if width > 0],
            [(start - first, stop - start) for start, stop in hidden])
        if not self.views:
            return
        count = end - first
        scores = self._scores[:heads * rows * count].view(heads, rows, count)
        self._step = _StepViews(
            first=first, end=end, context=context, column=plan.column, needed=needed, scores=scores,
            relative=self._relative[..., distances - needed:distances],
            terms=[(scores[..., at:at + width], self._relative[..., entry:entry + width])
                   for at, entry, width in plan.terms],
            hidden=[scores[..., at:at + width] for at, width in plan.hidden], ring=ring,
            ring_scores=self._ring_scores[:heads * rows * (count - context)].view(heads * rows, 1, -1),
            ring_target=scores[..., context:].view(heads, rows, -1))

    def _device_layout(self) -> None:
        """`begin_step` on the device, from the position tensor: an index into the relative buffer per column."""
        position, context = self._position, self.context_length
        first = position - (self.window - 1)
        if self.local is not None:
            first = torch.maximum(first, (torch.div(position, self.local, rounding_mode="floor") - 1) * self.local)
        written = position - (self.context_start + context)
        offsets = self._offsets
        distance = torch.cat((position - offsets[:context], torch.remainder(written - offsets[context:], self.span)))
        hidden = distance > position - first
        hidden[context:] |= offsets[context:] > written  # ring columns not written yet
        entries = torch.where(distance >= self.distances, self.distances, self.distances - 1 - distance)
        self._index.copy_(torch.where(hidden, self.distances + 1, entries).expand_as(self._index))
        self._column.copy_((self._ring_start + torch.remainder(written, self.span)).view(1))

    def end_step(self) -> None:
        """The device's half of moving on (static: the position tensor); `moved_on` is the host's."""
        if self.static:
            self._position.add_(1)

    def moved_on(self) -> None:
        """Counts the step taken."""
        self.position += 1
        self.written += 1

    def device_position(self) -> torch.Tensor:
        """The next token's absolute position as a tensor (1,) on the device (static caches)."""
        return self._position.view(1)

    def save_position(self) -> tuple:
        """What `restore_position` needs to undo steps (warm-up runs before a capture)."""
        return self.position, self.written, self._position.clone() if self.static else None

    def restore_position(self, saved: tuple) -> None:
        """Goes back to a saved position; ring columns written since are written again before they are read."""
        self.position, self.written, position = saved
        if position is not None:
            self._position.copy_(position)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               relative_t: torch.Tensor | None) -> torch.Tensor:
        """Stores the new token's keys and values (H, rows, D) and returns its attention output (H, rows, D).

        q must be contiguous and already scaled by 1/sqrt(D); relative_t is the layer's E^T (H, D, M).
        """
        step = self._step
        heads, rows, head_dim = self.heads, self.rows, self.head_dim
        keys, values = self.keys[layer], self.values[layer]
        if self.static:
            keys.index_copy_(3, self._column, k.unsqueeze(-1))
            values.index_copy_(2, self._column, v.unsqueeze(-2))
        else:
            keys.select(3, step.column).copy_(k)
            values.select(2, step.column).copy_(v)
        first, end, context, scores = step.first, step.end, step.context, step.scores
        run_keys, run_values = self._runs[layer]
        if rows == 1:  # context and ring in one run of columns
            torch.bmm(q, run_keys[..., first:end], out=scores)
        else:  # the context once for every row, then each row's ring
            if context:
                torch.bmm(q, self.context_keys[layer][..., first:], out=scores[..., :context])
            torch.bmm(q.view(heads * rows, 1, head_dim), run_keys[..., step.ring[0]:step.ring[1]],
                      out=step.ring_scores)  # a buffer of its own: a batch of products is slow to write into a slice
            step.ring_target.copy_(step.ring_scores.view(heads, rows, -1))
        if step.needed:  # q E^T for the distances seen
            torch.bmm(q, relative_t[..., self.distances - step.needed:], out=step.relative)
        if self.static:  # relative entries, zeros and -inf through the index
            scores.add_(torch.gather(self._relative, -1, self._index, out=self._gathered))
        for part, term in step.terms:
            part.add_(term)
        for part in step.hidden:
            part.fill_(float("-inf"))
        torch.softmax(scores, -1, out=scores)
        out = self.output
        if rows == 1:
            return torch.bmm(scores, run_values[:, first:end], out=out)
        if context:
            torch.bmm(scores[..., :context], self.context_values[layer][:, first:], out=out)
        else:
            out.zero_()
        flat = out.view(heads * rows, 1, head_dim)
        torch.baddbmm(flat, step.ring_target.view(heads * rows, 1, -1), run_values[:, step.ring[0]:step.ring[1]],
                      out=flat)
        return out

    def reorder(self, index: torch.Tensor) -> None:
        """Keeps rows `index` (for beam search), in place; the context (row 0's) stays."""
        start, stop = self._ring_start, self._ring_start + min(self.written, self.span)  # the columns written
        rings = [keys[:, :, start // KEY_BLOCK:-(-stop // KEY_BLOCK)] if self.blocked else keys[..., start:stop]
                 for keys in self.keys] + [values[:, :, start:stop] for values in self.values]
        for ring in rings:
            ring.copy_(ring.index_select(1, index))
