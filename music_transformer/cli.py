"""The `music-transformer` command: generate, infill, accompany, train, eval, pack, bench, average.

This file only dispatches: each command's `main` lives in its own module under `commands/` and is imported
when it runs, so that `music-transformer generate` does not pay for importing the training code. The
argument types and `UsageError` they share are `arguments.py`'s.
"""

from __future__ import annotations

import importlib
import sys

from .arguments import UsageError
from .errors import ContinuoError

# name -> (module under music_transformer.commands with a main(argv), one-line help)
SUBCOMMANDS = {
    "generate": ("generate", "continue a MIDI motif and write the result"),
    "infill": ("infill", "fill a stretch of time in a MIDI file with new music"),
    "accompany": ("accompany", "keep a MIDI file's notes in one range and write a new part in another"),
    "train": ("train", "train a model on a MIDI folder or the music21 corpus"),
    "eval": ("evaluate", "NLL per token of a checkpoint, overall and by position"),
    "pack": ("pack", "convert data sources once into one token file (for a GPU run)"),
    "bench": ("bench", "the model benchmarks (decoding speed, variations, training speed)"),
    "average": ("average", "average the weights of several checkpoints of one run"),
}


def version() -> str:
    """Continuo's version: the installed package's metadata (pyproject.toml's one version), which
    `continuo --version` prints too."""
    from importlib import metadata

    try:
        return metadata.version("continuo")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `music-transformer` command.

    A user's mistake is one line on stderr and exit status 2, never a traceback: a command line the
    command cannot run with (an argument out of range, an output path that cannot be written), an input
    it cannot use (a damaged MIDI or model file, training that diverged) or a file the system refuses.
    Only a bug in Continuo prints a traceback (and Python's exit status 1).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        print(f"music-transformer {version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        lines = [f"  {name:<10}{help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
        print("usage: music-transformer COMMAND [options] | --version\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nmusic-transformer: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, _ = SUBCOMMANDS[argv[0]]
    function = importlib.import_module(f"music_transformer.commands.{module_name}").main
    try:
        return int(function(argv[1:]) or 0)
    except UsageError as error:
        print(f"music-transformer {argv[0]}: {error}", file=sys.stderr)
        return 2
    except ContinuoError as error:
        print(f"music-transformer {argv[0]}: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file or folder the system refuses: the user's to fix, not a bug
        where = f"{error.filename}: " if error.filename else ""
        print(f"music-transformer {argv[0]}: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"music-transformer {argv[0]}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # python -m music_transformer.cli: run the package's copy, whose errors the commands raise
    from music_transformer.cli import main as package_main

    sys.exit(package_main())
