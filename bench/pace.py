"""Does a continuation keep its primer's pace? Per held-out piece: the primer's notes a second, the real next 16 s,
what the model expects of those 16 s when it reads them (teacher forcing), and what it writes itself, 4 s at a time.

    PYTHONPATH=. .venv/bin/python bench/pace.py [--checkpoint M] [--data classical=../shared/data/pianolatron/midi]
        [--pieces 12] [--seed 0] [--threads 1] [--json]

The pieces, primers and style are bench/memory.py's (its first `--pieces` held-out pieces of 36 s or more, the
20 s primer from t0). Expected note-ons: the sum of the model's note-on probabilities over the real 16 s,
token by token, after the real primer (read from t0 with the notes that sound across the seam, so the real
continuation follows it as in the piece); expected ticks, likewise, of its time shifts (the real: 1,600). The
continuation is `generate`'s at the studio's default settings with one seed. A model whose one-step predictions
keep the pace (expected near the real) but whose continuations do not has its own notes lead it away (exposure
bias): bench/README, "Why the rolls run at twice their density".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import memory  # noqa: E402 - bench/memory.py: the held-out pieces, primers and style

from music_transformer import Note, events, load_checkpoint, sources  # noqa: E402
from music_transformer.events import NUM_PITCHES, TIME_SHIFT_OFFSET, encode, split_at  # noqa: E402

BINS = 4  # the continuation's 16 s in 4 s parts


def expected(model, primer: list[int], real: list[int], style: str) -> tuple[float, float]:
    """(note-ons, ticks) the model expects over `real` after `primer`, reading the real tokens one by one."""
    sequence = (events.header(style, model.config.vocab_size) + primer + real)[-model.default_window - 1:]
    with torch.inference_mode():
        logits = model(torch.tensor([sequence[:-1]]), window=model.default_window)[0, -len(real):]
    probabilities = logits.float().softmax(-1)
    ticks = torch.tensor([events.shift_ticks(TIME_SHIFT_OFFSET + i) for i in range(events.NUM_TIME_SHIFTS)],
                         dtype=torch.float32)
    shifts = probabilities[:, TIME_SHIFT_OFFSET:TIME_SHIFT_OFFSET + events.NUM_TIME_SHIFTS]
    return float(probabilities[:, :NUM_PITCHES].sum()), float((shifts @ ticks).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="the model (default: the bundled model)")
    parser.add_argument("--data", default=memory.DEFAULT_DATA[1], help="one source, as bench/memory.py takes it")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    (source, held), = memory.held_out([args.data], None).items()
    pieces = memory.long_enough(held)[:args.pieces]
    model = load_checkpoint(args.checkpoint) if args.checkpoint else load_checkpoint()
    style = memory.model_style(source, model.config.vocab_size)
    seconds, primer_seconds = memory.CONTINUATION_SECONDS, memory.PRIMER_SECONDS
    rows = []
    print(f"{source}: notes a second (expected: what the model expects of the real {seconds:g} s)")
    print(f"{'piece':<22}{'primer':>8}{'real':>7}{'expected':>10}{'ticks':>7}  written: {seconds / BINS:g} s at a time")
    for piece in pieces:
        notes = sources.array_to_notes(piece.notes)
        t0 = memory.primer_start(notes)
        primer = memory.excerpt(notes, t0, primer_seconds)
        real = memory.excerpt(notes, t0 + primer_seconds, seconds)
        played = encode([Note(n.pitch, n.velocity, n.start - t0, n.end - t0) for n in notes if n.start >= t0])
        before, after = split_at(played, events.to_ticks(primer_seconds))
        ons, ticks = expected(model, before, split_at(after, events.to_ticks(seconds))[0], style)
        written = memory.continue_primer(model, primer, source, args.seed, args.threads)
        parts = [sum(1 for n in written if k * seconds / BINS <= n.start < (k + 1) * seconds / BINS) / (seconds / BINS)
                 for k in range(BINS)]
        row = {"piece": piece.piece_id, "primer": len(primer) / primer_seconds, "real": len(real) / seconds,
               "expected": ons / seconds, "expected_ticks": ticks, "written": len(written) / seconds, "parts": parts}
        rows.append(row)
        print(f"{piece.piece_id[:21]:<22}{row['primer']:>8.2f}{row['real']:>7.2f}{row['expected']:>10.2f}"
              f"{ticks:>7.0f}  {row['written']:.2f}: " + " ".join(f"{v:.2f}" for v in parts), flush=True)
    print(f"{'median':<22}" + "".join(f"{statistics.median(r[key] for r in rows):>{width}.2f}" for key, width in
                                     (("primer", 8), ("real", 7), ("expected", 10)))
          + f"{statistics.median(r['expected_ticks'] for r in rows):>7.0f}"
          + f"  {statistics.median(r['written'] for r in rows):.2f}")
    if args.json:
        print(json.dumps({"source": source, "style": style, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
