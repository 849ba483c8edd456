"""The one-token step's cache: keys and values of several streams that continue one shared context.

`KVCache` (attention.py) holds what the model's forward pass read; a `StreamCache` takes it over for the
decoder's steps (decoder.py): the context once, each stream's own tokens in a ring written in place, every
buffer allocated up front. `StepPlan` is where a step reads and writes, the C step's input (step.c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .attention import KVCache, Visibility
from .native import KEY_BLOCK  # columns of keys to a block of the C step's rings


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
