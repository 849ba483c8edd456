"""`music-transformer generate`: continue a MIDI motif and write the result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import limits
from ..arguments import (
    ArgumentParser,
    UsageError,
    allowed_pitches,
    non_negative_float,
    number,
    output_file,
    sampling_options,
    time_signature,
    written,
)

if TYPE_CHECKING:
    from ..midi import MidiFileTiming


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
    parser.add_argument("--end-at-bar", action="store_true",
                        help="end the phrase on the bar line after --seconds (within a bar): its last beat strikes "
                             "no note and what sounds is released there; bars at --bpm and --time-signature, else "
                             "the primer file's own first tempo and metre, else 120 bpm in 4/4")
    parser.add_argument("--time-signature", type=time_signature,
                        help="the metre of --end-at-bar's bars, e.g. 3/4 or 6/8 (default: the primer's, else 4/4)")
    parser.set_defaults(bpm=None)  # none given: the primer's tempo with --end-at-bar, else 120
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from ..checkpoint import load_checkpoint
    from ..continuation import continuation_notes, generate, primer_tokens
    from ..events import SECONDS_PER_TICK, shift_ticks, to_ticks
    from ..midi import read_midi_timed, write_midi
    from ..phrases import bar_seconds, phrase_release, phrase_seconds

    primer_notes, timing = read_midi_timed(args.primer) if args.primer else ([], None)
    motif_end = max((note.end for note in primer_notes), default=0.0)
    seconds, release, bpm = args.seconds, 0.0, args.bpm or 120.0
    if args.end_at_bar:
        bpm, metre = bars_of(args, timing)
        seconds = phrase_seconds(motif_end, args.seconds, bar_seconds(bpm, metre))
        release = phrase_release(seconds, 60.0 / bpm)
    if motif_end + seconds > limits.MAX_PIECE_SECONDS:
        raise UsageError(f"the primer ({motif_end / 60:.0f} min) and --seconds {args.seconds:g} make more than the "
                         f"{limits.MAX_PIECE_SECONDS / 3600:g} hours Continuo writes at once")
    allowed = allowed_pitches(args, primer_notes)
    model = load_checkpoint(args.checkpoint, device=args.device)
    primer = primer_tokens(primer_notes, until=motif_end)
    tokens = []
    started = time.perf_counter()
    # counted in ticks, whole numbers, so that the shifts never add up past the total as seconds' floats do
    with tqdm(total=to_ticks(seconds), unit="s", unit_scale=SECONDS_PER_TICK, desc=f"writing on {model.device.type}",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of music [{elapsed}]") as bar:
        for token in generate(model, primer, seconds=seconds, release_seconds=release,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              beam_size=args.beam_size, length_penalty=args.length_penalty, style=args.style,
                              allowed_pitches=allowed, repetition_penalty=args.repetition_penalty):
            tokens.append(token)
            if shift_ticks(token):
                bar.update(shift_ticks(token))
    continuation = continuation_notes(tokens, start=motif_end, primer=primer)  # the motif's velocity carries on
    write_midi(primer_notes + continuation, args.out, bpm=bpm)
    print(f"wrote {args.out}: {len(primer_notes)} primer notes and {len(continuation)} new notes, "
          f"{written(tokens, started)}")
    return 0


def bars_of(args, timing: MidiFileTiming | None) -> tuple[float, tuple[int, int]]:
    """The tempo and metre --end-at-bar counts bars in: those given, else those the primer file starts in, else
    120 bpm in 4/4 (a file timed in SMPTE frames states no tempo that its seconds follow)."""
    bpm, metre = args.bpm, args.time_signature
    if bpm is None and timing is not None and timing.tempi and timing.tempi[0][0] == 0 and not timing.smpte:
        bpm = 60_000_000 / timing.tempi[0][1]
        if not limits.MIN_BPM <= bpm <= limits.MAX_BPM:
            raise UsageError(f"the primer's tempo, {bpm:.0f} bpm, is outside {limits.MIN_BPM:g} to "
                             f"{limits.MAX_BPM:g}: give --bpm for --end-at-bar")
    if metre is None and timing is not None and timing.signatures and timing.signatures[0][0] == 0:
        metre = timing.signatures[0][1:]
        if not 1 <= metre[0] <= limits.MAX_NUMERATOR or metre[1] not in limits.DENOMINATORS:
            raise UsageError(f"the primer's time signature {metre[0]}/{metre[1]} has no bars Continuo counts: "
                             "give --time-signature for --end-at-bar")
    return bpm or 120.0, metre or (4, 4)
