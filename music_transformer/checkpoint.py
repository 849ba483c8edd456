"""Model files: the config, the weights and free-form metadata, written atomically, in one of two forms.

- A model to ship (the bundled one) is data, not code: `NAME.safetensors` holds the weights (a JSON header
  naming each tensor's dtype, shape and place, then the raw numbers) and `NAME.json` beside it the rest,
  {"format": "continuo-music-transformer", "version": 1, "config": {...}, "metadata": {...}}. Every tensor's
  name, dtype and shape and the file's size are checked against the model the config describes before a
  single weight is allocated. A tied weight (the head shares the embedding's) is stored once.
- A training checkpoint is a `torch.save` of a plain dictionary (no pickled classes, so it loads with
  `weights_only=True`): the same keys with the state_dict under "model", and optionally the optimizer's state
  under "training" (resuming needs it). Every `.pt` file ever written still loads.

`read_checkpoint` gives the same dictionary for both; `save_checkpoint` writes the form its path's suffix names.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from . import limits
from .errors import CheckpointError
from .files import FileTooLargeError, NotRegularFileError, atomic_write, open_regular, read_regular
from .model import DECODE_WINDOW, ModelConfig, MusicTransformer

FORMAT = "continuo-music-transformer"
VERSION = 1
WEIGHTS_SUFFIX, CONFIG_SUFFIX = ".safetensors", ".json"  # a shipped model's two files, of one name
# The dtypes (safetensors' names) a model's weights may be stored in, and their sizes; they load as float32.
WEIGHT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
BUNDLED_MODEL = "default" + WEIGHTS_SUFFIX  # and default.json beside it
CHECKOUT_ASSETS = Path(__file__).resolve().parent.parent / "assets"  # the repository's assets/ (a checkout)


def bundled_checkpoint() -> Path:
    """Where the bundled model is: inside the installed package (the wheel carries it as
    music_transformer/assets/default.safetensors, its config default.json beside it), else in the
    checkout's assets/ (run from the source tree)."""
    try:
        packaged = importlib.resources.files(__package__) / "assets" / BUNDLED_MODEL
    except (ModuleNotFoundError, TypeError):
        packaged = None
    # Only a real file: the model is read from a path (a package inside a zip has none).
    if isinstance(packaged, Path) and packaged.is_file():
        return packaged
    return CHECKOUT_ASSETS / BUNDLED_MODEL


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
    """Writes the model (and optional training state) to `path` atomically: a `.safetensors` path gets the
    weights and their `.json` config beside them (no training state: that is kept in `.pt` files), any
    other path one `torch.save` file."""
    path = Path(path)
    if path.suffix.lower() == WEIGHTS_SUFFIX:
        if training is not None:
            raise ValueError(f"{path.name}: training state (the optimizer's) is kept in .pt checkpoints only")
        _save_safetensors(model, path, metadata)
        return
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
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def _save_safetensors(model: MusicTransformer, path: Path, metadata: dict) -> None:
    """The weights to `path` (each tied tensor once), then the config and metadata to the .json beside it."""
    weights, seen = {}, set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            weights[key] = tensor.detach().cpu().contiguous()
    # Made whole before either file is written: metadata that is not JSON is a ValueError with nothing written.
    config = json.dumps({"format": FORMAT, "version": VERSION, "config": model.config.to_dict(),
                         "metadata": metadata}, indent=2, ensure_ascii=False) + "\n"
    data = safetensors.torch.save(weights, metadata={"format": FORMAT})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(data))
    atomic_write(path.with_suffix(CONFIG_SUFFIX), lambda handle: handle.write(config.encode("utf-8")))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dictionary, checked for format, version, size and the kinds of its parts.

    A `.safetensors` file (or the `.json` config beside it) is read as a shipped model: its config first,
    then every tensor's name, dtype and shape and the file's size against the model that config describes,
    all before a weight is read. Any other file is a `torch.save` checkpoint, of which nothing is unpacked into
    more memory than the file takes: `torch.save` stores its tensors uncompressed, so a packed (deflated)
    part, or one that claims to lie past the end of the file, is refused before torch reads it.
    """
    path = Path(path)
    if path.suffix.lower() in (WEIGHTS_SUFFIX, CONFIG_SUFFIX):
        return _read_safetensors(path)
    name = path.name
    size = _model_file_size(path, name)
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
    _check_description(state, name)
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{name}: the model file is incomplete")
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items()):
        raise CheckpointError(f"{name}: the model file is damaged (its weights are not all named arrays of numbers)")
    return state


def _model_file_size(path: Path, name: str) -> int:
    """The size of a model file that is there, is a file and is within the limit (else a CheckpointError)."""
    try:  # a device or a FIFO is refused here, never read or waited on
        with open_regular(path, limits.MAX_CHECKPOINT_BYTES) as handle:
            return os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such model file ({path})") from None
    except IsADirectoryError:
        raise CheckpointError(f"{name}: is a folder, not a model file") from None
    except FileTooLargeError as error:
        raise CheckpointError(f"{name}: the file is {error.size / 2**30:.1f} GB; Continuo reads model files up to "
                              f"{limits.MAX_CHECKPOINT_BYTES / 2**30:g} GB") from None
    except NotRegularFileError as error:
        raise CheckpointError(f"{name}: {error.strerror}; a model is a file") from None
    except OSError as error:
        raise CheckpointError(f"{name}: cannot be read ({error.strerror or error})") from None


def _check_description(state: Any, name: str) -> None:
    """The parts both forms share: the format, its version, the config and the metadata (of the right kinds)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not a Continuo model file")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: the model file is damaged (its format version is {version!r}, not a number)")
    if version > VERSION:
        raise CheckpointError(f"{name}: made by a newer version of Continuo (format {version}); "
                              "update Continuo to open it")
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{name}: the model file is incomplete")
    metadata = state.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(key, str) for key in metadata)):
        raise CheckpointError(f"{name}: the model file is damaged (its description is not a set of named values)")
    window = (metadata or {}).get(DECODE_WINDOW)
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or not limits.MIN_WINDOW <= window <= limits.MAX_WINDOW):
        raise CheckpointError(f"{name}: the model file is damaged (its decoding window is {str(window)[:40]!r}, not "
                              f"a number of positions from {limits.MIN_WINDOW} to {limits.MAX_WINDOW:,})")


def _read_safetensors(path: Path) -> dict:
    """A shipped model (NAME.safetensors and NAME.json) as read_checkpoint's dictionary; errors name `path`."""
    name = path.name
    _model_file_size(path, name)
    weights_path, config_path = path.with_suffix(WEIGHTS_SUFFIX), path.with_suffix(CONFIG_SUFFIX)
    state = _read_config_file(config_path, name)
    try:
        config = ModelConfig.from_dict(state["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: describes a model Continuo cannot build ({_reason(error)})") from None
    expected, tied = _tensors_of(config)
    if weights_path != path and not weights_path.exists():
        raise CheckpointError(f"{name}: its weights ({weights_path.name}) are not beside it")
    _model_file_size(weights_path, name)
    try:
        with open_regular(weights_path, limits.MAX_CHECKPOINT_BYTES) as handle:
            size = os.fstat(handle.fileno()).st_size  # of the file this handle reads, whatever the path is now
            _check_layout(handle, size, expected, name)
            handle.seek(0)
            data = handle.read(size + 1)
    except OSError as error:
        raise CheckpointError(f"{name}: cannot be read ({error.strerror or error})") from None
    if len(data) != size:
        raise CheckpointError(f"{name}: the model file changed while it was read")
    try:
        weights = safetensors.torch.load(data)
    except Exception as error:  # noqa: BLE001 (safetensors raises its own SafetensorError and others for damage)
        raise CheckpointError(f"{name}: not a Continuo model, or the file is damaged ({_reason(error)})") from None
    for key, source in tied.items():  # the head is the embedding: stored once, given under both names
        weights[key] = weights[source]
    state["model"] = weights
    return state


def _read_config_file(path: Path, name: str) -> dict:
    """The .json of a shipped model, checked as a .pt's description is (an error names the model, `name`)."""
    try:
        text = read_regular(path, limits.MAX_MODEL_CONFIG_BYTES)
    except (FileNotFoundError, IsADirectoryError, NotRegularFileError):
        raise CheckpointError(f"{name}: its config ({path.name}) is not beside it; a Continuo model is "
                              f"NAME{WEIGHTS_SUFFIX} and NAME{CONFIG_SUFFIX}") from None
    except FileTooLargeError:
        raise CheckpointError(f"{name}: its config ({path.name}) is over {limits.MAX_MODEL_CONFIG_BYTES // 1024:,} "
                              "kB; a model's config is a few kB") from None
    except OSError as error:
        raise CheckpointError(f"{name}: its config ({path.name}) cannot be read ({error.strerror or error})") \
            from None
    try:
        state = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{name}: its config ({path.name}) is damaged (not JSON)") from None
    _check_description(state, name)
    return state


def _tensors_of(config: ModelConfig) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The shapes of the tensors a model of `config` stores, by name, and its tied names (each to the one
    stored), from a model on the meta device: no weight is allocated."""
    with torch.device("meta"):
        model = MusicTransformer(config)
    shapes, tied, first = {}, {}, {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            tied[key] = first[id(tensor)]
        else:
            first[id(tensor)] = key
            shapes[key] = tuple(tensor.shape)
    return shapes, tied


def _check_layout(handle: io.BufferedReader, size: int, expected: dict[str, tuple[int, ...]], name: str) -> None:
    """Reads a safetensors header and refuses it unless it names exactly the `expected` tensors, each in a
    float dtype with its shape, laid end to end so that they fill the file to its last byte."""
    damaged = f"{name}: not a Continuo model, or the file is damaged"
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise CheckpointError(f"{damaged} (it is {size} bytes, shorter than a header)")
    length = int.from_bytes(prefix, "little")
    if length > min(size - 8, limits.MAX_WEIGHTS_HEADER_BYTES):
        raise CheckpointError(f"{damaged} (its header claims {length:,} bytes, in a file of {size:,})")
    try:
        header = json.loads(handle.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{damaged} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{damaged} (its header names no weights)")
    extra = header.pop("__metadata__", {})
    if not isinstance(extra, dict) or not all(isinstance(value, str) for value in extra.values()):
        raise CheckpointError(f"{damaged} (its header's metadata is not text)")
    unknown = sorted(set(header) - set(expected))
    if unknown:
        raise CheckpointError(f"{name}: holds a weight the model it describes has no place for ({unknown[0][:80]!r})")
    missing = sorted(set(expected) - set(header))
    if missing:
        raise CheckpointError(f"{name}: the weights do not fit the model they describe ({missing[0]} is missing)")
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{damaged} (its header's entry for {key} is not a tensor's)")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in WEIGHT_DTYPES:
            raise CheckpointError(f"{name}: {key} is stored as {str(dtype)[:20]!r}; Continuo reads weights stored "
                                  "as float32 (F32), float16 (F16) or bfloat16 (BF16)")
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise CheckpointError(f"{damaged} (the shape of {key} is not a list of sizes)")
        if tuple(shape) != expected[key]:
            raise CheckpointError(f"{name}: the weights do not fit the model they describe ({key} is "
                                  f"{_shape(shape)}, the model's is {_shape(expected[key])})")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(n) is int for n in offsets):
            raise CheckpointError(f"{damaged} (the place of {key} is not two offsets)")
        if offsets[1] - offsets[0] != math.prod(shape) * WEIGHT_DTYPES[dtype]:
            raise CheckpointError(f"{damaged} ({key} takes {offsets[1] - offsets[0]:,} bytes, its shape "
                                  f"{math.prod(shape) * WEIGHT_DTYPES[dtype]:,})")
        spans.append((offsets[0], offsets[1]))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise CheckpointError(f"{damaged} (its weights overlap or leave gaps)")
        end = stop
    if 8 + length + end != size:
        raise CheckpointError(f"{damaged} (the file is {size:,} bytes; its header describes {8 + length + end:,}: "
                              f"{'cut short' if size < 8 + length + end else 'bytes past its end'})")


def _shape(shape: list[int] | tuple[int, ...]) -> str:
    """A tensor's shape as a musician's error message gives it: 399 x 256."""
    return " x ".join(str(n) for n in shape) if shape else "a single number"


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
