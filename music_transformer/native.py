"""The decoder's CPU step in C (step.c), compiled when the wheel is built and loaded from the package.

hatch_build.py compiles step.c into `_native/`, once for each level of the processor's vector instructions
(x86-64-v4 with AVX-512, x86-64-v3 with AVX2, a baseline for every x86-64; one NEON build on arm64), and
lists them with their SHA-256 in `_native/variants.json`. `library()` loads the best variant this processor
runs, as the baseline build's `mt_cpu_level` reports it, after checking each file against its SHA-256 and
the source it was built from. `CONTINUO_NATIVE` in the environment picks one by name (`baseline`,
`x86-64-v3`, ...), or `0` for none.

Where there is none (the wheel was built without a C compiler, a checkout without `make native`), or the one
asked for cannot run here, or its file is not the one that was built, `library()` warns once and returns
None: the decoder takes its torch path, which computes the same step. Nothing is compiled, and nothing is
written or read outside the package. ctypes lets go of the GIL during each call, so the studio's other
threads run while a step is computed, as they do during torch's operations.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("step.c")
FOLDER = Path(__file__).with_name("_native")
MANIFEST = FOLDER / "variants.json"
# The layouts the C step reads, which the decoder makes: outputs to a panel of a weight matrix (step.c's PANEL),
# columns of keys to a block of a ring (step.c's LANES; stream_cache.StreamCache). The library is asked for both.
PANEL = 32
KEY_BLOCK = 16


class Layer(ctypes.Structure):
    """`mt_layer` in step.c."""

    _fields_ = [(name, ctypes.c_void_p) for name in (
        "norm1_w", "norm1_b", "qkv_w", "qkv_b", "out_w", "out_b", "norm2_w", "norm2_b", "up_w", "up_b", "down_w",
        "down_b", "relative_t", "context_keys", "context_values", "keys", "values")] + [
        ("norm1_eps", ctypes.c_float), ("norm2_eps", ctypes.c_float)]


class Model(ctypes.Structure):
    """`mt_model` in step.c."""

    _fields_ = [(name, ctypes.c_int32) for name in (
        "n_layers", "d_model", "heads", "head_dim", "d_ff", "vocab", "span", "distances", "rows", "context",
        "context_stride", "relative_stride")] + [
        ("layers", ctypes.POINTER(Layer)), ("final_w", ctypes.c_void_p), ("final_b", ctypes.c_void_p),
        ("head_w", ctypes.c_void_p), ("work", ctypes.c_void_p), ("final_eps", ctypes.c_float)]


class Plan(ctypes.Structure):
    """`mt_plan` in step.c: a step's columns (stream_cache.StepPlan)."""

    _fields_ = [(name, ctypes.c_int32) for name in (
        "first", "context_seen", "ring_first", "ring_seen", "column", "needed", "n_terms", "n_hidden")] + [
        ("terms", ctypes.c_int32 * 6), ("hidden", ctypes.c_int32 * 4)]


def cpuinfo_lines() -> list[str] | None:
    """The CPU's model and feature-flag lines of /proc/cpuinfo, each distinct one once (they repeat for every
    core); None where Linux does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            return list(dict.fromkeys(line for line in info if line.startswith(("model name", "flags", "Features"))))
    except OSError:
        return None


class UnavailableError(RuntimeError):
    """Why there is no C step to load here."""


def variants() -> list[dict]:
    """The built variants, best first (the last runs on every processor of the architecture): each a dict
    with its name, the level of `mt_cpu_level` it needs, its file and SHA-256 (variants.json)."""
    try:
        manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnavailableError("this installation has no C step (it was built without a C compiler; in a checkout, "
                               "`make native` builds it)") from None
    except (OSError, ValueError) as error:
        raise UnavailableError(f"{MANIFEST.name} cannot be read ({error})") from None
    if SOURCE.exists() and hashlib.sha256(SOURCE.read_bytes()).hexdigest() != manifest.get("source_sha256"):
        raise UnavailableError("it was built from another step.c (in a checkout, `make native` rebuilds it)")
    return list(manifest["variants"])


def _load(variant: dict) -> ctypes.CDLL:
    """The variant's library, once its file is the one that was built."""
    if Path(variant["file"]).name != variant["file"]:  # a file of the package's own folder, nowhere else
        raise UnavailableError(f"{MANIFEST.name} names a file outside {FOLDER.name}/: {variant['file']!r}")
    path = FOLDER / variant["file"]
    try:
        made = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise UnavailableError(f"its {variant['name']} variant cannot be read ({error})") from None
    if made != variant["sha256"]:
        raise UnavailableError(f"{path.name} is not the file that was built (its SHA-256 differs)")
    return ctypes.CDLL(str(path))


def cpu_level(built: list[dict]) -> int:
    """What step.c's `mt_cpu_level` says of this processor, asked of the variant every processor runs."""
    return int(_load(built[-1]).mt_cpu_level())


def choose(built: list[dict], asked: str) -> dict:
    """The variant `asked` names (`CONTINUO_NATIVE`), or the best this processor runs ("" or "1")."""
    level = cpu_level(built)
    runnable = [variant for variant in built if variant["level"] <= level]
    if asked in ("", "1"):
        return runnable[0]
    named = {variant["name"]: variant for variant in built}
    if asked not in named:
        raise UnavailableError(f"CONTINUO_NATIVE={asked} names no variant built here ({', '.join(named)}, or 0)")
    if named[asked] not in runnable:
        raise UnavailableError(f"CONTINUO_NATIVE={asked}: this processor cannot run that variant "
                               f"(it runs {', '.join(variant['name'] for variant in runnable)})")
    return named[asked]


@functools.cache
def library() -> ctypes.CDLL | None:
    """The C step's library for this processor, or None (see the module's description); its `variant` attribute
    names the variant loaded."""
    asked = os.environ.get("CONTINUO_NATIVE", "").strip()
    if asked == "0":
        return None
    try:
        built = variants()
        variant = choose(built, asked)
        loaded = _load(variant)
        step = loaded.mt_step
        if (loaded.mt_panel_width(), loaded.mt_key_block()) != (PANEL, KEY_BLOCK):
            raise UnavailableError(f"step.c's layouts ({loaded.mt_panel_width()}, {loaded.mt_key_block()}) are not "
                                   f"native.py's ({PANEL}, {KEY_BLOCK})")
    except (OSError, UnavailableError, AttributeError, KeyError, TypeError, IndexError) as error:
        warnings.warn(f"decoding with torch's operations: no C step to load ({error})", stacklevel=2)
        return None
    step.argtypes = [ctypes.POINTER(Model), ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Plan)]
    step.restype = None
    loaded.variant = variant["name"]
    return loaded
