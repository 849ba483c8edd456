"""`music-transformer accompany`: keep the notes of a MIDI file in one range of pitches and write a new part
around them in another."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import limits
from ..arguments import ArgumentParser, UsageError, allowed_pitches, number, output_file, sampling_options, written


def pitch_range(text: str) -> tuple[int, int]:
    """An argparse type: LOW:HIGH, note names or MIDI numbers, both kept (C4:C8, A0:B3, 21:59)."""
    from ..keys import parse_pitch_range

    try:
        return parse_pitch_range(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


pitch_range.__name__ = "a pitch range"


def main(argv: list[str]) -> int:
    """`music-transformer accompany`: keep the notes of IN.mid within --keep's pitches and write a new part in
    --write's (default: the rest of the keyboard) over the kept notes' span, or --seconds from their first."""
    parser = ArgumentParser(prog="music-transformer accompany", description=main.__doc__)
    parser.add_argument("input", type=Path, metavar="IN.mid", help="the MIDI file whose notes are kept")
    parser.add_argument("--keep", type=pitch_range, required=True,
                        help="the pitches kept, e.g. C4:C8 (a melody) or A0:B2 (a bass line)")
    parser.add_argument("--write", type=pitch_range,
                        help="the pitches the new part is written in, e.g. A0:B3 (default: the rest of the keyboard, "
                             "A0 to C8)")
    parser.add_argument("--seconds", type=number(float, 0, limits.MAX_PIECE_SECONDS, above=True),
                        help="how long to write from the first kept note (default: to the last kept note's end)")
    parser.add_argument("--out", type=output_file, required=True,
                        help="MIDI file to write: the kept notes and the new part, a track each")
    sampling_options(parser)
    parser.add_argument("--repetition-penalty", default=limits.DEFAULT_REPETITION_PENALTY,
                        type=number(float, limits.MIN_REPETITION_PENALTY, limits.MAX_REPETITION_PENALTY),
                        help="keep the music from looping: what a pitch struck on onset after onset, or a figure "
                             f"played again, costs per repeat (default {limits.DEFAULT_REPETITION_PENALTY:g}; 0: off)")
    args = parser.parse_args(argv)

    from ..accompaniment import accompany
    from ..checkpoint import load_checkpoint
    from ..events import decode
    from ..keys import PIANO_RANGE, pitch_name
    from ..midi import read_midi, write_midi_parts

    low, high = args.keep
    if args.write is None:
        write = set(range(PIANO_RANGE[0], PIANO_RANGE[1] + 1)) - set(range(low, high + 1))
        if not write:
            raise UsageError(f"--keep {pitch_name(low)}:{pitch_name(high)} holds the whole keyboard: "
                             "give --write, or keep fewer pitches")
    else:
        write = set(range(args.write[0], args.write[1] + 1))
        if write & set(range(low, high + 1)):
            raise UsageError(f"--keep {pitch_name(low)}:{pitch_name(high)} and --write "
                             f"{pitch_name(args.write[0])}:{pitch_name(args.write[1])} overlap: the kept part and "
                             "the new part need pitches of their own")
    notes = read_midi(args.input)
    kept = [note for note in notes if low <= note.pitch <= high]
    if not kept:
        raise UsageError(f"{args.input} has no note from {pitch_name(low)} to {pitch_name(high)} to keep "
                         f"(its notes lie from {pitch_name(min(n.pitch for n in notes))} to "
                         f"{pitch_name(max(n.pitch for n in notes))})" if notes else f"{args.input} has no notes")
    start = min(note.start for note in kept)
    end = start + args.seconds if args.seconds is not None else max(note.end for note in kept)
    if end > limits.MAX_PIECE_SECONDS:
        raise UsageError(f"--seconds {args.seconds:g} from the first kept note at {start:g} s passes the "
                         f"{limits.MAX_PIECE_SECONDS / 3600:g} hours Continuo writes at once")
    allowed = allowed_pitches(args, kept)
    model = load_checkpoint(args.checkpoint, device=args.device)
    started = time.perf_counter()
    try:  # everything is checked when it is called, before the first token
        stream = accompany(model, kept, write, start, end, temperature=args.temperature, top_k=args.top_k,
                           top_p=args.top_p, seed=args.seed, style=args.style, allowed_pitches=allowed,
                           repetition_penalty=args.repetition_penalty)
    except ValueError as error:
        raise UsageError(str(error)) from None
    tokens = list(stream)
    new = decode(tokens, start)
    write_midi_parts([("kept", kept), ("accompaniment", new)], args.out, bpm=args.bpm)
    print(f"wrote {args.out}: {len(kept)} kept notes and {len(new)} new ones from {start:g} s to {end:g} s; "
          f"{written(tokens, started)}")
    return 0
