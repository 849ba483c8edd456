"""One-token steps of several streams at once, close to the arithmetic.

The model's forward pass reads a context. After that every step feeds one token per stream, and at that
size a step costs mostly what surrounds the arithmetic: module calls, small tensors allocated, keys
copied. `Decoder` lays the model's weights out for those steps once (the query scale folded into the
fused QKV projection, every matrix transposed for a row-major product, the relative embeddings as E^T),
keeps the streams' keys and values in a `StreamCache` (the shared context once, each stream's own tokens
in a ring), and runs a step as about twenty tensor operations per layer into buffers allocated once.

Several streams (the variations of one continuation) are rows of one step: the weights and the context's
keys are read once for all of them, so eight cost far less than eight times one.

On a CUDA GPU the cache is static (fixed shapes, bookkeeping on the device) and `CapturedStep` replays a
step, with whatever the caller does to its logits (sampling), as one CUDA graph: one launch per token
instead of hundreds. (torch.compile is not used: on the CPU the step is bound by memory traffic, not by
its hundred-odd operations, and Inductor in torch 2.13 fails on its in-place writes into views.)
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attention import KVCache, StreamCache
from .model import MusicTransformer, sinusoidal_positions


@dataclass
class _Layer:
    """One block's weights, laid out for a one-token step."""

    attention_norm: tuple[torch.Tensor, torch.Tensor, float]
    qkv_t: torch.Tensor  # (d, 3d), the query columns scaled by 1/sqrt(D)
    qkv_bias: torch.Tensor
    relative_t: torch.Tensor | None  # E^T (H, D, M)
    out_t: torch.Tensor
    out_bias: torch.Tensor
    feed_forward_norm: tuple[torch.Tensor, torch.Tensor, float]
    up_t: torch.Tensor
    up_bias: torch.Tensor
    down_t: torch.Tensor
    down_bias: torch.Tensor


def fast_path(model: torch.nn.Module) -> bool:
    """Whether `Decoder` computes what `model`'s forward pass does: a plain `MusicTransformer` with no
    forward hooks (hooks watch or change module calls, which a decoder step does not make)."""
    if type(model).forward is not MusicTransformer.forward:
        return False
    hooks = torch.nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        return False
    return not any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


def _norm(module: torch.nn.LayerNorm, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    return module.weight.detach().to(dtype), module.bias.detach().to(dtype), module.eps


def _transposed(linear: torch.nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return linear.weight.detach().t().to(dtype).contiguous(), linear.bias.detach().to(dtype)


@dataclass
class _Weights:
    """A model's weights laid out for one-token steps."""

    layers: list[_Layer]
    embedding: torch.Tensor  # scaled by sqrt(d_model), as the forward pass scales it
    final_norm: tuple[torch.Tensor, torch.Tensor, float]
    head_t: torch.Tensor


_LAID_OUT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (what they were made from, _Weights)


def _weights(model: MusicTransformer, dtype: torch.dtype) -> _Weights:
    """The weights laid out for `dtype`, made again only when a parameter has changed since (a training step,
    `load_state_dict`, a move): streams one after another (the duet's answers) skip copying them."""
    made_from = (dtype, tuple((parameter.data_ptr(), parameter._version) for parameter in model.parameters()))
    known = _LAID_OUT.get(model)
    if known is not None and known[0] == made_from:
        return known[1]
    weights = _Weights(_layers(model, dtype), (model.embedding.weight.detach() * math.sqrt(model.config.d_model))
                       .to(dtype), _norm(model.final_norm, dtype),
                       model.head.weight.detach().t().to(dtype).contiguous())
    _LAID_OUT[model] = (made_from, weights)
    return weights


def _layers(model: MusicTransformer, dtype: torch.dtype) -> list[_Layer]:
    d_model = model.config.d_model
    layers = []
    for block in model.blocks:
        attention = block.attention
        scale = attention.head_dim ** -0.5
        qkv_t, qkv_bias = _transposed(attention.qkv, torch.float32)
        qkv_t[:, :d_model] *= scale  # (q s) . k = s (q . k): the scale of equation 3, folded in
        qkv_bias = qkv_bias.clone()
        qkv_bias[:d_model] *= scale
        relative_t = attention.relative_embeddings.detach().transpose(1, 2).to(dtype).contiguous() \
            if attention.relative else None
        out_t, out_bias = _transposed(attention.out, dtype)
        up_t, up_bias = _transposed(block.feed_forward.up, dtype)
        down_t, down_bias = _transposed(block.feed_forward.down, dtype)
        layers.append(_Layer(_norm(block.attention_norm, dtype), qkv_t.to(dtype), qkv_bias.to(dtype), relative_t,
                             out_t, out_bias, _norm(block.feed_forward_norm, dtype), up_t, up_bias, down_t, down_bias))
    return layers


class Decoder:
    """Steps `rows` streams that continue the context in `context` (a `KVCache` the model has read) one
    token each: `step(tokens)` -> logits (rows, vocab), float32.

    Computes what `model(tokens[:, None], cache=...)` would for each row (tests hold it to a full pass).
    `span` is how many of its own tokens each row keeps (the window); `static` fixes the shapes (the
    default on a GPU); `dtype` is the weights' and keys' type (default float32).
    """

    def __init__(self, model: MusicTransformer, context: KVCache, rows: int = 1, *, span: int | None = None,
                 static: bool | None = None, dtype: torch.dtype = torch.float32) -> None:
        config = model.config
        device = model.device
        self.rows, self.device, self.vocab_size = rows, device, config.vocab_size
        self.static = device.type == "cuda" if static is None else static
        d_model, heads = config.d_model, config.n_heads
        self.d_model = d_model
        span = span or context.span or config.train_length
        self.cache = StreamCache(context, rows, span, config.max_relative_distance if config.relative_attention
                                 else None, dtype=dtype, static=self.static)
        weights = _weights(model, dtype)
        self.layers, self.embedding, self.final_norm, self.head_t = (weights.layers, weights.embedding,
                                                                     weights.final_norm, weights.head_t)
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

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feeds one token per row (rows,) and returns the next token's logits (rows, vocab), float32: a buffer
        that the next step overwrites."""
        logits = self._step(tokens)
        self.cache.moved_on()
        return logits.float()

    def _step(self, tokens: torch.Tensor) -> torch.Tensor:
        cache, rows, d_model = self.cache, self.rows, self.d_model
        cache.begin_step()
        x = torch.index_select(self.embedding, 0, tokens, out=self._x)
        if self.timing_signal:
            position = cache.device_position() if self.static else torch.tensor([cache.position], device=self.device)
            x.add_(sinusoidal_positions(position, d_model).to(x.dtype))
        for layer, weights in enumerate(self.layers):
            h = torch.layer_norm(x, (d_model,), *weights.attention_norm)
            torch.addmm(weights.qkv_bias, h, weights.qkv_t, out=self._qkv)
            q = self._q_heads if rows == 1 else self._q.copy_(self._q_heads)
            y = cache.attend(layer, q, self._k_heads, self._v_heads, weights.relative_t)  # (H, rows, D)
            y = self._y_flat if rows == 1 else self._y.copy_(y.transpose(0, 1)).view(rows, d_model)
            torch.addmm(x, y, weights.out_t, out=x).add_(weights.out_bias)
            h = torch.layer_norm(x, (d_model,), *weights.feed_forward_norm)
            hidden = F.gelu(torch.addmm(weights.up_bias, h, weights.up_t, out=self._hidden))
            torch.addmm(x, hidden, weights.down_t, out=x).add_(weights.down_bias)
        h = torch.layer_norm(x, (d_model,), *self.final_norm)
        cache.end_step()
        return torch.mm(h, self.head_t, out=self._logits)

    def reorder(self, index: torch.Tensor) -> None:
        """Keeps rows `index` (beam search)."""
        self.cache.reorder(index)


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
