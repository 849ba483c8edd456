"""The bundled model's card, measured: NLL by source and position, infilling, continuations, speed.

    python bench/piano_model.py --checkpoint NEW [--baseline OLD]
        [--data pop-piano=../shared/data/pop909/midi classical=../shared/data/pianolatron/midi corpus]
        [--songs 20] [--memory-pieces 12] [--seeds 2] [--json]

Every figure is measured for each model on the same held-out pieces (the stable 5 % split of every source):

1. NLL per token on the held-out pieces of each style (pop piano, chorales, renaissance, folk), overall and
   for positions [0, L), [L, 2L), [2L, 4L) through the windowed decoder (`evaluation.position_nll`), each piece
   opened with its own style token where the model has styles.
2. Infilling (models with styles only): on held-out pop songs, gaps of 2, 4 and 8 s at a quarter, half and
   three quarters of the song. The NLL per token of the gap's true contents given both sides (the
   fill-in-the-middle context that `infilling.infill` builds) against given the left side only (the same
   music before the gap, as a continuation).
3. Continuations: 20 s from the 10 s of each of `--songs` held-out pop songs that start 30 s in, beside
   the real next 20 s: pitch-class agreement with the primer (cosine of the two pitch-class histograms),
   notes per second, velocity spread (standard deviation), the share of repeated notes (an onset whose
   pitch was also struck at the previous onset time), the share of silence, and the share of time with
   both hands playing (notes below and from middle C sounding at once).
4. Joining (models with styles only): a 4 s gap at the same places of `--songs` held-out pop songs, written
   by `infill` and by a plain continuation of the same length (`generate`); the NLL per token of the real
   next 8 s after each, read left to right, against after the real gap.
5. Where the nats go: the held-out pop songs' first window, NLL per token by kind of event (note-on,
   note-off, time shift, velocity, END), with each kind's share of the tokens and of the nats (read from
   the passes of 1, not a second forward pass).
6. Memory (issue 45), for the held-out pieces of every source in `--data` beside the real continuations
   (bench/memory.py's report, `--memory-pieces` pieces a source, `--seeds` seeds): the NLL by window
   (256, 512, 1,024, 2,048); 16 s continuations of 20 s primers with notes sounding at once, the share of
   notes at the decoder's cap, the velocity jump at the seam, motif reuse, pitch-class agreement and density.
7. Decoding speed on this CPU, one thread, at the model's full window (`music_transformer.bench.generate_speed`):
   tokens/s, and the real-time factor for dense piano (60 tokens a second of music) and the median pop song (24).
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import memory  # noqa: E402
from music_transformer import (  # noqa: E402  (after the checkout joins the path)
    continuation_notes,
    data,
    events,
    generate,
    infill,
    load_checkpoint,
    primer_tokens,
    sources,
)
from music_transformer.bench import generate_speed  # noqa: E402
from music_transformer.evaluation import position_nll  # noqa: E402
from music_transformer.events import Note, encode  # noqa: E402
from music_transformer.model import MusicTransformer, mixed_precision  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
POP909, PIANOLATRON = SHARED / "pop909" / "midi", SHARED / "pianolatron" / "midi"
GAPS = (2.0, 4.0, 8.0)
GAP_PLACES = (0.25, 0.5, 0.75)
PRIMER_SECONDS, CONTINUATION_SECONDS, PRIMER_START = 10.0, 20.0, 30.0
JOIN_GAP, JOIN_AFTER = 4.0, 8.0  # the gap written, and the seconds after it scored


def nll_by_style(model: MusicTransformer, pieces: list[data.Piece], span: int | None = None) -> tuple[dict, dict]:
    """`position_nll` of the held-out pieces of each style, and `nll_by_kind` of the pop songs from the same passes.
    Each piece opens with its style's token where the model knows that style, else with `any` (the model of
    2026-12-01 was made before `classical`); each is read up to `span` tokens (default 4L)."""
    styles = sorted({piece.style for piece in pieces}, key=events.STYLES.index)
    kinds = KindTally(model.config.train_length)
    nll = {style: position_nll(model, [p for p in pieces if p.style == style],
                               style=memory.model_style(style, model.config.vocab_size), span=span,
                               on_piece=kinds.add if style == "pop-piano" else None) for style in styles}
    return nll, kinds.figures()


def _scored_nll(model: MusicTransformer, context: list[int], targets: list[int]) -> tuple[float, int]:
    """Summed NLL of `targets` after `context` (one forward pass), and how many."""
    tokens = torch.tensor([context + targets], device=model.device)
    with torch.inference_mode(), mixed_precision(model.device):
        logits = model(tokens[:, :-1])[0, len(context) - 1:].float()
    return float(F.cross_entropy(logits, tokens[0, len(context):], reduction="sum")), len(targets)


KINDS = (("note-on", events.is_note_on), ("note-off", events.is_note_off), ("time shift", events.is_time_shift),
         ("velocity", events.is_velocity))


class KindTally:
    """NLL per token of each kind of event in the first window (`length` predictions) of the pieces it is shown."""

    def __init__(self, length: int):
        self.length = length
        self.sums: dict[str, list[float]] = {}

    def add(self, tokens: list[int], nll: np.ndarray) -> None:
        """A piece's tokens and the NLL of each after the first (as `position_nll` hands them over)."""
        for token, value in zip(tokens[1:self.length + 1], nll[:self.length].tolist(), strict=True):
            kind = next((name for name, test in KINDS if test(token)), "other")
            entry = self.sums.setdefault(kind, [0.0, 0])
            entry[0] += value
            entry[1] += 1

    def figures(self) -> dict:
        """Per kind: the mean NLL, the share of the tokens and the share of the nats."""
        tokens = sum(count for _, count in self.sums.values())
        nats = sum(total for total, _ in self.sums.values())
        return {kind: {"nll": total / count, "token_share": count / tokens, "nats_share": total / nats}
                for kind, (total, count) in self.sums.items()}


def nll_by_kind(model: MusicTransformer, pieces: list[data.Piece]) -> dict:
    """NLL per token of each kind of event in the first window of every piece: mean, share of tokens, of nats."""
    kinds = KindTally(model.config.train_length)
    position_nll(model, pieces, on_piece=kinds.add)
    return kinds.figures()


def infill_nll(model: MusicTransformer, pieces: list[data.Piece]) -> dict:
    """Per gap length: the NLL per token of the true gap given both sides against given the left side only."""
    window = model.config.train_length
    result = {}
    for seconds in GAPS:
        gap = events.to_ticks(seconds)
        sums = {"both_sides": [0.0, 0], "left_only": [0.0, 0]}
        for piece in pieces:
            tokens = encode(sources.array_to_notes(piece.notes))
            total = events.duration_seconds(tokens)
            for place in GAP_PLACES:
                first = events.to_ticks(total * place)
                sequence = data.fim_sequence(tokens, piece.style, window - 1, first, gap, window // 3)
                context_end = sequence.index(events.MIDDLE) + 1
                prefix, rest = events.split_at(tokens, first)
                middle = events.split_at(rest, gap)[0]
                middle = middle[:len(sequence) - context_end]  # the same true tokens in both contexts
                if not middle:
                    continue
                both = _scored_nll(model, sequence[:context_end], middle)
                head = events.header(piece.style)
                left = _scored_nll(model, head + prefix[max(0, len(prefix) - (context_end - len(head))):], middle)
                for name, (total_nll, count) in (("both_sides", both), ("left_only", left)):
                    sums[name][0] += total_nll
                    sums[name][1] += count
        result[f"{seconds:g}s"] = {name: total / max(count, 1) for name, (total, count) in sums.items()}
        result[f"{seconds:g}s"]["tokens"] = sums["both_sides"][1]
    return result


def join_nll(model: MusicTransformer, pieces: list[data.Piece], songs: int, seconds: float = JOIN_GAP,
             seed: int = 0) -> dict:
    """How well a written gap joins the music after it: the NLL per token of the real next JOIN_AFTER seconds
    after the gap, read left to right after the music before the gap and the gap's contents, where those
    are `infill`'s fill, a plain continuation of the same length (`generate`), or the real music."""
    window = model.config.train_length
    gap = events.to_ticks(seconds)
    sums = {"fill": [0.0, 0], "continuation": [0.0, 0], "real": [0.0, 0]}
    for index, piece in enumerate(pieces[:songs]):
        notes = sources.array_to_notes(piece.notes)
        tokens = encode(notes)
        total = events.duration_seconds(tokens)
        for place in GAP_PLACES:
            first = events.to_ticks(total * place)
            before = [n for n in notes if events.to_ticks(n.start) < first]
            after = [n for n in notes if events.to_ticks(n.start) >= first + gap]
            prefix, rest = events.split_at(tokens, first)
            real_middle, real_after = events.split_at(rest, gap)
            scored = events.split_at(real_after, events.to_ticks(JOIN_AFTER))[0]
            if not scored or not after:
                continue
            settings = dict(temperature=1.0, top_p=0.95, seed=seed + index, style=piece.style)
            middles = {"fill": list(infill(model, before, after, first / 100, (first + gap) / 100, **settings)),
                       "continuation": list(generate(model, events.split_at(encode(before), first)[0],
                                                     seconds=gap / 100, **settings)),
                       "real": real_middle}
            for name, middle in middles.items():
                head = events.header(piece.style)
                room = max(0, window - len(head) - len(middle) - len(scored))
                total_nll, count = _scored_nll(model, head + prefix[max(0, len(prefix) - room):] + middle, scored)
                sums[name][0] += total_nll
                sums[name][1] += count
    return {name: total / max(count, 1) for name, (total, count) in sums.items()} | {"tokens": sums["real"][1]}


def music_figures(notes: list[Note], primer: list[Note], seconds: float) -> dict:
    """The continuation figures of `notes` (times from 0 to `seconds`) against the primer's pitch classes."""
    def histogram(group: list[Note]) -> np.ndarray:
        counts = np.bincount([n.pitch % 12 for n in group], minlength=12).astype(float)
        return counts / (np.linalg.norm(counts) or 1.0)

    grid = np.arange(0.0, seconds, 0.01)
    low = np.zeros(len(grid), bool)
    high = np.zeros(len(grid), bool)
    for note in notes:
        span = (grid >= note.start) & (grid < note.end)
        (low if note.pitch < 60 else high)[span] = True
    onsets: dict[float, set[int]] = {}
    for note in notes:
        onsets.setdefault(round(note.start, 2), set()).add(note.pitch)
    times = sorted(onsets)
    repeated = sum(len(onsets[b] & onsets[a]) for a, b in pairwise(times))
    return {"pitch_class_agreement": float(histogram(notes) @ histogram(primer)) if notes else 0.0,
            "notes_per_second": len(notes) / seconds,
            "velocity_spread": float(np.std([n.velocity for n in notes])) if notes else 0.0,
            "repeated_notes": repeated / max(len(notes), 1),
            "silence": float(np.mean(~(low | high))),
            "both_hands": float(np.mean(low & high))}


def continuation_stats(models: dict[str, MusicTransformer], pieces: list[data.Piece], songs: int,
                       seed: int = 0) -> dict:
    """Mean continuation figures of each model, and of the real music, over `songs` held-out songs."""
    end = PRIMER_START + PRIMER_SECONDS
    chosen = [p for p in pieces if p.notes[:, 2].max() > end + CONTINUATION_SECONDS][:songs]
    rows: dict[str, list[dict]] = {name: [] for name in [*models, "real"]}
    for index, piece in enumerate(chosen):
        notes = sources.array_to_notes(piece.notes)
        primer = [Note(n.pitch, n.velocity, n.start - PRIMER_START, min(n.end, end) - PRIMER_START)
                  for n in notes if PRIMER_START <= n.start < end]
        real = [Note(n.pitch, n.velocity, n.start - end, min(n.end - end, CONTINUATION_SECONDS))
                for n in notes if end <= n.start < end + CONTINUATION_SECONDS]
        rows["real"].append(music_figures(real, primer, CONTINUATION_SECONDS))
        for name, model in models.items():
            tokens = list(generate(model, primer_tokens(primer, until=PRIMER_SECONDS), seconds=CONTINUATION_SECONDS,
                                   temperature=1.0, top_p=0.95, seed=seed + index, style=piece.style))
            rows[name].append(music_figures(continuation_notes(tokens), primer, CONTINUATION_SECONDS))
    return {name: {key: float(np.mean([row[key] for row in group])) for key in group[0]} if group else {}
            for name, group in rows.items()} | {"songs": len(chosen)}


def main(argv: list[str] | None = None) -> int:
    """Measures the models named on the command line; prints tables and, with --json, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the model to measure")
    parser.add_argument("--baseline", help="a second model measured beside it (e.g. the old bundled model)")
    parser.add_argument("--data", nargs="+", default=[f"pop-piano={POP909}", f"classical={PIANOLATRON}", "corpus"],
                        help="data sources whose held-out pieces are scored (as `music-transformer train --data`)")
    parser.add_argument("--cache", help="conversion cache (default $CONTINUO_CACHE or ~/.cache/continuo)")
    parser.add_argument("--songs", type=int, default=20, help="held-out pop songs to continue")
    parser.add_argument("--memory-pieces", type=int, default=12,
                        help="held-out pieces a source for the memory figures (0: none)")
    parser.add_argument("--seeds", type=int, default=2, help="continuations a piece for the memory figures")
    parser.add_argument("--limit", type=int, help="at most this many files per source (a smoke run)")
    parser.add_argument("--span", type=int,
                        help="tokens of each piece scored (default 4L of the longest model measured; models "
                             "measured in separate runs need the same)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for scoring")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {"model": load_checkpoint(args.checkpoint, device="cpu")}
    if args.baseline:
        models["baseline"] = load_checkpoint(args.baseline, device="cpu")
    dataset = data.load_dataset(args.data, cache_dir=args.cache, limit=args.limit)
    pop = [piece for piece in dataset.valid if piece.style == "pop-piano"]
    span = args.span or memory.common_span(models)
    results: dict = {"span": span}
    results |= {name: {"path": str(model.metadata.get("path")), "parameters": model.num_parameters(),
                       "train_length": model.config.train_length} for name, model in models.items()}

    print(f"\nNLL per token on held-out pieces ({len(dataset.valid)} pieces, up to {span:,} tokens each)")
    print(f"{'model':<10}{'style':<13}{'pieces':>7}{'long':>6}{'overall':>9}{'[0,L)':>8}{'[L,2L)':>8}{'[2L,4L)':>9}")
    for name, model in models.items():
        results[name]["nll"], kinds = nll_by_style(model, dataset.valid, span)
        if pop:
            results[name]["nll_by_kind"] = kinds
        for style, row in results[name]["nll"].items():
            print(f"{name:<10}{style:<13}{row['pieces']:>7}{row['long_pieces']:>6}{row['overall']:>9.3f}"
                  f"{row['[0,L)']:>8.3f}{row['[L,2L)']:>8.3f}{row['[2L,4L)']:>9.3f}")

    if pop:
        print(f"\nWhere the nats go: the first {max(m.config.train_length for m in models.values())} tokens of "
              f"{len(pop)} held-out pop songs, NLL per token by kind (share of the tokens, share of the nats)")
        for name in models:
            kinds = results[name]["nll_by_kind"]
            print(f"{name:<10}" + "  ".join(f"{kind} {row['nll']:.2f} ({row['token_share']:.0%}, "
                                           f"{row['nats_share']:.0%})" for kind, row in kinds.items()))

    for name, model in models.items():
        if events.has_styles(model.config.vocab_size) and pop:
            results[name]["infill"] = infill_nll(model, pop)
            print(f"\nInfilling ({name}), NLL per token of the gap's true contents, {len(pop)} held-out pop songs:")
            print(f"{'gap':>5}{'both sides':>12}{'left only':>11}{'tokens':>8}")
            for gap, row in results[name]["infill"].items():
                print(f"{gap:>5}{row['both_sides']:>12.3f}{row['left_only']:>11.3f}{row['tokens']:>8}")
            if args.songs:
                join = results[name]["join"] = join_nll(model, pop, args.songs)
                print(f"Joining ({name}): NLL per token of the real {JOIN_AFTER:g} s after a {JOIN_GAP:g} s gap "
                      f"written by infill {join['fill']:.3f}, by a plain continuation {join['continuation']:.3f}, "
                      f"the real gap {join['real']:.3f} ({join['tokens']} tokens)")

    if pop and args.songs:
        stats = continuation_stats(models, pop, args.songs)
        results["continuations"] = stats
        print(f"\nContinuations: {CONTINUATION_SECONDS:g} s after a {PRIMER_SECONDS:g} s primer, "
              f"{stats['songs']} songs (temperature 1.0, top-p 0.95), means")
        keys = list(stats["real"])
        print(f"{'':<10}" + "".join(f"{key:>22}" for key in keys))
        for name in [*models, "real"]:
            print(f"{name:<10}" + "".join(f"{stats[name][key]:>22.3f}" for key in keys))

    if args.memory_pieces > 0:
        print("\nMemory: does more context help, do notes end, do motifs come back (bench/memory.py)")
        results["memory"] = memory.report(models, memory.held_out(args.data, args.cache), args.memory_pieces,
                                          args.seeds, threads=args.threads, span=span)

    print("\nDecoding on this CPU, one thread, at the full window:")
    for name, model in models.items():
        speed = results[name]["decode"] = generate_speed(model)
        print(f"{name:<10} window {speed['window']:>5}: {speed['tokens_per_s']:.0f} tokens/s = "
              f"{speed['real_time_dense_piano']:.1f}x real time for dense piano, "
              f"{speed['real_time_median_pop']:.1f}x for the median pop song")
    if args.json:
        print(json.dumps(memory.plain(results), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
