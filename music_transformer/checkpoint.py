"""One checkpoint format: the config, the weights and free-form metadata, written atomically.

A checkpoint is a `torch.save` of a plain dictionary (no pickled classes, so it loads with
`weights_only=True`): {"format": "continuo-music-transformer", "version": 1, "config": {...},
"model": state_dict, "metadata": {...}}. Training checkpoints may add optimizer state under "training".
"""

from __future__ import annotations

import importlib.resources
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import limits
from .errors import CheckpointError
from .files import atomic_write
from .model import ModelConfig, MusicTransformer

FORMAT = "continuo-music-transformer"
VERSION = 1
CHECKOUT_ASSETS = Path(__file__).resolve().parent.parent / "assets"  # the repository's assets/ (a checkout)


def bundled_checkpoint() -> Path:
    """Where the bundled model is: inside the installed package (the wheel carries it as
    music_transformer/assets/default.pt), else in the checkout's assets/ (run from the source tree)."""
    try:
        packaged = importlib.resources.files(__package__) / "assets" / "default.pt"
    except (ModuleNotFoundError, TypeError):
        packaged = None
    # Only a real file: torch reads the model from a path (a package inside a zip has none).
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    return CHECKOUT_ASSETS / "default.pt"


DEFAULT_CHECKPOINT = bundled_checkpoint()
ASSETS = DEFAULT_CHECKPOINT.parent  # the bundled model's folder, its card (README.md) beside it


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
    """The raw checkpoint dictionary, checked for format, version, size and the kinds of its parts.

    Nothing in the file is unpacked into more memory than the file takes: `torch.save` stores its
    tensors uncompressed, so a packed (deflated) part, or one that claims to lie past the end of the
    file, is refused before torch reads it.
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise CheckpointError(f"{name}: no such model file ({path})")
    if path.is_dir():
        raise CheckpointError(f"{name}: is a folder, not a model file")
    try:
        size = path.stat().st_size
    except OSError as error:
        raise CheckpointError(f"{name}: cannot be read ({error.strerror or error})") from None
    if size > limits.MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{name}: the file is {size / 2**30:.1f} GB; Continuo reads model files up to "
                              f"{limits.MAX_CHECKPOINT_BYTES / 2**30:g} GB")
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except OSError as error:
        raise CheckpointError(f"{name}: cannot be read ({error.strerror or error})") from None
    except Exception:  # noqa: BLE001 (zipfile raises BadZipFile, ValueError, UnicodeDecodeError... for damage)
        raise CheckpointError(f"{name}: not a Continuo model, or the file is damaged (it is not a model archive)") \
            from None
    for part in parts:
        if part.compress_type != zipfile.ZIP_STORED or part.compress_size != part.file_size \
                or part.header_offset + part.file_size > size:
            raise CheckpointError(f"{name}: not a Continuo model, or the file is damaged (its parts are packed in "
                                  "a way Continuo never writes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises many types for damaged files)
        raise CheckpointError(f"{name}: not a Continuo model, or the file is damaged ({_reason(error)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not a Continuo model file")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: the model file is damaged (its format version is {version!r}, not a number)")
    if version > VERSION:
        raise CheckpointError(f"{name}: made by a newer version of Continuo (format {version}); "
                              "update Continuo to open it")
    weights = state.get("model")
    if not isinstance(state.get("config"), dict) or not isinstance(weights, dict):
        raise CheckpointError(f"{name}: the model file is incomplete")
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()):
        raise CheckpointError(f"{name}: the model file is damaged (its weights are not all named arrays of numbers)")
    metadata = state.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(key, str) for key in metadata)):
        raise CheckpointError(f"{name}: the model file is damaged (its description is not a set of named values)")
    return state


def load_checkpoint(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                    ) -> MusicTransformer:
    """The model in a checkpoint (None: the bundled default), in eval mode on `device` (default: GPU if any).

    The checkpoint's metadata is kept as `model.metadata`. A device that is not here is a ValueError.
    """
    device = checked_device(device) if device is not None else default_device()
    path = Path(path) if path is not None else default_checkpoint_path()
    if not path.exists() and path == default_checkpoint_path():
        raise CheckpointError(f"the bundled model is missing ({path}); reinstall Continuo or choose a model file")
    state = read_checkpoint(path)
    model = _model_in(state, path.name)
    model.metadata = dict(state.get("metadata") or {})
    model.metadata.setdefault("path", str(path))
    return model.to(device).eval()


def checked_device(device: str | torch.device) -> torch.device:
    """`device` as a torch device, if it is one this machine has: cpu, cuda or cuda:N (else a ValueError)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; choose cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"unknown device {str(device)!r}; choose cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"there is no CUDA GPU here for {str(device)!r}; use the cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"there is no GPU {device.index} here (GPUs: {torch.cuda.device_count()})")
    return device


def _model_in(state: dict, name: str) -> MusicTransformer:
    """The model a checkpoint describes, its config checked before any weight is made, its weights after."""
    try:
        config = ModelConfig.from_dict(state["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: describes a model Continuo cannot build ({_reason(error)})") from None
    model = MusicTransformer(config)
    try:
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"{name}: the weights do not fit the model they describe "
                              f"({_reason(error)})") from None
    # The file's own tensors (their shapes are the model's now): a tied weight given twice is read once.
    if not all(bool(torch.isfinite(weight).all()) for weight in state["model"].values()):
        raise CheckpointError(f"{name}: the model file is damaged (some of its weights are not numbers)")
    return model


def average_checkpoints(paths: list[str | os.PathLike], out: str | os.PathLike) -> None:
    """Writes the element-wise mean of several checkpoints' weights (checkpoint averaging).

    The checkpoints must describe the same model; the result keeps the last one's config and
    metadata, with the averaged files listed under "averaged_from". Training state is dropped.
    """
    if len(paths) < 2:
        raise CheckpointError("averaging needs two checkpoints or more")
    states = [read_checkpoint(path) for path in paths]
    models = [_model_in(state, Path(path).name) for path, state in zip(paths, states, strict=True)]
    for path, model in zip(paths[1:], models[1:], strict=True):
        if model.config != models[0].config:
            raise CheckpointError(f"{Path(path).name} describes another model than {Path(paths[0]).name}; "
                                  "only checkpoints of one run can be averaged")
    weights = [model.state_dict() for model in models]
    model = models[-1]
    model.load_state_dict({name: torch.stack([w[name] for w in weights]).mean(0) for name in weights[0]})
    metadata = dict(states[-1].get("metadata") or {})
    metadata["averaged_from"] = [str(path) for path in paths]
    save_checkpoint(model, out, **metadata)


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
