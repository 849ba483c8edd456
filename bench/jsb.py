"""The Music Transformer paper's JSB Chorales benchmark: NLL per token, relative vs. absolute attention.

    python bench/jsb.py [--config cpu|cpu-long|cpu-2h|gpu|FILE] [--runs relative,absolute] [--out runs/jsb] [--jobs 2]
    python bench/jsb.py --eval FILE.json --checkpoint runs/jsb/relative/model.pt [--transpositions 3]
    python bench/jsb.py --teachers runs/jsb --runs relative,absolute --out runs/jsb-distilled

Each chorale of `../shared/data/jsb16/` (lists of 16th-note steps [S, A, T, B], MIDI pitches 36..81,
-1 silent) is serialised as the paper did, in raster order S1 A1 T1 B1 S2 A2 ...: one token per voice
per 16th note, a held note repeating its pitch. The vocabulary is the 46 pitches 36..81, a rest, a
start token that opens every chorale and a pad (49 tokens). Training reuses `MusicTransformer` and
`music_transformer.train` unchanged: this file only brings the serialisation (`JSBData`), whole
chorales batched by length, augmented by transposition within each voice's range, the timing signal
of the `-timing` runs (`TimingTransformer`), the bar embedding of the `-bar` runs (`BarTransformer`)
and distillation's loss (`DistillationLoss`).

Runs (`--runs`): `relative` (the paper's model), `absolute` (the baseline), `relative-timing`
(relative attention plus the sinusoidal timing signal), the `-bar` runs (a learned embedding of the
position modulo one 4/4 bar, 64 places: each token's voice and 16th note), `relative-timing-bar-all-keys`
(transposed as far as the vocabulary reaches, not only within each voice's range) and the recipe's
variants. On a CUDA GPU, `bench/jsb_gpu.sh` runs the `gpu` config as one prepared script. The runs
that bench/README.md reports as rejected (intervals, metre, degrees, held, relative pitch, a mean
teacher) were removed; their code is at commit 685f151; attention dropout's run left with the
library's attention dropout (no gain at 1.7x the time), at commit 79d63de.

The score is the mean NLL (nats) over every token of every valid chorale, each chorale scored whole
from its start token. The paper reports 0.335 for relative attention; the baseline Transformer with
absolute positions scores worse. With `--transpositions K` the model's predictions are also scored
averaged over the chorale transposed by -K..+K semitones (`key_averaged_log_probs`: still a model of
each token given only the ones before it). With `--teachers DIR` each run is distilled from its
namesake's averaged weights in DIR (`JSBData.distil_from`): it learns from the tokens and, with weight
0.5, from the teacher's predictions averaged over ±3 keys, so that one set of weights captures what
averaging over keys gains (the loop's loss is then `DistillationLoss`). Checkpoints go to `--out`
(default `runs/jsb`, not committed); a run directory that already holds a run is resumed (and, when
finished, only scored again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from music_transformer import train as train_module
from music_transformer.attention import KVCache
from music_transformer.checkpoint import default_device, read_checkpoint, save_checkpoint
from music_transformer.errors import ContinuoError
from music_transformer.evaluation import validation_nll
from music_transformer.model import ModelConfig, MusicTransformer, mixed_precision, sinusoidal_positions
from music_transformer.train import Batch, TrainConfig, token_loss

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jsb16"

LOWEST, HIGHEST = 36, 81  # the data's pitch range (the README's 36..81)
REST = HIGHEST - LOWEST + 1  # token 46: a silent voice
START = REST + 1  # token 47: opens every chorale
PAD = START + 1  # token 48: batch filler, never scored
VOCAB_SIZE = PAD + 1
VOICES = ("soprano", "alto", "tenor", "bass")

PAPER = {"relative": 0.335, "absolute": None}  # the paper's table: the baseline's figure is only "worse"

# Distillation (`--teachers DIR`): a run learns from its namesake in DIR, the teacher's predictions averaged
# over 3 keys either side (nearly all of what averaging over keys gains, bench/README.md), weighted 0.5
# against the tokens themselves.
TEACHER_TRANSPOSITIONS = 3
SOFT_TARGET_WEIGHT = 0.5

# Named configs. "cpu" trains relative and absolute side by side in about 33 minutes on two CPU cores
# (the runs' comparisons); "cpu-long" (below) is the same model for the whole 2-hour CPU budget; "gpu"
# is the paper-sized one for a CUDA GPU (minutes). A budget is in optimizer steps, the same for every
# run, so a busy machine changes the wall-clock but not the comparison.
CONFIGS = {
    "cpu": {
        "model": dict(n_layers=3, d_model=192, n_heads=4, d_ff=768, dropout=0.1, max_relative_distance=1024,
                      train_length=2304),
        "train": dict(batch_size=2, learning_rate=3e-3, warmup_steps=50, steps=3000, max_transpose=5,
                      weight_decay=0.01, checkpoint_minutes=5.0),
        "data": dict(transpose_within="voices"),
    },
    "gpu": {
        "model": dict(n_layers=6, d_model=512, n_heads=8, d_ff=2048, dropout=0.3, max_relative_distance=1024,
                      train_length=2304),
        "train": dict(batch_size=8, learning_rate=1e-3, warmup_steps=200, steps=4000, max_transpose=5,
                      weight_decay=0.01, checkpoint_minutes=5.0),
        "data": dict(transpose_within="voices"),
    },
    "smoke": {  # seconds: for tests
        "model": dict(n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0, max_relative_distance=64,
                      train_length=2304),
        "train": dict(batch_size=4, learning_rate=3e-3, warmup_steps=2, steps=6, max_transpose=5,
                      checkpoint_minutes=0.0),
    },
}

# The whole 2-hour CPU budget: the cpu config for 11,000 steps, its linear layers in bfloat16 (1.2-1.3x
# the steps an hour with relative attention, whose own kernel stays in float32; each step learns a
# little less: 0.489 and 0.496 against float32's 0.476 after 3,000 steps; bench/README.md).
CONFIGS["cpu-long"] = {**CONFIGS["cpu"], "train": {**CONFIGS["cpu"]["train"], "steps": 11000,
                                                   "precision": "bfloat16"}}
# The same budget spent the other way: float32 (more learnt per step) with the runs one after the other,
# each on both cores (`--jobs 1`): 12,000 steps of relative-timing-bar and of absolute in 108 of the 120
# minutes (0.4070 and 0.4313 averaged, the best CPU result; bench/README.md).
CONFIGS["cpu-2h"] = {**CONFIGS["cpu"], "train": {**CONFIGS["cpu"]["train"], "steps": 12000}}

# What each named run changes in the config, section by section; "bar": the model has the bar embedding
# (`BarTransformer`), "timing": the sinusoidal timing signal (`TimingTransformer`).
BAR = 64  # the bar embedding's places: one 4/4 bar of the serialisation, 4 voices x 16 sixteenths
CROP_STEP = BAR  # a chorale longer than the training length is cropped whole bars in
RUNS = {
    "relative": {},
    "absolute": {"model": {"positional": "absolute"}},
    "relative-timing": {"timing": True},  # relative attention + the sinusoidal timing signal
    "relative-bar": {"bar": True},
    "relative-timing-bar": {"timing": True, "bar": True},
    "absolute-bar": {"model": {"positional": "absolute"}, "bar": True},  # the baseline, told the same
    # transposed as far as the vocabulary reaches (up to ±6), not only within each voice's range
    "relative-timing-bar-all-keys": {"timing": True, "bar": True,
                                     "train": {"max_transpose": 6}, "data": {"transpose_within": "vocabulary"}},
    "relative-label-smoothing": {"train": {"label_smoothing": 0.1}},
    "relative-local": {"model": {"local_block": 256}},
}
TRANSPOSE_WITHIN = ("voices", "vocabulary")
VOCABULARY_RANGES = np.tile([LOWEST, HIGHEST], (4, 1))  # every voice may take any pitch of the vocabulary


class JSBError(ContinuoError):
    """A JSB file that cannot be read or a run that cannot start."""


# --- the timing signal and the bar embedding ------------------------------------------------------------------


class TimingTransformer(MusicTransformer):
    """Relative attention plus Vaswani et al.'s sinusoidal timing signal on the embeddings: the `-timing` runs
    (the library's `positional="both"` before it left for this file).

    In the chorales a token's voice and place in the bar are absolute facts that relative distances only
    imply: told its absolute position too, the model scores better there (bench/README.md). The positions
    count from the first token, so it reads whole chorales and has no cached decoder.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        # Checkpoints carry no class: a timing run's weights name this (empty) buffer, as a bar run's name the
        # bar embedding, so that `_model_in` builds the model that wrote them (and the library refuses them).
        self.register_buffer("timing_signal", torch.empty(0))

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, window: int | None = None
                ) -> torch.Tensor:
        """Logits for every position of `tokens` (B, T), the first of them the chorale's first."""
        if cache is not None:
            raise JSBError("the timing model reads whole chorales from their start: it has no cached decoder")
        x = self.embedding(tokens) * math.sqrt(self.config.d_model)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embedding_dropout(x + sinusoidal_positions(positions, self.config.d_model).to(x.dtype))
        for layer, block in enumerate(self.blocks):
            x = block(x, None, layer, window)
        return self.head(self.final_norm(x))


class BarEmbedding(nn.Module):
    """Token embeddings plus a learned embedding of each token's place in a 4/4 bar: its position modulo
    BAR (voice and 16th note), counted from the sequence's first token."""

    def __init__(self, tokens: nn.Embedding) -> None:
        super().__init__()
        self.weight = tokens.weight  # the token table, still tied to the model's output layer
        self.bar = nn.Embedding(BAR, tokens.embedding_dim)
        nn.init.normal_(self.bar.weight, std=0.02)  # as MusicTransformer's own embeddings

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        places = torch.arange(tokens.shape[1], device=tokens.device) % BAR
        return F.embedding(tokens, self.weight) + self.bar(places)


class BarTransformer(MusicTransformer):
    """`MusicTransformer` told each token's voice and 16th note (`BarEmbedding`): the `-bar` runs.

    Relative attention sees distances only; in the chorales the voice and the place in the bar are
    absolute facts, and telling them helps it (bench/README.md). The places count from the first token,
    so it reads whole chorales or crops that start on a bar line, and has no cached decoder.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.embedding = BarEmbedding(self.embedding)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, window: int | None = None
                ) -> torch.Tensor:
        """Logits for every position of `tokens` (B, T), the first of them on a bar line."""
        if cache is not None:
            raise JSBError("the bar model reads whole chorales from their start: it has no cached decoder")
        return super().forward(tokens, window=window)


class TimingBarTransformer(BarTransformer, TimingTransformer):
    """Both: the bar embedding and the timing signal (the `-timing-bar` runs)."""


MODEL_CLASSES = {(False, False): MusicTransformer, (True, False): BarTransformer, (False, True): TimingTransformer,
                 (True, True): TimingBarTransformer}  # (bar, timing) -> the model


def model_class(run: str) -> type[MusicTransformer]:
    """The model a named run trains: with the bar embedding, the timing signal, both or neither."""
    return MODEL_CLASSES[bool(RUNS[run].get("bar")), bool(RUNS[run].get("timing"))]


# The bar embedding's weights in the checkpoints written while it was `ModelConfig.position_cycle`.
FORMER_WEIGHT_NAMES = {"cycle_embedding.weight": "embedding.bar.weight"}


def _model_in(state: dict, name: str) -> MusicTransformer:
    """The model a checkpoint's state describes, with its weights: with the bar embedding when they hold
    one, with the timing signal when they name it (or, written before it left the library, the config
    says positional "both")."""
    weights = {FORMER_WEIGHT_NAMES.get(key, key): value for key, value in state["model"].items()}
    config = dict(state["config"]) if isinstance(state["config"], dict) else state["config"]
    if isinstance(config, dict) and config.get("positional") == "both":
        config["positional"] = "relative"
        weights["timing_signal"] = torch.empty(0)
    try:
        config = ModelConfig.from_dict(config)
        model = MODEL_CLASSES[("embedding.bar.weight" in weights, "timing_signal" in weights)](config)
        model.load_state_dict(weights)
    except (TypeError, ValueError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise JSBError(f"{name}: the weights do not fit the model they describe ({reason})") from None
    return model


def load_model(path: str | os.PathLike, device: str | None = None) -> MusicTransformer:
    """A JSB run's checkpoint, with or without the bar embedding, in eval mode on `device` (default: GPU if any)."""
    model = _model_in(read_checkpoint(path), Path(path).name)
    return model.to(torch.device(device) if device is not None else default_device()).eval()


# --- the data ----------------------------------------------------------------------------------------------


def read_chorales(path: str | os.PathLike) -> list[np.ndarray]:
    """The chorales of a JSON split as int arrays (steps, 4), checked: pitches LOWEST..HIGHEST or -1."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise JSBError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise JSBError(f"{path.name}: not a JSON file ({error})") from None
    if not isinstance(raw, list) or not raw:
        raise JSBError(f"{path.name}: expected a non-empty list of chorales")
    chorales = []
    for index, chorale in enumerate(raw):
        try:
            array = np.asarray(chorale, dtype=np.int64)
        except (TypeError, ValueError):
            raise JSBError(f"{path.name}: chorale {index} is not a list of [S, A, T, B] steps") from None
        if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0:
            raise JSBError(f"{path.name}: chorale {index} is not a list of [S, A, T, B] steps")
        bad = (array != -1) & ((array < LOWEST) | (array > HIGHEST))
        if bad.any():
            step, voice = np.argwhere(bad)[0]
            raise JSBError(f"{path.name}: chorale {index}, step {step}, {VOICES[voice]}: pitch {array[step, voice]} "
                           f"is outside {LOWEST}..{HIGHEST}")
        chorales.append(array)
    return chorales


def transpose(chorale: np.ndarray, shift: int) -> np.ndarray:
    """The chorale's pitches moved by `shift` semitones, its silences (-1) kept; no range check."""
    return np.where(chorale >= 0, chorale + shift, -1)


def serialise(chorale: np.ndarray, shift: int = 0) -> np.ndarray:
    """START, then S1 A1 T1 B1 S2 ... (raster order), pitches transposed by `shift` semitones."""
    steps = np.where(chorale >= 0, chorale + shift - LOWEST, REST)
    return np.concatenate([[START], steps.reshape(-1)]).astype(np.int64)


def voice_ranges(chorales: Sequence[np.ndarray]) -> np.ndarray:
    """Each voice's lowest and highest pitch over the chorales: (4, 2)."""
    ranges = np.empty((4, 2), dtype=np.int64)
    for voice in range(4):
        pitches = np.concatenate([c[:, voice][c[:, voice] >= 0] for c in chorales])
        ranges[voice] = pitches.min(), pitches.max()
    return ranges


def allowed_shifts(chorale: np.ndarray, ranges: np.ndarray, max_transpose: int) -> list[int]:
    """Transpositions within ±max_transpose that keep every voice inside its range (0 always allowed)."""
    shifts = []
    for shift in range(-max_transpose, max_transpose + 1):
        inside = True
        for voice in range(4):
            pitches = chorale[:, voice][chorale[:, voice] >= 0]
            if len(pitches) and (pitches.min() + shift < ranges[voice, 0] or pitches.max() + shift > ranges[voice, 1]):
                inside = False
                break
        if inside or shift == 0:
            shifts.append(shift)
    return shifts


def length_groups(chorales: Sequence[np.ndarray], max_tokens: int) -> list[list[int]]:
    """The chorales' indices sorted by length, in groups of about `max_tokens` tokens once padded (a
    chorale longer than that alone)."""
    groups: list[list[int]] = []
    group: list[int] = []
    for index in sorted(range(len(chorales)), key=lambda index: len(chorales[index])):
        if group and (len(group) + 1) * (4 * len(chorales[index]) + 1) > max_tokens:
            groups.append(group)
            group = []
        group.append(index)
    if group:
        groups.append(group)
    return groups


def _pad_rows(rows: Sequence[np.ndarray], fill: int = PAD) -> np.ndarray:
    width = max(len(row) for row in rows)
    batch = np.full((len(rows), width), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        batch[i, :len(row)] = row
    return batch


class JSBData:
    """The JSB chorales as `music_transformer.train.TrainingData`: whole chorales, batched by length."""

    pad = PAD
    vocab_size = VOCAB_SIZE

    def __init__(self, train: Sequence[np.ndarray], valid: Sequence[np.ndarray], name: str = "jsb16",
                 transpose_within: str = "voices") -> None:
        if not train:
            raise JSBError(f"{name}: no training chorales")
        if transpose_within not in TRANSPOSE_WITHIN:
            raise JSBError(f"transpose_within must be one of {', '.join(TRANSPOSE_WITHIN)}, not {transpose_within!r}")
        self.train, self.valid, self.name = list(train), list(valid), name
        self.ranges = voice_ranges(self.train)
        # how far a chorale may be transposed: each voice within its range, or any pitch of the vocabulary
        self.transpose_ranges = self.ranges if transpose_within == "voices" else VOCABULARY_RANGES
        self._shifts: dict[tuple[int, int], list[int]] = {}  # (chorale, max_transpose) -> allowed shifts
        # distillation (`distil_from`): the teacher and its key-averaged predictions of each training
        # chorale in each key the batches draw, (chorale, shift) -> (tokens - 1, REST + 1) probabilities
        self.teacher: MusicTransformer | None = None
        self.teacher_transpositions = 0
        self._soft: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def load(cls, folder: str | os.PathLike = DATA, transpose_within: str = "voices") -> JSBData:
        folder = Path(folder)
        return cls(read_chorales(folder / "train.json"), read_chorales(folder / "valid.json"), name=str(folder),
                   transpose_within=transpose_within)

    def describe(self) -> str:
        tokens = lambda chorales: sum(4 * len(c) + 1 for c in chorales)  # noqa: E731
        return (f"JSB {len(self.train)} train chorales ({tokens(self.train):,} tokens), {len(self.valid)} valid "
                f"({tokens(self.valid):,} tokens); voice ranges "
                + ", ".join(f"{v[0].upper()} {lo}-{hi}" for v, (lo, hi) in zip(VOICES, self.ranges, strict=True))
                + (f"; soft targets from a teacher averaged over ±{self.teacher_transpositions} keys"
                   if self.teacher is not None else ""))

    def distil_from(self, teacher: MusicTransformer, transpositions: int = TEACHER_TRANSPOSITIONS) -> None:
        """Training batches bring soft targets from now on: the teacher's next-token probabilities for
        the batch's chorales in the keys they are drawn in, averaged over `transpositions` keys either
        side of that key (`key_averaged_log_probs`), the PAD and START columns 0."""
        if teacher.config.vocab_size != VOCAB_SIZE:
            raise JSBError(f"the teacher is not a JSB model of pitches (its vocabulary has "
                           f"{teacher.config.vocab_size} tokens, not {VOCAB_SIZE})")
        if transpositions < 0:
            raise JSBError(f"the teacher's transpositions must be 0 or more, not {transpositions}")
        self.teacher, self.teacher_transpositions, self._soft = teacher, transpositions, {}

    def teach(self, max_transpose: int) -> None:
        """The teacher's predictions for every (chorale, shift) the batches can draw that it has not
        made yet, all at once (batched by length); `batches` asks for them itself, `train_run` first,
        so that the training clock leaves them out."""
        missing = [(index, shift) for index in range(len(self.train))
                   for shift in self._allowed(index, max_transpose) if (index, shift) not in self._soft]
        if not missing:
            return
        transposed = [transpose(self.train[index], shift) for index, shift in missing]
        predictions = key_averaged_log_probs(self.teacher, transposed, self.teacher_transpositions)
        for pair, log_probs in zip(missing, predictions, strict=True):
            self._soft[pair] = np.exp(log_probs).astype(np.float16)

    def _allowed(self, index: int, max_transpose: int) -> list[int]:
        key = (index, max_transpose)
        if key not in self._shifts:
            self._shifts[key] = allowed_shifts(self.train[index], self.transpose_ranges, max_transpose)
        return self._shifts[key]

    def batches(self, length: int, batch_size: int, seed: int, epoch: int, start: int, rank: int,
                world_size: int, max_transpose: int) -> Iterator[tuple[int, Batch]]:
        """Every chorale once per epoch, transposed at random, in batches of similar lengths.

        The order is shuffled, then sorted by length within runs of 8 batches (little padding, still
        random), then the batches are shuffled; a chorale longer than `length` + 1 tokens is cropped at
        a random multiple of CROP_STEP tokens (whole 4/4 bars: each token keeps its place in the bar).
        With a teacher (`distil_from`), each batch is a pair (tokens, soft targets (B, T, VOCAB_SIZE)).
        """
        if self.teacher is not None:
            self.teach(max_transpose)
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self.train))
        global_batch = batch_size * world_size
        run = 8 * global_batch
        for first in range(0, len(order), run):
            part = order[first:first + run]
            order[first:first + run] = part[np.argsort([len(self.train[i]) for i in part], kind="stable")]
        count = max(1, len(order) // global_batch)
        batch_order = rng.permutation(count)
        for batch in range(start, count):
            rows, softs = [], []
            for row in range(batch_size):
                position = (batch_order[batch] * global_batch + rank * batch_size + row) % len(order)
                index = int(order[position])
                sample_rng = np.random.default_rng([seed, epoch, index])
                chorale = self.train[index]
                shift = int(sample_rng.choice(self._allowed(index, max_transpose)))
                tokens = serialise(chorale, shift)
                soft = self._soft.get((index, shift))  # the teacher's prediction of each token after START
                if len(tokens) > length + 1:
                    # a whole number of 4/4 bars in, so that the position modulo 64 (the bar embedding)
                    # still tells each token its voice and 16th note
                    offset = CROP_STEP * int(sample_rng.integers(0, (len(tokens) - length - 1) // CROP_STEP + 1))
                    tokens = tokens[offset:offset + length + 1]
                    soft = None if soft is None else soft[offset:offset + length]
                rows.append(tokens)
                softs.append(soft)
            tokens = _pad_rows(rows)
            if self.teacher is None:
                yield batch, tokens
                continue
            soft = np.zeros((len(rows), tokens.shape[1] - 1, VOCAB_SIZE), dtype=np.float32)
            for row, probabilities in enumerate(softs):
                soft[row, :len(probabilities), :probabilities.shape[1]] = probabilities
            yield batch, (tokens, soft)

    def validation_batches(self, length: int, batch_size: int, chorales: Sequence[np.ndarray] | None = None,
                           max_tokens: int = 16384) -> list[np.ndarray]:
        """Whole valid chorales (none cropped), sorted by length, about `max_tokens` tokens a batch."""
        chorales = self.valid if chorales is None else chorales
        return [_pad_rows([serialise(chorales[index]) for index in group])
                for group in length_groups(chorales, max_tokens)]


# --- training and scoring ----------------------------------------------------------------------------------


def load_config(name_or_path: str) -> tuple[dict, dict, dict]:
    """A named config or a JSON file {"model": {...}, "train": {...}, "data": {...}} (plain dicts).

    A file with "base": a named config gives only what it changes, section by section
    (bench/jsb_configs/)."""
    if name_or_path in CONFIGS:
        config = CONFIGS[name_or_path]
    else:
        try:
            config = json.loads(Path(name_or_path).read_text())
        except (OSError, ValueError) as error:
            raise JSBError(f"--config {name_or_path}: neither {', '.join(CONFIGS)} nor a JSON config ({error})") \
                from None
        if "base" in config:
            if config["base"] not in CONFIGS:
                raise JSBError(f"--config {name_or_path}: its base {config['base']!r} is none of "
                               f"{', '.join(CONFIGS)}")
            base = CONFIGS[config["base"]]
            config = {section: {**base.get(section, {}), **config.get(section, {})}
                      for section in ("model", "train", "data")}
    return dict(config.get("model", {})), dict(config.get("train", {})), dict(config.get("data", {}))


def run_configs(config: str, run: str, steps: int | None = None,
                max_minutes: float | None = None) -> tuple[ModelConfig, TrainConfig, dict]:
    """The model config, training config and data options (JSBData's keywords) of one named run
    (`steps`, `max_minutes`: overrides)."""
    if run not in RUNS:
        raise JSBError(f"unknown run {run!r}; runs: {', '.join(RUNS)}")
    model_values, train_values, data_values = load_config(config)
    changes = RUNS[run]
    data_options = {**data_values, **changes.get("data", {})}
    known = ("transpose_within",)
    unknown = set(data_options) - set(known)
    if unknown:
        raise JSBError(f"unknown data option(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    model_config = ModelConfig(**{**model_values, **changes.get("model", {}), "vocab_size": VOCAB_SIZE})
    train_config = TrainConfig.from_dict({**train_values, **changes.get("train", {})})
    if steps:
        train_config = replace(train_config, steps=steps)
    if max_minutes:
        train_config = replace(train_config, max_minutes=max_minutes)
    return model_config, train_config, data_options


def score(checkpoint: str | os.PathLike, chorales: Sequence[np.ndarray], device: str | None = None,
          transpositions: int = 0) -> float:
    """NLL per token (nats) of a checkpoint over whole chorales, every token after START scored; with
    `transpositions`, of its predictions averaged over that many keys either side (`key_averaged_nll`)."""
    if transpositions < 0:
        raise JSBError(f"--transpositions must be 0 or more, not {transpositions}")
    model = load_model(checkpoint, device)
    if model.config.vocab_size != VOCAB_SIZE:
        raise JSBError(f"{checkpoint}: not a JSB model (its vocabulary has {model.config.vocab_size} tokens, "
                       f"JSB's {VOCAB_SIZE})")
    if transpositions:
        return key_averaged_nll(model, chorales, transpositions)
    batches = JSBData(chorales, chorales, name="eval").validation_batches(0, 0)
    return validation_nll(model, batches, model.device, pad=PAD)


def transposed_tokens(chorale: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """`serialise(chorale, shift)` with any pitch the shift takes outside LOWEST..HIGHEST clamped to the
    nearest end, and whether each token after START stays inside (a rest always does)."""
    shifted = transpose(chorale, shift)
    inside = (shifted < 0) | ((shifted >= LOWEST) & (shifted <= HIGHEST))
    clamped = np.where(shifted >= 0, np.clip(shifted, LOWEST, HIGHEST), -1)
    return serialise(clamped), inside.reshape(-1)


def in_key(log_probs: np.ndarray, shift: int) -> np.ndarray:
    """A transposed model's next-token log-probabilities (T, vocabulary) read back in the chorale's own
    key: (T, REST + 1) over the pitches and the rest, pitch p taken from column p + shift (impossible
    where that leaves the vocabulary), renormalised over what the shift can reach."""
    result = np.full((len(log_probs), REST + 1), -np.inf, dtype=np.float64)
    pitches = np.arange(REST)
    reachable = (pitches + shift >= 0) & (pitches + shift < REST)
    result[:, pitches[reachable]] = log_probs[:, pitches[reachable] + shift]
    result[:, REST] = log_probs[:, REST]
    return result - np.logaddexp.reduce(result, axis=1, keepdims=True)


def key_averaged_log_probs(model: MusicTransformer, chorales: Sequence[np.ndarray], transpositions: int,
                           max_tokens: int = 4096) -> list[np.ndarray]:
    """Per chorale, the (tokens - 1, REST + 1) next-token log-probabilities of the model averaged over
    keys: the mean of its predictions for the chorale transposed by -transpositions..+transpositions
    semitones, each read back in the chorale's key (`in_key`).

    A proper model of the chorale in its own key: each prediction is a distribution over the next
    token that depends only on the tokens before it. A transposition whose past leaves the vocabulary
    drops out from the next token on (at the first token it cannot reach it still counts, with
    probability 0 for that token); the untransposed model never drops out.
    """
    device = model.device
    groups = length_groups(chorales, max_tokens)
    sums: list[np.ndarray | None] = [None] * len(chorales)
    counts = [np.zeros(4 * len(chorale)) for chorale in chorales]
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for shift in range(-transpositions, transpositions + 1):
            for group in groups:
                rows = [transposed_tokens(chorales[index], shift) for index in group]
                tokens = torch.from_numpy(_pad_rows([row[0] for row in rows])).to(device)
                with mixed_precision(device):
                    logits = model(tokens[:, :-1])
                log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
                for row, index in enumerate(group):
                    length = 4 * len(chorales[index])
                    inside = rows[row][1]
                    # the prediction of token t + 1 reads tokens up to t: it stands while those stay inside
                    stands = np.concatenate([[True], np.cumprod(inside[:-1]).astype(bool)])
                    predicted = np.where(stands[:, None], in_key(log_probs[row, :length], shift), -np.inf)
                    sums[index] = predicted if sums[index] is None else np.logaddexp(sums[index], predicted)
                    counts[index] += stands
    model.train(was_training)
    return [total - np.log(count)[:, None] for total, count in zip(sums, counts, strict=True)]


def key_averaged_nll(model: MusicTransformer, chorales: Sequence[np.ndarray], transpositions: int) -> float:
    """NLL per token (nats) of whole chorales under `key_averaged_log_probs`."""
    total = count = 0.0
    for chorale, log_probs in zip(chorales, key_averaged_log_probs(model, chorales, transpositions), strict=True):
        targets = serialise(chorale)[1:]
        total -= log_probs[np.arange(len(targets)), targets].sum()
        count += len(targets)
    return total / count


def average_last(run_dir: Path, count: int = 5) -> list[Path]:
    """Averages a run's last `count` kept checkpoints (step*.pt) into run_dir/averaged.pt; returns them
    (none, and nothing written, when fewer than two were kept)."""
    kept = sorted(run_dir.glob("step*.pt"), key=lambda p: int(p.stem[4:]))[-count:]
    if len(kept) < 2:
        return []
    # music_transformer.checkpoint.average_checkpoints, for a model with or without the bar embedding
    states = [read_checkpoint(path) for path in kept]
    model = _model_in(states[-1], kept[-1].name)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            tensor.copy_(torch.stack([state["model"][name].float() for state in states]).mean(0))
    save_checkpoint(model, run_dir / "averaged.pt", **states[-1].get("metadata", {}),
                    averaged_from=[str(path) for path in kept])
    return kept


class DistillationLoss:
    """The training loop's loss when a run distils (`music_transformer.train.LossFunction`): the tokens'
    cross-entropy mixed, with weight `weight`, with the cross-entropy against the soft targets each batch
    brings (a teacher's distribution of each next token, `JSBData.distil_from`). PAD targets count in
    neither; the loop reports the tokens' alone."""

    def __init__(self, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise JSBError(f"the soft target weight must be between 0 and 1, not {weight}")
        self.weight = weight

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None, pad: int,
                 label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, _ = token_loss(logits, targets, None, pad, label_smoothing)
        if soft is None:
            raise JSBError("distillation needs soft targets, and the data brings none (no teacher)")
        logits, targets = logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1)
        scored = targets != pad
        log_probs = torch.log_softmax(logits[scored], dim=-1)
        against_teacher = -(soft.reshape(-1, soft.shape[-1])[scored] * log_probs).sum(-1).mean()
        return (1.0 - self.weight) * tokens + self.weight * against_teacher, tokens


def teacher_checkpoint(teachers: str | os.PathLike, run: str) -> Path:
    """The teacher of `run` in the folder of finished runs `teachers`: its namesake's averaged weights, or
    its final ones where it kept too few to average."""
    for name in ("averaged.pt", "model.pt"):
        if (Path(teachers) / run / name).exists():
            return Path(teachers) / run / name
    raise JSBError(f"no teacher for {run}: {Path(teachers) / run} holds no finished run (train {run} into "
                   f"{teachers} first)")


def distil(data: JSBData, teacher_path: Path, train_config: TrainConfig, device: str | None,
           threads: int | None, soft_target_weight: float | None) -> tuple[DistillationLoss, dict]:
    """Has the teacher predict the training chorales for `data` before training starts (so the training
    clock leaves it out); the loss to train with, its soft target weight given or SOFT_TARGET_WEIGHT, and
    what the summary records of the teacher."""
    teacher = load_model(teacher_path, device)
    data.distil_from(teacher, TEACHER_TRANSPOSITIONS)
    loss = DistillationLoss(soft_target_weight if soft_target_weight is not None else SOFT_TARGET_WEIGHT)
    if threads:
        torch.set_num_threads(threads)  # the teacher's predictions on this run's share of the cores
    started = time.monotonic()
    data.teach(train_config.max_transpose)
    return loss, {"teacher": str(teacher_path), "teacher_transpositions": TEACHER_TRANSPOSITIONS,
                  "soft_target_weight": loss.weight,
                          "teacher_seconds": round(time.monotonic() - started, 1),
                          "teacher_key_averaged_valid_nll": key_averaged_nll(teacher, data.valid,
                                                                             TEACHER_TRANSPOSITIONS)}


def train_run(config: str, run: str, out: Path, steps: int | None, threads: int | None, device: str | None,
              keep_every: int, progress: bool, data_folder: str, max_minutes: float | None = None,
              transpositions: int = 0, teachers: Path | None = None, soft_target_weight: float | None = None
              ) -> dict:
    """Trains one named run into out/run; returns its summary with the valid NLL of the final and averaged
    weights (and, with `transpositions`, of the averaged weights' predictions averaged over keys).

    With `teachers` (a folder of finished runs) the run is distilled (`distil`) from its namesake's
    averaged weights there (`teacher_checkpoint`), their predictions averaged over TEACHER_TRANSPOSITIONS
    keys, mixed in with `soft_target_weight`."""
    model_config, train_config, data_options = run_configs(config, run, steps, max_minutes)
    data = JSBData.load(data_folder, **data_options)
    run_dir = out / run
    teacher_summary, loss = {}, token_loss
    if teachers is not None:
        loss, teacher_summary = distil(data, teacher_checkpoint(teachers, run), train_config, device, threads,
                                       soft_target_weight)
    elif soft_target_weight:
        raise JSBError("a soft_target_weight needs --teachers: soft targets come from a teacher")
    started = time.monotonic()
    summary = train_module.train(data, run_dir, config=(model_config, train_config), device=device,
                                 threads=threads, keep_every_steps=keep_every, progress=progress,
                                 resume=(run_dir / "last.pt").exists(), model_class=model_class(run), loss=loss)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)  # its valid_nll: the loop's last validation
    kept = average_last(run_dir)
    if kept:
        summary["averaged_valid_nll"] = score(run_dir / "averaged.pt", data.valid, device)
        summary["averaged_checkpoints"] = len(kept)
        if transpositions:
            summary["key_averaged_valid_nll"] = score(run_dir / "averaged.pt", data.valid, device, transpositions)
            summary["transpositions"] = transpositions
    summary.update(teacher_summary)
    summary["run"] = run
    summary["model"] = asdict(model_config)
    summary["bar_embedding"] = issubclass(model_class(run), BarTransformer)
    summary["timing_signal"] = issubclass(model_class(run), TimingTransformer)
    summary["train"] = asdict(train_config)
    summary["data"] = data_options
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _train_run_job(arguments: tuple) -> dict:
    return train_run(*arguments)


def _die_with_parent() -> None:
    """In a worker: ask Linux to end this process when its parent ends (a killed benchmark leaves no
    orphans training on); elsewhere nothing."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def map_in_processes(function, work: list, jobs: int) -> list:
    """function(item) for every item, `jobs` at a time in fresh processes (in this one when jobs is 1)."""
    if jobs <= 1:
        return [function(item) for item in work]
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_die_with_parent) as pool:
        return list(pool.map(function, work))


def main(argv: list[str] | None = None) -> int:
    """Trains the named runs and prints their valid NLL beside the paper's, or scores one checkpoint."""
    parser = argparse.ArgumentParser(prog="bench/jsb.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="cpu", help=f"{', '.join(CONFIGS)} or a JSON file (default cpu)")
    parser.add_argument("--runs", default="relative,absolute", help=f"comma-separated, of: {', '.join(RUNS)}")
    parser.add_argument("--out", type=Path, default=Path("runs/jsb"), help="run directories (default runs/jsb)")
    parser.add_argument("--data", default=str(DATA), help="folder with train.json and valid.json")
    parser.add_argument("--steps", type=int, help="override the config's optimizer steps")
    parser.add_argument("--max-minutes", type=float,
                        help="also stop each run after this much training time (a guard: the schedule decays "
                             "by steps or by time, whichever is further)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each on cores/jobs threads (CPU; default 1)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--keep-every", type=int, default=100,
                        help="keep weights every N steps (the last 5 are averaged)")
    parser.add_argument("--eval", type=Path, metavar="FILE.json", help="score --checkpoint on this split instead")
    parser.add_argument("--checkpoint", type=Path, help="the model --eval scores")
    parser.add_argument("--transpositions", type=int, default=0, metavar="K",
                        help="score the model's predictions averaged over the chorale transposed by -K..+K "
                             "semitones (--eval; after training: the averaged weights); default 0, the plain score")
    parser.add_argument("--teachers", type=Path, metavar="DIR",
                        help="distil each run from its namesake's (averaged) weights in DIR (finished runs), "
                             f"their predictions averaged over ±{TEACHER_TRANSPOSITIONS} keys")
    parser.add_argument("--soft-target-weight", type=float, metavar="W",
                        help=f"with --teachers: the weight of the teacher's predictions "
                             f"against the tokens' (default {SOFT_TARGET_WEIGHT})")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    try:
        if args.eval or args.checkpoint:
            if not (args.eval and args.checkpoint):
                raise JSBError("--eval FILE.json and --checkpoint C go together")
            nll = score(args.checkpoint, read_chorales(args.eval), args.device, args.transpositions)
            print(f"nll_per_token: {nll:.4f}")
            return 0
        if args.transpositions < 0:
            raise JSBError(f"--transpositions must be 0 or more, not {args.transpositions}")
        runs = [name.strip() for name in args.runs.split(",") if name.strip()]
        for run in runs:
            run_configs(args.config, run)  # unknown names fail before anything trains
        JSBData.load(args.data)
        jobs = max(1, min(args.jobs, len(runs)))
        threads = max(1, (os.cpu_count() or 1) // jobs)
        if args.teachers is not None:
            for run in runs:
                teacher_checkpoint(args.teachers, run)  # a missing teacher fails before anything trains
        elif args.soft_target_weight is not None:
            raise JSBError("--soft-target-weight goes with --teachers")
        work = [(args.config, run, args.out, args.steps, threads, args.device, args.keep_every, jobs == 1,
                 args.data, args.max_minutes, args.transpositions, args.teachers, args.soft_target_weight)
                for run in runs]
        started = time.monotonic()
        summaries = map_in_processes(_train_run_job, work, jobs)
        wall = time.monotonic() - started
    except ContinuoError as error:
        print(f"jsb: {error}", file=sys.stderr)
        return 1
    model = summaries[0]["model"]
    print(f"\nJSB Chorales, valid NLL per token (nats); config {args.config!r}: {model['n_layers']} layers x "
          f"{model['d_model']}, {model['n_heads']} heads, {summaries[0]['train']['steps']} steps of "
          f"{summaries[0]['train']['batch_size']} chorales; {wall / 60:.1f} min wall-clock for all runs")
    if args.teachers is not None:
        print(f"distilled from the runs in {args.teachers} (soft target weight "
              f"{summaries[0]['soft_target_weight']}); the teachers over ±{TEACHER_TRANSPOSITIONS} keys: "
              + ", ".join(f"{s['run']} {s['teacher_key_averaged_valid_nll']:.4f}" for s in summaries))
    keys = f"±{args.transpositions} keys" if args.transpositions else ""  # the averaged weights, key-averaged
    width, name_width = 10 if keys else 0, max(28, *(len(s["run"]) + 2 for s in summaries))
    print(f"{'run':<{name_width}}{'ours':>8}{'averaged':>10}{keys:>{width}}{'paper':>8}{'steps':>7}{'minutes':>9}")
    for s in summaries:
        paper = PAPER.get(s["run"])
        averaged, key_averaged = s.get("averaged_valid_nll"), s.get("key_averaged_valid_nll")
        print(f"{s['run']:<{name_width}}{s['valid_nll']:>8.4f}{'' if averaged is None else f'{averaged:.4f}':>10}"
              f"{'' if key_averaged is None else f'{key_averaged:.4f}':>{width}}"
              f"{'' if paper is None else paper:>8}{s['step']:>7}{s['wall_seconds'] / 60:>9.1f}")
    if args.json:
        print(json.dumps({"config": args.config, "wall_seconds": round(wall, 1), "runs": summaries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
