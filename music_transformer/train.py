"""Training, the library behind `music-transformer train` (scoring is evaluation.py's).

The loop is plain PyTorch: AdamW, linear warm-up then cosine decay (or inverse square root when the
run has no planned length), gradient clipping, bfloat16 autocast on CUDA (and on the CPU with
`TrainConfig.precision="bfloat16"`). Multi-process training is PyTorch's DDP, started by torchrun
(`torchrun --nproc_per_node=K -m music_transformer.commands.train ...`): gloo on the CPU, NCCL on GPUs.

A run directory holds `last.pt` (model, optimizer and position in the data, written atomically every
few minutes and at the end), `model.pt` (the final weights alone, the file to ship) and `log.jsonl`
(one line per validation). `--resume` continues from `last.pt` exactly where it stopped: the data order
and augmentation are functions of (seed, epoch, sample), not of a random state that a kill would lose.

The loop minimises a `LossFunction`: the tokens' cross-entropy (label-smoothed when asked) unless the caller
brings its own, as bench/jsb.py does for distillation from a teacher's predictions.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from queue import Queue
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from . import data as data_module
from . import events
from .checkpoint import read_checkpoint, save_checkpoint
from .distributed import Distributed, start_distributed
from .errors import ContinuoError
from .evaluation import validation_nll
from .events import PAD, VOCAB_SIZE
from .model import GROWABLE, PRECISIONS, RETIRED_SETTINGS, ModelConfig, MusicTransformer, grown_state, mixed_precision


class TrainingError(ContinuoError):
    """A training run that cannot start or go on: bad options, an existing run, a NaN loss."""


@dataclass
class TrainConfig:
    """How to train (the model's shape is ModelConfig)."""

    batch_size: int = 16  # sequences per step and process
    learning_rate: float = 1e-3
    min_learning_rate_ratio: float = 0.1  # the cosine decays to this fraction of the peak
    warmup_steps: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    max_transpose: int = 3  # augmentation: semitones either way (time stretch is 0.95-1.05)
    fim_rate: float = 0.5  # performance events: the share of fill-in-the-middle samples ("FIM for free" at 0.5)
    style_dropout: float = 0.15  # performance events: the share of samples whose style token says `any`
    # performance events: the share of windows with a kept part announced ahead (accompaniment; a model trained
    # with some has the ANTICIPATE tokens, events.ANTICIPATION_VOCAB_SIZE, and `accompany` uses them). Off by
    # default: after two stages (about 1,000 such windows) the announcements made the new part agree less with
    # the kept one, not more (bench/README, "Announcing the kept part ahead").
    accompany_rate: float = 0.0
    # performance events: the share of windows in which passage after passage is played again right after
    # itself (data.restated_window), a lesson in copying
    restate_rate: float = 0.0
    # performance events: how often each style's pieces come round in an epoch against their share of the
    # tokens (data.epoch_plan), e.g. {"chorale": 3.0}; a style not named is 1
    style_weights: dict[str, float] = field(default_factory=dict)
    steps: int | None = None  # planned length in optimizer steps (None: until --max-minutes or forever)
    max_minutes: float | None = None  # stop after this much training time (summed over resumes)
    checkpoint_minutes: float = 3.0
    valid_max_chunks: int = 256  # windows of train_length scored for the valid NLL
    precision: str = "auto"  # model.PRECISIONS: "auto" is bfloat16 on CUDA, float32 on the CPU
    seed: int = 0

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise TrainingError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("fim_rate", "style_dropout", "accompany_rate", "restate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TrainingError(f"{name} must be between 0 and 1, not {getattr(self, name)}")
        if not isinstance(self.style_weights, dict):
            raise TrainingError(f"style_weights must map styles to weights, not {self.style_weights!r}")
        try:
            self.style_weights = dict(data_module.style_weights(self.style_weights))
        except ValueError as error:
            raise TrainingError(f"style_weights: {error}") from None

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A TrainConfig from plain data; unknown keys are an error (a typo should not pass silently).

        `soft_target_weight`, which runs saved before distillation left the loop for bench/jsb.py's own loss,
        is read when it is 0 (it changed nothing)."""
        values = dict(values)
        if values.get("soft_target_weight", 0.0) == 0.0:
            values.pop("soft_target_weight", None)
        else:
            raise TrainingError("soft_target_weight: distillation is bench/jsb.py's (--teachers), not the library's")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"unknown training setting {unknown[0]!r}")
        return cls(**values)


# Presets. "small" is the first bundled model's (the music21 corpus, 256 tokens): it trains in well under
# an hour on two CPU cores. "base" is the paper's shape for GPUs. "piano" is the bundled model's. ("small"
# and "base" had attention dropout 0.1 before it left the library: bench/recipe.py saw no gain from it.)
PRESETS = {
    "small": {
        "model": dict(n_layers=4, d_model=256, n_heads=4, d_ff=1024, dropout=0.1,
                      max_relative_distance=256, train_length=256),
        "train": dict(batch_size=16, learning_rate=1e-3, warmup_steps=300),
    },
    "base": {
        "model": dict(n_layers=6, d_model=512, n_heads=8, d_ff=2048, dropout=0.1,
                      max_relative_distance=1024, train_length=2048),
        "train": dict(batch_size=8, learning_rate=5e-4, warmup_steps=1000),
    },
    # The bundled piano model: four layers, so that one CPU thread decodes it at 5x real time for dense
    # piano at its full 1,024-token window (bench/piano_model.py); 1,600 steps on two CPU cores, then 1,127,
    # 1,150, 1,096, 1,100, 1,073, 1,170, 1,200, 1,200 and 678 more with --init-from and --dropout 0, each
    # of the last two stages' final three kept weights averaged (assets/README.md).
    "piano": {
        "model": dict(n_layers=4, d_model=256, n_heads=8, d_ff=1024, dropout=0.1,
                      max_relative_distance=1024, train_length=1024),
        "train": dict(batch_size=8, learning_rate=1e-3, warmup_steps=200, valid_max_chunks=128),
    },
    # The same model on a GPU (bench/gpu_session.sh): larger batches for the same 8-minute budget.
    "piano-gpu": {
        "model": dict(n_layers=4, d_model=256, n_heads=8, d_ff=1024, dropout=0.1,
                      max_relative_distance=1024, train_length=1024),
        "train": dict(batch_size=32, learning_rate=1e-3, warmup_steps=300, valid_max_chunks=512),
    },
    "tiny": {  # for tests and smoke runs
        "model": dict(n_layers=2, d_model=64, n_heads=2, d_ff=128, dropout=0.0,
                      max_relative_distance=32, train_length=32),
        "train": dict(batch_size=4, learning_rate=3e-3, warmup_steps=2, checkpoint_minutes=0.0,
                      valid_max_chunks=16),
    },
}


def load_config(name_or_path: str) -> tuple[ModelConfig, TrainConfig]:
    """A preset name, or a JSON file {"model": {...}, "train": {...}}."""
    if name_or_path in PRESETS:
        preset = PRESETS[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise TrainingError(f"--config {name_or_path}: neither a preset ({', '.join(PRESETS)}) nor a file")
        try:
            preset = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise TrainingError(f"{path.name}: not a JSON config ({error})") from None
        if not isinstance(preset, dict) or not set(preset) <= {"model", "train"}:
            raise TrainingError(f'{path.name}: a config holds "model" and "train" settings only')
    model_values = dict(preset.get("model", {}))
    if model_values.get("attention_dropout"):
        raise TrainingError(f"--config {name_or_path}: attention dropout left Continuo (no gain at 1.7x the time, "
                            "bench/README.md); take attention_dropout out of the config")
    for name in RETIRED_SETTINGS:  # a config written for an earlier version: nothing a trained model computes
        model_values.pop(name, None)
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(model_values) - known)
    if unknown:
        raise TrainingError(f"unknown model setting {unknown[0]!r}")
    try:
        return ModelConfig(**model_values), TrainConfig.from_dict(dict(preset.get("train", {})))
    except (TypeError, ValueError) as error:
        raise TrainingError(f"--config {name_or_path}: {error}") from None


def learning_rate(step: int, config: TrainConfig, progress: float | None) -> float:
    """Linear warm-up to the peak, then cosine decay over `progress` 0..1 (or 1/sqrt(step) without a plan)."""
    peak = config.learning_rate
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    if progress is None:
        return peak * math.sqrt(config.warmup_steps / (step + 1))
    progress = min(max(progress, 0.0), 1.0)
    floor = peak * config.min_learning_rate_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --- what the loop trains on ---------------------------------------------------------------------------


# A training batch is a token array (B, T + 1), or a pair (tokens, what else the data brings for its own loss
# function, e.g. bench/jsb.py's teacher's next-token probabilities (B, T, vocabulary)).
Batch = np.ndarray | tuple[np.ndarray, np.ndarray]


def split_batch(batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch's tokens (B, T + 1) and what else it brings, as float32, or None, on `device`."""
    tokens, extra = (batch, None) if isinstance(batch, np.ndarray) else batch
    tokens = torch.from_numpy(tokens).to(device)
    return tokens, None if extra is None else torch.from_numpy(extra).to(device, torch.float32)


class LossFunction(Protocol):
    """What the loop minimises: `(logits (B, T, vocabulary), targets (B, T), what else the batch brought or
    None, the pad token, the config's label smoothing)` -> (the loss, the tokens' cross-entropy that the
    progress bar reports), each a mean per token; PAD targets count in neither."""

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, extra: torch.Tensor | None, pad: int,
                 label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]: ...


def token_loss(logits: torch.Tensor, targets: torch.Tensor, extra: torch.Tensor | None, pad: int,
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens' cross-entropy (label-smoothed when asked), as the loss and as what is reported."""
    tokens = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=pad,
                             label_smoothing=label_smoothing)
    return tokens, tokens


class TrainingData(Protocol):
    """A data set the training loop can use: token batches for training and validation.

    The performance-event data (MIDI folders, the music21 corpus) is `EventData`; a benchmark brings
    its own serialisation (the JSB Chorales in `bench/jsb.py`) and reuses the same loop.
    """

    name: str  # recorded in checkpoints and logs
    pad: int  # the filler token: never predicted, never scored
    vocab_size: int

    def describe(self) -> str:
        """One line for the log: pieces and tokens per split."""

    def batches(self, length: int, batch_size: int, seed: int, epoch: int, start: int, rank: int,
                world_size: int, max_transpose: int) -> Iterator[tuple[int, Batch]]:
        """The training batches (B, T + 1) of an epoch from batch `start` on, as (batch index, batch); with
        what else the run's loss function needs, when it needs more than the tokens.

        A pure function of (seed, epoch, batch index), so that a resumed run sees the same data; with
        several processes each rank takes its own share of every batch.
        """

    def validation_batches(self, length: int, batch_size: int) -> list[np.ndarray]:
        """Fixed, unaugmented batches (B, T + 1), PAD-filled, whose tokens the valid NLL scores."""


class EventData:
    """Performance-event pieces (a loaded `data.Dataset`) as training data: windows of L + 1 tokens with and
    without the header, and fill-in-the-middle sequences (`data.training_sample`)."""

    pad = PAD

    def __init__(self, dataset: data_module.Dataset, name: str, valid_max_chunks: int | None = None,
                 fim_rate: float = 0.0, style_dropout: float = 0.0,
                 style_weights: data_module.StyleWeights = (), accompany_rate: float = 0.0,
                 restate_rate: float = 0.0) -> None:
        self.dataset, self.name, self.valid_max_chunks = dataset, name, valid_max_chunks
        self.fim_rate, self.style_dropout, self.style_weights = fim_rate, style_dropout, style_weights
        self.accompany_rate, self.restate_rate = accompany_rate, restate_rate
        # the ANTICIPATE tokens only where the samples hold some: a model knows them once it has been taught them
        self.vocab_size = VOCAB_SIZE if accompany_rate else events.ANTICIPATE_OFFSET
        if not dataset.train:
            raise TrainingError(f"{name}: no pieces for training after the split")
        if not any(dict(style_weights).get(piece.style, 1.0) > 0 for piece in dataset.train):
            styles = ", ".join(sorted({piece.style for piece in dataset.train}))
            raise TrainingError(f"{name}: the style weights leave out every piece ({styles})")

    def describe(self) -> str:
        return self.dataset.describe()

    def batches(self, length: int, batch_size: int, seed: int, epoch: int, start: int, rank: int,
                world_size: int, max_transpose: int) -> Iterator[tuple[int, np.ndarray]]:
        mix = data_module.SampleMix(max_transpose, self.fim_rate, self.style_dropout, self.style_weights,
                                    self.accompany_rate, self.restate_rate)
        return data_module.training_batches(self.dataset.train, length, batch_size, seed, epoch, start, rank,
                                            world_size, mix)

    def validation_batches(self, length: int, batch_size: int) -> list[np.ndarray]:
        chunks = data_module.validation_chunks(self.dataset.valid, length, self.valid_max_chunks)
        return [chunks[i:i + batch_size] for i in range(0, len(chunks), batch_size)]


# --- the training loop ----------------------------------------------------------------------------------


def _progress(step: int, elapsed: float, config: TrainConfig) -> float | None:
    """How far through the planned run we are (by steps, by time, whichever is further), or None."""
    parts = []
    if config.steps:
        parts.append((step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    if config.max_minutes:
        parts.append(elapsed / (config.max_minutes * 60.0))
    return max(parts) if parts else None


def train(data: str | list[str] | TrainingData, out: str | os.PathLike,
          config: str | tuple[ModelConfig, TrainConfig] = "small", resume: bool = False,
          overrides: dict | None = None, model_overrides: dict | None = None, device: str | None = None,
          limit: int | None = None, cache_dir: str | None = None, threads: int | None = None,
          keep_every_steps: int | None = None, progress: bool = True,
          model_class: type[MusicTransformer] = MusicTransformer,
          init_from: str | os.PathLike | None = None, loss: LossFunction = token_loss) -> dict:
    """Trains a model on `data` into the run directory `out`; returns a summary (step, losses, times).

    `data` is a data source for `data.load_dataset` (a MIDI folder, `corpus`, `corpus:part,...`, a token
    pack), a list of them, or any
    `TrainingData`; `config` a preset name, a JSON file or a (ModelConfig, TrainConfig) pair.
    `model_class` builds the model from its config: a subclass may add to it (bench/jsb.py's bar embedding).
    `init_from` starts a new run from a trained model's weights and shape (its config; `model_overrides`
    may change its dropout) with a fresh optimizer and schedule from `config`: training continued with
    new settings or on new data. `loss` is what the loop minimises (`token_loss`, else a benchmark's own).
    """
    out = Path(out)
    last_path = out / "last.pt"
    dist, device_ = start_distributed(device)
    try:
        if device_.type == "cpu":
            torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // dist.world_size))
        state = initial = None
        if resume and last_path.exists():
            state = read_checkpoint(last_path)
            if "training" not in state:
                raise TrainingError(f"{last_path}: holds no training state to resume from")
            model_config = ModelConfig.from_dict(state["config"])
            train_config = TrainConfig.from_dict(state["training"]["config"])
            if "accompany_rate" not in state["training"]["config"]:  # a run begun before accompaniment windows
                train_config = replace(train_config, accompany_rate=0.0)
            for key, value in (overrides or {}).items():  # a resumed run may be extended or computed
                if key in ("steps", "max_minutes", "checkpoint_minutes", "precision") and value is not None:
                    train_config = replace(train_config, **{key: value})
        else:
            if last_path.exists() and not resume:
                raise TrainingError(f"{out} already holds a run (last.pt); pass --resume to continue it "
                                    "or choose another --out")
            model_config, train_config = config if isinstance(config, tuple) else load_config(config)
            if init_from is not None:
                initial = read_checkpoint(init_from)
                initial["metadata"] = dict(initial.get("metadata") or {}, path=Path(init_from).name)
                model_config = ModelConfig.from_dict(initial["config"])
                asked = {k for k, v in (model_overrides or {}).items() if v is not None}
                shape = asked - set(GROWABLE)
                if shape:
                    raise TrainingError(f"--init-from keeps the model's shape (it may only grow: "
                                        f"{', '.join(GROWABLE)}); {sorted(shape)[0]} cannot change")
            model_config = replace(model_config, **{k: v for k, v in (model_overrides or {}).items()
                                                    if v is not None})
            train_config = replace(train_config, **{k: v for k, v in (overrides or {}).items() if v is not None})
        return _train(data, out, model_config, train_config, state, dist, device_, limit, cache_dir,
                      keep_every_steps, progress, model_class, initial, loss)
    finally:
        if dist.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _vocabulary(data: TrainingData, model_config: ModelConfig, new: bool, grows: bool) -> ModelConfig:
    """The model's config with the vocabulary the run trains, the one rule for it: a new model takes the
    vocabulary its samples use; a trained one (`--init-from`, `grows`) grows into theirs where they use more
    (a style or the ANTICIPATE tokens it gains); a model that knows more tokens than these samples use keeps
    them, and the samples are read with its vocabulary. Anything else is a TrainingError."""
    if new or (grows and data.vocab_size > model_config.vocab_size):
        model_config = replace(model_config, vocab_size=data.vocab_size)
    elif isinstance(data, EventData) and data.vocab_size < model_config.vocab_size <= VOCAB_SIZE:
        data.vocab_size = model_config.vocab_size
    if model_config.vocab_size != data.vocab_size:
        raise TrainingError(f"{data.name} has a vocabulary of {data.vocab_size} tokens but the model "
                            f"{model_config.vocab_size}")
    return model_config


def _train(data: str | list[str] | TrainingData, out: Path, model_config: ModelConfig, config: TrainConfig,
           state: dict | None, dist: Distributed, device: torch.device, limit: int | None, cache_dir: str | None,
           keep_every_steps: int | None, progress: bool, model_class: type[MusicTransformer],
           initial: dict | None = None, loss_function: LossFunction = token_loss) -> dict:
    from tqdm import tqdm

    def say(message: str) -> None:
        if dist.main:
            tqdm.write(message, file=sys.stdout)

    if isinstance(data, (str, list, tuple)):
        name = data if isinstance(data, str) else " + ".join(data)
        # Rank 0 converts the data first; the others wait and then read the cache it wrote.
        if dist.main:
            dataset = data_module.load_dataset(data, cache_dir=cache_dir, limit=limit, progress=progress)
        if dist.world_size > 1:
            torch.distributed.barrier()
        if not dist.main:
            dataset = data_module.load_dataset(data, cache_dir=cache_dir, limit=limit, progress=False)
        # the rates and weights were checked with the config
        data = EventData(dataset, name, config.valid_max_chunks, config.fim_rate, config.style_dropout,
                         tuple(config.style_weights.items()), config.accompany_rate, config.restate_rate)
        new = initial is None and state is None  # a model drawn for these samples
    else:
        new = False  # a benchmark's own data: its config names the vocabulary
    model_config = _vocabulary(data, model_config, new, grows=initial is not None)
    if initial is not None:
        try:
            initial["model"] = grown_state(initial["model"], ModelConfig.from_dict(initial["config"]), model_config)
        except ValueError as error:
            raise TrainingError(f"{initial['metadata']['path']}: {error}") from None
    length = model_config.train_length
    valid_batches = data.validation_batches(length, 32)
    say(f"data: {data.describe()}")

    torch.manual_seed(config.seed)
    model = model_class(model_config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "relative_embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "relative_embeddings" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-9)
    step, epoch, next_batch, elapsed = 0, 0, 0, 0.0
    history: list[dict] = []
    if state is not None:
        model.load_state_dict(state["model"])
        training = state["training"]
        optimizer.load_state_dict(training["optimizer"])
        step, epoch, next_batch = training["step"], training["epoch"], training["next_batch"]
        elapsed = training["elapsed_seconds"]
        history = list(training.get("history", []))
        say(f"resuming {out / 'last.pt'} at step {step} (epoch {epoch + 1}, {elapsed / 60:.1f} min trained)")
        planned = TrainConfig.from_dict(training["config"])
        was = learning_rate(step, planned, _progress(step, elapsed, planned))
        now = learning_rate(step, config, _progress(step, elapsed, config))
        if now > 1.5 * was:  # a longer plan than the run's: its cosine has further to go
            say(f"the longer plan (--steps {config.steps}, --max-minutes {config.max_minutes}) puts the learning "
                f"rate back up from {was:.2g} to {now:.2g}: a warm restart, which shakes what the decay had settled")
    elif initial is not None:
        try:
            model.load_state_dict(initial["model"])
        except (RuntimeError, KeyError) as error:
            raise TrainingError(f"{initial['metadata']['path']}: its weights do not fit its model "
                                f"({str(error).splitlines()[0]})") from None
        say(f"starting from the weights of {initial['metadata']['path']} "
            f"(step {initial['metadata'].get('step', '?')} of its own run)")
    # where the weights came from, when not from scratch: the model's checkpoints carry it (its training time)
    carried = ("path", "step", "elapsed_seconds", "data", "recipe", "init_from")
    origin = {key: value for key, value in initial["metadata"].items() if key in carried} if initial is not None \
        else (state.get("metadata") or {}).get("init_from") if state is not None else None
    say(f"model: {model.num_parameters():,} parameters, {model_config.positional} positions, "
        f"train_length {length}; {dist.world_size} process(es) on {device.type}")
    network = model
    if dist.world_size > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def checkpoint(final: bool = False) -> None:
        if not dist.main:
            return
        settings = config.__dict__.copy()
        training = {"optimizer": optimizer.state_dict(), "step": step, "epoch": epoch, "next_batch": next_batch,
                    "elapsed_seconds": elapsed, "history": history, "config": settings, "data": data.name}
        metadata = {"step": step, "elapsed_seconds": round(elapsed, 1), "data": data.name,
                    "valid_nll": history[-1]["valid_nll"] if history else None,
                    "recipe": settings}  # the settings it was trained with, stage by stage
        if origin:
            metadata["init_from"] = origin
        save_checkpoint(model, out / "last.pt", training=training, **metadata)
        if final:
            save_checkpoint(model, out / "model.pt", **metadata)

    def validate() -> float | None:
        if not valid_batches:
            return None
        nll = validation_nll(model, valid_batches, device, dist, data.pad)
        history.append({"step": step, "epoch": epoch, "valid_nll": nll, "elapsed_seconds": round(elapsed, 1)})
        if dist.main:
            with open(out / "log.jsonl", "a") as handle:
                handle.write(json.dumps(history[-1]) + "\n")
        say(f"epoch {epoch + 1} step {step} ({elapsed / 60:.1f} min): valid NLL {nll:.4f} nats/token")
        return nll

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=config.steps, initial=step, desc="training", unit="step", disable=not (progress and dist.main),
               file=sys.stderr, dynamic_ncols=True)
    batches = prefetched(data.batches(length, config.batch_size, config.seed, epoch, next_batch, dist.rank,
                                      dist.world_size, config.max_transpose))
    last_checkpoint = time.monotonic()
    started = time.monotonic() - elapsed
    window_tokens, window_started = 0.0, time.monotonic()
    running_loss = None
    stop_reason = "done"
    if state is None:
        validate()  # the untrained model's NLL, near log(vocabulary size): the baseline of the curve
    network.train()
    while True:
        if config.steps is not None and step >= config.steps:
            break
        if config.max_minutes is not None and elapsed >= config.max_minutes * 60.0:
            stop_reason = "time"
            break
        try:
            batch_index, batch = next(batches)
        except StopIteration:
            validate()
            epoch, next_batch = epoch + 1, 0
            batches = prefetched(data.batches(length, config.batch_size, config.seed, epoch, 0, dist.rank,
                                              dist.world_size, config.max_transpose))
            continue
        lr = learning_rate(step, config, _progress(step, elapsed, config))
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(config.seed * 1_000_003 + step * dist.world_size + dist.rank)  # dropout, resumable
        x, extra = split_batch(batch, device)
        inputs, targets = x[:, :-1], x[:, 1:]
        with mixed_precision(device, config.precision):
            logits = network(inputs)
        try:
            loss, reported = loss_function(logits, targets, extra, data.pad, config.label_smoothing)
        except ContinuoError:
            bar.close()
            raise
        tokens = (targets != data.pad).sum()
        # the running loss reported is the tokens' cross-entropy, whatever the loss function adds to it
        stats = torch.stack([reported.detach().double() * tokens, tokens.double(),
                             (~torch.isfinite(loss.detach())).double()]).to(device)
        dist.all_reduce(stats)
        if stats[2] > 0:
            bar.close()
            kept = f"{out / 'last.pt'} (step {_saved_step(out)})" if (out / "last.pt").exists() else "none yet"
            raise TrainingError(f"the loss became NaN at step {step + 1}; training stopped. The last good "
                                f"checkpoint is kept: {kept}. Try a lower --lr or check the data.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if not torch.isfinite(norm):  # all processes hold the same reduced gradients: they all stop
            bar.close()
            kept = f"{out / 'last.pt'} (step {_saved_step(out)})" if (out / "last.pt").exists() else "none yet"
            raise TrainingError(f"the gradients became NaN at step {step + 1}; training stopped. The last good "
                                f"checkpoint is kept: {kept}. Try a lower --lr.")
        optimizer.step()
        step += 1
        next_batch = batch_index + 1
        # Everyone uses the mean clock so that all processes agree on the schedule and on when to stop.
        clock = dist.all_reduce(torch.tensor([time.monotonic() - started], dtype=torch.float64))
        elapsed = float(clock[0]) / dist.world_size
        mean_loss = float(stats[0] / stats[1].clamp(min=1))
        running_loss = mean_loss if running_loss is None else 0.95 * running_loss + 0.05 * mean_loss
        window_tokens += float(stats[1])
        now = time.monotonic()
        bar.update()
        if now - window_started > 2.0 or step == 1:
            bar.set_postfix(loss=f"{running_loss:.3f}", tok_s=f"{window_tokens / max(now - window_started, 1e-9):,.0f}",
                            lr=f"{lr:.2e}", epoch=epoch + 1)
            window_tokens, window_started = 0.0, now
        if keep_every_steps and step % keep_every_steps == 0 and dist.main:
            save_checkpoint(model, out / f"step{step}.pt", step=step, elapsed_seconds=round(elapsed, 1),
                            data=data.name, **({"init_from": origin} if origin else {}))
        if (now - last_checkpoint) >= config.checkpoint_minutes * 60.0:
            checkpoint()
            last_checkpoint = now
    bar.close()
    final_nll = validate()
    checkpoint(final=True)
    if dist.world_size > 1:
        torch.distributed.barrier()  # leave together: a process that tears down gloo early aborts its peer
    summary = {"step": step, "epoch": epoch + 1, "elapsed_seconds": round(elapsed, 1), "valid_nll": final_nll,
               "train_loss": running_loss, "stopped": stop_reason, "parameters": model.num_parameters(),
               "positional": model_config.positional}
    say(f"finished: {json.dumps(summary)}")
    return summary


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """What `items` yields, made up to `depth` ahead on a thread: the next batch is augmented and encoded
    (Python, which lets go of nothing) while the step's tensor arithmetic (which lets go of the GIL) runs.
    Its error, if any, comes out where the item would have."""
    queue: Queue = Queue(maxsize=depth)
    finished = object()

    def fill() -> None:
        try:
            for item in items:
                queue.put(item)
            queue.put(finished)
        except BaseException as error:  # noqa: BLE001 - handed to the loop, which raises it
            queue.put(error)

    threading.Thread(target=fill, name="training data", daemon=True).start()
    while (item := queue.get()) is not finished:
        if isinstance(item, BaseException):
            raise item
        yield item


def _saved_step(out: Path) -> int | str:
    try:
        return read_checkpoint(out / "last.pt")["training"]["step"]
    except Exception:  # noqa: BLE001 - only names the step in a message; a damaged file says "?"
        return "?"
