"""The other hand: how the accompaniment `accompany` writes around a kept part compares with the real other hand, on
held-out POP909 songs and held-out pianolatron pieces, with the bundled model. Prints a table; with --json, one
JSON line.

    PYTHONPATH=. .venv/bin/python bench/accompany.py [--json] [--songs 6] [--pieces 6] [--seconds 16]

Pieces come from the held-out split that training uses (`data.is_valid_piece`, the stable 5 %). A POP909 song
keeps its MELODY track and the real other hand is its BRIDGE and PIANO tracks (`midi.read_midi_melody`: the
song as training reads it, pedal applied, notes canonical); a pianolatron piano roll (its 88-note rolls, one
velocity, left out, as the catalog says) keeps its notes from C4 up and the real other hand is its notes below.
Each piece is accompanied once over `--seconds` from its first kept note at 20 s or later, the kept notes of the
8 s before read first; the new part is written in the rest of the keyboard (A0 to C8 outside the kept notes'
lowest to highest pitch: for pianolatron, A0 to B3), at the studio's default sampling (temperature 1, top-p
0.95, repetition penalty 1), one CPU thread. Per part, over the window:

- agreement (agree span): issue 45's pitch-class agreement, here of the part with the kept part: the cosine of
  their pitch-class histograms (seconds sounded per pitch class) over the window (`memory.pitch_class_histogram`);
- local agreement (agree 1s, agree 4s): the share of the part's notes whose pitch class is among those of the kept
  notes sounding within 1 s (a beat or two) or 4 s (a bar or two) of its onset (notes with no kept note that near
  are not counted); at 1 s the real other hand of the POP909 songs agrees about half the time;
- notes_per_s: the part's notes that start in the window, a second;
- at_once: how many of the part's notes sound together, time-weighted over the time it sounds at all;
- kept_unchanged: the kept notes `accompany_notes` gives back are the very notes given, equal and in order.

Targets (judged on the means, for each agreement): agreement >= 0.7 and within 0.05 of the real other
hand's; at_once at most 2x the real's; a new note every 2 s at least (notes_per_s >= 0.5); kept notes unchanged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import unittest.mock
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH, which may name another checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402 - bench/memory.py: issue 45's pitch-class agreement

from music_transformer import Note, accompany_notes, events, load_checkpoint  # noqa: E402 - after the checkout is on the path
from music_transformer.data import is_valid_piece  # noqa: E402
from music_transformer.keys import PIANO_RANGE, detect_key  # noqa: E402
from music_transformer.midi import read_midi, read_midi_melody  # noqa: E402
from music_transformer.sources import melody_mask, notes_to_array  # noqa: E402

DATA = Path("/work/shared/data")
FROM_SECONDS = 20.0  # the window starts at the first kept note from here on (past the intro)
CONTEXT_SECONDS = 8.0  # kept notes before the window that the model reads first
NEARS = (1.0, 4.0)  # seconds either side of a note's onset in which the kept notes are its harmony (a beat, a bar)
SPLIT_PITCH = 60  # pianolatron: kept from C4 up


def pop909_parts(path: Path) -> tuple[list[Note], list[Note]] | None:
    """(the melody, the real other hand: bridge and piano), or None for a song without a MELODY track."""
    notes, melody = read_midi_melody(path)
    if not melody:
        return None
    flags = melody_mask(notes_to_array(notes), melody).tolist()
    return ([note for note, flag in zip(notes, flags, strict=True) if flag],
            [note for note, flag in zip(notes, flags, strict=True) if not flag])


def held_out(songs: int, pieces: int) -> list[tuple[str, str, list[Note], list[Note]]]:
    """(source, piece id, kept part, real other hand) of `songs` POP909 songs and `pieces` pianolatron rolls."""
    chosen = []
    for path in sorted((DATA / "pop909" / "midi").glob("*.mid")):
        if sum(source == "pop909" for source, *_ in chosen) == songs:
            break
        if is_valid_piece(path.name) and (parts := pop909_parts(path)) is not None and parts[0] and parts[1]:
            chosen.append(("pop909", path.name, *parts))
    catalog = json.loads((DATA / "pianolatron" / "catalog.json").read_text())
    taken = 0
    for druid in sorted(entry["druid"] for entry in catalog if entry["type"] != "88-note"):
        path = DATA / "pianolatron" / "midi" / f"{druid}_exp.mid"
        if taken == pieces:
            break
        if not is_valid_piece(path.name) or not path.exists():
            continue
        notes = read_midi(path)
        high = [note for note in notes if note.pitch >= SPLIT_PITCH]
        low = [note for note in notes if note.pitch < SPLIT_PITCH]
        if high and low and max(note.end for note in notes) >= FROM_SECONDS + 16.0:
            chosen.append(("pianolatron", path.name, high, low))
            taken += 1
    return chosen


def agreement(part: list[Note], kept: list[Note], within: float) -> float | None:
    """The share of `part`'s notes whose pitch class a kept note sounding within `within` s of its onset has."""
    agreed = counted = 0
    for note in part:
        near = {k.pitch % 12 for k in kept if k.start < note.start + within and k.end > note.start - within}
        if near:
            counted += 1
            agreed += note.pitch % 12 in near
    return agreed / counted if counted else None


def span_agreement(part: list[Note], kept: list[Note], start: float, end: float) -> float | None:
    """The cosine of `part`'s and `kept`'s pitch-class histograms over [start, end) (issue 45's agreement)."""
    def histogram(notes: list[Note]):
        shifted = [Note(n.pitch, n.velocity, n.start - start, n.end - start) for n in notes]
        return memory.pitch_class_histogram(shifted, end - start)

    part_histogram, kept_histogram = histogram(part), histogram(kept)
    return float(part_histogram @ kept_histogram) if part_histogram.any() and kept_histogram.any() else None


def at_once(part: list[Note], start: float, end: float) -> float:
    """How many notes sound together, time-weighted over the time in [start, end) when any does."""
    edges = sorted([(max(n.start, start), 1) for n in part if n.start < end and n.end > start]
                   + [(min(n.end, end), -1) for n in part if n.start < end and n.end > start])
    sounding = 0
    weighted = covered = 0.0
    previous = start
    for when, change in edges:
        if sounding:
            weighted += sounding * (when - previous)
            covered += when - previous
        sounding += change
        previous = when
    return weighted / covered if covered else 0.0


def measure(part: list[Note], kept: list[Note], start: float, end: float) -> dict:
    inside = [note for note in part if start <= note.start < end]
    heard = [k for k in kept if k.start < end]
    figures = {"agreement_span": span_agreement(inside, heard, start, end),
               **{f"agreement_{within:g}s": agreement(inside, heard, within) for within in NEARS}}
    return {**figures, "notes_per_s": len(inside) / (end - start), "at_once": at_once(part, start, end)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=6, help="held-out POP909 songs")
    parser.add_argument("--pieces", type=int, default=6, help="held-out pianolatron pieces")
    parser.add_argument("--seconds", type=float, default=16.0, help="seconds accompanied in each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="model file (default: the bundled model)")
    parser.add_argument("--key-lock", action="store_true",
                        help="write only in the key the key finder reads from the kept part (keys.detect_key)")
    parser.add_argument("--no-announce", action="store_true",
                        help="feed the kept notes without announcing them ahead, to a model taught the announcements "
                             "(what the anticipation scheme adds)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint, device="cpu")
    if args.no_announce:  # `accompany` announces the kept notes to a model whose vocabulary has the tokens
        unittest.mock.patch.object(events, "has_anticipation", lambda _: False).start()  # for the whole run
    rows = []
    for source, piece_id, kept_part, real in held_out(args.songs, args.pieces):
        start = next((n.start for n in sorted(kept_part, key=lambda n: n.start) if n.start >= FROM_SECONDS),
                     min(n.start for n in kept_part))
        end = start + args.seconds
        keep = [n for n in kept_part if start - CONTEXT_SECONDS <= n.start < end]
        low, high = min(n.pitch for n in keep), max(n.pitch for n in keep)
        write = [p for p in range(PIANO_RANGE[0], PIANO_RANGE[1] + 1) if not low <= p <= high]
        if args.key_lock:
            key = detect_key(kept_part)
            write = [p for p in write if key is None or p % 12 in key.pitch_classes()]
        began = time.perf_counter()
        back, new = accompany_notes(model, keep, write, start, end, seed=args.seed, temperature=1.0, top_p=0.95)
        seconds = time.perf_counter() - began
        window_kept = [n for n in keep if n.start < end]
        rows.append({"source": source, "piece": piece_id, "write": f"{len(write)} pitches",
                     "new": measure(new, window_kept, start, end), "real": measure(real, window_kept, start, end),
                     "kept_unchanged": back == keep and all(a is b for a, b in zip(back, keep, strict=True)),
                     "seconds": round(seconds, 1)})

    def mean(source: str | None, part: str, key: str) -> float:
        values = [row[part][key] for row in rows if source in (None, row["source"]) and row[part][key] is not None]
        return statistics.fmean(values) if values else float("nan")

    agreements = ["span", *(f"{within:g}s" for within in NEARS)]
    keys = [f"agreement_{name}" for name in agreements] + ["notes_per_s", "at_once"]
    print(f"{'source':<12}{'piece':<21}" + "".join(f"{name:>11}{'real':>6}" for name in
                                                  [f"agree {name}" for name in agreements] + ["notes/s", "at once"])
          + f"{'kept ok':>9}{'time s':>8}")

    def shown(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    for row in rows:
        print(f"{row['source']:<12}{row['piece']:<21}"
              + "".join(f"{shown(row['new'][key]):>11}{shown(row['real'][key]):>6}" for key in keys)
              + f"{'yes' if row['kept_unchanged'] else 'NO':>9}{row['seconds']:>8.1f}")
    summary = {}
    for source in ("pop909", "pianolatron", None):
        name = source or "all"
        figures = {f"{part}_{key}": mean(source, part, key) for part in ("new", "real") for key in keys}
        for agreed in agreements:
            new, real = figures[f"new_agreement_{agreed}"], figures[f"real_agreement_{agreed}"]
            figures[f"targets_met_{agreed}"] = bool(
                new >= 0.7 and abs(new - real) <= 0.05 and figures["new_at_once"] <= 2 * figures["real_at_once"]
                and figures["new_notes_per_s"] >= 0.5)
        summary[name] = figures
        met = ", ".join(f"{agreed}: {'met' if figures[f'targets_met_{agreed}'] else 'NOT met'}"
                        for agreed in agreements)
        print(f"{'mean ' + name:<33}" + "".join(f"{shown(figures['new_' + key]):>11}{shown(figures['real_' + key]):>6}"
                                                for key in keys) + f"   targets ({met})")
    kept_ok = all(row["kept_unchanged"] for row in rows)
    print(f"kept notes unchanged in every piece: {'yes' if kept_ok else 'NO'}")
    if args.json:
        print(json.dumps({"summary": summary, "kept_unchanged": kept_ok, "rows": rows, "seconds": args.seconds,
                          "seed": args.seed, "checkpoint": args.checkpoint, "announced": not args.no_announce}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
