"""Training data: MIDI folders and the music21 corpus, a token-free note cache, the split and augmentation.

Sources are converted once, in parallel over the cores, into a cache of note arrays (one `.npz` per
source file, written atomically, so an interrupted conversion resumes where it stopped). The cache holds
notes rather than tokens because augmentation works on notes: transpose, stretch time, then encode, as
Magenta's score2perf does. The cache lives in `$CONTINUO_CACHE` (default `~/.cache/continuo`), never in
the repository.

The split is by piece and deterministic: a piece goes to validation when a hash of its id says so, so
the same piece never lands in both, whatever machine or order the files come in.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import ContinuoError
from .events import END, NUM_PITCHES, PAD, START, Note, encode

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
DEFAULT_BPM = 100.0  # music21 scores carry no performance tempo: this one, unless the score has a metronome mark
DEFAULT_VELOCITY = 80  # nor dynamics we trust: every note at mezzo-forte (bin 19)


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


def default_cache_dir() -> Path:
    """`$CONTINUO_CACHE`, or `~/.cache/continuo`."""
    return Path(os.environ.get("CONTINUO_CACHE") or Path.home() / ".cache" / "continuo")


def midi_sources(folder: str | os.PathLike) -> list[Source]:
    """Every `.mid`/`.midi` file under `folder`, recursively, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of MIDI files")
    sources = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()):
        stat = path.stat()
        source_id = path.relative_to(folder).as_posix()
        digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        sources.append(Source(str(path), source_id, f"midi/{digest[:20]}", "midi"))
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
            sources.append(Source(chosen[stem][1], stem, f"music21/{stem}", "music21"))
    return sources


def resolve_sources(data: str, limit: int | None = None) -> list[Source]:
    """`corpus` (the default subset), `corpus:bach,fiddle`, or a folder of MIDI files."""
    if data == "corpus" or data.startswith("corpus:"):
        parts = tuple(p for p in data.partition(":")[2].split(",") if p) or DEFAULT_CORPUS
        return corpus_sources(parts, limit)
    sources = midi_sources(data)
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
    except Exception as exception:  # any parser failure: the file is skipped, never the run
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
    """One piece of music: its id, its notes (N, 4) and the length of its unaugmented encoding."""

    piece_id: str
    notes: np.ndarray
    token_count: int


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


def load_dataset(data: str, cache_dir: Path | None = None, limit: int | None = None, workers: int | None = None,
                 progress: bool = True, valid_fraction: float = VALID_FRACTION) -> Dataset:
    """Converts (once) and loads a data source: a MIDI folder, `corpus` or `corpus:part,part`."""
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
        for piece_id, piece_notes, token_count in zip(ids, np.split(notes, np.cumsum(counts)[:-1]), token_counts):
            piece = Piece(str(piece_id), piece_notes, int(token_count))
            (dataset.valid if is_valid_piece(piece.piece_id, valid_fraction) else dataset.train).append(piece)
    if not dataset.train and not dataset.valid:
        raise DataError(f"{data}: none of its {len(sources)} files could be read")
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


def piece_tokens(notes: np.ndarray) -> list[int]:
    """A whole piece as a training sequence: START, its events, END."""
    return [START] + encode(array_to_notes(notes)) + [END]


def crop(tokens: Sequence[int], length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of `length` tokens (inputs and targets: length + 1 of them), PAD-filled if short.

    A crop at offset 0 begins with START, so the model learns how pieces begin.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    if len(tokens) <= length + 1:
        return np.concatenate([tokens, np.full(length + 1 - len(tokens), PAD, np.int64)])
    offset = int(rng.integers(0, len(tokens) - length))
    return tokens[offset:offset + length + 1]


def epoch_plan(pieces: Sequence[Piece], length: int, seed: int, epoch: int) -> np.ndarray:
    """The piece of every sample of an epoch, shuffled: each piece once per `length` tokens it holds.

    So one epoch sees about every token once, and a long piece is not sampled as rarely as a short one.
    """
    counts = np.asarray([max(1, round(p.token_count / length)) for p in pieces], dtype=np.int64)
    plan = np.repeat(np.arange(len(pieces)), counts)
    np.random.default_rng([seed, epoch]).shuffle(plan)
    return plan


def training_sample(piece: Piece, length: int, seed: int, epoch: int, index: int,
                    max_transpose: int = 3) -> np.ndarray:
    """Sample `index` of an epoch: the piece augmented, encoded and cropped, reproducibly from the seed."""
    rng = np.random.default_rng([seed, epoch, index])
    return crop(piece_tokens(augment(piece.notes, rng, max_transpose)), length, rng)


def training_batches(pieces: Sequence[Piece], length: int, batch_size: int, seed: int, epoch: int = 0,
                     start: int = 0, rank: int = 0, world_size: int = 1,
                     max_transpose: int = 3) -> Iterator[tuple[int, np.ndarray]]:
    """Batches (B, length + 1) of an epoch from batch `start` on, as (batch index, array).

    With several processes each rank takes its own rows of every batch, so the ranks together see the
    same samples as one process would; resuming at batch `start` repeats nothing and skips nothing.
    """
    plan = epoch_plan(pieces, length, seed, epoch)
    global_batch = batch_size * world_size
    batches = len(plan) // global_batch if len(plan) >= global_batch else 1
    for batch in range(start, batches):
        rows = []
        for row in range(batch_size):
            index = (batch * global_batch + rank * batch_size + row) % len(plan)
            rows.append(training_sample(pieces[plan[index]], length, seed, epoch, index, max_transpose))
        yield batch, np.stack(rows)


def batches_per_epoch(pieces: Sequence[Piece], length: int, batch_size: int, world_size: int = 1) -> int:
    """How many batches `training_batches` yields for a whole epoch."""
    samples = sum(max(1, round(p.token_count / length)) for p in pieces)
    return max(1, samples // (batch_size * world_size))


def validation_chunks(pieces: Sequence[Piece], length: int, max_chunks: int | None = None) -> np.ndarray:
    """Fixed, unaugmented windows of the valid pieces (length + 1 tokens, PAD-filled), for the valid NLL.

    Each piece is cut at 0, length, 2 length, ... so every token is predicted from a context within
    the training length.
    """
    chunks = []
    for piece in pieces:
        tokens = piece_tokens(piece.notes)
        for offset in range(0, max(1, len(tokens) - 1), length):
            window = tokens[offset:offset + length + 1]
            chunks.append(window + [PAD] * (length + 1 - len(window)))
    if max_chunks is not None and len(chunks) > max_chunks:
        pick = np.linspace(0, len(chunks) - 1, max_chunks).round().astype(int)
        chunks = [chunks[i] for i in pick]
    return np.asarray(chunks, dtype=np.int64).reshape(-1, length + 1)
