"""Benchmark of how continuations end and how long runs of variations are written, with the bundled model on
one CPU thread. Prints a table and one JSON line.

    PYTHONPATH=. .venv/bin/python bench/phrase_endings.py [--seeds 4] [--seconds 12] [--bars 40] [--variations 4]

1. Endings: a two-bar C major arpeggio over a bass at 120 bpm (4/4), continued for `--seconds` from the end of
   its last note, each seed twice: as before (the length asked for, from wherever the motif ends) and ending
   at a bar line (`phrases.phrase_seconds`, the last beat starting no note: `phrases.phrase_release`).
   `closed` counts the notes the stop closed (they end at the continuation's last instant), `cut` those of
   them not on a bar line, `stubs` those closed under 100 ms after they were struck (`cut` and `stubs`
   summed over the seeds), `most over` how far past the length asked for a continuation ends, `notes` the
   mean count.
2. Long run: `--bars` bars x `--variations` variations (seeds 0..n-1), written as one batch (every row a
   token a step) and with the heard variation alone first, then the others as a batch; when the heard one
   is written, as a share of the whole run, and the whole run's seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402 - after the checkout is on the path

from music_transformer import Note, continuation_notes, generate, generate_variations, load_checkpoint  # noqa: E402
from music_transformer.events import encode, shift_ticks  # noqa: E402
from music_transformer.phrases import bar_seconds, phrase_release, phrase_seconds  # noqa: E402

BPM = 120.0
BAR = bar_seconds(BPM, (4, 4))
BEAT = 60.0 / BPM


def motif() -> list[Note]:
    """Two bars of a C major arpeggio in eighths over a held bass, every note at velocity 100."""
    notes = []
    for bar in range(2):
        notes.append(Note(48, 100, bar * BAR, (bar + 1) * BAR - 0.05))
        for step, pitch in enumerate((60, 64, 67, 72, 67, 64, 60, 64)):
            start = bar * BAR + step * BEAT / 2
            notes.append(Note(pitch, 100, start, start + BEAT / 2 - 0.02))
    return notes


def ending(notes: list[Note], end: float) -> dict:
    """How a continuation ending at `end` seconds ends."""
    closed = [note for note in notes if abs(note.end - end) < 0.006]
    on_bar = abs(end / BAR - round(end / BAR)) * BAR < 0.006
    stubs = [note for note in closed if note.end - note.start < 0.1]
    return {"closed": len(closed), "cut": 0 if on_bar else len(closed), "stubs": len(stubs)}


def endings(model, seeds: int, seconds: float) -> dict:
    """Each seed's continuation as before and ending at a bar line."""
    primer = motif()
    start = max(note.end for note in primer)
    tokens = encode(primer)
    rows = {"before": [], "after": []}
    for seed in range(seeds):
        for kind in rows:
            length, release = seconds, 0.0
            if kind == "after":
                length = phrase_seconds(start, seconds, BAR)
                release = phrase_release(length, BEAT)
            written = list(generate(model, tokens, seconds=length, seed=seed, release_seconds=release))
            notes = continuation_notes(written, start=start)
            end = start + sum(shift_ticks(token) for token in written) * 0.01
            rows[kind].append({**ending(notes, end), "over": end - start - seconds, "notes": len(notes)})
    return rows


def long_run(model, bars: int, variations: int) -> dict:
    """When the heard variation (0) of a long run is written, as one batch and heard-first."""
    tokens = encode(motif())
    seconds = bars * BAR
    seeds = list(range(variations))
    started = time.perf_counter()
    heard_at = None
    for row, _ in generate_variations(model, tokens, seeds=seeds, seconds=seconds):
        if row == 0:
            heard_at = time.perf_counter() - started
    batch_total = time.perf_counter() - started
    started = time.perf_counter()
    for _ in generate(model, tokens, seconds=seconds, seed=seeds[0]):
        pass
    alone = time.perf_counter() - started
    for _ in generate_variations(model, tokens, seeds=seeds[1:], seconds=seconds):
        pass
    first_total = time.perf_counter() - started
    return {"batch_heard_s": heard_at, "batch_total_s": batch_total, "first_heard_s": alone,
            "first_total_s": first_total}


def studio_run(bars: int, variations: int) -> dict:
    """The studio's worker (continuo/generation, no Qt) writing a long run: when the heard variation's last notes
    arrive, as a share of the run, and what the progress bar said then."""
    from continuo.generation import Finished, GenerationRequest, GenerationWorker, ModelLoaded, NotesWritten, Progress

    worker = GenerationWorker()
    worker.load("default", "cpu")
    while not isinstance(worker.outbox.get(timeout=120), ModelLoaded):
        pass
    request = GenerationRequest(motif=motif(), start=4.0, seconds=bars * BAR, seeds=list(range(variations)))
    started, bar, heard = time.perf_counter(), 0.0, None
    worker.generate(request)
    while True:
        message = worker.outbox.get(timeout=600)
        if isinstance(message, Progress):
            bar = message.fraction
        elif isinstance(message, NotesWritten) and message.variation == 0:  # the heard one's notes, the last
            heard = (time.perf_counter() - started, bar)  # of them when it is written
        elif isinstance(message, Finished):
            total = time.perf_counter() - started
            break
    worker.stop()
    return {"studio_heard_s": heard[0], "studio_total_s": total, "studio_bar_at_heard": heard[1]}


def main() -> None:
    """Prints the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--bars", type=int, default=40)
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--studio-only", action="store_true", help="only the studio's worker's long run")
    args = parser.parse_args()
    if args.studio_only:  # e.g. with an older checkout's continuo/ first on the path, to compare
        run = studio_run(args.bars, args.variations)
        heard, total = run["studio_heard_s"], run["studio_total_s"]
        print(f"studio: heard variation written at {heard:.1f} s of {total:.1f} s ({heard / total:.0%}), "
              f"the bar then at {run['studio_bar_at_heard']:.0%}")
        print(json.dumps({key: round(value, 3) for key, value in run.items()}))
        return
    torch.set_num_threads(1)
    model = load_checkpoint(None, device="cpu")
    rows = endings(model, args.seeds, args.seconds)
    result = {}
    print(f"endings: {args.seeds} seeds, {args.seconds:g} s continuations of a two-bar motif at {BPM:g} bpm")
    print(f"{'':8}{'closed (each seed)':>22}{'cut':>6}{'stubs':>7}{'most over (s)':>15}{'notes':>7}")
    for kind, values in rows.items():
        line = {key: [value[key] for value in values] for key in values[0]}
        closed = " ".join(str(count) for count in line["closed"])
        print(f"{kind:8}{closed:>22}{sum(line['cut']):>6}{sum(line['stubs']):>7}"
              f"{max(line['over']):>15.2f}{statistics.mean(line['notes']):>7.0f}")
        result[f"{kind}_cut"] = sum(line["cut"])
        result[f"{kind}_closed"] = sum(line["closed"])
        result[f"{kind}_stubs"] = sum(line["stubs"])
        result[f"{kind}_max_over_s"] = round(max(line["over"]), 3)
    run = long_run(model, args.bars, args.variations)
    batch_share = run["batch_heard_s"] / run["batch_total_s"]
    first_share = run["first_heard_s"] / run["first_total_s"]
    print(f"long run: {args.bars} bars x {args.variations} variations")
    print(f"  one batch:    heard written at {run['batch_heard_s']:.1f} s of {run['batch_total_s']:.1f} s "
          f"({batch_share:.0%})")
    print(f"  heard first:  heard written at {run['first_heard_s']:.1f} s of {run['first_total_s']:.1f} s "
          f"({first_share:.0%})")
    result.update({key: round(value, 3) for key, value in run.items()})
    result.update(batch_heard_share=round(batch_share, 3), first_heard_share=round(first_share, 3))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
