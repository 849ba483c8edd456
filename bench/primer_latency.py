"""Time to the first note against the primer's length: `python bench/primer_latency.py [--lengths 1000 10000
100000] [--repeats 3] [--checkpoint PATH] [--json]`.

The bundled model (or `--checkpoint`) on the CPU, one thread, continues primers of 1k, 10k and 100k tokens (broken
chords at changing loudness, cut to that length), with `generate` as the studio and `music-transformer generate`
call it. For each length it prints, side by side:

- now: from calling `generate` with the primer's tokens to its first note-on (the best of `--repeats` runs);
  `generate` reads the last `window` tokens of the primer only (issue 48), and walks the whole primer once in
  Python for what sounds at the seam;
- before: the same, with the primer read whole, as `continuation.stream` did until issue 48 (a window at a
  time into the cache): now's time, less the reading of the last window, plus the reading of every window,
  both measured here on the same model;
- their ratio.

Then one JSON line (only that line with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from music_transformer import Note, encode, events, generate, load_checkpoint  # noqa: E402
from music_transformer.events import is_note_on  # noqa: E402
from music_transformer.model import mixed_precision  # noqa: E402


def primer_of(length: int) -> list[int]:
    """`length` tokens of piano music: broken chords, a note every 50 ms held for 200 ms, at changing loudness
    (about 70 tokens a second, so 100k tokens are 24 minutes, within the two hours a piece may last)."""
    chords = [(48, 55, 60, 64, 67, 72), (45, 52, 57, 60, 64, 69), (41, 48, 53, 57, 60, 65), (43, 50, 55, 59, 62, 67)]
    notes, index = [], 0
    while len(notes) * 3 < length * 1.2:
        chord = chords[index // 32 % len(chords)]
        start = index * 0.05
        notes.append(Note(chord[index % len(chord)], 60 + 7 * (index % 9), start, start + 0.2))
        index += 1
    tokens = encode(notes)
    if len(tokens) < length:
        raise SystemExit(f"the primer came out {len(tokens)} tokens, not {length}")
    return tokens[:length]


def first_note_seconds(model, primer: list[int]) -> float:
    """Seconds from calling generate to its first note-on."""
    started = time.perf_counter()
    for token in generate(model, primer, seconds=30, seed=0):
        if is_note_on(token):
            return time.perf_counter() - started
    raise SystemExit("the model wrote no note in 30 s of music")


def reading_seconds(model, context: list[int], window: int) -> float:
    """Seconds to read `context` into a fresh cache a window at a time (the loop `stream` ran before)."""
    started = time.perf_counter()
    with torch.inference_mode(), mixed_precision(model.device):
        cache = model.new_cache(window)
        for start in range(0, len(context), window):
            model(torch.tensor([context[start:start + window]], device=model.device), cache=cache)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3, help="runs of `now` per length (the best counts)")
    parser.add_argument("--checkpoint", help="a model file (default: the bundled model)")
    parser.add_argument("--json", action="store_true", help="print the JSON line only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint, device="cpu")
    window = model.config.train_length
    rows = []
    for length in args.lengths:
        primer = primer_of(length)
        context = events.header("any", model.config.vocab_size) + primer
        now = min(first_note_seconds(model, primer) for _ in range(args.repeats))
        whole = reading_seconds(model, context, window)
        last = min(reading_seconds(model, context[-window:], window) for _ in range(args.repeats))
        before = now - last + whole
        rows.append({"primer_tokens": len(primer), "now_s": round(now, 3), "before_s": round(before, 2),
                     "read_whole_primer_s": round(whole, 2), "read_last_window_s": round(last, 3),
                     "ratio": round(before / now, 1)})
    result = {"bench": "primer_latency", "model": args.checkpoint or "bundled", "window": window,
              "threads": torch.get_num_threads(), "rows": rows}
    if not args.json:
        print(f"{'primer tokens':>13}  {'before (s)':>10}  {'now (s)':>8}  {'before / now':>12}")
        for row in rows:
            print(f"{row['primer_tokens']:>13,}  {row['before_s']:>10.2f}  {row['now_s']:>8.3f}  "
                  f"{row['ratio']:>11.1f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
