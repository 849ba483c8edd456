"""Where far context helps and where it hurts (issue 45): the NLL per token by position in the piece and by kind
of event, for each window.

    PYTHONPATH=. .venv/bin/python bench/context_use.py [--checkpoint MODEL] [--data pop-piano=FOLDER]
        [--pieces 12] [--train] [--windows 256 512 1024 2048] [--from 512] [--to 2048] [--threads 2] [--json]

The first `--pieces` held-out pieces (bench/memory.py's choice: the stable 5 % split, 36 s or more, less the
pianolatron 88-note rolls) of the one source in `--data`, or with `--train` its first training pieces of 8,000
tokens or more, are scored whole (up to 4L tokens) through the windowed decoder with each window W, as
`music-transformer eval --window W` scores them. Two tables:

1. NLL per token by position: [1, 256), [256, 512), [512, 1,024), [1,024, 2,048), [2,048, 4,096), [4,096, 8,192).
   A position p < W sees the whole piece before it with every window from p on, so that, below the training
   length, a row compares the same context cut at W with the context training gave it.
2. For the positions from `--from` to `--to`: NLL per token of each kind of event (note-on, note-off, time
   shift, velocity), with each kind's share of the nats. What the longer window changes in each kind says what
   the model takes from far context: a note-on better predicted is a pitch remembered (a motif coming back),
   a note-off worse predicted is a note the model has lost track of.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import memory  # noqa: E402
from music_transformer import data, events, load_checkpoint  # noqa: E402
from music_transformer.evaluation import position_nll  # noqa: E402

EDGES = (1, 256, 512, 1024, 2048, 4096, 8192)
KINDS = {"note-on": (events.NOTE_ON_OFFSET, events.NOTE_OFF_OFFSET),
         "note-off": (events.NOTE_OFF_OFFSET, events.TIME_SHIFT_OFFSET),
         "time shift": (events.TIME_SHIFT_OFFSET, events.VELOCITY_OFFSET),
         "velocity": (events.VELOCITY_OFFSET, events.NUM_EVENTS)}


def pieces_of(spec: str, count: int, train: bool, cache: str | None) -> tuple[str, list[data.Piece]]:
    """(source name, pieces): the held-out pieces bench/memory.py measures, or long training pieces."""
    if train:
        name, _, folder = spec.rpartition("=")
        dataset = data.load_dataset(spec if name in events.STYLES else folder, cache_dir=cache)
        return name or Path(folder).name, [p for p in dataset.train if p.token_count >= 8000][:count]
    source, held = next(iter(memory.held_out([spec], cache).items()))
    return source, memory.long_enough(held)[:count]


def context_use(model, pieces: list[data.Piece], style: str, windows, first: int, last: int) -> dict:
    """For each window: the NLL by position bucket, and by kind of event over positions [first, last)."""
    result = {}
    for window in windows:
        by_position = np.zeros((2, len(EDGES) - 1))
        by_kind = {kind: [0.0, 0] for kind in KINDS}

        def on_piece(tokens, nll, by_position=by_position, by_kind=by_kind):
            targets = np.asarray(tokens[1:])
            for index, (low, high) in enumerate(pairwise(EDGES)):
                part = nll[low - 1:high - 1]  # nll[i] predicts token i + 1
                by_position[:, index] += part.sum(), len(part)
            span = np.zeros(len(targets), dtype=bool)
            span[max(0, first - 1):max(0, last - 1)] = True
            for kind, (low, high) in KINDS.items():
                chosen = span & (targets >= low) & (targets < high)
                by_kind[kind][0] += float(nll[chosen].sum())
                by_kind[kind][1] += int(chosen.sum())

        position_nll(model, pieces, window=window, style=style, on_piece=on_piece)
        nats = sum(total for total, _ in by_kind.values())
        result[window] = {
            "by_position": {f"[{low},{high})": (by_position[0, i] / by_position[1, i] if by_position[1, i] else None)
                            for i, (low, high) in enumerate(pairwise(EDGES))},
            "by_kind": {kind: {"nll": total / count if count else None, "nats_share": total / nats if nats else None,
                               "tokens": count} for kind, (total, count) in by_kind.items()}}
    return result


def _kind(value: dict) -> str:
    return "-" if value["nll"] is None else f"{value['nll']:.3f} ({value['nats_share']:.0%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="the model (default: the bundled model)")
    parser.add_argument("--data", default=memory.DEFAULT_DATA[0], help="one source, NAME=FOLDER (default POP909)")
    parser.add_argument("--cache", help="conversion cache (default $CONTINUO_CACHE or ~/.cache/continuo)")
    parser.add_argument("--pieces", type=int, default=12, help="pieces scored (default 12)")
    parser.add_argument("--train", action="store_true", help="training pieces of 8,000 tokens or more instead")
    parser.add_argument("--windows", type=int, nargs="+", default=list(memory.WINDOWS))
    parser.add_argument("--from", dest="first", type=int, default=512, help="first position of the kinds' table")
    parser.add_argument("--to", dest="last", type=int, default=2048, help="end position of the kinds' table")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.pieces < 1 or min(args.windows) < 1 or not 1 <= args.first < args.last:
        parser.error("--pieces and --windows must be 1 or more, and --from below --to")
    import torch

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint, device="cpu")
    source, pieces = pieces_of(args.data, args.pieces, args.train, args.cache)
    style = memory.model_style(source, model.config.vocab_size)
    figures = context_use(model, pieces, style, args.windows, args.first, args.last)
    print(f"{source}: {len(pieces)} {'training' if args.train else 'held-out'} pieces, style {style}, "
          f"{args.checkpoint or 'the bundled model'}")
    buckets = list(next(iter(figures.values()))["by_position"])
    print("\nNLL per token by position\n" + f"{'window':>8}" + "".join(f"{b:>14}" for b in buckets))
    for window, row in figures.items():
        print(f"{window:>8}" + "".join(f"{'-' if v is None else f'{v:.3f}':>14}" for v in row["by_position"].values()))
    print(f"\nNLL per token by kind, positions [{args.first}, {args.last}) (share of the nats)\n"
          f"{'window':>8}" + "".join(f"{kind:>20}" for kind in KINDS))
    for window, row in figures.items():
        print(f"{window:>8}" + "".join(f"{_kind(value):>20}" for value in row["by_kind"].values()))
    if args.json:
        print(json.dumps(memory.plain({"source": source, "pieces": [p.piece_id for p in pieces], "style": style,
                                       "checkpoint": args.checkpoint, "windows": figures})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
