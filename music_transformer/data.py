"""Training data: the data set of the sources (`sources.py` converts them), the split, token packs,
augmentation, and the samples and batches training draws: windows, packed short pieces and
fill-in-the-middle sequences.

The split is by piece and deterministic: a piece goes to validation when a hash of its id says so, so
the same piece never lands in both, whatever machine or order the files come in.

Every piece keeps the style of its source (`sources.py`). A data set can also be packed into one token
file (`save_token_pack`: the unaugmented encodings as uint16, a few MB) that needs neither the MIDI files
nor music21, for a machine that has neither (the GPU machine).

A training sample is one of three kinds (`training_sample`): a window of the piece with the header
(START and the style token) in front, a bare window (as the decoder sees once its window has slid
past the header), or, for `fim_rate` of the samples, a fill-in-the-middle sequence (`fim_sample`).
For `accompany_rate` of the windows a part of the music (`kept_part`: the melody track where a piece has
one, or a range of the keyboard) is announced ahead of its notes (`events.encode`'s ANTICIPATE tokens), as
`accompaniment.py` feeds the notes a musician keeps.
For `restate_rate` of the windows passage after passage of the piece is played again right after itself
(`restated_window`), as a repeat sign or a returning motif does, and the window holds the passages and their
returns: the lesson in copying that real pieces, whose returns are rarely exact and often farther apart than a
window, teach too seldom (bench/README, "Can the model copy?").
For `style_dropout` of the samples the style token says `any`. Pieces shorter than the training length
(a chorale, a fiddle tune) are packed whole, one after another, into shared samples (`epoch_plan`), each
opening with its own header and closing with END, so that a sample is music rather than PAD. `style_weights`
change how often each style's pieces come round in an epoch (chorale=3: three times as often as by its
tokens; folk=0.5: half as often), for a source that a mix by size leaves behind.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import events
from .errors import DataError
from .events import END, NUM_PITCHES, PAD, STYLES, decode, encode
from .sources import (
    array_to_notes,
    cache_path,
    convert_sources,
    default_cache_dir,
    melody_mask,
    note_keys,
    notes_to_array,
    resolve_sources,
)

log = logging.getLogger(__name__)

VALID_FRACTION = 0.05
TOKEN_PACK_SUFFIX = ".tokens.npz"
HEADER_RATE = 0.5  # of the plain windows, the share that opens with START and the style token
StyleWeights = tuple[tuple[str, float], ...]  # (style, weight) pairs for `epoch_plan`
MAX_STYLE_WEIGHT = 100.0  # a style's pieces come round at most this many times as often in an epoch
MELODY_TRACK_RATE = 0.6  # of a piece's accompaniment windows, the share that keep its melody track (`kept_part`)
RESTATED_SECONDS = (2.0, 16.0)  # a restated passage lasts from this to this long (log-uniform; `restated_window`)
RESTATED_EXACT_RATE = 0.6  # the share of restatements note for note, loudness too (`restated_window`)
RESTATED_TRANSPOSE_RATE = 0.2  # the share moved 1 to 7 semitones up or down (the rest: louder or softer)
RHYTHM_AHEAD = 4  # the onsets after a passage's start and end that `passage_end` matches
RESTATED_LOUDNESS = 0.05  # a varied return is louder or softer by up to this share (`restated_window`)
TOKENS_PER_NOTE = 3.6  # events a note takes, about (3.1 to 4.4 over POP909 songs and rolls): a window's seconds


# --- pieces, split ----------------------------------------------------------------------------------


@dataclass
class Piece:
    """One piece of music: its id, its notes (N, 4), the length of its unaugmented encoding, its style, and
    which notes its melody track plays (bool (N,); None for a piece without one)."""

    piece_id: str
    notes: np.ndarray
    token_count: int
    style: str = "any"
    melody: np.ndarray | None = None


def is_valid_piece(piece_id: str, valid_fraction: float = VALID_FRACTION) -> bool:
    """The deterministic split: a hash of the piece id, the same on every machine and in every run."""
    digest = hashlib.sha1(piece_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < valid_fraction


@dataclass
class Dataset:
    """The pieces of a data source, split into train and valid, and how many files were skipped."""

    train: list[Piece] = field(default_factory=list)
    valid: list[Piece] = field(default_factory=list)
    skipped: int = 0

    def describe(self) -> str:
        """One line: pieces and tokens per split."""
        def tokens(pieces: list[Piece]) -> int:
            return sum(p.token_count for p in pieces)
        return (f"{len(self.train)} train pieces ({tokens(self.train):,} tokens), {len(self.valid)} valid pieces "
                f"({tokens(self.valid):,} tokens), {self.skipped} files skipped")


def load_dataset(data: str | Sequence[str], cache_dir: Path | None = None, limit: int | None = None,
                 workers: int | None = None, progress: bool = True,
                 valid_fraction: float = VALID_FRACTION) -> Dataset:
    """Converts (once) and loads data sources: MIDI folders (`FOLDER` or `STYLE=FOLDER`), `corpus`,
    `corpus:part,part` or token packs (`*.tokens.npz`); several of them are one data set."""
    specs = [data] if isinstance(data, str) else list(data)
    if not specs:
        raise DataError("no data sources given")
    dataset = Dataset()
    for spec in specs:
        part = load_token_pack(spec, valid_fraction) if spec.endswith(TOKEN_PACK_SUFFIX) else \
            _load_sources(spec, cache_dir, limit, workers, progress, valid_fraction)
        dataset.train += part.train
        dataset.valid += part.valid
        dataset.skipped += part.skipped
    return dataset


def _load_sources(data: str, cache_dir: Path | None, limit: int | None, workers: int | None, progress: bool,
                  valid_fraction: float) -> Dataset:
    cache_dir = Path(cache_dir or default_cache_dir())
    sources = resolve_sources(data, limit)
    if not sources:
        raise DataError(f"{data}: no MIDI files (.mid, .midi) in it")
    convert_sources(sources, cache_dir, workers, progress)
    dataset = Dataset()
    for source in sources:
        with np.load(cache_path(cache_dir, source)) as entry:
            error = str(entry["error"])
            if error:
                dataset.skipped += 1
                log.warning("skipped %s: %s", source.source_id, error)
                continue
            notes, counts, melody = entry["notes"], entry["counts"], entry["melody"]
            token_counts, ids = entry["token_counts"], entry["ids"]
        if not len(counts):
            continue
        bounds = np.cumsum(counts)[:-1]
        for piece_id, piece_notes, token_count, piece_melody in zip(
                ids, np.split(notes, bounds), token_counts, np.split(melody, bounds), strict=True):
            piece = Piece(str(piece_id), piece_notes, int(token_count), source.style,
                          piece_melody if piece_melody.any() else None)
            (dataset.valid if is_valid_piece(piece.piece_id, valid_fraction) else dataset.train).append(piece)
    if not dataset.train and not dataset.valid:
        raise DataError(f"{data}: none of its {len(sources)} files could be read")
    return dataset


def save_token_pack(dataset: Dataset, path: str | os.PathLike) -> dict:
    """Writes every piece of a data set, unaugmented, into one token file; returns what it holds.

    The file (`*.tokens.npz`) holds the pieces' encodings as uint16 tokens end to end, where each
    piece starts, its id and its style, and which of the notes they decode to are a melody track's (one
    flag a note, piece after piece): what training needs, without the MIDI files or music21.
    """
    path = Path(path)
    if not path.name.endswith(TOKEN_PACK_SUFFIX):
        raise DataError(f"{path.name}: a token pack's name ends in {TOKEN_PACK_SUFFIX}")
    pieces = dataset.train + dataset.valid
    encodings = [np.asarray(encode(array_to_notes(piece.notes)), dtype=np.uint16) for piece in pieces]
    melody = [_decoded_melody(piece, encoding) for piece, encoding in zip(pieces, encodings, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez_compressed(handle, tokens=np.concatenate(encodings) if encodings else np.zeros(0, np.uint16),
                            offsets=np.cumsum([0] + [len(e) for e in encodings]).astype(np.int64),
                            ids=np.asarray([piece.piece_id for piece in pieces], dtype=str),
                            styles=np.asarray([piece.style for piece in pieces], dtype=str),
                            melody=np.concatenate(melody) if melody else np.zeros(0, bool))
    os.replace(temporary, path)
    return {"pieces": len(pieces), "tokens": int(sum(len(e) for e in encodings)), "bytes": path.stat().st_size}


def _decoded_melody(piece: Piece, encoding: np.ndarray) -> np.ndarray:
    """The melody flags of the notes that `encoding` (the piece's) decodes to, in their order."""
    notes = notes_to_array(decode(encoding.tolist()))
    return melody_mask(notes, set(note_keys(piece.notes[piece.melody])) if piece.melody is not None else set())


def load_token_pack(path: str | os.PathLike, valid_fraction: float = VALID_FRACTION) -> Dataset:
    """The data set in a token file written by `save_token_pack`, split as its sources would be."""
    path = Path(path)
    try:
        with np.load(path) as pack:
            tokens, offsets, ids, styles = pack["tokens"], pack["offsets"], pack["ids"], pack["styles"]
            melody = pack["melody"] if "melody" in pack.files else None  # packs made before it have none
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path.name}: not a token pack ({error})") from None
    shapes_agree = (tokens.ndim == offsets.ndim == ids.ndim == styles.ndim == 1 and len(offsets) == len(ids) + 1
                    and len(styles) == len(ids) and offsets[0] == 0 and offsets[-1] == len(tokens)
                    and bool((np.diff(offsets) >= 0).all()))
    if not shapes_agree:
        raise DataError(f"{path.name}: a damaged token pack (its tokens, piece offsets, ids and styles disagree)")
    dataset = Dataset()
    flagged = 0  # the melody flags read so far: one a note
    for index, (piece_id, style) in enumerate(zip(ids.tolist(), styles.tolist(), strict=True)):
        piece_tokens = tokens[offsets[index]:offsets[index + 1]].tolist()
        try:
            notes = notes_to_array(decode(piece_tokens))
        except ValueError as error:  # the decoder's own check: a token outside the vocabulary
            raise DataError(f"{path.name}: a damaged token pack ({error})") from None
        piece_melody = None
        if melody is not None:
            piece_melody = melody[flagged:flagged + len(notes)].astype(bool)
            flagged += len(notes)
        piece = Piece(piece_id, notes, len(piece_tokens), style if style in STYLES else "any",
                      piece_melody if piece_melody is not None and piece_melody.any() else None)
        (dataset.valid if is_valid_piece(piece_id, valid_fraction) else dataset.train).append(piece)
    if melody is not None and (melody.ndim != 1 or flagged != len(melody)):
        raise DataError(f"{path.name}: a damaged token pack (its melody flags and its notes disagree)")
    if not dataset.train and not dataset.valid:
        raise DataError(f"{path.name}: the token pack holds no pieces")
    return dataset


# --- augmentation and crops -----------------------------------------------------------------------------


def augment(notes: np.ndarray, rng: np.random.Generator, max_transpose: int = 3,
            stretch: tuple[float, float] = (0.95, 1.05)) -> np.ndarray:
    """The paper's augmentation: transpose by -max..+max semitones, stretch time by a factor in `stretch`.

    A transposition that would push a note off the keyboard is narrowed so every note stays in 0..127.
    """
    notes = notes.copy()
    if len(notes):
        low = max(-max_transpose, -int(notes[:, 0].min()))
        high = min(max_transpose, NUM_PITCHES - 1 - int(notes[:, 0].max()))
        notes[:, 0] += int(rng.integers(low, high + 1)) if high >= low else 0
        notes[:, 2:4] *= float(rng.uniform(*stretch))
    return notes


def piece_tokens(notes: np.ndarray, style: str | None = None, vocab_size: int = events.VOCAB_SIZE) -> list[int]:
    """A whole piece as one sequence, as a model with this vocabulary reads it: the header, its events, END."""
    return events.header(style, vocab_size) + encode(array_to_notes(notes)) + [END]


def _padded(tokens: Sequence[int], length: int) -> np.ndarray:
    """`tokens` cut or PAD-filled to length + 1 (inputs and targets)."""
    tokens = np.asarray(tokens[:length + 1], dtype=np.int64)
    return np.concatenate([tokens, np.full(length + 1 - len(tokens), PAD, np.int64)])


def crop(tokens: Sequence[int], length: int, rng: np.random.Generator, head: Sequence[int] = ()) -> np.ndarray:
    """A random window of the piece's tokens after `head` (length + 1 tokens in all), PAD-filled if short."""
    return _padded(_window(tokens, length, rng, head), length)


def _window(tokens: Sequence[int], length: int, rng: np.random.Generator, head: Sequence[int] = ()) -> list[int]:
    """`head`, then a random run of the tokens: length + 1 tokens in all, fewer if the piece is short."""
    room = length + 1 - len(head)
    offset = int(rng.integers(0, max(0, len(tokens) - room) + 1))
    return list(head) + list(tokens[offset:offset + room])


def fim_sample(tokens: Sequence[int], style: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """A fill-in-the-middle sequence cut at random from a piece's events (no header, no END): length + 1 tokens.

    The gap lasts 0.5 to 16 s (log-uniform) from the time of a random event, and the music after it
    takes up to a third of the room (`fim_sequence`).
    """
    return _padded(_fim_tokens(tokens, style, length, rng), length)


def _fim_tokens(tokens: Sequence[int], style: str, length: int, rng: np.random.Generator) -> list[int]:
    """`fim_sample`'s sequence before PAD fills it: at most length + 1 tokens."""
    ticks = events.token_ticks(tokens)
    total = int(ticks[-1]) if len(ticks) else 0
    if total < 2:
        return _window(tokens, length, rng, events.header(style))
    gap = min(int(round(np.exp(rng.uniform(np.log(50), np.log(1600))))), total - 1)
    first = min(int(ticks[int(rng.integers(0, len(tokens)))]), total - gap)
    return fim_sequence(tokens, style, length, first, gap, int(rng.integers(0, length // 3 + 1)))


def fim_sequence(tokens: Sequence[int], style: str, length: int, first: int, gap: int,
                 suffix_room: int) -> list[int]:
    """The fill-in-the-middle sequence of the gap [first, first + gap) ticks of a piece's events.

    `events.fim_context` (the gap's length, up to `suffix_room` tokens of the music after the gap, as
    much of the music before it as fits), then the gap's true contents, with the notes begun in it
    closed at its end, as `infilling.infill` writes them; at most length + 1 tokens, so a long gap is
    cut where the room runs out.
    """
    prefix, rest = events.split_at(tokens, first)
    middle, after = events.split_at(rest, gap)
    middle += events.closing_offs(middle)
    suffix = encode(decode(after[:2 * length]))[:suffix_room]  # the notes that begin at the gap's end or later
    room = length + 1 - len(events.fim_context(style, gap, suffix, [])) - len(middle)
    prefix = prefix[max(0, len(prefix) - max(0, room)):]
    return (events.fim_context(style, gap, suffix, prefix) + middle)[:length + 1]


def style_weights(weights: dict[str, float] | Iterable[tuple[str, float]]) -> StyleWeights:
    """Checked (style, weight) pairs, sorted by style: ValueError, in words, for an unknown style or a
    weight that is not a number from 0 to `MAX_STYLE_WEIGHT`."""
    pairs = list(weights.items() if isinstance(weights, dict) else weights)
    for style, weight in pairs:
        if style not in events.STYLES:
            raise ValueError(f"no style {style!r} (the styles: {', '.join(events.STYLES)})")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
                or not 0 <= weight <= MAX_STYLE_WEIGHT:
            raise ValueError(f"the weight of {style} must be a number from 0 to {MAX_STYLE_WEIGHT:g}, not {weight!r}")
    return tuple(sorted((style, float(weight)) for style, weight in dict(pairs).items()))


def epoch_plan(pieces: Sequence[Piece], length: int, seed: int, epoch: int,
               style_weights: StyleWeights = ()) -> list[tuple[int, ...]]:
    """The pieces of every sample of an epoch, shuffled, as tuples of indices into `pieces`.

    A piece that fills a window gets a sample of its own once per `length` tokens it holds, so one epoch
    sees about every token once and a long piece is not sampled as rarely as a short one. The pieces
    that do not fill a window are shuffled and packed whole, in that order, into shared samples of up
    to `length` + 1 tokens (each with its header and END), so that a short piece costs its own tokens,
    not a whole window of PAD. A style weighted w (`style_weights`, 1 when not named) has w times as many
    turns: whole turns, and the fraction left over as a chance drawn for each piece (a weight of 0 leaves
    the style out). Each turn is its own sample, with its own crop and augmentation.
    """
    rng = np.random.default_rng([seed, epoch])
    weights = dict(style_weights)
    plan: list[tuple[int, ...]] = []
    short = []
    turns = [1 if _packed_size(piece) <= length else max(1, round(piece.token_count / length)) for piece in pieces]
    if any(weight != 1.0 for weight in weights.values()):
        scaled = [count * weights.get(piece.style, 1.0) for count, piece in zip(turns, pieces, strict=True)]
        chance = rng.random(len(pieces))
        turns = [int(value) + int(draw < value - int(value)) for value, draw in zip(scaled, chance, strict=True)]
        if not any(turns):  # small weights on a few pieces: one turn each rather than an empty epoch
            turns = [int(value > 0) for value in scaled]
    for index, piece in enumerate(pieces):
        if _packed_size(piece) <= length:
            short.extend([index] * turns[index])
        else:
            plan.extend([(index,)] * turns[index])
    group: list[int] = []
    used = 0
    for index in rng.permutation(np.asarray(short, dtype=np.int64)).tolist():
        if group and used + _packed_size(pieces[index]) > length + 1:
            plan.append(tuple(group))
            group, used = [], 0
        group.append(index)
        used += _packed_size(pieces[index])
    if group:
        plan.append(tuple(group))
    return [plan[i] for i in rng.permutation(len(plan))]


def _packed_size(piece: Piece) -> int:
    """The tokens a piece takes whole in a packed sample: its header, its events and END."""
    return len(events.header(piece.style)) + piece.token_count + 1


@dataclass(frozen=True)
class SampleMix:
    """What kinds of training samples to draw (see the module's docstring)."""

    max_transpose: int = 3  # augmentation: semitones either way (time stretch is 0.95-1.05)
    fim_rate: float = 0.0  # the share of fill-in-the-middle samples
    style_dropout: float = 0.0  # the share of samples whose style token says `any`
    style_weights: StyleWeights = ()  # (style, weight) pairs: how often each style's pieces come round
    accompany_rate: float = 0.0  # the share of windows with a kept part announced ahead (`kept_part`)
    restate_rate: float = 0.0  # the share of windows in which each passage comes back at once (`restated_window`)


def training_sample(piece: Piece, length: int, seed: int, epoch: int, index: int,
                    mix: SampleMix = SampleMix()) -> np.ndarray:
    """Sample `index` of an epoch: the piece augmented, encoded and cut, reproducibly from the seed."""
    rng = np.random.default_rng([seed, epoch, index])
    notes = augment(piece.notes, rng, mix.max_transpose)
    style = "any" if rng.random() < mix.style_dropout else piece.style
    if rng.random() < mix.fim_rate:
        return fim_sample(encode(array_to_notes(notes)), style, length, rng)
    kept = kept_part(notes, rng, piece.melody) if mix.accompany_rate and rng.random() < mix.accompany_rate else None
    head = events.header(style) if rng.random() < HEADER_RATE else ()
    if kept is None and mix.restate_rate and rng.random() < mix.restate_rate:
        window = restated_window(notes, length + 1 - len(head), rng)
        if window is not None:
            return _padded(list(head) + window, length)
    tokens = encode(array_to_notes(notes), kept)
    return crop(tokens + [END], length, rng, head)


class Passage(NamedTuple):
    """A passage of a piece played again right after itself (`restated`): from `start` for `seconds`, the return
    moved `transpose` semitones and its velocities scaled by `loudness`."""

    start: float
    seconds: float
    transpose: int = 0
    loudness: float = 1.0


def restated(notes: np.ndarray, passages: Sequence[Passage]) -> np.ndarray:
    """The piece (N, 4) with each of `passages` (in time order, none overlapping) played again right after
    itself: every note sounding at a passage's end released there, the passage's notes again `seconds` later
    (moved and made louder or softer as the passage says, released at the second end), and what follows, up to
    the next passage and after the last, as much later as the returns so far last."""
    parts, shift, since = [], 0.0, -math.inf
    for start, seconds, transpose, loudness in passages:
        end = start + seconds
        before = notes[(notes[:, 2] >= since) & (notes[:, 2] < end)].copy()
        before[:, 3] = np.minimum(before[:, 3], end)
        again = before[before[:, 2] >= start].copy()
        again[:, 0] += transpose
        again[:, 1] = np.clip(np.rint(again[:, 1] * loudness), 1, 127)
        again[:, 2:4] += seconds
        for part in (before, again):
            part[:, 2:4] += shift
            parts.append(part)
        shift += seconds
        since = end
    after = notes[notes[:, 2] >= since].copy()
    after[:, 2:4] += shift
    return np.concatenate([*parts, after]) if parts else after


def restated_window(notes: np.ndarray, room: int, rng: np.random.Generator) -> list[int] | None:
    """At most `room` tokens of the piece in which passage after passage is played again right after itself
    (`restated`), as a player repeats each phrase to learn it or a pop song plays each line twice; None for a
    piece without notes.

    The first passage starts on one of the piece's onsets, each next where the one before it ended. Each lasts
    about RESTATED_SECONDS (log-uniform), at most a quarter of the time the room holds at the piece's own pace,
    so that two passages and their returns fit. Each ends on an onset whose next onsets fall as its start's do
    (`passage_end`): its return comes in where the piece's next note would have, on the beat, and every gap
    between onsets in the window is one the piece has (passages that ended anywhere put an off-beat gap at
    each return, and the rhythm of the model's continuations kept to the primer's less and less).
    RESTATED_EXACT_RATE of the returns are the passage note for note, which is what teaches copying first (a
    model has to find the notes it heard before it can learn to vary them); RESTATED_TRANSPOSE_RATE are moved 1
    to 7 semitones, and those and the rest are louder or softer by up to RESTATED_LOUDNESS, a velocity bin or
    so, as a player's touch varies (returns up to 15 % apart taught the model that the loudness jumps where a
    phrase ends, and the seam of a continuation is such a place). The window starts at most a passage before
    the first one (earlier only near the piece's end), so that in most windows half the tokens or more are
    returns and what they copy."""
    if not len(notes):
        return None
    onsets = np.unique(notes[:, 2])
    piece_seconds = max(float(notes[:, 3].max() - onsets[0]), 1e-3)
    tokens_per_second = TOKENS_PER_NOTE * len(notes) / piece_seconds
    room_seconds = room / tokens_per_second  # the time the room holds, unrestated
    ahead = onsets_ahead(onsets)
    at = int(rng.integers(len(onsets)))  # the onset the next passage starts on
    first = float(onsets[at])
    low, high = np.log(RESTATED_SECONDS)
    steps = [step for step in range(max(-7, -int(notes[:, 0].min())),  # the moves that keep every note on the keys
                                    min(7, NUM_PITCHES - 1 - int(notes[:, 0].max())) + 1) if step]
    passages = []
    while at < len(onsets) - 1 and onsets[at] - first < room_seconds / 2:
        end = passage_end(onsets, ahead, at, min(float(np.exp(rng.uniform(low, high))), max(room_seconds / 4, 0.05)))
        seconds = float(onsets[end] - onsets[at])
        transpose, loudness = 0, 1.0
        kind = rng.random()
        if kind >= RESTATED_EXACT_RATE:
            loudness = float(rng.uniform(1.0 - RESTATED_LOUDNESS, 1.0 + RESTATED_LOUDNESS))
        if kind >= 1.0 - RESTATED_TRANSPOSE_RATE and steps:
            transpose = int(rng.choice(steps))
        passages.append(Passage(float(onsets[at]), seconds, transpose, loudness))
        at = end
    if not passages:  # the piece's last onset drawn, or its only one: a passage from it
        passages.append(Passage(first, float(RESTATED_SECONDS[0])))
    tokens = encode(array_to_notes(restated(notes, passages))) + [END]
    ticks = events.token_ticks(tokens)
    begin = int(np.searchsorted(ticks, events.to_ticks(first)))  # the first token at the first passage's start
    lead = int(np.searchsorted(ticks, events.to_ticks(max(first - passages[0].seconds, 0.0))))
    offset = int(rng.integers(min(lead, begin), begin + 1))
    offset = max(0, min(offset, len(tokens) - room))
    return tokens[offset:offset + room]


def onsets_ahead(onsets: np.ndarray) -> np.ndarray:
    """For each of a piece's onsets (sorted, unique), the time from it to each of its next RHYTHM_AHEAD onsets
    (n, RHYTHM_AHEAD); past the last, as if the next came a long rest (10 s) after it."""
    padded = np.concatenate([onsets, onsets[-1] + 10.0 * np.arange(1, RHYTHM_AHEAD + 1)])
    return np.stack([padded[k:k + len(onsets)] for k in range(1, RHYTHM_AHEAD + 1)], axis=1) - onsets[:, None]


def passage_end(onsets: np.ndarray, ahead: np.ndarray, start: int, seconds: float) -> int:
    """The onset (an index into `onsets`, after `start`) a passage from onset `start` lasting about `seconds`
    ends on: of the onsets 0.8 to 1.25 times that far, the one whose next onsets (`ahead`, `onsets_ahead`)
    fall as the start's do, to 10 ms (in music with a steady beat, the same place in the bar), the nearest to
    `seconds` among equals; the first after 0.8 times, or the last onset, when none is that far."""
    at = onsets[start]
    low = max(int(np.searchsorted(onsets, at + 0.8 * seconds)), start + 1)
    if low >= len(onsets):
        return len(onsets) - 1
    high = min(max(int(np.searchsorted(onsets, at + 1.25 * seconds, side="right")), low + 1), len(onsets))
    candidates = np.arange(low, high)
    unlike = np.round(np.abs(ahead[candidates] - ahead[start]).sum(axis=1), 2)
    off = np.abs(onsets[candidates] - (at + seconds))
    return int(candidates[np.lexsort((off, unlike))[0]])


def kept_part(notes: np.ndarray, rng: np.random.Generator,
              melody: np.ndarray | None = None) -> Callable[[int, int], bool]:
    """The kept part of an accompaniment window (`events.encode`'s `kept`), as a musician keeps a part.

    In a piece with a melody track (`melody`, one flag a note: POP909's MELODY), 60 % of its windows keep
    that track's notes, and the model learns to write the bridge and the piano under a real lead line.
    Otherwise, the notes from a split pitch up (a melody kept, the other hand written: 60 % of these
    windows) or below it (a bass line kept), the split drawn between the piece's 20th and 80th percentile of
    pitch, as a musician keeps a range of the keyboard."""
    if melody is not None and melody.any() and rng.random() < MELODY_TRACK_RATE:
        keys = frozenset(note_keys(notes[melody]))
        return lambda pitch, start: (pitch, start) in keys
    low, high = (int(value) for value in np.percentile(notes[:, 0], [20, 80])) if len(notes) else (60, 60)
    split = int(rng.integers(low, high + 1))
    if rng.random() < 0.6:
        return lambda pitch, start: pitch >= split
    return lambda pitch, start: pitch < split


def packed_sample(pieces: Sequence[Piece], length: int, seed: int, epoch: int, index: int,
                  mix: SampleMix = SampleMix()) -> np.ndarray:
    """Sample `index` of an epoch when it packs several short pieces: each augmented and encoded whole
    (header, events, END) or, for `fim_rate` of them, as a fill-in-the-middle sequence, one after
    another; cut or PAD-filled to length + 1 tokens."""
    rng = np.random.default_rng([seed, epoch, index])
    sequence: list[int] = []
    for piece in pieces:
        tokens = encode(array_to_notes(augment(piece.notes, rng, mix.max_transpose)))
        style = "any" if rng.random() < mix.style_dropout else piece.style
        if rng.random() < mix.fim_rate:
            sequence += _fim_tokens(tokens, style, length, rng)
        else:
            sequence += events.header(style) + tokens + [END]
    return _padded(sequence, length)


def training_batches(pieces: Sequence[Piece], length: int, batch_size: int, seed: int, epoch: int = 0,
                     start: int = 0, rank: int = 0, world_size: int = 1,
                     mix: SampleMix = SampleMix()) -> Iterator[tuple[int, np.ndarray]]:
    """Batches (B, length + 1) of an epoch from batch `start` on, as (batch index, array).

    With several processes each rank takes its own rows of every batch, so the ranks together see the
    same samples as one process would; resuming at batch `start` repeats nothing and skips nothing.
    """
    plan = epoch_plan(pieces, length, seed, epoch, mix.style_weights)
    global_batch = batch_size * world_size
    for batch in range(start, _batch_count(len(plan), global_batch)):
        rows = []
        for row in range(batch_size):
            index = (batch * global_batch + rank * batch_size + row) % len(plan)
            if len(plan[index]) == 1:
                rows.append(training_sample(pieces[plan[index][0]], length, seed, epoch, index, mix))
            else:
                rows.append(packed_sample([pieces[i] for i in plan[index]], length, seed, epoch, index, mix))
        yield batch, np.stack(rows)


def batches_per_epoch(pieces: Sequence[Piece], length: int, batch_size: int, seed: int = 0, epoch: int = 0,
                      world_size: int = 1, style_weights: StyleWeights = ()) -> int:
    """How many batches `training_batches` yields for that epoch (packing makes it vary a little)."""
    return _batch_count(len(epoch_plan(pieces, length, seed, epoch, style_weights)), batch_size * world_size)


def _batch_count(samples: int, global_batch: int) -> int:
    """Whole batches in an epoch of `samples`; one (its rows wrapping round) when there are fewer."""
    return samples // global_batch if samples >= global_batch else 1


def validation_chunks(pieces: Sequence[Piece], length: int, max_chunks: int | None = None) -> np.ndarray:
    """Fixed, unaugmented windows of the valid pieces (length + 1 tokens, PAD-filled), for the valid NLL.

    Each piece's events (and END) are cut into consecutive windows, each opening with the header (START
    and the piece's style), so every token is predicted from a context within the training length.
    """
    chunks = []
    for piece in pieces:
        head = events.header(piece.style)
        tokens = encode(array_to_notes(piece.notes)) + [END]
        room = length + 1 - len(head)
        for offset in range(0, len(tokens), room):
            chunks.append(_padded(head + tokens[offset:offset + room], length))
    if max_chunks is not None and len(chunks) > max_chunks:
        pick = np.linspace(0, len(chunks) - 1, max_chunks).round().astype(int)
        chunks = [chunks[i] for i in pick]
    return np.asarray(chunks, dtype=np.int64).reshape(-1, length + 1)
