"""`music-transformer generate`: continue a MIDI motif and write the result."""

from __future__ import annotations

import time
from pathlib import Path

from .. import limits
from ..arguments import (
    ArgumentParser,
    UsageError,
    allowed_pitches,
    non_negative_float,
    number,
    output_file,
    sampling_options,
    written,
)


def main(argv: list[str]) -> int:
    """`music-transformer generate`: continue a primer MIDI file for some seconds of music."""
    parser = ArgumentParser(prog="music-transformer generate", description=main.__doc__)
    parser.add_argument("--primer", type=Path, help="MIDI file to continue (none: start from silence)")
    parser.add_argument("--seconds", type=number(float, 0, limits.MAX_PIECE_SECONDS, above=True), default=30.0,
                        help="seconds of music to write (default 30)")
    parser.add_argument("--out", type=output_file, required=True,
                        help="MIDI file to write: the primer and its continuation")
    sampling_options(parser)
    parser.add_argument("--beam-size", type=number(int, 1, limits.MAX_BEAM_SIZE), default=1,
                        help="search for the most likely continuation with this many beams instead of sampling")
    parser.add_argument("--length-penalty", type=non_negative_float, default=0.6, help="beam search's length bias α")
    parser.add_argument("--repetition-penalty", default=limits.DEFAULT_REPETITION_PENALTY,
                        type=number(float, limits.MIN_REPETITION_PENALTY, limits.MAX_REPETITION_PENALTY),
                        help="keep the music from looping: what a pitch struck on onset after onset, or a figure "
                             f"played again, costs per repeat (default {limits.DEFAULT_REPETITION_PENALTY:g}; 0: off)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from ..checkpoint import load_checkpoint
    from ..continuation import continuation_notes, generate, primer_tokens
    from ..events import SECONDS_PER_TICK, shift_ticks
    from ..midi import read_midi, write_midi

    primer_notes = read_midi(args.primer) if args.primer else []
    motif_end = max((note.end for note in primer_notes), default=0.0)
    if motif_end + args.seconds > limits.MAX_PIECE_SECONDS:
        raise UsageError(f"the primer ({motif_end / 60:.0f} min) and --seconds {args.seconds:g} make more than the "
                         f"{limits.MAX_PIECE_SECONDS / 3600:g} hours Continuo writes at once")
    allowed = allowed_pitches(args, primer_notes)
    model = load_checkpoint(args.checkpoint, device=args.device)
    primer = primer_tokens(primer_notes, until=motif_end)
    tokens = []
    started = time.perf_counter()
    with tqdm(total=round(args.seconds, 2), unit="s", desc=f"writing on {model.device.type}",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of music [{elapsed}]") as bar:
        for token in generate(model, primer, seconds=args.seconds,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              beam_size=args.beam_size, length_penalty=args.length_penalty, style=args.style,
                              allowed_pitches=allowed, repetition_penalty=args.repetition_penalty):
            tokens.append(token)
            if shift_ticks(token):
                bar.update(shift_ticks(token) * SECONDS_PER_TICK)
    continuation = continuation_notes(tokens, start=motif_end, primer=primer)  # the motif's velocity carries on
    write_midi(primer_notes + continuation, args.out, bpm=args.bpm)
    print(f"wrote {args.out}: {len(primer_notes)} primer notes and {len(continuation)} new notes, "
          f"{written(tokens, started)}")
    return 0
