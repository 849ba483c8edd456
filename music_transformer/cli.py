"""The `music-transformer` command: train, generate, eval, bench, average.

Each subcommand lives in the module that does the work; this file only dispatches, so that
`music-transformer generate` does not pay for importing the training code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from .errors import ContinuoError
from .events import STYLES

# name -> (module, function taking argv, one-line help)
SUBCOMMANDS = {
    "generate": ("music_transformer.cli", "generate_main", "continue a MIDI motif and write the result"),
    "train": ("music_transformer.train", "train_main", "train a model on a MIDI folder or the music21 corpus"),
    "eval": ("music_transformer.train", "eval_main", "NLL per token of a checkpoint, overall and by position"),
    "pack": ("music_transformer.data", "pack_main", "convert data sources once into one token file (for a GPU run)"),
    "bench": ("music_transformer.bench", "main", "the model benchmarks (cache speed-up, memory, training speed)"),
    "average": ("music_transformer.cli", "average_main", "average the weights of several checkpoints of one run"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `music-transformer` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        lines = [f"  {name:<10}{help_text}" for name, (_, _, help_text) in SUBCOMMANDS.items()]
        print("usage: music-transformer COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nmusic-transformer: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module_name, function_name, _ = SUBCOMMANDS[argv[0]]
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(function(argv[1:]) or 0)
    except ContinuoError as error:
        print(f"music-transformer {argv[0]}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"music-transformer {argv[0]}: interrupted", file=sys.stderr)
        return 130


def generate_main(argv: list[str]) -> int:
    """`music-transformer generate`: continue a primer MIDI file for some seconds of music."""
    parser = argparse.ArgumentParser(prog="music-transformer generate", description=generate_main.__doc__)
    parser.add_argument("--primer", type=Path, help="MIDI file to continue (none: start from silence)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of music to write (default 30)")
    parser.add_argument("--out", type=Path, required=True, help="MIDI file to write: the primer and its continuation")
    parser.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--style", default="any", choices=STYLES,
                        help="the idiom to continue in (default any: the model tells from the primer)")
    parser.add_argument("--beam-size", type=int, default=1,
                        help="search for the most likely continuation with this many beams instead of sampling")
    parser.add_argument("--length-penalty", type=float, default=0.6, help="beam search's length bias α")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)")
    parser.add_argument("--bpm", type=float, default=120.0, help="tempo written into the MIDI file")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from .checkpoint import load_checkpoint
    from .events import shift_ticks, SECONDS_PER_TICK
    from .generate import continuation_notes, generate, primer_tokens
    from .midi import read_midi, write_midi

    model = load_checkpoint(args.checkpoint, device=args.device)
    primer_notes = read_midi(args.primer) if args.primer else []
    motif_end = max((note.end for note in primer_notes), default=0.0)
    tokens = []
    started = time.perf_counter()
    with tqdm(total=round(args.seconds, 2), unit="s", desc=f"writing on {model.device.type}",
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of music [{elapsed}]") as bar:
        for token in generate(model, primer_tokens(primer_notes, until=motif_end), seconds=args.seconds,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                              beam_size=args.beam_size, length_penalty=args.length_penalty, style=args.style):
            tokens.append(token)
            if shift_ticks(token):
                bar.update(shift_ticks(token) * SECONDS_PER_TICK)
    continuation = continuation_notes(tokens, start=motif_end)
    write_midi(primer_notes + continuation, args.out, bpm=args.bpm)
    elapsed = time.perf_counter() - started
    print(f"wrote {args.out}: {len(primer_notes)} primer notes and {len(continuation)} new notes, "
          f"{len(tokens)} tokens in {elapsed:.1f} s ({len(tokens) / max(elapsed, 1e-9):.0f} tokens/s)")
    return 0


def average_main(argv: list[str]) -> int:
    """`music-transformer average C1 C2 ... --out C`: checkpoint averaging."""
    parser = argparse.ArgumentParser(prog="music-transformer average", description=average_main.__doc__)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of one run, e.g. its last few")
    parser.add_argument("--out", type=Path, required=True, help="where to write the averaged model")
    args = parser.parse_args(argv)
    from .checkpoint import average_checkpoints

    average_checkpoints(args.checkpoints, args.out)
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
