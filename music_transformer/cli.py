"""The `music-transformer` command: generate, infill, train, eval, pack, bench, average.

Each subcommand lives in the module that does the work; this file only dispatches, so that
`music-transformer generate` does not pay for importing the training code.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from . import limits
from .errors import ContinuoError
from .events import STYLES

# name -> (module, function taking argv, one-line help)
SUBCOMMANDS = {
    "generate": ("music_transformer.cli", "generate_main", "continue a MIDI motif and write the result"),
    "infill": ("music_transformer.cli", "infill_main", "fill a stretch of time in a MIDI file with new music"),
    "train": ("music_transformer.train", "train_main", "train a model on a MIDI folder or the music21 corpus"),
    "eval": ("music_transformer.train", "eval_main", "NLL per token of a checkpoint, overall and by position"),
    "pack": ("music_transformer.data", "pack_main", "convert data sources once into one token file (for a GPU run)"),
    "bench": ("music_transformer.bench", "main", "the model benchmarks (cache speed-up, memory, training speed)"),
    "average": ("music_transformer.cli", "average_main", "average the weights of several checkpoints of one run"),
}


class UsageError(ContinuoError):
    """A command-line argument the command cannot run with; the message names it."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors raised as `UsageError` so that `main` reports them in one line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def number(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False,
           below: bool = False, description: str | None = None) -> Callable[[str], int | float]:
    """An argparse type: a finite int or float from `low` to `high` (each left out when `above`, `below`)."""
    if description is None:
        if low is not None and high is not None and not (above or below):
            bounds = f"from {low:,g} to {high:,g}"
        else:
            parts = [f"more than {low:,g}" if above else f"{low:,g} or more"] if low is not None else []
            parts += [f"less than {high:,g}" if below else f"at most {high:,g}"] if high is not None else []
            bounds = " and ".join(parts)
        description = f"{'a whole number' if kind is int else 'a number'} {bounds}".strip()

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) \
                or (low is not None and (value < low or (above and value == low))) \
                or (high is not None and (value > high or (below and value == high))):
            raise argparse.ArgumentTypeError(f"must be {description}, not {text!r}")
        return value

    parse.__name__ = description  # what argparse calls the type in its own messages
    return parse


positive_int = number(int, 1)
non_negative_int = number(int, 0)
positive_float = number(float, 0, above=True)
non_negative_float = number(float, 0)
share = number(float, 0, 1, description="a share from 0 to 1")
share_below_one = number(float, 0, 1, below=True, description="a share from 0 up to (not including) 1")
seed = number(int, 0, 2**63 - 1, description="a whole number 0 or more")
threads = number(int, 1, limits.MAX_CPU_THREADS)
length = number(int, 1, limits.MAX_LENGTH)


def style_weights(text: str) -> dict[str, float]:
    """An argparse type: STYLE=WEIGHT pairs joined by commas (`train --style-weights chorale=3,folk=2`)."""
    from .data import style_weights as checked

    pairs: dict[str, float] = {}
    for part in text.split(","):
        style, equals, weight = (piece.strip() for piece in part.partition("="))
        if not equals:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not STYLE=WEIGHT")
        if style in pairs:
            raise argparse.ArgumentTypeError(f"{style} is named twice")
        try:
            pairs[style] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"the weight of {style} must be a number, not {weight!r}") from None
    try:
        return dict(checked(pairs))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def device(text: str) -> str:
    """An argparse type: cpu, cuda or cuda:N, if this machine has it."""
    from .checkpoint import checked_device

    try:
        return str(checked_device(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def output_file(text: str) -> Path:
    """An argparse type: a file that can be written (its folder exists and takes files; it is not a folder)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {path.parent} does not exist")
    if not _takes_files(path.parent):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {path.parent} is not writable")
    return path


def writable_folder(text: str) -> Path:
    """An argparse type: a folder that exists and takes files, or can be made (its nearest existing parent does)."""
    path = Path(text).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot use {text} as a folder: {existing} is a file")
    if not _takes_files(existing):
        raise argparse.ArgumentTypeError(f"cannot write in {text}: {existing} is not writable")
    return path


def _takes_files(folder: Path) -> bool:
    """Whether a file can be made in `folder`, tried (permission bits do not tell for root, or on a read-only
    or special file system)."""
    try:
        descriptor, name = tempfile.mkstemp(dir=folder, prefix=".continuo-check-")
    except OSError:
        return False
    os.close(descriptor)
    os.unlink(name)
    return True


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
        lines = [f"  {name:<10}{help_text}" for name, (_, _, help_text) in SUBCOMMANDS.items()]
        print("usage: music-transformer COMMAND [options] | --version\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nmusic-transformer: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, function_name, _ = SUBCOMMANDS[argv[0]]
    function = getattr(importlib.import_module(module_name), function_name)
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


def _sampling_options(parser: ArgumentParser) -> None:
    """The options `generate` and `infill` share: the model, how it samples, the style, key and range."""
    parser.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--temperature", type=number(float, 0, limits.MAX_TEMPERATURE), default=1.0)
    parser.add_argument("--top-k", type=non_negative_int)
    parser.add_argument("--top-p", type=number(float, 0, 1, above=True))
    parser.add_argument("--seed", type=seed)
    parser.add_argument("--style", default="any", choices=STYLES,
                        help="the idiom to write in (default any: the model tells from the music around)")
    parser.add_argument("--key", type=key_lock,
                        help="keep every new note in a key: 'auto' (the key of the music given) or e.g. 'D minor', "
                             "'Eb major', 'A dorian' (default: no key lock)")
    parser.add_argument("--lowest", type=number(int, 0, 127), default=21, help="lowest MIDI pitch to write (21, A0)")
    parser.add_argument("--highest", type=number(int, 0, 127), default=108,
                        help="highest MIDI pitch to write (108, C8)")
    parser.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--bpm", type=number(float, limits.MIN_BPM, limits.MAX_BPM), default=120.0,
                        help="tempo written into the MIDI file")


def key_lock(text: str) -> str:
    """An argparse type: 'auto' or a key's name (checked here, read by `_allowed_pitches`)."""
    from .keys import parse_key

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return parse_key(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _allowed_pitches(args: argparse.Namespace, notes) -> frozenset[int]:
    """The pitches the options allow: the key (`auto`: found in `notes`) within --lowest..--highest."""
    from .keys import allowed_pitches, detect_key, parse_key

    if args.lowest > args.highest:
        raise UsageError(f"--lowest {args.lowest} is above --highest {args.highest}")
    key = None
    if args.key == "auto":
        key = detect_key(notes)
        if key is None:
            raise UsageError("--key auto needs music to find the key in; there is none")
        print(f"key: {key.name} (found in the music given)")
    elif args.key:
        key = parse_key(args.key)
    pitches = allowed_pitches(key, args.lowest, args.highest)
    if not pitches:
        raise UsageError(f"no pitch of {key.name} lies between {args.lowest} and {args.highest}")
    return pitches


def _written(tokens: list[int], started: float) -> str:
    elapsed = time.perf_counter() - started
    return f"{len(tokens)} tokens in {elapsed:.1f} s ({len(tokens) / max(elapsed, 1e-9):.0f} tokens/s)"


def generate_main(argv: list[str]) -> int:
    """`music-transformer generate`: continue a primer MIDI file for some seconds of music."""
    parser = ArgumentParser(prog="music-transformer generate", description=generate_main.__doc__)
    parser.add_argument("--primer", type=Path, help="MIDI file to continue (none: start from silence)")
    parser.add_argument("--seconds", type=number(float, 0, limits.MAX_PIECE_SECONDS, above=True), default=30.0,
                        help="seconds of music to write (default 30)")
    parser.add_argument("--out", type=output_file, required=True,
                        help="MIDI file to write: the primer and its continuation")
    _sampling_options(parser)
    parser.add_argument("--beam-size", type=number(int, 1, limits.MAX_BEAM_SIZE), default=1,
                        help="search for the most likely continuation with this many beams instead of sampling")
    parser.add_argument("--length-penalty", type=non_negative_float, default=0.6, help="beam search's length bias α")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from .checkpoint import load_checkpoint
    from .events import SECONDS_PER_TICK, shift_ticks
    from .generate import continuation_notes, generate, primer_tokens
    from .midi import read_midi, write_midi

    primer_notes = read_midi(args.primer) if args.primer else []
    motif_end = max((note.end for note in primer_notes), default=0.0)
    if motif_end + args.seconds > limits.MAX_PIECE_SECONDS:
        raise UsageError(f"the primer ({motif_end / 60:.0f} min) and --seconds {args.seconds:g} make more than the "
                         f"{limits.MAX_PIECE_SECONDS / 3600:g} hours Continuo writes at once")
    allowed = _allowed_pitches(args, primer_notes)
    model = load_checkpoint(args.checkpoint, device=args.device)
    tokens = []
    started = time.perf_counter()
    with tqdm(total=round(args.seconds, 2), unit="s", desc=f"writing on {model.device.type}",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of music [{elapsed}]") as bar:
        for token in generate(model, primer_tokens(primer_notes, until=motif_end), seconds=args.seconds,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              beam_size=args.beam_size, length_penalty=args.length_penalty, style=args.style,
                              allowed_pitches=allowed):
            tokens.append(token)
            if shift_ticks(token):
                bar.update(shift_ticks(token) * SECONDS_PER_TICK)
    continuation = continuation_notes(tokens, start=motif_end)
    write_midi(primer_notes + continuation, args.out, bpm=args.bpm)
    print(f"wrote {args.out}: {len(primer_notes)} primer notes and {len(continuation)} new notes, "
          f"{_written(tokens, started)}")
    return 0


def infill_main(argv: list[str]) -> int:
    """`music-transformer infill`: write new music into the time from --start to --end of a MIDI file."""
    parser = ArgumentParser(prog="music-transformer infill", description=infill_main.__doc__)
    parser.add_argument("--input", type=Path, required=True, help="the MIDI file with a stretch to fill")
    parser.add_argument("--start", type=non_negative_float, required=True, help="where the gap starts, in seconds")
    parser.add_argument("--end", type=non_negative_float, required=True, help="where it ends, in seconds")
    parser.add_argument("--keep", action="store_true",
                        help="keep the notes that start inside the gap and add to them (default: replace them)")
    parser.add_argument("--out", type=output_file, required=True, help="MIDI file to write: the filled music")
    _sampling_options(parser)
    args = parser.parse_args(argv)
    if args.end <= args.start:
        raise UsageError(f"--end {args.end:g} must come after --start {args.start:g}")

    from .checkpoint import load_checkpoint
    from .events import to_ticks
    from .generate import continuation_notes, infill
    from .midi import read_midi, write_midi

    notes = read_midi(args.input)
    first, last = to_ticks(args.start), to_ticks(args.end)
    before = [note for note in notes if to_ticks(note.start) < first]
    inside = [note for note in notes if first <= to_ticks(note.start) < last]
    after = [note for note in notes if to_ticks(note.start) >= last]
    allowed = _allowed_pitches(args, before + after)
    model = load_checkpoint(args.checkpoint, device=args.device)
    started = time.perf_counter()
    tokens = list(infill(model, before, after, args.start, args.end, style=args.style, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=args.seed, allowed_pitches=allowed))
    middle = continuation_notes(tokens, start=args.start)
    kept = inside if args.keep else []
    write_midi(sorted(before + kept + middle + after, key=lambda n: (n.start, n.pitch)), args.out, bpm=args.bpm)
    replaced = "" if args.keep else f", replacing {len(inside)}"
    print(f"wrote {args.out}: {len(middle)} new notes from {args.start:g} s to {args.end:g} s{replaced}; "
          f"{_written(tokens, started)}")
    return 0


def average_main(argv: list[str]) -> int:
    """`music-transformer average C1 C2 ... --out C`: checkpoint averaging."""
    parser = ArgumentParser(prog="music-transformer average", description=average_main.__doc__)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of one run, e.g. its last few")
    parser.add_argument("--out", type=output_file, required=True, help="where to write the averaged model")
    args = parser.parse_args(argv)
    from .checkpoint import average_checkpoints

    average_checkpoints(args.checkpoints, args.out)
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":  # python -m music_transformer.cli: run the package's copy, whose errors the commands raise
    from music_transformer.cli import main as package_main

    sys.exit(package_main())
