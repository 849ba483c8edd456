"""`music-transformer average`: the mean of several checkpoints of one run."""

from __future__ import annotations

from pathlib import Path

from ..arguments import ArgumentParser, output_file


def main(argv: list[str]) -> int:
    """`music-transformer average C1 C2 ... --out C`: checkpoint averaging."""
    parser = ArgumentParser(prog="music-transformer average", description=main.__doc__)
    parser.add_argument("checkpoints", nargs="+", type=Path,
                        help="checkpoints of one run, e.g. its last few (.pt, or .safetensors with its .json)")
    parser.add_argument("--out", type=output_file, required=True,
                        help="where to write the averaged model (.safetensors: the weights, and its config as "
                             ".json beside it; else one .pt file)")
    args = parser.parse_args(argv)
    from ..checkpoint import average_checkpoints

    average_checkpoints(args.checkpoints, args.out)
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} checkpoints")
    return 0
