"""The Music Transformer: a decoder-only, pre-norm Transformer over performance events.

`positional="relative"` is the paper's model (relative self-attention with skewing, no absolute
positions); `positional="absolute"` is the baseline Transformer with sinusoidal absolute positions (the
paper's comparison, and `music-transformer bench`'s). The bundled model is relative: it generates past
its training length, where absolute positions were never seen. Research variants (relative attention
plus the timing signal, the JSB Chorales' bar embedding) are subclasses in bench/jsb.py.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from . import limits
from .attention import KVCache, MultiHeadSelfAttention
from .events import VOCAB_SIZE

POSITIONAL_KINDS = ("relative", "absolute")

# Settings that earlier versions kept in ModelConfig and wrote into every checkpoint. Neither changes what
# a trained model computes: `block_size` was the attention kernel's query block (attention.BLOCK_SIZE now),
# and `attention_dropout` acts in training only (it left: no gain at 1.7x the time, bench/README.md).
# A checkpoint's are ignored; a training config that asks for attention dropout is refused.
RETIRED_SETTINGS = ("block_size", "attention_dropout")


@dataclass
class ModelConfig:
    """Shape and regularisation of a Music Transformer (nothing a kernel tunes)."""

    vocab_size: int = VOCAB_SIZE
    n_layers: int = 6
    d_model: int = 256
    n_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.1  # before each residual addition and on the embeddings
    max_relative_distance: int = 1024  # M: relative embeddings for distances 0..M-1, none past that
    train_length: int = 2048  # crop length in training; the decoder's default window
    positional: str = "relative"  # "relative" (the paper) or "absolute" (the baseline)
    local_block: int | None = None  # relative local attention: own block and the previous (None: global)

    def __post_init__(self) -> None:
        """Refuses (ValueError) a config no model can be built from, or one past `limits`' biggest model,
        before any weight is allocated: a checkpoint's config is checked here too."""
        def whole(name: str, high: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= high:
                raise ValueError(f"the model's {name} must be a whole number from 1 to {high:,}, not {value!r}")

        for name, high in (("vocab_size", limits.MAX_VOCAB_SIZE), ("n_layers", limits.MAX_LAYERS),
                           ("d_model", limits.MAX_D_MODEL), ("n_heads", limits.MAX_HEADS), ("d_ff", limits.MAX_D_FF),
                           ("max_relative_distance", limits.MAX_LENGTH), ("train_length", limits.MAX_LENGTH)):
            whole(name, high)
        whole("local_block", limits.MAX_LENGTH, optional=True)
        value = self.dropout
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"the model's dropout must be a share from 0 up to (not including) 1, not {value!r}")
        if self.positional == "both":  # what bench/jsb.py's relative-timing runs were called when the library had them
            raise ValueError('positional "both" (relative attention plus a timing signal) is a research model of '
                             "the JSB Chorales benchmark, which bench/jsb.py loads; Continuo's models are "
                             '"relative" or "absolute"')
        if self.positional not in POSITIONAL_KINDS:
            raise ValueError(f'positional must be one of {", ".join(POSITIONAL_KINDS)}, not {self.positional!r}')
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.timing_signal and self.d_model % 2:
            raise ValueError(f"d_model must be even for absolute positions (sines and cosines), not {self.d_model}")
        if self.parameter_count() > limits.MAX_PARAMETERS:
            raise ValueError(f"the model would have {self.parameter_count():,} weights; Continuo builds models of up "
                             f"to {limits.MAX_PARAMETERS:,}")

    def parameter_count(self) -> int:
        """How many weights `MusicTransformer(self)` has (the tied embedding counted once), without building it."""
        d, f = self.d_model, self.d_ff
        layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)  # norms, attention, feed-forward
        if self.relative_attention:
            layer += self.max_relative_distance * d  # per head, one embedding of head_dim per distance
        return self.vocab_size * d + self.n_layers * layer + 2 * d

    @property
    def relative_attention(self) -> bool:
        """Whether attention is relative (the paper's model)."""
        return self.positional == "relative"

    @property
    def timing_signal(self) -> bool:
        """Whether the sinusoidal absolute positions are added to the embeddings (the baseline)."""
        return self.positional == "absolute"

    def to_dict(self) -> dict:
        """The config as plain data (for checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A config from plain data, ignoring keys this version does not know (`RETIRED_SETTINGS` among them);
        checked as any config is."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config is a set of named settings, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


PRECISIONS = ("auto", "bfloat16", "float32")


def mixed_precision(device: torch.device, precision: str = "auto"):
    """The autocast context for `precision` on `device`.

    "auto": bfloat16 on a CUDA GPU that supports it (half the memory traffic), else float32 (a CPU
    without native bfloat16 would emulate it, slower). "bfloat16": autocast on either device; on a CPU
    with AVX-512 BF16 or AMX the linear layers run about twice as fast. "float32": no autocast.
    In training, relative attention and its softmax stay in float32 (`attention.relative_attention`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bfloat16" or (precision == "auto" and device.type == "cuda"
                                   and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sinusoidal_positions(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Vaswani et al.'s sinusoidal encodings of absolute positions (T,) -> (T, d_model)."""
    frequencies = torch.exp(torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)
                            * (-math.log(10000.0) / d_model))
    angles = positions.float()[:, None] * frequencies[None, :]
    encoding = torch.zeros(len(positions), d_model, device=positions.device)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding


class FeedForward(nn.Module):
    """The position-wise two-layer network."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm Transformer layer: x + dropout(attention(norm(x))), then x + dropout(ffn(norm(x)))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.d_model)
        self.attention = MultiHeadSelfAttention(
            config.d_model, config.n_heads,
            max_relative_distance=config.max_relative_distance if config.relative_attention else None,
            local=config.local_block)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int, window: int | None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), cache, layer, window))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class MusicTransformer(nn.Module):
    """Decoder-only Transformer over event tokens: LongTensor (B, T) -> logits (B, T, vocab)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.embedding.weight  # tied input and output embeddings
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("attention.out.weight") or name.endswith("feed_forward.down.weight"):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return self.embedding.weight.device

    def num_parameters(self) -> int:
        """Trainable parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, window: int | None = None) -> KVCache:
        """An empty key/value cache; window=None keeps every position a new token can see."""
        return KVCache(self.config.n_layers, window, self.config.local_block)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None,
                window: int | None = None) -> torch.Tensor:
        """Logits for every position of `tokens` (B, T).

        With a cache, `tokens` continue what the cache has seen and the cache is updated. `window`
        (without a cache) limits each position to the `window` most recent ones, as a cached decoder
        with that window does.
        """
        x = self.embedding(tokens) * math.sqrt(self.config.d_model)
        if self.config.timing_signal:
            first = cache.position if cache is not None else 0
            positions = torch.arange(first, first + tokens.shape[1], device=tokens.device)
            x = x + sinusoidal_positions(positions, self.config.d_model).to(x.dtype)
        x = self.embedding_dropout(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, window)
        if cache is not None:
            cache.position += tokens.shape[1]
        return self.head(self.final_norm(x))
