"""One-token steps of several streams at once, close to the arithmetic.

The model's forward pass reads a context. After that every step feeds one token per stream, and at that
size a step costs mostly what surrounds the arithmetic: module calls, small tensors allocated, keys
copied. `Decoder` lays the model's weights out for those steps once (the query scale folded into the
fused QKV projection, every matrix laid out for the path that runs: transposed for torch's row-major
products, in panels for the C step; the relative embeddings as E^T),
keeps the streams' keys and values in a `StreamCache` (the shared context once, each stream's own tokens
in a ring), and runs a step as about twenty tensor operations per layer into buffers allocated once.

Several streams (the variations of one continuation) are rows of one step: the weights and the context's
keys are read once for all of them, so eight cost far less than eight times one.

On the CPU in float32 a step is one call into C (step.c, compiled into the package, loaded by `native.py`): the same
arithmetic in loops that read the weights and the keys straight through, 1.4 - 2x as fast as these
operations for one stream, whose step is bound by how fast memory streams in, and twice as fast for
eight on an AVX2 CPU (bench/README.md; the operations stay where the package has no C step, and are what the tests
hold the C to).

On a CUDA GPU the cache is static (fixed shapes, bookkeeping on the device) and `CapturedStep` replays a
step, with whatever the caller does to its logits (sampling), as one CUDA graph: one launch per token
instead of hundreds. (torch.compile is not used: Inductor in torch 2.13 fails on the step's in-place
writes into views, and the attention it compiled alone, after 12 s, ran no faster on the CPU than these
operations: 219 us a layer at a 2,048-token window against 223, where step.c takes 118.)
"""

from __future__ import annotations

import ctypes
import functools
import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import native as _native
from .attention import KVCache
from .events import NOTE_OFF_OFFSET, NUM_PITCHES
from .model import SILENCING_TOKENS, MusicTransformer, sinusoidal_positions
from .stream_cache import StepPlan, StreamCache, padded_rows


def _norm(module: torch.nn.LayerNorm, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    return module.weight.detach().to(dtype), module.bias.detach().to(dtype), module.eps


def _panels(weight: torch.Tensor) -> torch.Tensor:
    """W (out, in) as the C step reads it (step.c's `linear`): panels of `native.PANEL` outputs, each
    (in, PANEL) row-major, the last padded with zeros; float32."""
    out, width = weight.shape[0], _native.PANEL
    padded = torch.zeros(-(-out // width) * width, weight.shape[1])
    padded[:out] = weight
    return padded.view(-1, width, weight.shape[1]).transpose(1, 2).contiguous()


class _Matrices:
    """A layer's or the head's weight matrices, in the layout of the path that asks for them, each made on
    first use and kept: `transposed`, W^T (in, out) row-major in the decoder's dtype, for torch's products;
    `panels`, for the C step. A decoder makes only its own path's. `query_scale` (rows, s): the first
    matrix's first rows times s (the query's part of the QKV projection; (q s) . k = s (q . k), the scale of
    equation 3, folded in)."""

    def __init__(self, matrices: tuple[torch.Tensor, ...], dtype: torch.dtype,
                 query_scale: tuple[int, float] | None = None) -> None:
        self._matrices, self._dtype, self._query_scale = matrices, dtype, query_scale  # (out, in) each

    def _scaled(self) -> tuple[torch.Tensor, ...]:
        if self._query_scale is None:
            return self._matrices
        rows, scale = self._query_scale
        first = self._matrices[0].float().clone()
        first[:rows] *= scale
        return first, *self._matrices[1:]

    @functools.cached_property
    def transposed(self) -> tuple[torch.Tensor, ...]:
        return tuple(matrix.t().to(self._dtype).contiguous() for matrix in self._scaled())

    @functools.cached_property
    def panels(self) -> tuple[torch.Tensor, ...]:
        return tuple(_panels(matrix.float()) for matrix in self._scaled())


@dataclass
class _Layer:
    """One block's weights, laid out for a one-token step."""

    attention_norm: tuple[torch.Tensor, torch.Tensor, float]
    qkv_bias: torch.Tensor  # the query's part scaled by 1/sqrt(D), as are its rows of the QKV matrix
    relative_t: torch.Tensor | None  # E^T (H, D, M)
    out_bias: torch.Tensor
    feed_forward_norm: tuple[torch.Tensor, torch.Tensor, float]
    up_bias: torch.Tensor
    down_bias: torch.Tensor
    matrices: _Matrices  # QKV, out, up, down


def fast_path(model: torch.nn.Module) -> bool:
    """Whether `Decoder` computes what `model`'s forward pass does: a plain `MusicTransformer` with no
    forward hooks (hooks watch or change module calls, which a decoder step does not make)."""
    if type(model).forward is not MusicTransformer.forward:
        return False
    hooks = torch.nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        return False
    return not any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


@dataclass
class _Weights:
    """A model's weights laid out for one-token steps."""

    layers: list[_Layer]
    embedding: torch.Tensor  # scaled by sqrt(d_model), as the forward pass scales it
    final_norm: tuple[torch.Tensor, torch.Tensor, float]
    head: _Matrices
    sounding: torch.Tensor | None  # (128, d_model): the sounding pitches' embedding (model.sounding_input)

    def for_path(self, native: bool) -> None:
        """Lays the matrices out for the C step (`native`) or torch's products, where not yet done."""
        for matrices in (*(layer.matrices for layer in self.layers), self.head):
            matrices.panels if native else matrices.transposed  # noqa: B018 (made and kept on first use)


_LAID_OUT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (what they were made from, _Weights)


def relative_reach(config, span: int) -> int | None:
    """How many distances of relative embeddings a decoder whose rows see at most `span` positions needs: the
    table's M rows (none past them), or with buckets one row per distance it can see; None for absolute models."""
    if not config.relative_attention:
        return None
    return span if config.relative_buckets else config.max_relative_distance


def _weights(model: MusicTransformer, dtype: torch.dtype, reach: int | None = None) -> _Weights:
    """The weights laid out for `dtype` (relative tables of `reach` distances), made again only when a parameter
    has changed since (a training step, `load_state_dict`, a move): streams one after another (the duet's
    answers) skip copying them."""
    made_from = (dtype, reach,
                 tuple((parameter.data_ptr(), parameter._version) for parameter in model.parameters()))
    known = _LAID_OUT.get(model)
    if known is not None and known[0] == made_from:
        return known[1]
    sounding = model.sounding.weight.detach().t().to(dtype).contiguous() if model.config.sounding_input else None
    weights = _Weights(_layers(model, dtype, reach), (model.embedding.weight.detach()
                                                      * math.sqrt(model.config.d_model)).to(dtype),
                       _norm(model.final_norm, dtype), _Matrices((model.head.weight.detach(),), dtype), sounding)
    _LAID_OUT[model] = (made_from, weights)
    return weights


def _layers(model: MusicTransformer, dtype: torch.dtype, reach: int | None) -> list[_Layer]:
    d_model = model.config.d_model
    layers = []
    for block in model.blocks:
        attention = block.attention
        scale = attention.head_dim ** -0.5
        qkv_bias = attention.qkv.bias.detach().float().clone()
        qkv_bias[:d_model] *= scale
        relative_t = None
        if attention.relative:  # E^T, its rows apart as the keys' (stream_cache.padded_rows) on the CPU
            embeddings = attention.relative_table(reach).detach()
            relative_t = embeddings.transpose(1, 2).to(dtype).contiguous() if embeddings.device.type != "cpu" else \
                padded_rows(*embeddings.transpose(1, 2).shape, dtype=dtype).copy_(embeddings.transpose(1, 2))
        layers.append(_Layer(_norm(block.attention_norm, dtype), qkv_bias.to(dtype), relative_t,
                             attention.out.bias.detach().to(dtype), _norm(block.feed_forward_norm, dtype),
                             block.feed_forward.up.bias.detach().to(dtype),
                             block.feed_forward.down.bias.detach().to(dtype),
                             _Matrices((attention.qkv.weight.detach(), attention.out.weight.detach(),
                                        block.feed_forward.up.weight.detach(), block.feed_forward.down.weight.detach()),
                                       dtype, query_scale=(d_model, scale))))
    return layers


def _rows_apart(tensor: torch.Tensor) -> int:
    """How far apart the rows of `tensor`'s last dimension lie where nothing else lies between them (each
    outer dimension packed on the next, as padded_rows makes them); 0 otherwise."""
    if tensor.dim() < 2 or tensor.stride(-1) != 1:
        return 0
    apart = expected = tensor.stride(-2)
    for size, stride in zip(reversed(tensor.shape[:-1]), reversed(tensor.stride()[:-1]), strict=True):
        if stride != expected and size > 1:
            return 0
        expected *= size
    return apart if apart >= tensor.shape[-1] else 0


def _address(tensor: torch.Tensor | None, rows_apart: int = 0) -> int | None:
    """The tensor's address, where the C step can read it: float32 on the CPU, contiguous, or with its last
    dimension's rows `rows_apart` apart and nothing else between them (stream_cache.padded_rows)."""
    if tensor is None:
        return None
    packed = tensor.is_contiguous() if not rows_apart else _rows_apart(tensor) == rows_apart
    if tensor.dtype != torch.float32 or not packed or tensor.device.type != "cpu":
        raise ValueError("the C step reads float32 tensors on the CPU, laid out as the decoder lays them")
    return tensor.data_ptr()


class _NativeStep:
    """The C step (step.c) bound to one decoder's weights and cache (made with native=True): `(x, logits,
    plan)` runs every layer and the head for every row, from the tokens' embeddings in `x` to `logits`."""

    @staticmethod
    def readable(weights: _Weights) -> None:
        """Raises ValueError where the C step cannot read the model's own tensors as they are (the matrices
        it reads are laid out for it, and the cache is made for it)."""
        for layer in weights.layers:
            for tensor in (*layer.attention_norm[:2], layer.qkv_bias, layer.out_bias, *layer.feed_forward_norm[:2],
                           layer.up_bias, layer.down_bias):
                _address(tensor)
            _address(layer.relative_t, _rows_apart(layer.relative_t) if layer.relative_t is not None else 0)
        for tensor in weights.final_norm[:2]:
            _address(tensor)

    def __init__(self, library, weights: _Weights, cache: StreamCache, config) -> None:
        shared = cache.context_length > 0  # several rows: the context's keys apart from the rings
        strides = (_rows_apart(cache.context_keys[0]) if shared else 0,
                   _rows_apart(weights.layers[0].relative_t) if weights.layers[0].relative_t is not None else 0)
        layers = (_native.Layer * len(weights.layers))()
        weights.for_path(native=True)
        for index, (slot, layer) in enumerate(zip(layers, weights.layers, strict=True)):
            qkv, out, up, down = layer.matrices.panels
            for name, *tensor in (("norm1_w", layer.attention_norm[0]), ("norm1_b", layer.attention_norm[1]),
                                  ("qkv_w", qkv), ("qkv_b", layer.qkv_bias), ("out_w", out),
                                  ("out_b", layer.out_bias), ("norm2_w", layer.feed_forward_norm[0]),
                                  ("norm2_b", layer.feed_forward_norm[1]), ("up_w", up), ("up_b", layer.up_bias),
                                  ("down_w", down), ("down_b", layer.down_bias),
                                  ("relative_t", layer.relative_t, strides[1]),
                                  ("context_keys", cache.context_keys[index] if shared else None, strides[0]),
                                  ("context_values", cache.context_values[index] if shared else None),
                                  ("keys", cache.keys[index]), ("values", cache.values[index])):
                setattr(slot, name, _address(*tensor))
            slot.norm1_eps, slot.norm2_eps = layer.attention_norm[2], layer.feed_forward_norm[2]
        rows, d_model, context = cache.rows, config.d_model, cache.context_length
        self._work = torch.empty(rows * (5 * d_model + config.d_ff + context + cache.span + cache.distances) + 64)
        self._model = _native.Model(
            len(layers), d_model, config.n_heads, d_model // config.n_heads, config.d_ff, config.vocab_size,
            cache.span, cache.distances, rows, context, *strides, layers, _address(weights.final_norm[0]),
            _address(weights.final_norm[1]), _address(weights.head.panels[0]), _address(self._work),
            weights.final_norm[2])
        self._kept = (weights, cache, layers)  # what the addresses point into
        self._plan = _native.Plan()
        self._call = library.mt_step
        self._bounds = (context, cache.span, cache.distances)

    def _check(self, plan: StepPlan) -> None:
        """Refuses a plan that would read or write outside the buffers (C does not check; a bug here must
        raise, not corrupt memory)."""
        context, span, distances = self._bounds
        count = plan.context + plan.ring[1] - plan.ring[0]
        inside = (0 <= plan.context and (plan.context == 0 or 0 <= plan.first <= context - plan.context)
                  and 0 <= plan.ring[0] <= plan.ring[1] <= span and 0 <= plan.column < span and count > 0
                  and 0 <= plan.needed <= distances and len(plan.terms) <= 2 and len(plan.hidden) <= 2
                  and all(0 <= at and at + width <= count and distances - plan.needed <= entry
                          and entry + width <= distances for at, entry, width in plan.terms)
                  and all(0 <= at and at + width <= count for at, width in plan.hidden))
        if not inside:
            raise AssertionError(f"a step's plan outside its buffers: {plan}")

    def __call__(self, x: torch.Tensor, logits: torch.Tensor, plan: StepPlan) -> None:
        self._check(plan)
        into = self._plan
        into.first, into.context_seen, into.column, into.needed = plan.first, plan.context, plan.column, plan.needed
        into.ring_first, into.ring_seen = plan.ring[0], plan.ring[1] - plan.ring[0]
        into.n_terms, into.n_hidden = len(plan.terms), len(plan.hidden)
        for index, term in enumerate(plan.terms):
            into.terms[3 * index:3 * index + 3] = term
        for index, run in enumerate(plan.hidden):
            into.hidden[2 * index:2 * index + 2] = run
        self._call(ctypes.byref(self._model), x.data_ptr(), logits.data_ptr(), ctypes.byref(into))


class Decoder:
    """Steps `rows` streams that continue the context in `context` (a `KVCache` the model has read) one
    token each: `step(tokens)` -> logits (rows, vocab), float32.

    Computes what `model(tokens[:, None], cache=...)` would for each row (tests hold it to a full pass).
    `span` is how many of its own tokens each row keeps (the window); `static` fixes the shapes (the
    default on a GPU); `dtype` is the weights' and keys' type (default float32). `native`: on the CPU in
    float32 (not static) the steps go through the C step (`native.py`) where it can be built (None, the
    default), never (False), or must (True: an error where it cannot).
    """

    def __init__(self, model: MusicTransformer, context: KVCache, rows: int = 1, *, span: int | None = None,
                 static: bool | None = None, dtype: torch.dtype = torch.float32, native: bool | None = None) -> None:
        config = model.config
        device = model.device
        self.rows, self.device, self.vocab_size = rows, device, config.vocab_size
        self.static = device.type == "cuda" if static is None else static
        d_model, heads = config.d_model, config.n_heads
        self.d_model = d_model
        span = span or context.span or model.default_window
        library = None
        eligible = not self.static and device.type == "cpu" and dtype == torch.float32
        if native is not False and eligible:
            library = _native.library()
        if native and library is None:
            raise RuntimeError("the C step is for steps on the CPU in float32 (not static), where the package has it: "
                               + ("none is loaded here" if eligible else "this decoder is not that"))
        reach = relative_reach(config, span)
        weights = _weights(model, dtype, reach)
        if library is not None:
            try:
                _NativeStep.readable(weights)
            except ValueError as error:  # a tensor the C step cannot read as it is: the operations instead
                if native:
                    raise RuntimeError(f"the C step cannot run this model: {error}") from None
                warnings.warn(f"decoding with torch's operations: {error}", stacklevel=2)
                library = None
        self.cache = StreamCache(context, rows, span, reach, dtype=dtype, static=self.static,
                                 native=library is not None)
        self.sounding_weight = weights.sounding
        if weights.sounding is not None:  # each row's sounding pitches, from what the context left sounding
            before = context.sounding if context.sounding is not None else torch.zeros(1, NUM_PITCHES, device=device)
            self.sounding = before.to(device=device, dtype=dtype).expand(rows, NUM_PITCHES).contiguous()
            self._silencing = torch.tensor(SILENCING_TOKENS, device=device)
            self._pitches = torch.arange(NUM_PITCHES, device=device)
        self.layers, self.embedding, self.final_norm, self._head = (weights.layers, weights.embedding,
                                                                    weights.final_norm, weights.head)
        self.timing_signal = config.timing_signal
        self._x = torch.empty(rows, d_model, dtype=dtype, device=device)
        self._qkv = torch.empty(rows, 3 * d_model, dtype=dtype, device=device)
        self._hidden = torch.empty(rows, config.d_ff, dtype=dtype, device=device)
        self._logits = torch.empty(rows, config.vocab_size, dtype=dtype, device=device)
        heads_view = self._qkv.view(rows, 3, heads, d_model // heads).permute(1, 2, 0, 3)  # (3, H, rows, D)
        self._q_heads, self._k_heads, self._v_heads = heads_view
        self._q = self._q_heads if rows == 1 else torch.empty(heads, rows, d_model // heads, dtype=dtype,
                                                                device=device)
        self._y = torch.empty(rows, heads, d_model // heads, dtype=dtype, device=device)
        self._y_flat = self.cache.output.view(rows, d_model)  # one row: the attention's output, (H, 1, D) flat
        self._native = _NativeStep(library, weights, self.cache, config) if library is not None else None
        if self._native is None:
            weights.for_path(native=False)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feeds one token per row (rows,) and returns the next token's logits (rows, vocab), float32: a buffer
        that the next step overwrites."""
        logits = self._step(tokens)
        self.cache.moved_on()
        return logits.float()

    @property
    def native(self) -> bool:
        """Whether the steps run in the C step."""
        return self._native is not None

    def _step(self, tokens: torch.Tensor) -> torch.Tensor:
        cache, rows, d_model = self.cache, self.rows, self.d_model
        cache.begin_step()
        x = torch.index_select(self.embedding, 0, tokens, out=self._x)
        if self.sounding_weight is not None:
            self._sound(tokens)
            torch.addmm(x, self.sounding, self.sounding_weight, out=x)
        if self.timing_signal:
            position = cache.device_position() if self.static else torch.tensor([cache.position], device=self.device)
            x.add_(sinusoidal_positions(position, d_model).to(x.dtype))
        if self._native is not None:
            self._native(x, self._logits, cache.plan)
            return self._logits
        for layer, weights in enumerate(self.layers):
            qkv_t, out_t, up_t, down_t = weights.matrices.transposed
            h = torch.layer_norm(x, (d_model,), *weights.attention_norm)
            torch.addmm(weights.qkv_bias, h, qkv_t, out=self._qkv)
            q = self._q_heads if rows == 1 else self._q.copy_(self._q_heads)
            y = cache.attend(layer, q, self._k_heads, self._v_heads, weights.relative_t)  # (H, rows, D)
            y = self._y_flat if rows == 1 else self._y.copy_(y.transpose(0, 1)).view(rows, d_model)
            torch.addmm(x, y, out_t, out=x).add_(weights.out_bias)
            h = torch.layer_norm(x, (d_model,), *weights.feed_forward_norm)
            hidden = F.gelu(torch.addmm(weights.up_bias, h, up_t, out=self._hidden))
            torch.addmm(x, hidden, down_t, out=x).add_(weights.down_bias)
        h = torch.layer_norm(x, (d_model,), *self.final_norm)
        cache.end_step()
        return torch.mm(h, self._head.transposed[0], out=self._logits)

    def _sound(self, tokens: torch.Tensor) -> None:
        """Each row's sounding pitches after its token (model.sounding_pitches' rule), in place, in tensor
        operations (a captured step replays them)."""
        pitch = (tokens % NUM_PITCHES).unsqueeze(1)
        hit = self._pitches == pitch  # (rows, 128): the token's pitch
        on = (tokens < NOTE_OFF_OFFSET).unsqueeze(1) & hit
        off = ((tokens >= NOTE_OFF_OFFSET) & (tokens < NOTE_OFF_OFFSET + NUM_PITCHES)).unsqueeze(1) & hit
        silenced = torch.isin(tokens, self._silencing).unsqueeze(1)
        self.sounding.masked_fill_(off | silenced, 0).masked_fill_(on, 1)

    def reorder(self, index: torch.Tensor) -> None:
        """Keeps rows `index` (beam search)."""
        self.cache.reorder(index)
        if self.sounding_weight is not None:
            self.sounding.copy_(self.sounding.index_select(0, index))


class CapturedStep:
    """A static decoder's step and `after(logits) -> tokens` captured in one CUDA graph.

    `__call__(tokens)` copies the tokens in, replays the graph and returns `after`'s output (a static
    tensor, overwritten by the next call). The warm-up runs and the capture leave the cache as they
    found it: the slot they wrote is the next step's, and is written again before it is read.
    """

    def __init__(self, decoder: Decoder, after: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not (decoder.static and decoder.device.type == "cuda"):
            raise ValueError("only a static decoder on a CUDA GPU can be captured")
        self.decoder = decoder
        cache = decoder.cache
        self.tokens = torch.zeros(decoder.rows, dtype=torch.long, device=decoder.device)
        saved = cache.save_position()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # cuBLAS and the allocator set up outside the capture
                after(decoder._step(self.tokens))
                cache.restore_position(saved)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = after(decoder._step(self.tokens))
        cache.restore_position(saved)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens is not self.tokens:  # a caller may write into `tokens` itself
            self.tokens.copy_(tokens, non_blocking=True)
        self.graph.replay()
        self.decoder.cache.moved_on()
        return self.output
