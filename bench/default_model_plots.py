"""Continue held-out primers with a model, plot the piano rolls to PNG and measure real-time speed.

    .venv/bin/python bench/default_model_plots.py [--checkpoint C] [--out DIR] [--seconds 30]

Prints, per continuation, the signs of the usual failures (endless repeated notes, silence, stuck notes,
drift to one register), the real-time factor (seconds of music written per second of wall clock, with
the cache, on this CPU), and one JSON line. PNGs go to --out (default /tmp/continuo-plots): look at
them, do not commit them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_transformer import Note, continuation_notes, data, generate, load_checkpoint, primer_tokens, sources  # noqa: E402
from music_transformer.events import duration_seconds  # noqa: E402


def pick_primers(dataset: data.Dataset, count: int) -> list[data.Piece]:
    """Held-out pieces from each collection in turn (chorale, Palestrina, fiddle tune, ...)."""
    groups: dict[str, list[data.Piece]] = {}
    for piece in dataset.valid:
        groups.setdefault(piece.piece_id.split("/")[0], []).append(piece)
    chosen: list[data.Piece] = []
    while len(chosen) < count and any(groups.values()):
        for name in sorted(groups):
            if groups[name] and len(chosen) < count:
                chosen.append(groups[name].pop(len(groups[name]) // 2))
    return chosen


def failure_signs(notes, seconds: float) -> dict:
    """Numbers for the usual failures of a continuation."""
    if not notes:
        return {"notes": 0, "longest_silence_s": seconds}
    by_start = sorted(notes, key=lambda n: n.start)
    covered_until, longest_gap = by_start[0].start, by_start[0].start
    for note in by_start:
        longest_gap = max(longest_gap, note.start - covered_until)
        covered_until = max(covered_until, note.end)
    longest_gap = max(longest_gap, seconds - covered_until)
    onsets = [n.pitch for n in by_start]
    run = longest_run = 1
    for a, b in pairwise(onsets):
        run = run + 1 if a == b else 1
        longest_run = max(longest_run, run)
    half = seconds / 2
    first = [n.pitch for n in notes if n.start < half] or [0]
    second = [n.pitch for n in notes if n.start >= half] or [0]
    return {"notes": len(notes), "notes_per_s": round(len(notes) / seconds, 2),
            "pitch_range": [min(onsets), max(onsets)], "distinct_pitches": len(set(onsets)),
            "longest_silence_s": round(longest_gap, 2), "longest_same_pitch_run": longest_run,
            "longest_note_s": round(max(n.duration for n in notes), 2),
            "mean_pitch_first_half": round(statistics.mean(first), 1),
            "mean_pitch_second_half": round(statistics.mean(second), 1)}


def plot(primer, continuation, title: str, path: Path) -> None:
    """A piano roll: the primer in grey, the continuation in colour, a line where the model takes over."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(14, 4.5))
    for notes, colour in ((primer, "0.55"), (continuation, "tab:blue")):
        for note in notes:
            axes.add_patch(plt.Rectangle((note.start, note.pitch - 0.4), note.duration, 0.8, color=colour, lw=0))
    everything = primer + continuation
    axes.set_xlim(0, max(n.end for n in everything) + 0.5)
    pitches = [n.pitch for n in everything]
    axes.set_ylim(min(pitches) - 3, max(pitches) + 3)
    if primer:
        axes.axvline(max(n.end for n in primer), color="tab:red", lw=1)
    axes.set_xlabel("seconds")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def real_time_factor(model, primer, threads: int, seconds: float = 30.0, seed: int = 0) -> dict:
    """Seconds of music per wall-clock second, streaming with the cache, on `threads` CPU threads."""
    torch.set_num_threads(threads)
    list(generate(model, primer, max_tokens=20, seed=seed))  # warm up
    started = time.perf_counter()
    tokens = list(generate(model, primer, seconds=seconds, seed=seed, top_p=0.95))
    wall = time.perf_counter() - started
    music = duration_seconds(tokens)
    return {"threads": threads, "music_s": round(music, 2), "wall_s": round(wall, 2), "tokens": len(tokens),
            "tokens_per_s": round(len(tokens) / wall), "real_time_factor": round(music / wall, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="model file (default: the bundled model)")
    parser.add_argument("--data", default="corpus", help="where the held-out primers come from")
    parser.add_argument("--limit", type=int, help="at most this many files per corpus part (smoke runs)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/continuo-plots"))
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--primer-seconds", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the continuations (default 1: on a busy 2-core CPU, 2 threads "
                             "spin-wait on each other and run many times slower)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = load_checkpoint(args.checkpoint, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = data.load_dataset(args.data, limit=args.limit, progress=False)
    report, primers = [], []
    for index, piece in enumerate(pick_primers(dataset, args.count)):
        notes = sources.array_to_notes(piece.notes)
        primer = [n for n in notes if n.start < args.primer_seconds]
        primer = [Note(n.pitch, n.velocity, n.start, min(n.end, args.primer_seconds)) for n in primer]
        started = time.perf_counter()
        tokens = list(generate(model, primer_tokens(primer, until=args.primer_seconds), seconds=args.seconds,
                               top_p=args.top_p, seed=args.seed + index))
        wall = time.perf_counter() - started
        continuation = continuation_notes(tokens, start=args.primer_seconds)
        signs = failure_signs([Note(n.pitch, n.velocity, n.start - args.primer_seconds,
                                    n.end - args.primer_seconds) for n in continuation], args.seconds)
        signs["primer_pitch_range"] = [min(n.pitch for n in primer), max(n.pitch for n in primer)]
        signs["tokens_per_music_s"] = round(len(tokens) / args.seconds, 1)
        signs["real_time_factor"] = round(args.seconds / wall, 1)  # primer encoding included
        primers.append(primer)
        name = piece.piece_id.replace("/", "_").replace("#", "-")
        path = args.out / f"{index:02d}_{name}.png"
        plot(primer, continuation, f"{piece.piece_id}: {args.primer_seconds:.0f} s primer (grey), "
             f"{args.seconds:.0f} s continuation (blue), top-p {args.top_p}, seed {args.seed + index}", path)
        report.append({"piece": piece.piece_id, "png": str(path), **signs})
        print(json.dumps(report[-1]))
    # The densest primer (most notes a second) is the hardest case for streaming.
    densest = max(primers, key=len)
    speeds = [real_time_factor(model, densest, threads, args.seconds) for threads in (1, 2)]
    for speed in speeds:
        print(f"real time (densest primer): {speed['real_time_factor']}x on {speed['threads']} thread(s) "
              f"({speed['tokens_per_s']} tokens/s, {speed['music_s']} s of music in {speed['wall_s']} s)")
    print(json.dumps({"continuations": report, "speed": speeds, "parameters": model.num_parameters()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
