"""Repetition benchmark: how much the bundled model's continuations loop, with and without the repetition penalty.

    PYTHONPATH=. .venv/bin/python bench/repetition.py [--seeds 6] [--seconds 12] [--penalties 0 1.0] [--json]

Three two-bar motifs at 120 bpm, every note at velocity 100 (a C major arpeggio over a bass, A minor and F
major broken chords, a tune over block chords), continued for `--seconds` by beam search (4 beams: the
studio's *Most likely* before it left the panel) and by sampling at temperature 0.8 and 1.0 (top-p 0.95, the
studio's default), seeds 0..N-1, on one CPU thread. For each penalty it prints, per way of writing:

- distinct pitches (the mean, and the least of any run; the motifs have 7, 8 and 10),
- the most times one bar (its notes' pitches and onsets to the 10 ms) occurs in a continuation, and the
  longest run of one bar played again and again,
- the longest run of successive onsets (chords count as one) on which one pitch is struck,
- notes per second,
- the mean log-probability per token that the model, unpenalised at temperature 1, gives what was written
  (how far the penalty moves the writing from the model's own distribution; the model itself is unchanged,
  so its NLL of held-out music is too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BAR_SECONDS = 2.0  # 4/4 at 120 bpm
MOST_LIKELY_BEAMS = 4  # the studio's "Most likely" had these


def motifs():
    """(name, notes) of the three motifs: two bars each, every note at velocity 100."""
    from music_transformer import Note

    def bars(pattern):
        notes = []
        for bar, (bass, figure) in enumerate(pattern):
            start = bar * BAR_SECONDS
            notes.append(Note(bass, 100, start, start + BAR_SECONDS))
            step = BAR_SECONDS / len(figure)
            notes += [Note(pitch, 100, start + i * step, start + (i + 1) * step) for i, pitch in enumerate(figure)]
        return notes

    arpeggio = bars([(48, [60, 64, 67, 72, 67, 64, 60, 64]), (48, [60, 64, 67, 72, 76, 79, 76, 72])])
    broken = bars([(45, [57, 60, 64, 69, 64, 60, 57, 60]), (41, [53, 57, 60, 65, 60, 57, 53, 57])])
    tune = []
    for bar, (chord, melody) in enumerate([((48, 52, 55), [64, 62, 60, 62]), ((43, 47, 50), [64, 64, 64, 67])]):
        start = bar * BAR_SECONDS
        tune += [Note(pitch, 100, start, start + BAR_SECONDS) for pitch in chord]
        tune += [Note(pitch, 100, start + i * 0.5, start + i * 0.5 + 0.5) for i, pitch in enumerate(melody)]
    return [("C major arpeggio", arpeggio), ("A minor, F broken chords", broken), ("tune over chords", tune)]


def statistics_of(notes, start: float, seconds: float) -> dict:
    """The repetition figures of the notes from `start` on (a continuation, or a motif from 0)."""
    from music_transformer.events import to_ticks

    notes = [note for note in notes if note.start >= start - 1e-9]
    bars = Counter()
    sequence = []
    for note in notes:
        bar = int((note.start - start + 1e-9) // BAR_SECONDS)
        bars[bar, to_ticks(note.start - start - bar * BAR_SECONDS), note.pitch] += 1
    patterns = {}
    for bar, tick, pitch in sorted(bars):
        patterns.setdefault(bar, []).append((tick, pitch))
    played = [tuple(patterns[bar]) for bar in sorted(patterns)]
    run = longest_bar_run = 0
    for index, pattern in enumerate(played):
        run = run + 1 if index and pattern == played[index - 1] and sorted(patterns)[index] == \
            sorted(patterns)[index - 1] + 1 else 1
        longest_bar_run = max(longest_bar_run, run)
    onsets = {}
    for note in notes:
        onsets.setdefault(to_ticks(note.start), set()).add(note.pitch)
    streak, longest_streak = Counter(), 0
    for tick in sorted(onsets):
        streak = Counter({pitch: streak[pitch] + 1 for pitch in onsets[tick]})
        longest_streak = max(longest_streak, *streak.values())
    sequence = [note.pitch for note in notes]
    return {"distinct_pitches": len(set(sequence)),
            "most_repeated_bar": max(Counter(played).values(), default=0),
            "longest_bar_run": longest_bar_run,
            "longest_pitch_streak": longest_streak,
            "notes_per_second": len(notes) / seconds}


def mean_log_probability(model, context: list[int], written: list[int]) -> float:
    """The mean log-probability per token the model (at temperature 1, no mask) gives `written` after `context`."""
    import torch

    tokens = (context + written)[-model.config.train_length:]
    first = len(tokens) - len(written)
    with torch.inference_mode():
        logits = model(torch.tensor([tokens[:-1]]))[0].float()
    log_probabilities = torch.log_softmax(logits, dim=-1)
    picked = log_probabilities[first - 1:, :].gather(-1, torch.tensor(tokens[first:])[:, None])
    return float(picked.mean())


def run(model, penalty: float | None, seeds: int, seconds: float) -> dict:
    """Every continuation for one penalty (None: the argument left out, as before it existed)."""
    from music_transformer import generate
    from music_transformer.continuation import continuation_notes, primer_tokens
    from music_transformer.events import header

    options = {} if penalty is None else {"repetition_penalty": penalty}
    modes = {"most likely": [dict(beam_size=MOST_LIKELY_BEAMS)],
             "temperature 0.8": [dict(temperature=0.8, top_p=0.95, seed=seed) for seed in range(seeds)],
             "temperature 1.0": [dict(temperature=1.0, top_p=0.95, seed=seed) for seed in range(seeds)]}
    results = {}
    for mode, settings in modes.items():
        rows = []
        for _, notes in motifs():
            end = max(note.end for note in notes)
            primer = primer_tokens(notes, until=end)
            for setting in settings:
                tokens = list(generate(model, primer, seconds=seconds, **setting, **options))
                figures = statistics_of(continuation_notes(tokens, start=end), end, seconds)
                figures["log_probability"] = mean_log_probability(model, header("any", model.config.vocab_size)
                                                                  + primer, tokens)
                rows.append(figures)
        results[mode] = rows
    return results


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; prints the table and one JSON line (only the JSON line with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--seeds", type=int, default=6, help="seeds per motif for sampling (default 6)")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of each continuation (default 12)")
    parser.add_argument("--penalties", nargs="+", default=["0", "default"],
                        help="repetition penalties to compare: numbers, 'default' (the library's) or 'none' "
                             "(the argument left out: for a library before it)")
    args = parser.parse_args(argv)

    import torch

    from music_transformer import load_checkpoint

    torch.set_num_threads(1)
    model = load_checkpoint(device="cpu")
    for name, notes in motifs():
        figures = statistics_of(notes, 0.0, 2 * BAR_SECONDS)
        if not args.json:
            print(f"motif {name}: {figures['distinct_pitches']} distinct pitches, longest pitch streak "
                  f"{figures['longest_pitch_streak']}, most repeated bar {figures['most_repeated_bar']}")
    summary = {"seeds": args.seeds, "seconds": args.seconds}
    if not args.json:
        print(f"{'penalty':>8} {'writing':<16}{'runs':>5}{'pitches':>9}{'min':>5}{'bar x':>6}{'bar run':>8}"
              f"{'streak':>7}{'mean':>6}{'notes/s':>8}{'log p':>7}")
    for text in args.penalties:
        if text == "default":
            from music_transformer import limits

            penalty = limits.DEFAULT_REPETITION_PENALTY
        else:
            penalty = None if text == "none" else float(text)
        results = run(model, penalty, args.seeds, args.seconds)
        for mode, rows in results.items():
            def column(key, rows=rows):
                return [row[key] for row in rows]
            line = {"distinct_pitches_mean": round(statistics.mean(column("distinct_pitches")), 1),
                    "distinct_pitches_min": min(column("distinct_pitches")),
                    "most_repeated_bar": max(column("most_repeated_bar")),
                    "longest_bar_run": max(column("longest_bar_run")),
                    "longest_pitch_streak": max(column("longest_pitch_streak")),
                    "pitch_streak_mean": round(statistics.mean(column("longest_pitch_streak")), 1),
                    "notes_per_second": round(statistics.mean(column("notes_per_second")), 2),
                    "log_probability": round(statistics.mean(column("log_probability")), 3)}
            summary[f"{mode.replace(' ', '_')}@{penalty}"] = line
            if not args.json:
                print(f"{penalty!s:>8} {mode:<16}{len(rows):>5}{line['distinct_pitches_mean']:>9}"
                      f"{line['distinct_pitches_min']:>5}{line['most_repeated_bar']:>6}{line['longest_bar_run']:>8}"
                      f"{line['longest_pitch_streak']:>7}{line['pitch_streak_mean']:>6}"
                      f"{line['notes_per_second']:>8}{line['log_probability']:>7}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
