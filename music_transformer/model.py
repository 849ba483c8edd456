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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from . import limits
from .attention import KVCache, MultiHeadSelfAttention
from .events import END, NOTE_OFF_OFFSET, NUM_PITCHES, PAD, PREFIX, START, SUFFIX, VOCAB_SIZE

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
    # B rows of relative embeddings instead of M: distances 0..B/2-1 their own, then log-spaced buckets up to
    # M, and one shared by every distance from M on (attention.relative_buckets). None: one row per distance
    # below M and no relative term past it.
    relative_buckets: int | None = None
    # Adds to each token's embedding a learned embedding of the pitches sounding after it (`sounding_pitches`):
    # what a player knows of their own hands, which the model otherwise works out from note-ons and -offs
    # hundreds of tokens back, and loses (notes left sounding until the decoder ends them).
    sounding_input: bool = False

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
        whole("relative_buckets", limits.MAX_LENGTH, optional=True)
        if self.relative_buckets is not None and not (self.relative_buckets >= 4 and self.relative_buckets % 2 == 0
                                                      and self.max_relative_distance > self.relative_buckets // 2):
            raise ValueError(f"relative_buckets must be an even number from 4, with max_relative_distance above half "
                             f"of it, not {self.relative_buckets} with {self.max_relative_distance}")
        if not isinstance(self.sounding_input, bool):
            raise ValueError(f"sounding_input is true or false, not {self.sounding_input!r}")
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
            layer += (self.relative_buckets or self.max_relative_distance) * d  # per head, head_dim a row
        return self.vocab_size * d + self.n_layers * layer + 2 * d + (NUM_PITCHES * d if self.sounding_input else 0)

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


# Tokens after which nothing sounds: a sequence's opening, a piece's end, padding, and the fill-in-the-middle
# markers that open the music after a gap and before it (MIDDLE continues the music before: what sounds, sounds on).
SILENCING_TOKENS = (START, END, PAD, SUFFIX, PREFIX)


def sounding_pitches(tokens: torch.Tensor, before: torch.Tensor | None = None) -> torch.Tensor:
    """Which pitches sound after each token: (B, T) -> (B, T, 128) of 0 and 1.

    A pitch sounds from its NOTE_ON to its NOTE_OFF; nothing sounds after a `SILENCING_TOKENS` token.
    `before` (B, 128) is what sounded before the first token (none if None). Only the tokens matter: a
    note-off of a silent pitch, or a note-on of a sounding one, changes nothing it should not.
    """
    batch, length = tokens.shape
    times = torch.arange(length, device=tokens.device).view(1, length, 1)
    on = tokens < NOTE_OFF_OFFSET
    off = (tokens >= NOTE_OFF_OFFSET) & (tokens < NOTE_OFF_OFFSET + NUM_PITCHES)
    pitch = (tokens % NUM_PITCHES).unsqueeze(-1)
    # the last time each pitch was struck and released (or silenced), -1 for "before the tokens"
    struck = torch.full((batch, length, NUM_PITCHES), -2, dtype=torch.long, device=tokens.device)
    if before is not None:
        struck[:, 0] = torch.where(before.bool(), -1, -2)  # sounding before: struck at -1, after the release at -2
    released = torch.full_like(struck, -2)
    struck.scatter_(2, pitch, torch.where(on.unsqueeze(-1), times.expand(batch, length, 1), struck.gather(2, pitch)))
    silencing = torch.zeros_like(on)
    for token in SILENCING_TOKENS:
        silencing |= tokens == token
    released = torch.where((off.unsqueeze(-1) & (torch.arange(NUM_PITCHES, device=tokens.device) == pitch))
                           | silencing.unsqueeze(-1), times, released)
    return (struck.cummax(dim=1).values > released.cummax(dim=1).values).to(torch.uint8)


# What a trained model may gain when training goes on from it (`grown_state`): nothing it computes changes at
# the start except where the new setting must (the far relative distances begin with no term, as before).
GROWABLE = ("vocab_size", "relative_buckets", "max_relative_distance", "sounding_input", "train_length", "dropout")


def grown_state(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig) -> dict[str, torch.Tensor]:
    """A trained model's weights (`old`'s shape) as the start of a model of shape `new`, which may have:

    - a larger vocabulary: new style tokens start as the "any" style's embedding (a model that does not yet
      know an idiom continues as if none were named), other new tokens as the untrained embeddings start;
    - relative buckets where it had one row per distance: each bucket starts as the mean of the rows of its
      distances below the old M, and buckets wholly past it (the far ones) at zero, the old "no term";
    - the sounding-pitches input, starting at zero (no change to what the model computes);
    - another crop length and dropout (no weights).
    A ValueError names anything else that differs.
    """
    from . import events

    changed = [f.name for f in fields(ModelConfig) if getattr(old, f.name) != getattr(new, f.name)]
    refused = [name for name in changed if name not in GROWABLE]
    if "max_relative_distance" in changed and not new.relative_buckets:
        refused.append("max_relative_distance")
    if new.vocab_size < old.vocab_size or (old.relative_buckets and new.relative_buckets != old.relative_buckets) \
            or (old.sounding_input and not new.sounding_input):
        refused.append("a smaller model")
    if refused:
        raise ValueError(f"a trained model can grow its vocabulary, relative buckets and sounding input, not "
                         f"{refused[0]}")
    state = dict(state)
    if new.vocab_size > old.vocab_size:
        embedding = state["embedding.weight"]
        added = torch.randn(new.vocab_size - old.vocab_size, embedding.shape[1], dtype=embedding.dtype) * 0.02
        if events.has_styles(old.vocab_size):
            for token in range(old.vocab_size, new.vocab_size):
                if events.is_style(token):
                    added[token - old.vocab_size] = embedding[events.style_token("any")]
        state["embedding.weight"] = state["head.weight"] = torch.cat((embedding, added))
    if new.relative_buckets and not old.relative_buckets:
        from .attention import relative_buckets

        distances = torch.arange(old.max_relative_distance)
        buckets = relative_buckets(distances, new.relative_buckets, new.max_relative_distance)
        for name in [key for key in state if key.endswith("relative_embeddings")]:
            rows = state[name].flip(1)  # row d: distance d
            table = torch.zeros(rows.shape[0], new.relative_buckets, rows.shape[2], dtype=rows.dtype)
            table.index_add_(1, buckets, rows)
            counts = torch.bincount(buckets, minlength=new.relative_buckets).clamp(min=1).to(rows.dtype)
            state[name] = table / counts.view(1, -1, 1)
    if new.sounding_input and not old.sounding_input:
        state["sounding.weight"] = torch.zeros(new.d_model, events.NUM_PITCHES)
    return state


def sounding_after(tokens: Sequence[int]) -> torch.Tensor:
    """What sounds after `tokens` (128,) of 0 and 1: `sounding_pitches`' last row, in one pass over a list (for
    the part of a long primer that is not read into the cache, and costs no (T, 128) tensor)."""
    state = bytearray(NUM_PITCHES)
    silencing = set(SILENCING_TOKENS)
    for token in tokens:
        if token < NOTE_OFF_OFFSET:
            state[token] = 1
        elif token < NOTE_OFF_OFFSET + NUM_PITCHES:
            state[token - NOTE_OFF_OFFSET] = 0
        elif token in silencing:
            state = bytearray(NUM_PITCHES)
    return torch.tensor(list(state), dtype=torch.uint8)


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
            local=config.local_block, buckets=config.relative_buckets)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int, window: int | None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), cache, layer, window))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


DECODE_WINDOW = "decode_window"  # the metadata key of a model's default window (`MusicTransformer.default_window`)


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
        if config.sounding_input:
            self.sounding = nn.Linear(NUM_PITCHES, config.d_model, bias=False)
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

    @property
    def default_window(self) -> int:
        """The positions a new token attends to unless a caller says otherwise: the window measured best for this
        model where its file names one (metadata `decode_window`, checked when read; bench/memory.py measures
        the NLL by window), else its training length."""
        window = getattr(self, "metadata", {}).get(DECODE_WINDOW)
        return window if window else self.config.train_length

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
        if self.config.sounding_input:
            state = sounding_pitches(tokens, cache.sounding if cache is not None else None)
            if cache is not None:
                cache.sounding = state[:, -1]
            x = x + self.sounding(state.to(x.dtype))
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
