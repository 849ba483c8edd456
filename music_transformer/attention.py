"""Relative multi-head self-attention (Shaw et al., 2018) computed with the Music Transformer's skewing.

Per head, with queries Q, keys K, values V (L x D) and a learned table E of relative embeddings:

    S_rel[i, j] = q_i . e_(j-i)                                   (Huang et al. 2019, section 3.4)
    Attention = softmax((Q K^T + S_rel) / sqrt(D)) V              (their equation 3)

Shaw et al. gather an L x L x D tensor of embeddings to get S_rel. The skewing procedure gets the same
matrix from the L x L product Q E^T, so the relative term costs O(L D) memory on top of the logits.
Training goes further: queries are processed in blocks whose activations are recomputed in the
backward pass, so that no L x L matrix is ever held for all heads at once.

Relative embeddings are per head. By default one row per distance 0..M-1 (M = max_relative_distance),
and past the maximum distance no relative term at all (a zero embedding), as in Magenta's code: attention
there relies on content alone. With `buckets` B the table holds B rows instead: distances 0..B/2-1 each
their own, then log-spaced buckets up to M (as T5 buckets distances), and every distance from M on shares
the last row, so that far context has a term that every far pair trains (Shaw et al. clip at their k). A
distance near M occurs in few positions of a training window, so its own row is trained little: sharing
rows among far distances is the remedy (`relative_buckets`). Either way the kernels see a table of one
row per distance (`MultiHeadSelfAttention.relative_table`), and a cached decoder runs on past any window.

Decoding uses a cache of keys and values; because nothing in it depends on absolute position, a sliding
window of the last W positions continues a piece indefinitely at a flat cost per token. The one-token
steps' own cache, for several streams at once, is stream_cache.py's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

# Queries per block of the relative attention: memory holds one block's logits (x the keys it sees) at a
# time. A kernel's tuning, not the model's shape; every preset trained with 256 (the bundled model too).
BLOCK_SIZE = 256


def skew(rel_logits: torch.Tensor) -> torch.Tensor:
    """The paper's skewing: relative logits by distance to logits by key position.

    Input (..., c, n): row i' is the query at absolute position n-c+i' (the last c of n positions),
    column r holds q . e_(r-(n-1)), distances -(n-1)..0. Output (..., c, n): entry (i', j) holds
    q . e_(j-i) for every key j <= i; entries for j > i are left over and must be masked.

    Pad one zero column on the left, flatten each matrix, drop its first c elements, reshape. For a
    square input (c = n = L) this is exactly the paper's "reshape to (L+1, L), drop the first row".
    Check: flat index c + i'n + j = i'(n+1) + (c-i'+j), so it lands in padded row i', column c-i'+j,
    which is unpadded column j + (c-1-i') = j - i + (n-1), the distance j - i.

    The kernel adds `skew_view` instead, the same entries without the copies; this form is the one `_unskew`
    is the adjoint of and the tests hold the view to.
    """
    *batch, c, n = rel_logits.shape
    padded = torch.cat((rel_logits.new_zeros(*batch, c, 1), rel_logits), dim=-1)  # one zero column, left
    flat = padded.reshape(*batch, c * (n + 1))
    return flat[..., c:].reshape(*batch, c, n)


def skew_view(rel_logits: torch.Tensor) -> torch.Tensor:
    """`skew` without a copy: the same (..., c, n) entries for every key j <= i, as a strided view.

    Entry (i', j) of the skew is column j + (c-1-i') of row i', at flat offset (c-1) + i'(n-1) + j of a
    row-major matrix: rows of stride n-1 starting c-1 elements in. Entries for j > i run into
    the next row (they are masked anyway, as the skew's are). The attention kernel adds this view to
    QK^T, so the padded copy and the reshape's copy of `skew` are never made (15 % of a training step
    at 2,048 tokens on the CPU).
    """
    *batch, c, n = rel_logits.shape
    if rel_logits.stride()[-2:] != (n, 1):  # each matrix must be row-major; the batch axes may be in any order
        rel_logits = rel_logits.contiguous()
    strides = rel_logits.stride()[:-2]
    return rel_logits.as_strided((*batch, c, n), (*strides, n - 1, 1), rel_logits.storage_offset() + c - 1)


def relative_table(embeddings: torch.Tensor, length: int) -> torch.Tensor:
    """Rows for distances -(length-1)..0 (H, length, D) from a table of M rows for -(M-1)..0.

    Distances past the table's reach get zero rows: no relative term there.
    """
    rows = embeddings.shape[-2]
    if length <= rows:
        return embeddings[..., rows - length:, :]
    return F.pad(embeddings, (0, 0, length - rows, 0))


def relative_buckets(distances: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """The table row of each distance (0 or more) in a table of `buckets` rows: distances below buckets/2 their
    own row; from there to `max_distance` rows log-spaced in distance; from `max_distance` on the last row."""
    exact = buckets // 2
    spread = buckets - exact - 1  # the log-spaced rows; the last row is the far one
    scaled = torch.log(distances.clamp(min=exact).double() / exact) / math.log(max(max_distance, exact + 1) / exact)
    logged = exact + (scaled * spread).floor().long().clamp(max=spread - 1)
    return torch.where(distances < exact, distances, torch.where(distances < max_distance, logged, buckets - 1))


@functools.lru_cache(maxsize=32)
def _bucket_rows(length: int, buckets: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """The bucket of each distance length-1 .. 0, in that order: worked out once for every layer and step (a
    normal tensor even when first asked for in inference mode, so that training may keep it for its backward)."""
    with torch.inference_mode(False):
        return relative_buckets(torch.arange(length - 1, -1, -1, device=device), buckets, max_distance)


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
    return by_distance if q.shape[-2] == 1 else skew_view(by_distance)


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
                       window: int | None = None, block_size: int | None = BLOCK_SIZE,
                       local: int | None = None, offset: int = 0) -> torch.Tensor:
    """Causal relative self-attention of c queries, the last c of the n positions in k and v, in blocks.

    Each block of queries only needs the keys it can see (causality, and the window or the local
    blocks), so the work is the visible part of c x n, and memory holds one block's logits at a time,
    in training too (a fused backward that recomputes them). block_size None computes the whole matrix
    with the paper's single skew. `local` is the block length of relative local attention and `offset`
    the absolute position of the first key.
    """
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, embeddings))
    if needs_grad and torch.is_autocast_enabled(q.device.type):
        # Training under autocast: the relative term, the softmax and the fused backward stay in float32
        # (decoding and scoring keep autocast's bfloat16, where the cached keys already are).
        with torch.autocast(q.device.type, enabled=False):
            return relative_attention(q.float(), k.float(), v.float(), embeddings.float(), window, block_size,
                                      local, offset)
    block_size = block_size or q.shape[-2]
    visibility = Visibility(window, local, offset)
    if not needs_grad:
        with torch.no_grad():
            return _attend_blocks(q, k, v, embeddings, visibility, block_size, keep_logsumexp=False)[0]
    return _RelativeAttention.apply(q, k, v, embeddings, visibility, block_size)


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
        self.sounding: torch.Tensor | None = None  # (B, 128): the pitches sounding after them (model.sounding_input)
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
        if self.sounding is not None:
            self.sounding = self.sounding.index_select(0, index)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with relative positions (the paper's) or none (for absolute models)."""

    def __init__(self, d_model: int, n_heads: int, max_relative_distance: int | None = None,
                 local: int | None = None, block_size: int | None = BLOCK_SIZE, buckets: int | None = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.block_size = block_size  # the kernel's query block (a benchmark may set None: one single skew)
        self.local = local
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.relative = max_relative_distance is not None
        self.max_relative_distance, self.buckets = max_relative_distance, buckets
        if self.relative:
            # One row per distance: row r is distance r-(M-1), the last row distance 0 (the token itself).
            # With buckets: row b is bucket b (`relative_buckets`), row 0 distance 0.
            self.relative_embeddings = nn.Parameter(
                torch.randn(n_heads, buckets or max_relative_distance, self.head_dim) * self.head_dim ** -0.5)

    def relative_table(self, length: int) -> torch.Tensor:
        """The relative embeddings as one row per distance, (H, rows, D), row r distance r-(rows-1): the table
        itself (M rows; none past them) or, with buckets, `length` rows gathered from the buckets."""
        if not self.buckets:
            return self.relative_embeddings
        rows = _bucket_rows(length, self.buckets, self.max_relative_distance, self.relative_embeddings.device)
        return self.relative_embeddings[:, rows]

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                window: int | None = None) -> torch.Tensor:
        """x: (B, T, d_model). With a cache, x holds the newest T positions and the cache the earlier ones."""
        batch, length, _ = x.shape
        # (3, B, H, T, D), made contiguous once so the attention's blocks are slices that need no copy
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4) \
            .contiguous()
        offset = 0  # absolute position of the first key
        if cache is not None:
            window = cache.window
            k, v = cache.update(layer, k, v)
            offset = cache.position + length - k.shape[2]
        if self.relative:
            y = relative_attention(q, k, v, self.relative_table(k.shape[2]), window, self.block_size, self.local,
                                   offset)
        else:
            visibility = Visibility(window, self.local, offset)
            mask = None if (visibility.plain_causal and k.shape[2] == length) else \
                visibility.mask(length, k.shape[2], x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and length > 1)
        return self.out(y.transpose(1, 2).reshape(batch, length, -1))
