"""The command line's vocabulary: `UsageError`, an `ArgumentParser` that raises it, and the argument types
every `music-transformer` command shares (numbers within bounds, files and folders that can be written, a
device, a key). A leaf: it imports only the library's limits, events and errors, so that each command's
module (`commands/`) and `cli.py`, which dispatches to them, can import it without a circle.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from . import limits
from .errors import ContinuoError
from .events import STYLES
from .files import NotRegularFileError, write_target


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
seed = number(int, limits.MIN_SEED, limits.MAX_SEED,
              description=f"a whole number from {limits.MIN_SEED} to {limits.MAX_SEED:,}")
threads = number(int, 1, limits.MAX_CPU_THREADS)
length = number(int, 1, limits.MAX_LENGTH)


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
    try:  # a link is written through: its target's folder takes the file
        target, _ = write_target(path)
    except NotRegularFileError as error:  # a device, a FIFO or a socket is never written over
        raise argparse.ArgumentTypeError(f"cannot write {text}: it {error.strerror}") from None
    if not target.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {target.parent} does not exist")
    if not _takes_files(target.parent):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {target.parent} is not writable")
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


def sampling_options(parser: ArgumentParser) -> None:
    """The options `generate` and `infill` share: the model, how it samples, the style, key and range."""
    parser.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    # the bounds generate() enforces, read here so that a value out of them is one line and exit 2
    parser.add_argument("--temperature", type=number(float, limits.MIN_TEMPERATURE, limits.MAX_TEMPERATURE),
                        default=1.0, help="0 picks the most likely token (default 1)")
    parser.add_argument("--top-k", type=number(int, limits.MIN_TOP_K, limits.MAX_TOP_K),
                        help="draw among the k likeliest tokens only (0 or none: all)")
    parser.add_argument("--top-p", type=number(float, limits.MIN_TOP_P, limits.MAX_TOP_P, above=True),
                        help="draw within each kind of event's likeliest share p (1 or none: all)")
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


def time_signature(text: str) -> tuple[int, int]:
    """An argparse type: a metre such as 4/4, 3/4 or 6/8, within the metres `limits` names."""
    numerator, _, denominator = text.strip().partition("/")
    try:
        metre = int(numerator), int(denominator)
    except ValueError:
        metre = None
    if metre is None or not 1 <= metre[0] <= limits.MAX_NUMERATOR or metre[1] not in limits.DENOMINATORS:
        raise argparse.ArgumentTypeError(
            f"must be beats over a note value, e.g. 4/4 or 6/8 (1 to {limits.MAX_NUMERATOR} over "
            f"{', '.join(map(str, limits.DENOMINATORS))}), not {text!r}")
    return metre


time_signature.__name__ = "a time signature"


def key_lock(text: str) -> str:
    """An argparse type: 'auto' or a key's name (checked here, read by `allowed_pitches`)."""
    from .keys import parse_key

    if text.strip().lower() == "auto":
        return "auto"
    try:
        return parse_key(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def allowed_pitches(args: argparse.Namespace, notes) -> frozenset[int]:
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


def written(tokens: list[int], started: float) -> str:
    """How many tokens were written since `started` (a perf_counter time), and how fast."""
    elapsed = time.perf_counter() - started
    return f"{len(tokens)} tokens in {elapsed:.1f} s ({len(tokens) / max(elapsed, 1e-9):.0f} tokens/s)"
