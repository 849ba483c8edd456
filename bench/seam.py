"""Dynamics at the seam: `python bench/seam.py [--seeds 0 1 2 3 4 5] [--seconds 12] [--json]`.

Two motifs of two bars, a C major arpeggio over a bass with every note at velocity 100, are continued by
the bundled model exactly as `music-transformer generate --primer motif.mid --seconds 12 --seed S` does
(the primer's tokens up to the motif's end, the CLI's default sampling, one CPU thread). Each
continuation's tokens are decoded twice:

- before: with a fresh decoder, as main's `continuation_notes(tokens, start)` did (ebad0e5): the velocity
  starts at 64 whatever the motif played;
- after: from where the motif leaves off, `continuation_notes(tokens, start, primer)`.

It prints, per motif and seed, the continuation's notes, how many are at velocity 64 each way, and how
many notes the model wrote before its first velocity event of its own; then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_transformer import Note, continuation_notes, generate, load_checkpoint, primer_tokens  # noqa: E402
from music_transformer.events import decode, is_note_on, is_velocity  # noqa: E402

VELOCITY = 100
BEAT = 0.5  # 120 bpm, as the CLI writes


def arpeggio_motif() -> list[Note]:
    """Two bars of eighths, C4 E4 G4 C5 G4 E4 C4 E4 each bar, over a C3 then G2 bass in half notes."""
    upper = [60, 64, 67, 72, 67, 64, 60, 64] * 2
    notes = [Note(pitch, VELOCITY, i * BEAT / 2, (i + 1) * BEAT / 2) for i, pitch in enumerate(upper)]
    notes += [Note(pitch, VELOCITY, i * 2 * BEAT, (i + 1) * 2 * BEAT) for i, pitch in enumerate([48, 43, 48, 43])]
    return notes


def broken_chord_motif() -> list[Note]:
    """Two bars of sixteenths climbing C E G C over two octaves and back, over a whole-note C2 and a C3."""
    upper = [48, 52, 55, 60, 64, 67, 72, 76, 79, 76, 72, 67, 64, 60, 55, 52] * 2
    notes = [Note(pitch, VELOCITY, i * BEAT / 4, (i + 1) * BEAT / 4) for i, pitch in enumerate(upper)]
    notes += [Note(pitch, VELOCITY, 0.0, 8 * BEAT) for pitch in (36, 48)]
    return notes


MOTIFS = {"arpeggio": arpeggio_motif, "broken chord": broken_chord_motif}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--json", action="store_true", help="print the JSON line only")
    args = parser.parse_args()
    model = load_checkpoint(None, device="cpu")
    rows = []
    started = time.perf_counter()
    for name, make in MOTIFS.items():
        notes = make()
        motif_end = max(note.end for note in notes)
        primer = primer_tokens(notes, until=motif_end)
        for seed in args.seeds:
            tokens = list(generate(model, primer, seconds=args.seconds, seed=seed))
            before = decode(tokens, start=motif_end)
            after = continuation_notes(tokens, start=motif_end, primer=primer)
            first_velocity = next((i for i, t in enumerate(tokens) if is_velocity(t)), len(tokens))
            rows.append({"motif": name, "seed": seed, "notes": len(after),
                         "at_64_before": sum(note.velocity == 64 for note in before),
                         "at_64_after": sum(note.velocity == 64 for note in after),
                         "notes_before_own_velocity": sum(is_note_on(t) for t in tokens[:first_velocity])})
    total = sum(row["notes"] for row in rows)
    summary = {"bench": "seam", "motifs": len(MOTIFS), "seeds": args.seeds, "seconds": args.seconds,
               "notes": total,
               "share_at_64_before": round(sum(row["at_64_before"] for row in rows) / max(total, 1), 4),
               "share_at_64_after": round(sum(row["at_64_after"] for row in rows) / max(total, 1), 4),
               "elapsed_s": round(time.perf_counter() - started, 1)}
    if not args.json:
        print(f"{'motif':<14}{'seed':>5}{'notes':>7}{'at 64 before':>14}{'at 64 after':>13}{'before own vel.':>17}")
        for row in rows:
            print(f"{row['motif']:<14}{row['seed']:>5}{row['notes']:>7}{row['at_64_before']:>14}"
                  f"{row['at_64_after']:>13}{row['notes_before_own_velocity']:>17}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
