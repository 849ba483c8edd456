"""One checkpoint format: the config, the weights and free-form metadata, written atomically.

A checkpoint is a `torch.save` of a plain dictionary (no pickled classes, so it loads with
`weights_only=True`): {"format": "continuo-music-transformer", "version": 1, "config": {...},
"model": state_dict, "metadata": {...}}. Training checkpoints may add optimizer state under "training".
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .midi import atomic_write
from .model import ModelConfig, MusicTransformer

FORMAT = "continuo-music-transformer"
VERSION = 1
ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "default.pt"


def default_checkpoint_path() -> Path:
    """The bundled model; the environment variable CONTINUO_MODEL points elsewhere."""
    return Path(os.environ.get("CONTINUO_MODEL", DEFAULT_CHECKPOINT))


def default_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(model: MusicTransformer, path: str | os.PathLike, training: dict | None = None,
                    **metadata: Any) -> None:
    """Writes the model (and optional training state) to `path` atomically."""
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "metadata": metadata,
    }
    if training is not None:
        state["training"] = training
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dictionary, checked for format and version."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise CheckpointError(f"{name}: no such model file ({path})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{name}: not a Continuo model, or the file is damaged ({_reason(error)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not a Continuo model file")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{name}: made by a newer version of Continuo (format {state['version']}); "
                              "update Continuo to open it")
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{name}: the model file is incomplete")
    return state


def load_checkpoint(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    ) -> MusicTransformer:
    """The model in a checkpoint (None: the bundled default), in eval mode on `device` (default: GPU if any).

    The checkpoint's metadata is kept as `model.metadata`.
    """
    path = Path(path) if path is not None else default_checkpoint_path()
    if not path.exists() and path == default_checkpoint_path():
        raise CheckpointError(f"the bundled model is missing ({path}); reinstall Continuo or choose a model file")
    state = read_checkpoint(path)
    try:
        config = ModelConfig.from_dict(state["config"])
        model = MusicTransformer(config)
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path.name}: the weights do not fit the model they describe "
                              f"({_reason(error)})") from None
    model.metadata = dict(state.get("metadata") or {})
    model.metadata.setdefault("path", str(path))
    return model.to(torch.device(device) if device is not None else default_device()).eval()


def average_checkpoints(paths: list[str | os.PathLike], out: str | os.PathLike) -> None:
    """Writes the element-wise mean of several checkpoints' weights (checkpoint averaging).

    The checkpoints must describe the same model; the result keeps the last one's config and
    metadata, with the averaged files listed under "averaged_from". Training state is dropped.
    """
    if len(paths) < 2:
        raise CheckpointError("averaging needs two checkpoints or more")
    states = [read_checkpoint(path) for path in paths]
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        if state["config"] != first["config"] or state["model"].keys() != first["model"].keys():
            raise CheckpointError(f"{Path(path).name} describes another model than {Path(paths[0]).name}; "
                                  "only checkpoints of one run can be averaged")
    averaged = {name: torch.stack([state["model"][name].float() for state in states]).mean(0)
                .to(first["model"][name].dtype) for name in first["model"]}
    model = MusicTransformer(ModelConfig.from_dict(states[-1]["config"]))
    model.load_state_dict(averaged)
    metadata = dict(states[-1].get("metadata") or {})
    metadata["averaged_from"] = [str(path) for path in paths]
    save_checkpoint(model, out, **metadata)


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
