"""`music-transformer pack`: convert data sources once into one token file, for a machine without them."""

from __future__ import annotations

from ..arguments import ArgumentParser, output_file, positive_int
from ..data import TOKEN_PACK_SUFFIX
from ..sources import check_readable


def main(argv: list[str]) -> int:
    """`music-transformer pack`: convert data sources once into one token file, for a machine without them."""
    parser = ArgumentParser(prog="music-transformer pack", description=main.__doc__)
    parser.add_argument("--data", required=True, nargs="+",
                        help="MIDI folders (STYLE=FOLDER names the style), 'corpus' or 'corpus:part,...'")
    parser.add_argument("--out", required=True, type=output_file,
                        help=f"the token file to write (*{TOKEN_PACK_SUFFIX})")
    parser.add_argument("--limit", type=positive_int, help="at most this many files (per corpus part)")
    parser.add_argument("--cache", help="conversion cache (default $CONTINUO_CACHE or ~/.cache/continuo)")
    args = parser.parse_args(argv)
    check_readable(args.data)  # music21 for the corpus
    from ..data import load_dataset, save_token_pack

    dataset = load_dataset(args.data, cache_dir=args.cache, limit=args.limit)
    written = save_token_pack(dataset, args.out)
    print(f"wrote {args.out}: {written['pieces']} pieces, {written['tokens']:,} tokens, "
          f"{written['bytes'] / 2**20:.1f} MB ({dataset.describe()})")
    return 0
