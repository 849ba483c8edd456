"""Memory benchmark (issue 45, item 6): does more context help, do notes end, do motifs come back?

    PYTHONPATH=. .venv/bin/python bench/memory.py [--checkpoint NEW] [--baseline OLD]
        [--data pop-piano=../shared/data/pop909/midi classical=../shared/data/pianolatron/midi corpus]
        [--pieces 12] [--seeds 2] [--windows 256 512 1024 2048] [--threads 1]
        [--repetition-penalty P] [--wait-peak-ticks T] [--decode-window W] [--skip-nll] [--skip-continuations] [--json]

For each source (`--data`, as `music-transformer train --data` takes them; `corpus` gives one source per
part: chorale, renaissance, folk) it takes the first `--pieces` held-out pieces (the stable 5 % split,
`data.is_valid_piece`) that last at least 36 s, less the pianolatron 88-note rolls (one velocity, no
pedal: `catalog.json` in the folder or beside it marks them, as the library's `sources.left_out_rolls`
does once it has it). Each piece is opened with its source's style token where the model knows that style
(`events.known_styles`), else with `any`. Every model (`--checkpoint`, and `--baseline` beside it) sees the
same pieces and the same seeds:

1. NLL per token by window: the same pieces scored with each window W through the windowed decoder,
   exactly as `music-transformer eval --window W` scores them (`evaluation.position_nll`, every position
   attending to the W latest), each piece up to the same number of tokens for every model: 4L of the model
   with the longest training length L (the stage 1 and 2 tables in bench/README scored each model's own 4L,
   so a model of L = 2,048 on twice the music of one of L = 1,024). The figure is the overall NLL per token.
   Beside it, the copy test: each piece's 10 s from t0 (below) played twice running (`data.restated`), at
   pitch and a whole step up; the NLL per token of the first hearing and of the second. A model that can
   copy what it has just heard scores the second far lower; one that cannot, about the same. And copying at
   its plainest (`loop_test`): each piece's 4 s from t0 played 6 times running, the NLL of each round.
2. Continuations: the piece's notes in [t0, t0 + 20 s) are the primer (t0 = 30 s, earlier for a piece
   shorter than 66 s; notes cut at the seam), continued for 16 s by `generate` at the studio's default
   settings (`continuo.generation_settings.GenerationSettings()`: temperature, top-k, top-p, repetition
   penalty; the decoder's default cap on a note's length; each wait drawn moved to the likeliest within
   `--wait-peak-ticks`, generate's default 2, of it), one run per seed, beside the real notes of
   [t0 + 20, t0 + 36). For the generated and the real 16 s (notes cut at its end):
   - notes at once: the time-weighted mean number of notes sounding (their summed durations / 16 s);
   - at cap: the share of notes lasting at least the decoder's cap less 0.1 s (8.0 s: 7.9 s), pooled over
     every piece and seed (a median per piece would hide it: most pieces have none);
   - velocity jump: |mean velocity of the notes struck in the first 2 s - that of the primer's last 2 s|;
   - motif reuse: every onset sorted by time, then pitch descending; the differences of successive
     pitches taken in threes (4-note interval patterns); the share of the continuation's that occur in
     the primer (and, for scale, by chance: the real continuations against the other pieces' primers);
   - rhythm reuse: the gaps between successive onsets (to the 10 ms tick); the share of the continuation's
     that the primer has, give or take a tick (a continuation in the primer's beat: near 1; real POP909
     songs, quantised to their beat, 0.98);
   - pitch-class agreement: the cosine of the duration-weighted pitch-class histograms of the 16 s and
     the primer;
   - notes per second.
   Each figure is averaged over a piece's seeds, then the median over pieces is reported per source,
   with the ratio to the real music's median and whether issue 45's targets hold (notes at once within
   0.75-1.33x real, at most 0.5 % at the cap, motif reuse at least 0.6x real, pitch-class agreement and
   notes per second within 10 % of real).

Prints the tables; with --json, one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from music_transformer import (  # noqa: E402
    Note,
    continuation_notes,
    data,
    events,
    generate,
    limits,
    load_checkpoint,
    primer_tokens,
    sources,
)
from music_transformer.evaluation import position_nll  # noqa: E402
from music_transformer.sampling import DEFAULT_MAX_NOTE_SECONDS  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DEFAULT_DATA = (f"pop-piano={SHARED / 'pop909' / 'midi'}", f"classical={SHARED / 'pianolatron' / 'midi'}")
WINDOWS = (256, 512, 1024, 2048)
COPY_SECONDS, COPY_TRANSPOSITIONS = 10.0, (0, 2)  # the copy test's passage, and its returns (semitones up)
LOOP_SECONDS, LOOP_ROUNDS = 4.0, 6  # the loop test's passage, and how many times running it is played
PRIMER_SECONDS, CONTINUATION_SECONDS, PRIMER_START = 20.0, 16.0, 30.0
SEAM_SECONDS = 2.0  # the velocity jump compares the primer's last and the continuation's first this many seconds
CAP_SECONDS = DEFAULT_MAX_NOTE_SECONDS - 0.1  # a note this long was (nearly) held to the decoder's cap
LEFT_OUT_ROLL_TYPES = ("88-note",)
FIGURES = ("notes_at_once", "at_cap", "velocity_jump", "motif_reuse", "rhythm_reuse", "pitch_class_agreement",
           "notes_per_second")
LABELS = {"notes_at_once": "notes at once", "at_cap": f"at cap (>= {CAP_SECONDS:g} s)",
          "velocity_jump": "velocity jump at seam", "motif_reuse": "motif reuse", "rhythm_reuse": "rhythm reuse",
          "pitch_class_agreement": "pitch-class agreement", "notes_per_second": "notes per second"}


# --- the figures of one continuation ----------------------------------------------------------------------


def notes_at_once(notes: list[Note], seconds: float) -> float:
    """The time-weighted mean number of notes sounding in [0, seconds): their durations there, summed, / seconds."""
    return sum(max(0.0, min(n.end, seconds) - max(n.start, 0.0)) for n in notes) / seconds


def at_cap(notes: list[Note], cap: float = CAP_SECONDS) -> int:
    """How many notes last at least `cap` seconds."""
    return sum(n.end - n.start >= cap - 1e-6 for n in notes)


def velocity_jump(primer: list[Note], notes: list[Note], primer_seconds: float = PRIMER_SECONDS,
                  seam: float = SEAM_SECONDS) -> float:
    """|mean velocity of the notes struck in [0, seam) of the continuation - of those struck in the primer's
    last `seam` seconds|; NaN when either has none."""
    before = [n.velocity for n in primer if primer_seconds - seam <= n.start < primer_seconds]
    after = [n.velocity for n in notes if 0.0 <= n.start < seam]
    return abs(float(np.mean(after)) - float(np.mean(before))) if before and after else math.nan


def interval_patterns(notes: list[Note]) -> list[tuple[int, int, int]]:
    """Onsets sorted by time (to the 10 ms tick), then pitch descending; successive pitch differences in threes."""
    pitches = [n.pitch for n in sorted(notes, key=lambda n: (events.to_ticks(n.start), -n.pitch))]
    steps = [b - a for a, b in pairwise(pitches)]
    return [(steps[i], steps[i + 1], steps[i + 2]) for i in range(len(steps) - 2)]


def motif_reuse(notes: list[Note], primer: list[Note]) -> float:
    """The share of the continuation's 4-note interval patterns that occur in the primer; NaN with none."""
    patterns = interval_patterns(notes)
    known = set(interval_patterns(primer))
    return sum(p in known for p in patterns) / len(patterns) if patterns else math.nan


def onset_gaps(notes: list[Note]) -> np.ndarray:
    """The gaps between successive onsets, in 10 ms ticks (the notes struck in one tick are one onset)."""
    return np.diff(np.unique([events.to_ticks(n.start) for n in notes]))


def rhythm_reuse(notes: list[Note], primer: list[Note]) -> float:
    """The share of the continuation's gaps between onsets that the primer has, give or take a tick (its beat,
    rounded to the tick, puts both sides of a gap in the primer); NaN when either has none."""
    gaps, known = onset_gaps(notes), np.unique(onset_gaps(primer))
    if not len(gaps) or not len(known):
        return math.nan
    return float(np.mean(np.abs(gaps[:, None] - known[None, :]).min(axis=1) <= 1))


def pitch_class_histogram(notes: list[Note], seconds: float) -> np.ndarray:
    """Seconds sounded per pitch class within [0, seconds), as a unit vector (zeros for no notes)."""
    weights = np.zeros(12)
    for n in notes:
        weights[n.pitch % 12] += max(0.0, min(n.end, seconds) - max(n.start, 0.0))
    norm = np.linalg.norm(weights)
    return weights / norm if norm else weights


def figures(notes: list[Note], primer: list[Note], seconds: float = CONTINUATION_SECONDS,
            primer_seconds: float = PRIMER_SECONDS) -> dict:
    """Every figure of a continuation (`notes`, times from the seam) after `primer` (times from its start).
    `at_cap` is a count here, with `notes` beside it, so that shares can be pooled."""
    return {"notes_at_once": notes_at_once(notes, seconds),
            "at_cap": at_cap(notes), "notes": len(notes),
            "velocity_jump": velocity_jump(primer, notes, primer_seconds),
            "motif_reuse": motif_reuse(notes, primer),
            "rhythm_reuse": rhythm_reuse(notes, primer),
            "pitch_class_agreement": float(pitch_class_histogram(notes, seconds)
                                           @ pitch_class_histogram(primer, primer_seconds)),
            "notes_per_second": len(notes) / seconds}


def excerpt(notes: list[Note], start: float, seconds: float) -> list[Note]:
    """The notes struck in [start, start + seconds), times from `start`, cut at its end."""
    return [Note(n.pitch, n.velocity, n.start - start, min(n.end, start + seconds) - start)
            for n in notes if start <= n.start < start + seconds]


def primer_start(notes: list[Note]) -> float | None:
    """t0: PRIMER_START, or as late as the piece allows a primer and a continuation; None if it is too short."""
    end = max((n.end for n in notes), default=0.0)
    room = end - PRIMER_SECONDS - CONTINUATION_SECONDS
    return None if room < 0 else min(PRIMER_START, room)


# --- the held-out pieces ------------------------------------------------------------------------------------


def long_enough(pieces: list[data.Piece]) -> list[data.Piece]:
    """The pieces long enough for a primer and its continuation (`primer_start`), in their order."""
    return [piece for piece in pieces if primer_start(sources.array_to_notes(piece.notes)) is not None]


def left_out_rolls(folder: Path) -> frozenset[str]:
    """The roll ids a pianolatron `catalog.json` (in `folder` or beside it) marks as 88-note rolls."""
    for catalog in (folder / "catalog.json", folder.parent / "catalog.json"):
        if catalog.is_file():
            entries = json.loads(catalog.read_text(encoding="utf-8"))
            return frozenset(str(e["druid"]) for e in entries if e.get("type") in LEFT_OUT_ROLL_TYPES)
    return frozenset()


def held_out(specs: list[str], cache: str | None) -> dict[str, list[data.Piece]]:
    """Each source's held-out pieces, by source name: NAME of `NAME=FOLDER`, the folder's name for a plain
    folder, the part's style for `corpus`. A NAME the library does not know as a style (e.g. `classical`
    before it has that style) is read as a plain folder; its pieces are still that source's."""
    cache_dir = Path(cache) if cache else None
    groups: dict[str, list[data.Piece]] = {}
    for spec in specs:
        if sources.is_corpus(spec):
            for piece in data.load_dataset(spec, cache_dir=cache_dir).valid:
                groups.setdefault(piece.style, []).append(piece)
            continue
        name, equals, folder = spec.partition("=")
        if not equals:
            name, folder = Path(spec).name, spec
        dataset = data.load_dataset(spec if name in events.STYLES else folder, cache_dir=cache_dir)
        left_out = left_out_rolls(Path(folder))
        groups.setdefault(name, []).extend(p for p in dataset.valid if Path(p.piece_id).name.split("_")[0]
                                           not in left_out)
    return groups


def model_style(source: str, vocab_size: int) -> str:
    """The source's style token where the model knows it, else `any` (a model without styles ignores it)."""
    known = getattr(events, "known_styles", None)
    styles = known(vocab_size) if known else (events.STYLES if events.has_styles(vocab_size) else ())
    return source if source in styles else "any"


def common_span(models: dict) -> int:
    """The tokens of each piece every model reads: 4L of the longest, so that all of them read the same music."""
    return 4 * max(model.config.train_length for model in models.values())


# --- measuring ------------------------------------------------------------------------------------------------


def nll_by_window(model, pieces: list[data.Piece], style: str, windows: list[int],
                  span: int | None = None) -> dict[int, float]:
    """The overall NLL per token of the pieces' first `span` tokens (default 4L) with each window, as
    `music-transformer eval --window W` scores them."""
    return {window: position_nll(model, pieces, window=window, style=style, span=span)["overall"]
            for window in windows}


def scored_rounds(model, notes: list[Note], style: str, seconds: list[float]) -> list[tuple[float, int]]:
    """`notes` scored as `eval` scores them (the header, the events; END left out), the NLL summed and counted
    per round: the first from the header on, each next from its first velocity event or note-on at or after
    its start in `seconds`."""
    import torch
    import torch.nn.functional as F

    tokens = data.piece_tokens(sources.notes_to_array(notes), style, model.config.vocab_size)[:-1]
    ticks = events.token_ticks(tokens)
    starts = [len(events.header(style, model.config.vocab_size))]
    starts += [next(i for i, token in enumerate(tokens) if ticks[i] >= events.to_ticks(start)
                    and (events.is_note_on(token) or events.is_velocity(token))) for start in seconds]
    model.eval()
    with torch.inference_mode():
        x = torch.tensor([tokens])
        nll = F.cross_entropy(model(x[:, :-1], window=model.default_window)[0].float(), x[0, 1:],
                              reduction="none").numpy()  # nll[i] is of tokens[i + 1]
    return [(float(nll[first - 1:last - 1].sum()), last - first)
            for first, last in zip(starts, [*starts[1:], len(tokens)], strict=True)]


def primer_and_real(piece: data.Piece, seconds: float = PRIMER_SECONDS) -> tuple[list[Note], list[Note]]:
    """The piece's `seconds` from t0 (`primer_start`; the primer) and its real CONTINUATION_SECONDS after them,
    each with times from its own start."""
    notes = sources.array_to_notes(piece.notes)
    t0 = primer_start(notes)
    return excerpt(notes, t0, seconds), excerpt(notes, t0 + seconds, CONTINUATION_SECONDS)


def copy_test(model, pieces: list[data.Piece], style: str, transpose: int, seconds: float = COPY_SECONDS) -> dict:
    """The NLL per token of each piece's `seconds` from its t0 (`primer_start`) heard first and heard again at
    once, `transpose` semitones up (`data.restated`), pooled over the pieces: {"first", "again", "gain", and the
    tokens scored in each, "tokens"}."""
    sums = np.zeros((2, 2))
    for piece in pieces:
        passage = sources.notes_to_array(primer_and_real(piece, seconds)[0])
        twice = sources.array_to_notes(data.restated(passage, [data.Passage(0.0, seconds, transpose)]))
        sums += scored_rounds(model, twice, style, [seconds])
    (first, first_count), (again, again_count) = sums
    result = {"first": first / first_count if first_count else math.nan,
              "again": again / again_count if again_count else math.nan}
    result["gain"] = result["first"] - result["again"]
    result["tokens"] = {"first": int(first_count), "again": int(again_count)}
    return result


def loop_test(model, pieces: list[data.Piece], style: str, seconds: float = LOOP_SECONDS,
              rounds: int = LOOP_ROUNDS) -> dict:
    """Copying at its plainest: each piece's `seconds` from its t0 played `rounds` times running (each round's
    notes end with it); the NLL per token of each round, pooled over the pieces ({"rounds": [...]}). A model that
    copies what it has heard scores the late rounds near 0; one that cannot, about as the first."""
    sums = np.zeros((rounds, 2))
    for piece in pieces:
        passage = primer_and_real(piece, seconds)[0]
        looped = [Note(n.pitch, n.velocity, n.start + r * seconds, n.end + r * seconds)
                  for r in range(rounds) for n in passage]
        sums += scored_rounds(model, looped, style, [r * seconds for r in range(1, rounds)])
    return {"rounds": [float(total / count) if count else math.nan for total, count in sums]}


def continuation_runs(models: dict, pieces: list[data.Piece], source: str, seeds: int, threads: int,
                      window: int | None = None, **changes) -> dict:
    """Per run name (each model, and `real`), one list per piece of the figures of each seed's run; `window` the
    decoder's (default: each model's own, `default_window`), `changes` to the studio's default settings (e.g.
    repetition_penalty=0.0)."""
    runs: dict[str, list[list[dict]]] = {name: [] for name in [*models, "real"]}
    for piece in pieces:
        primer, real = primer_and_real(piece)
        runs["real"].append([figures(real, primer)])
        for name, model in models.items():
            runs[name].append([figures(continue_primer(model, primer, source, seed, threads, window, **changes),
                                       primer) for seed in range(seeds)])
    return runs


def continue_primer(model, primer: list[Note], source: str, seed: int, threads: int = 1, window: int | None = None,
                    wait_peak_ticks: int = limits.DEFAULT_WAIT_PEAK_TICKS, **changes) -> list[Note]:
    """`generate`'s CONTINUATION_SECONDS after `primer` (a PRIMER_SECONDS excerpt), times from the seam, at the
    studio's default settings with `changes`, the source's style where the model knows it; each wait drawn
    moved to the likeliest within `wait_peak_ticks` (generate's default)."""
    from dataclasses import replace

    from continuo.generation_settings import GenerationSettings

    settings = replace(GenerationSettings(), **changes)
    context = primer_tokens(primer, until=PRIMER_SECONDS)
    tokens = list(generate(model, context, seconds=CONTINUATION_SECONDS, seed=seed,
                           temperature=settings.temperature, top_k=settings.top_k or None,
                           top_p=settings.top_p, repetition_penalty=settings.repetition_penalty,
                           style=model_style(source, model.config.vocab_size), cpu_threads=threads,
                           window=window, wait_peak_ticks=wait_peak_ticks))
    return continuation_notes(tokens, 0.0, context)


def chance_reuse(pieces: list[data.Piece]) -> float:
    """Motif reuse by chance: each piece's real continuation against the other pieces' primers (the mean over
    them), the median over pieces; NaN with fewer than two pieces."""
    primers, reals = zip(*map(primer_and_real, pieces), strict=True) if pieces else ((), ())
    per_piece = [np.nanmean([motif_reuse(real, primer) for j, primer in enumerate(primers) if j != i])
                 for i, real in enumerate(reals) if len(primers) > 1]
    return float(np.nanmedian(per_piece)) if per_piece and not np.all(np.isnan(per_piece)) else math.nan


def summary(runs: list[list[dict]]) -> dict:
    """Median over pieces of each figure's mean over the piece's seeds; `at_cap` pooled over every note."""
    result = {}
    for key in FIGURES:
        if key == "at_cap":
            notes = sum(run["notes"] for piece in runs for run in piece)
            result[key] = sum(run["at_cap"] for piece in runs for run in piece) / notes if notes else math.nan
            continue
        per_piece = [np.nanmean(values) if not np.all(np.isnan(values)) else math.nan
                     for values in (np.array([run[key] for run in piece], float) for piece in runs)]
        result[key] = float(np.nanmedian(per_piece)) if not np.all(np.isnan(per_piece)) else math.nan
    return result


def targets(figure: dict, real: dict) -> dict[str, bool]:
    """Issue 45's targets: notes at once within 0.75-1.33x real, at most 0.5 % at the cap, motif reuse at
    least 0.6x real, pitch-class agreement and notes per second within 10 % of real."""
    def within(key: str, low: float, high: float | None) -> bool:
        return low * real[key] <= figure[key] and (high is None or figure[key] <= high * real[key])

    return {"notes_at_once": within("notes_at_once", 0.75, 1.33),
            "at_cap": figure["at_cap"] <= 0.005,
            "motif_reuse": within("motif_reuse", 0.6, None),
            "pitch_class_agreement": within("pitch_class_agreement", 0.9, 1.1),
            "notes_per_second": within("notes_per_second", 0.9, 1.1)}


def _number(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _each_model(chosen: dict, models: dict, result: dict, key: str):
    """(source, its pieces, model name, model, the source's entry) for every source with pieces and every model,
    the entry's `key` made ready for the models' figures."""
    for source, picked in chosen.items():
        result["sources"][source][key] = {}
        for name, model in models.items():
            if picked:
                yield source, picked, name, model, result["sources"][source]


def report(models: dict, groups: dict[str, list[data.Piece]], pieces: int = 12, seeds: int = 2,
           windows=WINDOWS, threads: int = 1, nll: bool = True, continuations: bool = True,
           decode_window: int | None = None, span: int | None = None, **changes) -> dict:
    """Measures `models` (name: model) on each source's held-out pieces (`held_out`); prints the tables and
    returns the figures by source (bench/piano_model.py reports the same through this). The NLL reads each
    piece's first `span` tokens (default 4L of the longest model, so every model reads the same music). The
    continuations are written with `decode_window` (default: each model's own) and `changes` to the studio's
    default settings."""
    result: dict = {"pieces_per_source": pieces, "seeds": seeds, "windows": list(windows), "settings": changes,
                    "decode_windows": {name: decode_window or model.default_window for name, model in models.items()},
                    "primer_seconds": PRIMER_SECONDS, "continuation_seconds": CONTINUATION_SECONDS,
                    "cap_seconds": CAP_SECONDS, "sources": {}}
    chosen = {}
    for source, held in groups.items():
        chosen[source] = long_enough(held)[:pieces]
        result["sources"][source] = {"held_out": len(held), "pieces": len(chosen[source]),
                                     "ids": [p.piece_id for p in chosen[source]],
                                     "styles": {name: model_style(source, m.config.vocab_size)
                                                for name, m in models.items()}}

    if nll:
        span = span or common_span(models)
        result["nll_span"] = span
        print(f"\nNLL per token (nats) by window: each source's first {pieces} held-out pieces of 36 s or more, "
              f"up to {span:,} tokens each (`music-transformer eval --window W`)")
        print(f"{'source':<13}{'model':<10}{'pieces':>7}" + "".join(f"{f'W={w}':>9}" for w in windows)
              + f"{'best W':>8}")
        for source, picked, name, model, entry in _each_model(chosen, models, result, "nll"):
            scores = nll_by_window(model, picked, entry["styles"][name], windows, span)
            entry["nll"][name] = {str(w): value for w, value in scores.items()}
            best = min(scores, key=lambda w: scores[w])
            print(f"{source:<13}{name:<10}{len(picked):>7}" + "".join(f"{v:>9.3f}" for v in scores.values())
                  + f"{best:>8}", flush=True)
        print(f"\nThe copy test: each piece's {COPY_SECONDS:g} s from t0 heard twice running, the second time at "
              "pitch or a step up; NLL per token of the first hearing and of the second")
        print(f"{'source':<13}{'model':<10}{'first':>8}" + "".join(f"{f'again +{t}':>10}{'gain':>7}"
                                                                     for t in COPY_TRANSPOSITIONS))
        for source, picked, name, model, entry in _each_model(chosen, models, result, "copy"):
            tests = {t: copy_test(model, picked, entry["styles"][name], t) for t in COPY_TRANSPOSITIONS}
            entry["copy"][name] = {f"+{t}": test for t, test in tests.items()}
            print(f"{source:<13}{name:<10}{tests[0]['first']:>8.3f}"
                  + "".join(f"{test['again']:>10.3f}{test['gain']:>7.3f}" for test in tests.values()), flush=True)
        print(f"\nThe loop test: each piece's {LOOP_SECONDS:g} s from t0 played {LOOP_ROUNDS} times running; NLL per "
              "token of each round (a model that copies: the late rounds near 0)")
        print(f"{'source':<13}{'model':<10}" + "".join(f"{f'round {r + 1}':>9}" for r in range(LOOP_ROUNDS)))
        for source, picked, name, model, entry in _each_model(chosen, models, result, "loop"):
            entry["loop"][name] = loop_test(model, picked, entry["styles"][name])
            print(f"{source:<13}{name:<10}" + "".join(f"{value:>9.3f}" for value in entry["loop"][name]["rounds"]),
                  flush=True)

    if continuations:
        for source, picked in chosen.items():
            if not picked:
                continue
            entry = result["sources"][source]
            runs = continuation_runs(models, picked, source, seeds, threads, decode_window, **changes)
            medians = {name: summary(group) for name, group in runs.items()}
            real = medians["real"]
            entry["continuations"] = medians
            entry["ratios"] = {name: {key: (medians[name][key] / real[key] if real[key] else math.nan)
                                      for key in FIGURES if key != "at_cap"} for name in models}
            entry["targets"] = {name: targets(medians[name], real) for name in models}
            print(f"\n{source}: {CONTINUATION_SECONDS:g} s after a {PRIMER_SECONDS:g} s primer, {len(picked)} pieces "
                  f"x {seeds} seeds, medians over pieces (at cap: pooled share)")
            names = list(models)
            header = f"{'':<24}" + "".join(f"{n:>10}" for n in [*names, "real"])
            header += "".join(f"{n + '/real':>15}" for n in names) + "".join(f"{n + ' ok':>12}" for n in names)
            print(header)
            for key in FIGURES:
                digits = 4 if key == "at_cap" else 3
                line = f"{LABELS[key]:<24}"
                line += "".join(f"{_number(medians[n][key], digits):>10}" for n in [*names, "real"])
                line += "".join(f"{_number(entry['ratios'][n].get(key, math.nan), 2):>15}" for n in names)
                line += "".join(f"{({True: 'yes', False: 'no'}.get(entry['targets'][n].get(key), '')):>12}"
                                for n in names)
                print(line, flush=True)
            entry["chance_motif_reuse"] = chance_reuse(picked)
            print(f"{'motif reuse by chance':<24}{_number(entry['chance_motif_reuse']):>10}  (each real continuation "
                  "against the other pieces' primers)", flush=True)

    return result


def main(argv: list[str] | None = None) -> int:
    """Measures the models on each source's held-out pieces; prints the tables and, with --json, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="the model to measure (default: the bundled model)")
    parser.add_argument("--baseline", help="a second model measured beside it (e.g. the previous bundled model)")
    parser.add_argument("--data", nargs="+", default=list(DEFAULT_DATA),
                        help="sources (as `music-transformer train --data`; `corpus` too, slow to convert)")
    parser.add_argument("--cache", help="conversion cache (default $CONTINUO_CACHE or ~/.cache/continuo)")
    parser.add_argument("--pieces", type=int, default=12, help="held-out pieces per source (default 12)")
    parser.add_argument("--seeds", type=int, default=2, help="continuations per piece and model (default 2)")
    parser.add_argument("--windows", type=int, nargs="+", default=list(WINDOWS), help="windows to score with")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repetition-penalty", type=float,
                        help="the continuations' repetition penalty (default: the studio's)")
    parser.add_argument("--wait-peak-ticks", type=int,
                        help="how far a drawn wait moves to the likeliest near it (default: generate's, "
                             f"{limits.DEFAULT_WAIT_PEAK_TICKS}; 0: not at all)")
    parser.add_argument("--decode-window", type=int,
                        help="the continuations' window (default: each model's own decoding window)")
    parser.add_argument("--skip-nll", action="store_true", help="no NLL by window")
    parser.add_argument("--skip-continuations", action="store_true", help="no continuations")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.pieces < 1 or args.seeds < 1 or args.threads < 1 or min(args.windows) < 1:
        parser.error("--pieces, --seeds, --threads and --windows must be 1 or more")

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    models = {"model": load_checkpoint(args.checkpoint, device="cpu")}
    if args.baseline:
        models["baseline"] = load_checkpoint(args.baseline, device="cpu")
    result: dict = {"bench": "memory", "checkpoint": args.checkpoint or "bundled", "baseline": args.baseline}
    result.update(report(models, held_out(args.data, args.cache), args.pieces, args.seeds, args.windows,
                         args.threads, nll=not args.skip_nll, continuations=not args.skip_continuations,
                         decode_window=args.decode_window,
                         **({} if args.repetition_penalty is None else
                            {"repetition_penalty": args.repetition_penalty}),
                         **({} if args.wait_peak_ticks is None else {"wait_peak_ticks": args.wait_peak_ticks})))
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(f"\n{result['elapsed_s']:.0f} s on {args.threads} thread(s)")
    if args.json:
        print(json.dumps(plain(result)))
    return 0


def plain(value):
    """`value` with NaN as None (JSON null)."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


if __name__ == "__main__":
    sys.exit(main())
