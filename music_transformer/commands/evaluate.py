"""`music-transformer eval`: NLL per token of a checkpoint on held-out music, overall and by position."""

from __future__ import annotations

import json
from pathlib import Path

from ..arguments import ArgumentParser, device, length, positive_int, threads, writable_folder
from ..events import STYLES
from ..sources import check_readable
from .train import DATA_HELP


def main(argv: list[str]) -> int:
    """`music-transformer eval`: NLL per token of a checkpoint, overall and by position."""
    parser = ArgumentParser(prog="music-transformer eval", description=main.__doc__)
    parser.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--data", required=True, nargs="+", help=DATA_HELP)
    parser.add_argument("--style", choices=STYLES,
                        help="the style token to score with (default: each piece's own, 'any' for a plain folder)")
    parser.add_argument("--split", choices=("valid", "train", "all"), default="valid",
                        help="which pieces to score (default: the held-out ones)")
    parser.add_argument("--window", type=length,
                        help="positions each token attends to (default: the model's decoding window, as generate's)")
    parser.add_argument("--limit", type=positive_int, help="at most this many files (per corpus part)")
    parser.add_argument("--cache", type=writable_folder,
                        help="conversion cache (default $CONTINUO_CACHE or ~/.cache/continuo)")
    parser.add_argument("--device", type=device, help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=threads)
    args = parser.parse_args(argv)
    check_readable(args.data)  # music21 for the corpus: said before the model loads

    import torch

    from .. import data as data_module
    from ..checkpoint import load_checkpoint
    from ..evaluation import position_nll
    from ..train import TrainingError

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint, device=args.device)
    dataset = data_module.load_dataset(args.data, cache_dir=args.cache, limit=args.limit)
    pieces = {"valid": dataset.valid, "train": dataset.train, "all": dataset.train + dataset.valid}[args.split]
    if not pieces:
        raise TrainingError(f"{' + '.join(args.data)}: no {args.split} pieces to evaluate")
    result = position_nll(model, pieces, window=args.window, style=args.style)
    train_length = result["train_length"]
    print(f"{args.checkpoint or 'bundled model'}: {model.config.positional} positions, L = {train_length}, "
          f"window {result['window']}; {result['pieces']} {args.split} pieces, "
          f"{result['long_pieces']} of them with >= 4L = {4 * train_length} tokens")
    print(f"{'positions':<12}{'NLL (nats/token)':>18}{'tokens':>10}")
    for name in ("overall", "[0,L)", "[L,2L)", "[2L,4L)"):
        print(f"{name:<12}{result[name]:>18.4f}{result['tokens'][name]:>10}")
    print(json.dumps({"checkpoint": str(args.checkpoint or "default"), **result}))
    return 0
