"""The decoder's CPU step in C (step.c), compiled with the machine's C compiler on first use.

`library()` returns the loaded library, or None where it cannot be had: no compiler (`cc`, or `$CC`), a
build that fails, a platform ctypes cannot load it on, or `CONTINUO_NATIVE=0` in the environment. The
decoder then takes its torch path, which computes the same step; nothing else changes.

The library is built for this machine's processor (`TARGETS`) and kept in the user's cache folder
(`$XDG_CACHE_HOME/continuo`, or ~/.cache/continuo; the temporary folder where that cannot be written)
under a name made from the source, the flags, the compiler and the processor, so a home folder shared by
different machines keeps one library for each. It is written to a temporary name and renamed into place,
so processes building it at once do not clash. ctypes lets go of the GIL during each call, so the
studio's other threads run while a step is computed, as they do during torch's operations.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("step.c")
# Reassociating sums lets the compiler vectorise the dot products; infinities keep their meaning (hidden keys).
FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros",
         "-ffp-contract=fast", "-fPIC", "-shared")
# For this processor: GCC and Clang on x86 take -march=native, Clang on Arm (Apple's among them) -mcpu=native;
# a compiler that takes neither builds for its default target.
TARGETS = (("-march=native",), ("-mcpu=native",), ())
BUILD_SECONDS = 120
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


def _compiler() -> str | None:
    named = os.environ.get("CC")
    if named:
        return shutil.which(named) or named
    return next((path for path in map(shutil.which, ("cc", "gcc", "clang")) if path), None)


def cpuinfo_lines() -> list[str] | None:
    """The CPU's model and feature-flag lines of /proc/cpuinfo, each distinct one once (they repeat for every
    core); None where Linux does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            return list(dict.fromkeys(line for line in info if line.startswith(("model name", "flags", "Features"))))
    except OSError:
        return None


def _processor() -> str:
    """What -march=native builds for: the CPU's model and feature flags where Linux says, else the platform."""
    lines = cpuinfo_lines()
    return "".join(lines) if lines is not None else platform.processor() + platform.machine()


def _cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "continuo"


def _suffix() -> str:
    return ".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so"


def build(compiler: str, folder: Path) -> Path:
    """Compiles step.c into `folder` (once per source, flags, compiler and processor) and returns the path:
    for this processor where the compiler can (`TARGETS`, in turn), else for its default target."""
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, timeout=30).stdout
    made = {}
    for target_flags in TARGETS:
        flags = (*FLAGS, *target_flags)
        key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), version, _processor().encode()]))
        made[target_flags] = folder / f"step-{key.hexdigest()[:16]}{_suffix()}"
        if made[target_flags].exists():
            return made[target_flags]
    folder.mkdir(parents=True, exist_ok=True)
    failed = ""
    for target_flags, target in made.items():
        handle, partial = tempfile.mkstemp(prefix=target.stem, suffix=_suffix(), dir=folder)
        os.close(handle)
        try:
            done = subprocess.run([compiler, *FLAGS, *target_flags, str(SOURCE), "-o", partial, "-lm"],
                                  capture_output=True, text=True, timeout=BUILD_SECONDS)
            if done.returncode == 0:
                os.replace(partial, target)
                return target
            failed = done.stderr.strip()[-400:]
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise RuntimeError(f"{Path(compiler).name} failed: {failed}")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled step, or None (see the module's description); builds it on the first call."""
    if os.environ.get("CONTINUO_NATIVE", "1") == "0":
        return None
    compiler = _compiler()
    if compiler is None:
        return None
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    try:
        try:
            built = build(compiler, _cache_folder())
        except OSError:  # a cache folder that cannot be made or written: the temporary folder
            built = build(compiler, Path(tempfile.gettempdir()) / f"continuo-{user}")
        loaded = ctypes.CDLL(str(built))
        step = loaded.mt_step
        if (loaded.mt_panel_width(), loaded.mt_key_block()) != (PANEL, KEY_BLOCK):
            raise RuntimeError(f"step.c's layouts ({loaded.mt_panel_width()}, {loaded.mt_key_block()}) are not "
                               f"native.py's ({PANEL}, {KEY_BLOCK})")
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
        warnings.warn(f"decoding with torch's operations: the C step could not be built or loaded ({error})",
                      stacklevel=2)
        return None
    step.argtypes = [ctypes.POINTER(Model), ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Plan)]
    step.restype = None
    return loaded
