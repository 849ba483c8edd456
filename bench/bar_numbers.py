"""Do the studio's bar numbers follow the score? For real MIDI files, the bar of the last note as the file counts
it (its ticks and time signatures, walked here with mido, apart from the studio's code) against the bar the
studio shows: with the file's first tempo only (the studio before the tempo map) and through the tempo map.
Also how many onsets lie on a sixteenth or triplet of the grid, and whether the file is taken as a free
performance (its notes follow no beat).

    python bench/bar_numbers.py ../shared/data/pop909/midi ../shared/data/pianolatron/midi --limit 60

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import mido
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from continuo.document import read_file  # noqa: E402 - after the path
from continuo.midi_files import read_midi_file  # noqa: E402
from continuo.song import Song  # noqa: E402
from continuo.tempo_map import TempoMap  # noqa: E402


def file_bar(path: Path) -> tuple[int, float]:
    """The bar (from 0) of the last note-on as the file counts it, and that note's beat, from its ticks."""
    midi = mido.MidiFile(path)
    signatures, last = [], 0
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "time_signature":
                signatures.append((tick, message.numerator, message.denominator))
            elif message.type == "note_on" and message.velocity and message.channel != 9:
                last = max(last, tick)
    signatures.sort(key=lambda change: change[0])
    kept: list[tuple[int, int, int]] = []
    for change in signatures or [(0, 4, 4)]:
        if kept and kept[-1][0] == change[0]:
            kept[-1] = change
        else:
            kept.append(change)
    kept[0] = (0, *kept[0][1:])
    bar = 0
    for index, (tick, numerator, denominator) in enumerate(kept):
        length = numerator * 4 / denominator * midi.ticks_per_beat
        following = kept[index + 1][0] if index + 1 < len(kept) else math.inf
        if last < following:
            return bar + int((last - tick) // length), last / midi.ticks_per_beat
        bar += math.ceil((following - tick) / length - 1e-9)
    raise AssertionError("unreachable")


def on_grid(beats: np.ndarray) -> float:
    phase = beats - np.floor(beats)
    points = np.array([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0])
    return float(np.mean(np.min(np.abs(phase[:, None] - points[None, :]), axis=1) <= 0.03))


def measure(path: Path) -> dict:
    read = read_file(path)
    if read.error:
        return {"file": path.name, "error": read.error}
    song = Song()
    song.load(read.notes, read.meta)
    timing = read_midi_file(path).timing
    seconds = np.array([note.start for note in song.performance_notes()])
    steady = TempoMap.steady(timing.tempo, timing.time_signature)  # the studio before: the first tempo only
    truth, truth_beat = file_bar(path)
    last = max(note.start for note in song.notes())
    return {
        "file": path.name,
        "minutes": round(float(seconds.max()) / 60, 2),
        "tempi": len(song.tempo_map.tempi),
        "metres": len(song.tempo_map.metres),
        "bar_file": truth + 1,
        "bar_steady": steady.bar_at(steady.beats(song.to_seconds(last))).index + 1,
        "bar_map": song.bar_beat(last).bar,
        "beat_error_map": round(abs(last - truth_beat), 6),
        "grid_steady": round(on_grid(steady.beats_array(seconds)), 3),
        "grid_map": round(on_grid(np.array([note.start for note in song.notes()])), 3),
        "free": timing.phase is None,
        "phase": timing.phase,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=40, help="files a folder, those with the most tempo changes")
    args = parser.parse_args()
    summary = {}
    for folder in args.folders:
        files = sorted(folder.glob("*.mid"))
        counted = []
        for path in files:  # the files with the most tempo events first: where a single tempo drifts most
            data = path.read_bytes()
            counted.append((data.count(b"\xff\x51\x03"), path))
        counted.sort(key=lambda pair: -pair[0])
        rows = [measure(path) for _, path in counted[: args.limit]]
        rows = [row for row in rows if "error" not in row]
        print(f"\n{folder}: {len(rows)} files with the most tempo changes")
        print(f"{'file':>22} {'min':>6} {'tempi':>6} {'metres':>6} {'bar(file)':>9} {'bar(1 tempo)':>12} "
              f"{'bar(map)':>8} {'grid 1 tempo':>12} {'grid map':>8} {'phase':>6}")
        for row in rows:
            print(f"{row['file']:>22} {row['minutes']:>6} {row['tempi']:>6} {row['metres']:>6} {row['bar_file']:>9} "
                  f"{row['bar_steady']:>12} {row['bar_map']:>8} {row['grid_steady']:>12} {row['grid_map']:>8} "
                  f"{'free' if row['free'] else format(row['phase'], '.2f'):>6}")
        off_steady = [abs(row["bar_steady"] - row["bar_file"]) for row in rows]
        off_map = [abs(row["bar_map"] - row["bar_file"]) for row in rows]
        summary[folder.parent.name if folder.name == "midi" else folder.name] = {
            "files": len(rows),
            "bars_off_one_tempo_max": max(off_steady, default=0),
            "bars_off_one_tempo_mean": round(float(np.mean(off_steady)), 2) if rows else 0,
            "bars_off_map_max": max(off_map, default=0),
            "beat_error_map_max": max((row["beat_error_map"] for row in rows), default=0),
            "grid_one_tempo_mean": round(float(np.mean([row["grid_steady"] for row in rows])), 3) if rows else 0,
            "grid_map_mean": round(float(np.mean([row["grid_map"] for row in rows])), 3) if rows else 0,
            "free_performances": sum(row["free"] for row in rows),
            "off_beat_phase": sum(not row["free"] and abs(row["phase"]) > 0.03 for row in rows),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
