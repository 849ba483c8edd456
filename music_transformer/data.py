"""Training data: MIDI folders and the music21 corpus, a token-free note cache, the split, augmentation,
the style of each source and fill-in-the-middle samples.

Sources are converted once, in parallel over the cores, into a cache of note arrays (one `.npz` per
source file, written atomically, so an interrupted conversion resumes where it stopped). The cache holds
notes rather than tokens because augmentation works on notes: transpose, stretch time, then encode, as
Magenta's score2perf does. The cache lives in `$CONTINUO_CACHE` (default `~/.cache/continuo`), never in
the repository.

The split is by piece and deterministic: a piece goes to validation when a hash of its id says so, so
the same piece never lands in both, whatever machine or order the files come in.

Every source names the idiom of its music (`events.STYLES`): the music21 parts are `chorale`,
`renaissance` and `folk`, a MIDI folder given as `pop-piano=FOLDER` is `pop-piano`, and a plain folder
is `any`. A data set can also be packed into one token file (`save_token_pack`: the unaugmented
encodings as uint16, a few MB) that needs neither the MIDI files nor music21, for a machine that has
neither (the GPU machine).

A training sample is one of three kinds (`training_sample`): a window of the piece with the header
(START and the style token) in front, a bare window (as the decoder sees once its window has slid
past the header), or, for `fim_rate` of the samples, a fill-in-the-middle sequence (`fim_sample`).
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
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import events
from .errors import ContinuoError
from .events import END, NUM_PITCHES, PAD, STYLES, Note, decode, encode

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
CACHE_FORMAT = 1
VALID_FRACTION = 0.05

# The music21 corpus subset we train on, chosen to convert in about 15 minutes on two cores: the Bach
# chorales (four voices, ~500 events each), Palestrina's masses (long polyphonic pieces: they give the
# held-out pieces of 4 x 256 tokens and more that the by-position evaluation needs), and the fiddle tunes of
# Ryan's Mammoth Collection and O'Neill's 1850 (monophonic dance tunes, ~3,000 of them). Everything in
# the music21 corpus is public domain. Essen's 8,500 folk songs are left out: they come in 300-song files
# that parse slowly and would swamp a short training run with very short melodies.
CORPUS_SUBSETS = {
    "bach": ("bach/",),
    "palestrina": ("palestrina/",),
    "fiddle": ("ryansMammoth/", "oneills1850/"),
}
DEFAULT_CORPUS = ("bach", "palestrina", "fiddle")
CORPUS_STYLES = {"bach": "chorale", "palestrina": "renaissance", "fiddle": "folk"}
TOKEN_PACK_SUFFIX = ".tokens.npz"
HEADER_RATE = 0.5  # of the plain windows, the share that opens with START and the style token
DEFAULT_BPM = 100.0  # music21 scores carry no performance tempo: this one, unless the score has a metronome mark
DEFAULT_VELOCITY = 80  # nor dynamics we trust: every note at mezzo-forte (bin 19)
StyleWeights = tuple[tuple[str, float], ...]  # (style, weight) pairs for `epoch_plan`
MAX_STYLE_WEIGHT = 100.0  # a style's pieces come round at most this many times as often in an epoch


class DataError(ContinuoError):
    """A data source that cannot be used: a missing folder, no music in it, an unknown corpus part."""


# --- sources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One file to convert: where it is, its id (stable across machines) and a cache key."""

    path: str
    source_id: str
    key: str
    kind: str  # "midi" or "music21"
    style: str = "any"  # the idiom of its music, one of events.STYLES


def default_cache_dir() -> Path:
    """`$CONTINUO_CACHE`, or `~/.cache/continuo`."""
    return Path(os.environ.get("CONTINUO_CACHE") or Path.home() / ".cache" / "continuo")


def midi_sources(folder: str | os.PathLike, style: str = "any") -> list[Source]:
    """Every `.mid`/`.midi` file under `folder`, recursively, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of MIDI files")
    sources = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()):
        stat = path.stat()
        source_id = path.relative_to(folder).as_posix()
        digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        sources.append(Source(str(path), source_id, f"midi/{digest[:20]}", "midi", style))
    return sources


def corpus_sources(parts: Sequence[str] = DEFAULT_CORPUS, limit: int | None = None) -> list[Source]:
    """Files of the music21 corpus subset `parts` (names of CORPUS_SUBSETS); `limit` caps each part."""
    from music21 import corpus

    unknown = [part for part in parts if part not in CORPUS_SUBSETS]
    if unknown:
        raise DataError(f"unknown corpus part {unknown[0]!r}; choose from {', '.join(CORPUS_SUBSETS)}")
    root = None
    by_id: dict[str, str] = {}
    for path in sorted(str(p) for p in corpus.getPaths()):
        root = root or path[:path.rfind("/corpus/") + len("/corpus/")]
        relative = path[path.rfind("/corpus/") + len("/corpus/"):]
        by_id.setdefault(relative, path)
    sources = []
    for part in parts:
        chosen: dict[str, tuple[str, str]] = {}
        for relative, path in by_id.items():
            if not relative.startswith(CORPUS_SUBSETS[part]):
                continue
            stem, suffix = os.path.splitext(relative)
            if suffix not in (".mxl", ".xml", ".musicxml", ".krn", ".abc"):
                continue
            # The same chorale in two formats is one piece: keep one (MusicXML first) so it cannot land
            # in both splits.
            rank = (".mxl", ".xml", ".musicxml", ".krn", ".abc").index(suffix)
            if stem not in chosen or rank < chosen[stem][0]:
                chosen[stem] = (rank, path)
        stems = sorted(chosen)[:limit] if limit else sorted(chosen)
        for stem in stems:
            sources.append(Source(chosen[stem][1], stem, f"music21/{stem}", "music21", CORPUS_STYLES[part]))
    return sources


def resolve_sources(data: str, limit: int | None = None) -> list[Source]:
    """`corpus` (the default subset), `corpus:bach,fiddle`, a folder of MIDI files, or `STYLE=FOLDER`."""
    if data == "corpus" or data.startswith("corpus:"):
        parts = tuple(p for p in data.partition(":")[2].split(",") if p) or DEFAULT_CORPUS
        return corpus_sources(parts, limit)
    style, equals, folder = data.partition("=")
    if not equals or style not in STYLES:
        style, folder = "any", data
    sources = midi_sources(folder, style)
    return sources[:limit] if limit else sources


# --- conversion -----------------------------------------------------------------------------------


def notes_to_array(notes: Iterable[Note]) -> np.ndarray:
    """Notes as a float32 array (N, 4): pitch, velocity, start, end."""
    rows = [(n.pitch, n.velocity, n.start, n.end) for n in notes]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def array_to_notes(array: np.ndarray) -> list[Note]:
    """The inverse of `notes_to_array`."""
    return [Note(int(p), int(v), float(s), float(e)) for p, v, s, e in array.tolist()]


def score_notes(score, bpm: float | None = None, velocity: int = DEFAULT_VELOCITY) -> list[Note]:
    """A music21 score's notes in seconds: tied notes joined, grace notes dropped, repeats not expanded.

    The tempo is the score's first metronome mark (kept within 50-160 bpm), else DEFAULT_BPM.
    """
    if bpm is None:
        bpm = DEFAULT_BPM
        for mark in score.recurse().getElementsByClass("MetronomeMark"):
            quarter_bpm = mark.getQuarterBPM()
            if quarter_bpm:
                bpm = min(max(float(quarter_bpm), 50.0), 160.0)
            break
    seconds_per_quarter = 60.0 / bpm
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    notes = []
    for part in parts:
        for element in part.stripTies().flatten().notes:
            length = float(element.quarterLength)
            if length <= 0:
                continue
            start = float(element.offset) * seconds_per_quarter
            end = start + length * seconds_per_quarter
            for pitch in element.pitches:
                if 0 <= pitch.midi < NUM_PITCHES:
                    notes.append(Note(int(pitch.midi), velocity, start, end))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


def read_source(source: Source) -> list[tuple[str, list[Note]]]:
    """The pieces in one source file as (piece id, notes); an opus (many tunes in one file) gives many."""
    if source.kind == "midi":
        from .midi import read_midi

        return [(source.source_id, read_midi(source.path))]
    import music21

    parsed = music21.converter.parse(source.path)
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    pieces = []
    for index, score in enumerate(scores):
        piece_id = source.source_id if len(scores) == 1 else f"{source.source_id}#{index}"
        pieces.append((piece_id, score_notes(score)))
    return pieces


def _cache_path(cache_dir: Path, source: Source) -> Path:
    return cache_dir / f"notes-v{CACHE_FORMAT}" / f"{source.key}.npz"


def convert_source(job: tuple[Source, str]) -> tuple[str, str | None]:
    """Converts one source into its cache file (atomically); returns (source id, error or None).

    An unreadable file is cached as an error, so a later run skips it without parsing it again.
    """
    source, cache_dir = job
    path = _cache_path(Path(cache_dir), source)
    error = None
    try:
        pieces = [(piece_id, notes) for piece_id, notes in read_source(source) if notes]
    except Exception as exception:  # noqa: BLE001 - any parser failure: the file is skipped, never the run
        pieces = []
        error = (str(exception).strip().splitlines() or [type(exception).__name__])[0][:300]
    arrays = [notes_to_array(notes) for _, notes in pieces]
    lengths = np.asarray([len(encode(notes)) for _, notes in pieces], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle,
                 notes=np.concatenate(arrays) if arrays else np.zeros((0, 4), np.float32),
                 counts=np.asarray([len(a) for a in arrays], dtype=np.int64),
                 token_counts=lengths,
                 ids=np.asarray([piece_id for piece_id, _ in pieces], dtype=str),
                 error=np.asarray(error or ""))
    os.replace(temporary, path)
    return source.source_id, error


def convert_sources(sources: Sequence[Source], cache_dir: Path | None = None, workers: int | None = None,
                    progress: bool = True) -> None:
    """Converts every source not yet in the cache, in parallel with a progress bar; resumable."""
    from tqdm import tqdm

    cache_dir = Path(cache_dir or default_cache_dir())
    todo = [s for s in sources if not _cache_path(cache_dir, s).exists()]
    if not todo:
        return
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    jobs = [(source, str(cache_dir)) for source in todo]
    bar = tqdm(total=len(jobs), desc=f"converting to {cache_dir}", unit="file", disable=not progress,
               file=sys.stderr)
    if workers == 1:
        for job in jobs:
            convert_source(job)
            bar.update()
    else:
        # fork: the workers share the parent's imports (music21 takes seconds to import) and use no torch.
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with context.Pool(workers) as pool:
            for _ in pool.imap_unordered(convert_source, jobs, chunksize=4):
                bar.update()
    bar.close()


# --- pieces, split ----------------------------------------------------------------------------------


@dataclass
class Piece:
    """One piece of music: its id, its notes (N, 4), the length of its unaugmented encoding, its style."""

    piece_id: str
    notes: np.ndarray
    token_count: int
    style: str = "any"


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
        with np.load(_cache_path(cache_dir, source)) as entry:
            error = str(entry["error"])
            if error:
                dataset.skipped += 1
                log.warning("skipped %s: %s", source.source_id, error)
                continue
            notes, counts = entry["notes"], entry["counts"]
            token_counts, ids = entry["token_counts"], entry["ids"]
        if not len(counts):
            continue
        split = np.split(notes, np.cumsum(counts)[:-1])
        for piece_id, piece_notes, token_count in zip(ids, split, token_counts, strict=True):
            piece = Piece(str(piece_id), piece_notes, int(token_count), source.style)
            (dataset.valid if is_valid_piece(piece.piece_id, valid_fraction) else dataset.train).append(piece)
    if not dataset.train and not dataset.valid:
        raise DataError(f"{data}: none of its {len(sources)} files could be read")
    return dataset


def save_token_pack(dataset: Dataset, path: str | os.PathLike) -> dict:
    """Writes every piece of a data set, unaugmented, into one token file; returns what it holds.

    The file (`*.tokens.npz`) holds the pieces' encodings as uint16 tokens end to end, where each
    piece starts, its id and its style: what training needs, without the MIDI files or music21.
    """
    path = Path(path)
    if not path.name.endswith(TOKEN_PACK_SUFFIX):
        raise DataError(f"{path.name}: a token pack's name ends in {TOKEN_PACK_SUFFIX}")
    pieces = dataset.train + dataset.valid
    encodings = [np.asarray(encode(array_to_notes(piece.notes)), dtype=np.uint16) for piece in pieces]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez_compressed(handle, tokens=np.concatenate(encodings) if encodings else np.zeros(0, np.uint16),
                            offsets=np.cumsum([0] + [len(e) for e in encodings]).astype(np.int64),
                            ids=np.asarray([piece.piece_id for piece in pieces], dtype=str),
                            styles=np.asarray([piece.style for piece in pieces], dtype=str))
    os.replace(temporary, path)
    return {"pieces": len(pieces), "tokens": int(sum(len(e) for e in encodings)), "bytes": path.stat().st_size}


def load_token_pack(path: str | os.PathLike, valid_fraction: float = VALID_FRACTION) -> Dataset:
    """The data set in a token file written by `save_token_pack`, split as its sources would be."""
    path = Path(path)
    try:
        with np.load(path) as pack:
            tokens, offsets, ids, styles = pack["tokens"], pack["offsets"], pack["ids"], pack["styles"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path.name}: not a token pack ({error})") from None
    shapes_agree = (tokens.ndim == offsets.ndim == ids.ndim == styles.ndim == 1 and len(offsets) == len(ids) + 1
                    and len(styles) == len(ids) and offsets[0] == 0 and offsets[-1] == len(tokens)
                    and bool((np.diff(offsets) >= 0).all()))
    if not shapes_agree:
        raise DataError(f"{path.name}: a damaged token pack (its tokens, piece offsets, ids and styles disagree)")
    dataset = Dataset()
    for index, (piece_id, style) in enumerate(zip(ids.tolist(), styles.tolist(), strict=True)):
        piece_tokens = tokens[offsets[index]:offsets[index + 1]].tolist()
        try:
            notes = decode(piece_tokens)
        except ValueError as error:  # the decoder's own check: a token outside the vocabulary
            raise DataError(f"{path.name}: a damaged token pack ({error})") from None
        piece = Piece(piece_id, notes_to_array(notes), len(piece_tokens), style if style in STYLES else "any")
        (dataset.valid if is_valid_piece(piece_id, valid_fraction) else dataset.train).append(piece)
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
    ticks = np.cumsum([events.shift_ticks(t) for t in tokens])
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


def training_sample(piece: Piece, length: int, seed: int, epoch: int, index: int,
                    mix: SampleMix = SampleMix()) -> np.ndarray:
    """Sample `index` of an epoch: the piece augmented, encoded and cut, reproducibly from the seed."""
    rng = np.random.default_rng([seed, epoch, index])
    tokens = encode(array_to_notes(augment(piece.notes, rng, mix.max_transpose)))
    style = "any" if rng.random() < mix.style_dropout else piece.style
    if rng.random() < mix.fim_rate:
        return fim_sample(tokens, style, length, rng)
    return crop(tokens + [END], length, rng, events.header(style) if rng.random() < HEADER_RATE else ())


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
