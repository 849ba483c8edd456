"""`music-transformer train`: train a model on MIDI folders, the music21 corpus or a token pack.

Several processes: `torchrun --nproc_per_node=K -m music_transformer.commands.train --data ... --out ...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..arguments import (
    ArgumentParser,
    device,
    length,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    share,
    share_below_one,
    threads,
    writable_folder,
)
from ..model import POSITIONAL_KINDS, PRECISIONS
from ..sources import check_readable
from ..train import PRESETS

DATA_HELP = ("one or more data sources: a folder of MIDI files (STYLE=FOLDER names its style, e.g. "
             "pop-piano=~/pop909), 'corpus' (the music21 subset), 'corpus:bach,fiddle', or a token pack "
             "(*.tokens.npz, from `music-transformer pack`)")


def style_weights(text: str) -> dict[str, float]:
    """An argparse type: STYLE=WEIGHT pairs joined by commas (`train --style-weights chorale=3,folk=2`)."""
    from ..data import style_weights as checked

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


def main(argv: list[str]) -> int:
    """`music-transformer train`: train a model on a MIDI folder or the music21 corpus."""
    parser = ArgumentParser(prog="music-transformer train", description=main.__doc__)
    parser.add_argument("--data", required=True, nargs="+", help=DATA_HELP)
    parser.add_argument("--out", required=True, type=writable_folder, help="run directory (checkpoints, log)")
    parser.add_argument("--config", default="small", help=f"a preset ({', '.join(PRESETS)}) or a JSON file")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                        help="start from this model's weights and shape, with a new schedule (--config's)")
    parser.add_argument("--steps", type=positive_int,
                        help="optimizer steps to train for (the schedule decays over them)")
    parser.add_argument("--max-minutes", type=positive_float, help="stop after this many minutes of training")
    parser.add_argument("--positional", choices=POSITIONAL_KINDS,
                        help="override the config's positions: relative (the paper's) or absolute (the baseline)")
    parser.add_argument("--train-length", type=length, help="override the config's crop length")
    parser.add_argument("--label-smoothing", type=share_below_one,
                        help="spread this much of each target's mass (e.g. 0.1)")
    parser.add_argument("--fim-rate", type=share, help="share of fill-in-the-middle samples (default 0.5)")
    parser.add_argument("--accompany-rate", type=share,
                        help="share of windows with a kept part announced ahead, for accompaniment (default 0: "
                             "they have not paid yet; a model taught some gains the ANTICIPATE tokens)")
    parser.add_argument("--restate-rate", type=share,
                        help="share of windows in which passage after passage is played again right after itself, "
                             "a lesson in copying (default 0)")
    parser.add_argument("--style-dropout", type=share,
                        help="share of samples whose style says 'any' (default 0.15)")
    parser.add_argument("--style-weights", type=style_weights, metavar="STYLE=W[,STYLE=W...]",
                        help="how often each style's pieces come round in an epoch against their share of the "
                             "tokens, e.g. chorale=3,folk=2 (0 leaves a style out; 1 when not named)")
    parser.add_argument("--dropout", type=share_below_one, help="dropout before each residual addition")
    parser.add_argument("--local-block", type=length,
                        help="relative local attention: blocks of this many tokens see their own and the previous")
    parser.add_argument("--relative-buckets", type=length, metavar="B",
                        help="B relative embeddings: half for the nearest distances, then log-spaced buckets up to "
                             "the crop length, the last shared by every farther distance (a model from "
                             "--init-from grows them from its own)")
    parser.add_argument("--sounding-input", action="store_true", default=None,
                        help="tell the model which pitches sound after each token (a model from --init-from "
                             "gains it, starting at zero)")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--lr", type=positive_float, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=non_negative_int)
    parser.add_argument("--seed", type=seed)
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="auto (bfloat16 on CUDA, float32 on the CPU), bfloat16 or float32")
    parser.add_argument("--checkpoint-minutes", type=non_negative_float,
                        help="minutes between checkpoints (default 3)")
    parser.add_argument("--keep-every-steps", type=positive_int,
                        help="also keep a copy of the weights every N steps")
    parser.add_argument("--limit", type=positive_int,
                        help="at most this many files (per corpus part): for smoke runs")
    parser.add_argument("--cache", type=writable_folder,
                        help="conversion cache (default $CONTINUO_CACHE or ~/.cache/continuo)")
    parser.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--threads", type=threads, help="CPU threads per process (default: cores / processes)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    args = parser.parse_args(argv)
    check_readable(args.data)  # music21 for the corpus: said before anything runs
    overrides = {"steps": args.steps, "max_minutes": args.max_minutes, "label_smoothing": args.label_smoothing,
                 "batch_size": args.batch_size, "learning_rate": args.lr, "warmup_steps": args.warmup_steps,
                 "seed": args.seed, "checkpoint_minutes": args.checkpoint_minutes, "precision": args.precision,
                 "fim_rate": args.fim_rate, "style_dropout": args.style_dropout, "style_weights": args.style_weights,
                 "accompany_rate": args.accompany_rate, "restate_rate": args.restate_rate}
    model_overrides = {"positional": args.positional, "train_length": args.train_length, "dropout": args.dropout,
                       "local_block": args.local_block, "relative_buckets": args.relative_buckets,
                       "sounding_input": args.sounding_input}
    if args.train_length:
        model_overrides["max_relative_distance"] = args.train_length
    data = args.data[0] if len(args.data) == 1 else args.data
    from ..train import train

    train(data, args.out, args.config, args.resume, overrides, model_overrides, args.device, args.limit,
          args.cache, args.threads, args.keep_every_steps, progress=not args.no_progress, init_from=args.init_from)
    return 0


if __name__ == "__main__":  # torchrun --nproc_per_node=K -m music_transformer.commands.train --data ... --out ...
    from music_transformer.cli import main as package_main

    sys.exit(package_main(["train", *sys.argv[1:]]))
