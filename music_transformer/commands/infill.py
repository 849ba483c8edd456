"""`music-transformer infill`: fill a stretch of time in a MIDI file with new music."""

from __future__ import annotations

import time
from pathlib import Path

from ..arguments import (
    ArgumentParser,
    UsageError,
    allowed_pitches,
    non_negative_float,
    output_file,
    sampling_options,
    written,
)


def main(argv: list[str]) -> int:
    """`music-transformer infill`: write new music into the time from --start to --end of a MIDI file."""
    parser = ArgumentParser(prog="music-transformer infill", description=main.__doc__)
    parser.add_argument("--input", type=Path, required=True, help="the MIDI file with a stretch to fill")
    parser.add_argument("--start", type=non_negative_float, required=True, help="where the gap starts, in seconds")
    parser.add_argument("--end", type=non_negative_float, required=True, help="where it ends, in seconds")
    parser.add_argument("--keep", action="store_true",
                        help="keep the notes that start inside the gap and add to them (default: replace them)")
    parser.add_argument("--out", type=output_file, required=True, help="MIDI file to write: the filled music")
    sampling_options(parser)
    args = parser.parse_args(argv)
    if args.end <= args.start:
        raise UsageError(f"--end {args.end:g} must come after --start {args.start:g}")

    from ..checkpoint import load_checkpoint
    from ..continuation import continuation_notes
    from ..events import has_styles, to_ticks
    from ..infilling import check_gap, infill
    from ..midi import read_midi, write_midi

    try:  # before anything is read: the gap within the longest piece, and at least one 10 ms step long
        check_gap(args.start, args.end)
    except ValueError as error:
        raise UsageError(f"--start {args.start:.10g} --end {args.end:.10g}: {error}") from None

    notes = read_midi(args.input)
    first, last = to_ticks(args.start), to_ticks(args.end)
    before = [note for note in notes if to_ticks(note.start) < first]
    inside = [note for note in notes if first <= to_ticks(note.start) < last]
    after = [note for note in notes if to_ticks(note.start) >= last]
    allowed = allowed_pitches(args, before + after)
    model = load_checkpoint(args.checkpoint, device=args.device)
    if not has_styles(model.config.vocab_size):
        raise UsageError(f"{args.checkpoint or 'the model'} was made before infilling and cannot fill gaps; "
                         "use the bundled model (leave out --checkpoint) or a newer one")
    started = time.perf_counter()
    try:
        filling = infill(model, before, after, args.start, args.end, style=args.style, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=args.seed, allowed_pitches=allowed)
    except ValueError as error:  # the arguments infill() refuses, in its words
        raise UsageError(str(error)) from None
    tokens = list(filling)
    middle = continuation_notes(tokens, start=args.start, primer=before)  # the music's velocity carries on
    kept = inside if args.keep else []
    write_midi(sorted(before + kept + middle + after, key=lambda n: (n.start, n.pitch)), args.out, bpm=args.bpm)
    replaced = "" if args.keep else f", replacing {len(inside)}"
    print(f"wrote {args.out}: {len(middle)} new notes from {args.start:g} s to {args.end:g} s{replaced}; "
          f"{written(tokens, started)}")
    return 0
