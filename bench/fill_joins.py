"""How a Fill joins the music around it: notes cut at the gap's end, stubs, and the loudness against the music
around the gap, on held-out pieces of every source, with the bundled model. Prints a table; with --json, one
JSON line.

    PYTHONPATH=. .venv/bin/python bench/fill_joins.py [--json] [--pieces 3] [--seeds 2] [--gap 4]

Each piece (`--pieces` of each source: POP909 and the music21 chorales and folk tunes of the held-out split
that training uses, `data.is_valid_piece`; piano rolls of pianolatron, which no model was trained on, its
one-velocity 88-note rolls left out) gets one gap of `--gap` seconds in its middle, filled once per seed
(temperature 1, one CPU thread). The fill's tokens are decoded two ways: as a fresh stream (every note at 64
until the model writes a velocity, as `continuation_notes(tokens, start)` did) and carrying on from the
music before the gap (`continuation_notes(tokens, start, primer=before)`: the velocity in force there, what
sounds across the gap's start). Per fill:

- cut: a note of the fill that ends exactly at the gap's end (on its 10 ms tick) and is not handed over
  (the music after the gap does not strike that pitch right there);
- handed: a note that ends at the gap's end where the music after it strikes the same pitch;
- last_tick: a note released on the tick before the gap's end (the latest a gap's rules let a note end);
  late: a note not handed over that ends in the last 50 ms of the gap, the end included (cut or not);
- stubs: a note shorter than 50 ms that ends at the gap's end or on the tick before (cut short there;
  `short` counts every note under 50 ms, the model's own included);
- velocity gap: |mean velocity of the fill - mean velocity of the notes that start in the 4 s before the gap
  and the 4 s after it|; `within_8`: the share of fills whose gap is 8 or less.

Run it against another checkout's library (e.g. the one before a change, `git archive COMMIT music_transformer`
unpacked in a folder) with PYTHONPATH pointing there and `--label before`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH, which may name another checkout

from music_transformer import continuation_notes, events, infill, load_checkpoint  # noqa: E402 - after the checkout is on the path
from music_transformer.data import is_valid_piece  # noqa: E402
from music_transformer.events import Note  # noqa: E402
from music_transformer.midi import read_midi  # noqa: E402
from music_transformer.sources import corpus_sources, read_source  # noqa: E402

DATA = Path("/work/shared/data")
COUNTS = ("notes", "cut", "handed", "last_tick", "late", "stubs", "short")
AROUND = 4.0  # seconds of music before and after the gap whose loudness the fill should follow


def held_out_pieces(count: int) -> list[tuple[str, str, list[Note]]]:
    """(source, piece id, notes): `count` held-out pieces of each source, long enough for a gap and 4 s around."""
    chosen: list[tuple[str, str, list[Note]]] = []

    def take(source: str, candidates) -> None:
        taken = 0
        for piece_id, read in candidates:
            if taken == count:
                return
            notes = read()
            if notes and max(n.end for n in notes) >= 16.0:
                chosen.append((source, piece_id, notes))
                taken += 1

    pop = sorted((DATA / "pop909" / "midi").glob("*.mid"))
    take("pop909", ((p.name, lambda p=p: read_midi(p)) for p in pop if is_valid_piece(p.name)))
    catalog = json.loads((DATA / "pianolatron" / "catalog.json").read_text())
    rolls = sorted(entry["druid"] for entry in catalog if entry["type"] != "88-note")
    take("pianolatron", ((f"{druid}_exp.mid", lambda d=druid: read_midi(DATA / "pianolatron" / "midi" / f"{d}_exp.mid"))
                         for druid in rolls if is_valid_piece(f"{druid}_exp.mid")
                         and (DATA / "pianolatron" / "midi" / f"{druid}_exp.mid").exists()))
    sources = corpus_sources(("bach", "fiddle"))
    chorales = [s for s in sources if s.style == "chorale" and is_valid_piece(s.source_id)]
    take("chorale", ((s.source_id, lambda s=s: read_source(s)[0][1]) for s in chorales))
    tunes = []
    for source in (s for s in sources if s.style == "folk"):
        tunes += [(piece_id, lambda n=notes: n) for piece_id, notes, _ in read_source(source)
                  if is_valid_piece(piece_id)]
        if len(tunes) >= 4 * count:
            break
    take("folk", tunes)
    return chosen


def score(fill: list[Note], around: list[Note], after: list[Note], end: float) -> dict:
    """One fill's joins."""
    struck = {note.pitch for note in after if events.to_ticks(note.start) == events.to_ticks(end)}
    at_end = [note for note in fill if events.to_ticks(note.end) == events.to_ticks(end)]
    last_tick = [note for note in fill if events.to_ticks(note.end) == events.to_ticks(end) - 1]
    short = [note for note in fill if note.end - note.start < 0.05 - 1e-9]
    target = statistics.fmean(note.velocity for note in around) if around else None
    mean = statistics.fmean(note.velocity for note in fill) if fill else None
    return {
        "notes": len(fill),
        "cut": sum(note.pitch not in struck for note in at_end),
        "handed": sum(note.pitch in struck for note in at_end),
        "last_tick": len(last_tick),
        "late": sum(note.pitch not in struck and note.end > end - 0.05 + 1e-9 for note in fill),
        "stubs": sum(note in at_end or note in last_tick for note in short),
        "short": len(short),
        "velocity_gap": None if target is None or mean is None else abs(mean - target),
    }


def main() -> None:
    """Fills the gaps and prints the joins."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    parser.add_argument("--pieces", type=int, default=3, help="held-out pieces of each source")
    parser.add_argument("--seeds", type=int, default=2, help="fills of each gap")
    parser.add_argument("--gap", type=float, default=4.0, help="seconds")
    parser.add_argument("--label", default="this checkout", help="names the library measured")
    arguments = parser.parse_args()
    model = load_checkpoint(None)
    rows: dict[str, list[dict]] = {"fresh": [], "carried": [], "clamped": []}
    by_source: dict[str, list[float]] = {}
    sources: dict[str, int] = {}
    for source, _piece_id, notes in held_out_pieces(arguments.pieces):
        length = max(note.end for note in notes)
        start = round(max(AROUND, length / 2 - arguments.gap / 2), 2)
        end = start + arguments.gap
        before = [note for note in notes if note.start < start]
        after = [note for note in notes if note.start >= end]
        around = [note for note in notes if start - AROUND <= note.start < start or end <= note.start < end + AROUND]
        sources[source] = sources.get(source, 0) + 1
        for seed in range(arguments.seeds):
            tokens = list(infill(model, before, after, start, end, seed=seed))
            rows["fresh"].append(score(events.decode(tokens, start=start), around, after, end))
            carried = continuation_notes(tokens, start, primer=before)  # on from the music before the gap
            rows["carried"].append(score(carried, around, after, end))
            low, high = min(n.velocity for n in around), max(n.velocity for n in around)
            clamped = [Note(n.pitch, min(max(n.velocity, low), high), n.start, n.end) for n in carried]
            rows["clamped"].append(score(clamped, around, after, end))
            by_source.setdefault(source, []).append(rows["carried"][-1]["velocity_gap"])
    result: dict = {"label": arguments.label, "gap_seconds": arguments.gap, "pieces": sources,
                    "fills": len(rows["carried"])}
    for decoding, scores in rows.items():
        gaps = [s["velocity_gap"] for s in scores if s["velocity_gap"] is not None]
        result[decoding] = {
            **{key: sum(s[key] for s in scores) for key in COUNTS},
            "velocity_gap_mean": round(statistics.fmean(gaps), 1),
            "velocity_gap_max": round(max(gaps), 1),
            "within_8": round(sum(gap <= 8 for gap in gaps) / len(gaps), 2),
        }
    result["carried_velocity_gap_by_source"] = {
        source: [round(gap, 1) for gap in gaps if gap is not None] for source, gaps in by_source.items()}
    if arguments.json:
        print(json.dumps(result))
        return
    print(f"{arguments.label}: {result['fills']} fills of {arguments.gap:g} s gaps in {sources}")
    print(f"{'decoding':<9} " + " ".join(f"{key:>9}" for key in COUNTS)
          + f" {'vel_gap_mean':>12} {'vel_gap_max':>11} {'within_8':>8}")
    for decoding in rows:
        r = result[decoding]
        print(f"{decoding:<9} " + " ".join(f"{r[key]:>9}" for key in COUNTS)
              + f" {r['velocity_gap_mean']:>12} {r['velocity_gap_max']:>11} {r['within_8']:>8}")
    print("velocity gap by source (carried):", result["carried_velocity_gap_by_source"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
