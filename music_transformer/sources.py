"""Where training music comes from, and its note cache: MIDI folders and the music21 corpus.

Sources are converted once, in parallel over the cores, into a cache of note arrays (one `.npz` per
source file, written atomically, so an interrupted conversion resumes where it stopped). The cache holds
notes rather than tokens because augmentation works on notes: transpose, stretch time, then encode, as
Magenta's score2perf does. Each note is also marked as its file's melody or not (a track named MELODY, as
POP909 names its lead line: `midi.read_midi_melody`), the part that accompaniment windows keep. The cache
lives in `$CONTINUO_CACHE` (default `~/.cache/continuo`), never in the repository.

Every source names the idiom of its music (`events.STYLES`): the music21 parts are `chorale`,
`renaissance` and `folk`, a MIDI folder given as `pop-piano=FOLDER` is `pop-piano` (and
`classical=FOLDER`, for the pianolatron rolls, `classical`), and a plain folder is `any`.
`data.load_dataset` reads the cache into pieces.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .events import NUM_PITCHES, STYLES, Note, encode, start_tick

MIDI_SUFFIXES = (".mid", ".midi")
CACHE_FORMAT = 2  # 2: each note marked as the melody track's or not

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
DEFAULT_BPM = 100.0  # music21 scores carry no performance tempo: this one, unless the score has a metronome mark
DEFAULT_VELOCITY = 80  # nor dynamics we trust: every note at mezzo-forte (bin 19)
# The corpus is read with music21, which only training needs: the `train` extra installs it, the studio does not.
TRAIN_EXTRA = 'pip install "continuo[train]"'


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
    """Every `.mid`/`.midi` file under `folder`, recursively, in a stable order; less the rolls a Pianolatron
    catalogue beside the folder marks as one-velocity (`left_out_rolls`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of MIDI files")
    left_out = left_out_rolls(folder)
    sources = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
                       and p.name.split("_")[0] not in left_out):
        stat = path.stat()
        source_id = path.relative_to(folder).as_posix()
        digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        sources.append(Source(str(path), source_id, f"midi/{digest[:20]}", "midi", style))
    return sources


# Pianolatron's rolls (../shared/data/pianolatron): `catalog.json`, in the folder or beside it, gives each roll's
# type by its id (the file name up to the first "_"). The 88-note rolls are plain player-piano rolls, every note
# at one velocity and no pedalling: music without dynamics, which would teach the model to drop them.
ROLL_CATALOG = "catalog.json"
LEFT_OUT_ROLL_TYPES = ("88-note",)


def left_out_rolls(folder: Path) -> frozenset[str]:
    """The roll ids that a Pianolatron `catalog.json` in `folder` or its parent marks as one-velocity rolls."""
    for catalog in (folder / ROLL_CATALOG, folder.parent / ROLL_CATALOG):
        if not catalog.is_file():
            continue
        try:
            entries = json.loads(catalog.read_text(encoding="utf-8"))
            return frozenset(str(entry["druid"]) for entry in entries if entry.get("type") in LEFT_OUT_ROLL_TYPES)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise DataError(f"{catalog}: not a roll catalogue ({error})") from None
    return frozenset()


def import_music21():
    """The music21 package, which reading the corpus needs; a DataError naming the extra when it is missing."""
    try:
        import music21
    except ImportError:
        raise DataError(f"the music21 corpus needs music21, which comes with the train extra: {TRAIN_EXTRA}") from None
    return music21


def is_corpus(data: str) -> bool:
    """Whether a data source names the music21 corpus (`corpus`, `corpus:bach,fiddle`)."""
    return data == "corpus" or data.startswith("corpus:")


def check_readable(specs: Sequence[str]) -> None:
    """Fails, before any work, when a data source needs a package that is not installed (music21)."""
    if any(is_corpus(spec) for spec in specs):
        import_music21()


def corpus_sources(parts: Sequence[str] = DEFAULT_CORPUS, limit: int | None = None) -> list[Source]:
    """Files of the music21 corpus subset `parts` (names of CORPUS_SUBSETS); `limit` caps each part."""
    import_music21()
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
    if is_corpus(data):
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


def note_keys(array: np.ndarray) -> list[tuple[int, int]]:
    """Each note's (pitch, start tick) on the codec's 10 ms grid, as `events.encode` places it."""
    return [(int(pitch), start_tick(start)) for pitch, start in array[:, [0, 2]].tolist()]


def melody_mask(array: np.ndarray, keys: frozenset[tuple[int, int]] | set[tuple[int, int]]) -> np.ndarray:
    """Which notes of `array` are in `keys` (`note_keys`), as a bool array: the melody track's notes."""
    return np.asarray([key in keys for key in note_keys(array)], dtype=bool) if keys else np.zeros(len(array), bool)


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


def read_source(source: Source) -> list[tuple[str, list[Note], frozenset[tuple[int, int]]]]:
    """The pieces in one source file as (piece id, notes, the (pitch, start tick) of its melody track's notes:
    `midi.read_midi_melody`); an opus (many tunes in one file) gives many."""
    if source.kind == "midi":
        from .midi import read_midi_melody

        return [(source.source_id, *read_midi_melody(source.path))]
    music21 = import_music21()

    parsed = music21.converter.parse(source.path)
    scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
    pieces = []
    for index, score in enumerate(scores):
        piece_id = source.source_id if len(scores) == 1 else f"{source.source_id}#{index}"
        pieces.append((piece_id, score_notes(score), frozenset()))
    return pieces


def cache_path(cache_dir: Path, source: Source) -> Path:
    """Where `source`'s notes are cached in `cache_dir`."""
    return cache_dir / f"notes-v{CACHE_FORMAT}" / f"{source.key}.npz"


def convert_source(job: tuple[Source, str]) -> tuple[str, str | None]:
    """Converts one source into its cache file (atomically); returns (source id, error or None).

    An unreadable file is cached as an error, so a later run skips it without parsing it again.
    """
    source, cache_dir = job
    path = cache_path(Path(cache_dir), source)
    error = None
    try:
        pieces = [piece for piece in read_source(source) if piece[1]]
    except Exception as exception:  # noqa: BLE001 - any parser failure: the file is skipped, never the run
        pieces = []
        error = (str(exception).strip().splitlines() or [type(exception).__name__])[0][:300]
    arrays = [notes_to_array(notes) for _, notes, _ in pieces]
    melody = [melody_mask(array, keys) for array, (_, _, keys) in zip(arrays, pieces, strict=True)]
    lengths = np.asarray([len(encode(notes)) for _, notes, _ in pieces], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle,
                 notes=np.concatenate(arrays) if arrays else np.zeros((0, 4), np.float32),
                 counts=np.asarray([len(a) for a in arrays], dtype=np.int64),
                 melody=np.concatenate(melody) if melody else np.zeros(0, bool),
                 token_counts=lengths,
                 ids=np.asarray([piece_id for piece_id, _, _ in pieces], dtype=str),
                 error=np.asarray(error or ""))
    os.replace(temporary, path)
    return source.source_id, error


def convert_sources(sources: Sequence[Source], cache_dir: Path | None = None, workers: int | None = None,
                    progress: bool = True) -> None:
    """Converts every source not yet in the cache, in parallel with a progress bar; resumable."""
    from tqdm import tqdm

    cache_dir = Path(cache_dir or default_cache_dir())
    todo = [s for s in sources if not cache_path(cache_dir, s).exists()]
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
