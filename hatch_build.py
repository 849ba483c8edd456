"""Compiles the decoder's C step (music_transformer/step.c) when the wheel is built: hatchling's build hook.

Every build of the wheel (`make dist`, `pip install` of the sdist, the editable install `make setup` makes)
compiles step.c into music_transformer/_native/, once for each level of the processor's vector instructions
this architecture has (`VARIANTS`), with a `variants.json` that names each file, the level it needs and its
SHA-256. music_transformer/native.py loads the best one the machine runs; nothing is compiled when the
library or the studio runs. The wheel is then tagged for this platform (py3-none-<platform>: the library is
loaded through ctypes, so it fits every Python 3 there, not only the one that built it).

Without a C compiler (GCC or Clang, `$CC` or cc, gcc, clang) the hook says so and builds the wheel without the
C step: the decoder takes torch's operations, with one warning. `python hatch_build.py` (`make native`)
rebuilds the variants in a checkout after step.c changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # `python hatch_build.py` needs no hatchling
    BuildHookInterface = object

ROOT = Path(__file__).resolve().parent
SOURCE = Path("music_transformer", "step.c")
FOLDER = Path("music_transformer", "_native")
MANIFEST = "variants.json"
# Reassociating sums lets the compiler vectorise the dot products; infinities keep their meaning (hidden keys).
FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros",
         "-ffp-contract=fast", "-fPIC", "-shared")
# (name, the level step.c's mt_cpu_level must report, the target's flags), best first; the last one runs on every
# processor of the architecture, and native.py asks it for the level. x86-64's levels are the psABI's.
VARIANTS = {
    "x86_64": (("x86-64-v4", 4, ("-march=x86-64-v4",)), ("x86-64-v3", 3, ("-march=x86-64-v3",)),
               ("baseline", 1, ("-march=x86-64", "-mtune=generic"))),
    "arm64": (("neon", 0, ()),),  # NEON is part of every arm64 processor: one build
}
OTHER = (("baseline", 0, ()),)
BUILD_SECONDS = 300


def architecture() -> str:
    """x86_64, arm64, or what the platform calls itself."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def compiler() -> str | None:
    """`$CC`, else the first of cc, gcc and clang on PATH."""
    named = os.environ.get("CC")
    if named:
        return shutil.which(named) or named
    return next((path for path in map(shutil.which, ("cc", "gcc", "clang")) if path), None)


def suffix() -> str:
    return ".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so"


def build(root: Path = ROOT, say=print) -> list[Path]:
    """Compiles step.c's variants into `root`/music_transformer/_native with their manifest and returns the
    files written (relative to `root`); none, and `say` says why, where the baseline cannot be built."""
    folder = root / FOLDER
    if folder.is_dir():
        for old in folder.iterdir():
            if old.is_file():
                old.unlink()
    cc = compiler()
    if cc is None:
        say("warning: no C compiler (cc, gcc or clang, or $CC): built without the C step; the decoder takes "
            "torch's operations")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    source = (root / SOURCE).read_bytes()
    made, failed = [], ""
    for name, level, target in VARIANTS.get(architecture(), OTHER):
        library = folder / f"step-{name}{suffix()}"
        partial = library.with_name(library.name + ".partial")
        try:
            done = subprocess.run([cc, *FLAGS, *target, str(root / SOURCE), "-o", str(partial), "-lm"],
                                  capture_output=True, text=True, timeout=BUILD_SECONDS)
        except (OSError, subprocess.SubprocessError) as error:
            done, failed = None, str(error)
        if done is not None and done.returncode == 0:
            partial.replace(library)
            made.append({"name": name, "level": level, "file": library.name, "flags": [*FLAGS, *target],
                         "sha256": hashlib.sha256(library.read_bytes()).hexdigest()})
        else:
            partial.unlink(missing_ok=True)
            failed = done.stderr.strip()[-400:] if done is not None else failed
            say(f"warning: {Path(cc).name} could not build the C step's {name} variant: {failed}")
    if not made or made[-1]["name"] != VARIANTS.get(architecture(), OTHER)[-1][0]:
        for entry in made:
            (folder / entry["file"]).unlink()
        say("warning: built without the C step (its baseline variant did not compile); the decoder takes "
            "torch's operations")
        return []
    manifest = {"source_sha256": hashlib.sha256(source).hexdigest(), "architecture": architecture(),
                "variants": made}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return [FOLDER / entry["file"] for entry in made] + [FOLDER / MANIFEST]


def wheel_tag() -> str:
    """py3-none-<this platform>, e.g. py3-none-linux_x86_64."""
    return "py3-none-" + sysconfig.get_platform().replace("-", "_").replace(".", "_")


class NativeStepHook(BuildHookInterface):
    """Builds the C step's variants into the wheel and tags it for this platform."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        built = build(Path(self.root), say=self.app.display_warning)
        if built:
            build_data["pure_python"] = False
            build_data["tag"] = wheel_tag()
            build_data["artifacts"].extend(path.as_posix() for path in built)


if __name__ == "__main__":
    files = build(say=lambda text: print(text, file=sys.stderr))
    for path in files:
        print(path)
    sys.exit(0 if files else 1)
