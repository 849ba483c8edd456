"""Piano-roll benchmark: paint time per frame while scrolling and zooming a 10,000-note song, and the
time to open a 10,000-note MIDI file. Prints a table; with --json, one JSON line.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/piano_roll.py [--json] [--notes 10000]

A frame is one scroll or zoom step plus the event-loop pass that repaints what it dirtied (grid, keyboard,
ruler, velocity lane, scroll bars), in a 1280x800 window, as the offscreen platform paints it on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_midi(path: Path, count: int, seed: int = 7) -> None:
    """A dense piano-like piece: a melody and chords, `count` notes, written with write_midi."""
    from music_transformer import Note, write_midi

    rng = random.Random(seed)
    notes = []
    time_s = 0.0
    while len(notes) < count:
        time_s += rng.choice((0.125, 0.25, 0.25, 0.5))
        root = rng.randint(40, 76)
        for offset in rng.choice(((0,), (0, 4), (0, 4, 7), (0, 3, 7, 12))):
            length = rng.choice((0.125, 0.25, 0.5, 1.0))
            notes.append(Note(min(root + offset, 108), rng.randint(30, 120), time_s, time_s + length))
    write_midi(notes[:count], path, bpm=120)


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the values lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; prints the table or the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=120, help="frames per scenario")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CONTINUO_HOME"] = folder
        from continuo.main_window import MainWindow

        path = Path(folder) / "ten-thousand.mid"
        make_midi(path, args.notes)
        window = MainWindow(home=Path(folder))  # autosave on, as in use: opening writes a snapshot
        window.resize(1280, 800)
        window.show()
        app.processEvents()

        open_times = []
        for _ in range(3):
            started = time.perf_counter()
            window.open_path(path, ask_to_save=False)
            window.roll.repaint()  # the first frame is part of opening
            app.processEvents()
            open_times.append(time.perf_counter() - started)
        notes = len(window.song)
        roll = window.roll

        painted = [0]
        canvas_paint = roll.canvas.paintEvent

        def counting_paint(event) -> None:
            """The canvas's own paint, counted."""
            painted[0] += 1
            canvas_paint(event)

        roll.canvas.paintEvent = counting_paint

        def frame(step) -> float:
            """One scroll or zoom step and the repaint it causes, as the event loop runs it."""
            before = painted[0]
            started = time.perf_counter()
            step()
            app.processEvents()
            elapsed = (time.perf_counter() - started) * 1000
            if painted[0] == before:  # a step that did not repaint would flatter the figures
                started = time.perf_counter()
                roll.canvas.repaint()
                elapsed += (time.perf_counter() - started) * 1000
            return elapsed

        scenarios: dict[str, list[float]] = {}
        roll.state.set_view(left_beat=0.0, top_key=127 - 90, pixels_per_beat=80, key_height=14)
        scenarios["scroll, 80 px/beat"] = [frame(lambda: roll.scroll_by(37, 3 if i % 20 < 10 else -3))  # noqa: B023 - called at once
                                          for i in range(args.frames)]
        roll.state.set_view(left_beat=0.0, pixels_per_beat=10, key_height=8)
        scenarios["scroll, 10 px/beat"] = [frame(lambda: roll.scroll_by(41, 0)) for _ in range(args.frames)]
        # Zoom out from 200 px/beat to the whole song (0.5 px/beat) and back in, anchored off-centre.
        roll.state.set_view(left_beat=200.0, pixels_per_beat=200, key_height=14)
        half = max(1, args.frames // 2)
        factor = (200 / 0.5) ** (1 / half)
        zoom = [frame(lambda: roll.zoom_horizontal(1 / factor, 300)) for _ in range(half)]
        zoom += [frame(lambda: roll.zoom_horizontal(factor, 300)) for _ in range(half)]
        scenarios["zoom 200 -> 0.5 -> 200 px/beat"] = zoom
        roll.zoom_to_fit()
        whole = [frame(lambda: roll.scroll_by(1 if index % 2 else -1, 0))  # noqa: B023 - called at once
                 for index in range(max(10, args.frames // 4))]
        scenarios[f"whole song in view ({roll.state.pixels_per_beat:.2f} px/beat)"] = whole
        window.song.undo_stack.setClean()
        window.close()

    moving = scenarios["scroll, 80 px/beat"] + scenarios["scroll, 10 px/beat"] + zoom + whole
    result = {
        "notes": notes,
        "paint_median_ms_10k": round(statistics.median(moving), 2),
        "paint_p95_ms_10k": round(percentile(moving, 0.95), 2),
        "paint_scroll_median_ms": round(statistics.median(scenarios["scroll, 80 px/beat"]), 2),
        "paint_zoom_median_ms": round(statistics.median(zoom), 2),
        "paint_whole_song_median_ms": round(statistics.median(whole), 2),
        "open_10k_notes_s": round(statistics.median(open_times), 3),
        "open_10k_notes_worst_s": round(max(open_times), 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"Piano roll, {notes} notes, 1280x800 window, offscreen")
    print(f"{'scenario':<38}{'median ms':>10}{'p95 ms':>9}{'max ms':>9}")
    for name, times in scenarios.items():
        print(f"{name:<38}{statistics.median(times):>10.2f}{percentile(times, 0.95):>9.2f}{max(times):>9.2f}")
    print(f"{'scroll + zoom, all frames':<38}{result['paint_median_ms_10k']:>10.2f}{result['paint_p95_ms_10k']:>9.2f}")
    print(f"open a {notes}-note MIDI file: median {result['open_10k_notes_s']:.3f} s, "
          f"worst {result['open_10k_notes_worst_s']:.3f} s (3 runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
