"""The song: the one document the studio edits, with its undo commands. Testable without a window.

Notes live on the grid in beats (a beat is a quarter note); `music_transformer` works in seconds. The
conversion between the two happens here and only here: `Song.to_seconds`, `Song.to_beats`,
`Song.performance_notes` and `Song.notes_from_performance`.

Every change goes through one primitive, `Song._apply`, which takes a `SongDiff` (notes removed, notes
added, metadata before and after). Undo commands hold a diff and apply it forwards or backwards; the
autosave journal records every applied diff, so replaying the journal restores every edit.

Music that arrives over time (a continuation being written, a take being played) comes in through one
streaming edit: `begin_stream(part)`, `append(notes)` as they arrive (drawn at once), then `commit()` (one
undo step) or `abort()`. While a stream is open the song is locked: every other edit raises
`SongLockedError` until it ends.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from music_transformer import Note
from music_transformer.events import STYLES
from music_transformer.keys import PIANO_RANGE, SCALES

from .limits import MAX_BEATS, MAX_NOTES

ANY_STYLE = STYLES[0]  # "any": no idiom named, the model tells from the music
KEY_MODES = ("off", "motif", "chosen")  # no key lock; the key detected in the music before; a key chosen
DYNAMICS = ("model", "motif")  # velocities as the model writes them; kept within the motif's range
MOTIF = "motif"
CONTINUATION = "continuation"
PARTS = (MOTIF, CONTINUATION)

MIN_TEMPO = 20.0
MAX_TEMPO = 400.0
MIN_LENGTH = 1e-3  # beats; a note never collapses to nothing
_LONG_NOTE_BEATS = 16.0  # notes longer than this are kept out of the time index's search window


@dataclass(frozen=True, slots=True)
class SongNote:
    """A note on the grid: MIDI pitch and velocity, start and length in beats, and its part."""

    id: int
    pitch: int
    velocity: int
    start: float
    length: float
    part: str = MOTIF

    @property
    def end(self) -> float:
        """Where the note ends, in beats."""
        return self.start + self.length

    def with_(self, **changes: Any) -> SongNote:
        """A copy with some fields changed, clamped to the valid ranges."""
        note = dataclasses.replace(self, **changes)
        return dataclasses.replace(
            note,
            pitch=min(max(int(note.pitch), 0), 127),
            velocity=min(max(int(note.velocity), 1), 127),
            start=max(float(note.start), 0.0),
            length=max(float(note.length), MIN_LENGTH),
        )


@dataclass(frozen=True)
class GenerationSettings:
    """How the continuation is sampled; the generation panel edits these, the session file keeps them."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    length_beats: float = 16.0
    seed: int | None = None
    variations: int = 1  # continuations written per Continue, to audition and pick one
    length_unit: str = "bars"  # how the panel shows the length: "bars" or "seconds"
    most_likely: bool = False  # beam search for the most likely continuation instead of sampling
    style: str = ANY_STYLE  # the idiom to continue in (music_transformer.events.STYLES); "any": the model tells
    key_mode: str = "off"  # KEY_MODES: with a lock, no note outside the key's scale is written
    key_tonic: int = 0  # the chosen key's tonic, a pitch class (0 = C)
    key_scale: str = "major"  # the chosen key's scale (music_transformer.keys.SCALES)
    lowest: int = PIANO_RANGE[0]  # the lowest and highest pitch written (default the piano's 88 keys)
    highest: int = PIANO_RANGE[1]
    snap: bool = False  # written notes start and end on the roll's grid
    dynamics: str = "model"  # DYNAMICS
    keep_existing: bool = False  # Fill and Continue from Playhead keep the notes in their way (only add)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerationSettings:
        """Settings from JSON values; unknown keys are ignored, missing ones take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        settings = cls(**values)
        if not (0.0 < float(settings.temperature) <= 10.0):
            raise ValueError(f"temperature {settings.temperature} is outside 0..10")
        if not (0 <= int(settings.top_k) <= 1000):
            raise ValueError(f"top-k {settings.top_k} is outside 0..1000")
        if not (0.0 < float(settings.top_p) <= 1.0):
            raise ValueError(f"top-p {settings.top_p} is outside 0..1")
        if not (0.0 < float(settings.length_beats) <= 10_000):
            raise ValueError(f"length {settings.length_beats} beats is out of range")
        if settings.seed is not None and not isinstance(settings.seed, int):
            raise ValueError("the seed must be a whole number")
        if not (isinstance(settings.variations, int) and 1 <= settings.variations <= 8):
            raise ValueError(f"{settings.variations} variations: choose 1 to 8")
        if settings.length_unit not in ("bars", "seconds"):
            raise ValueError(f"unknown length unit {settings.length_unit!r}")
        if settings.style not in STYLES:
            raise ValueError(f"unknown style {settings.style!r}")
        if settings.key_mode not in KEY_MODES:
            raise ValueError(f"unknown key lock {settings.key_mode!r}")
        if not (isinstance(settings.key_tonic, int) and 0 <= settings.key_tonic < 12):
            raise ValueError(f"key tonic {settings.key_tonic!r} is not a pitch class 0..11")
        if settings.key_scale not in SCALES:
            raise ValueError(f"unknown scale {settings.key_scale!r}")
        pitches = (settings.lowest, settings.highest)
        if not (all(isinstance(p, int) for p in pitches) and 0 <= settings.lowest <= settings.highest <= 127):
            raise ValueError(f"pitch range {settings.lowest!r}..{settings.highest!r} is not within 0..127")
        if not isinstance(settings.snap, bool) or not isinstance(settings.keep_existing, bool):
            raise ValueError("snap and keep_existing are true or false")
        if settings.dynamics not in DYNAMICS:
            raise ValueError(f"unknown dynamics {settings.dynamics!r}")
        return settings


MAX_VARIATIONS = 8
MAX_VARIATION_NOTES = 200_000  # notes in one variation of a session file


class VariationNote(NamedTuple):
    """A note of a variation kept aside: pitch, velocity, start and length in beats."""

    pitch: int
    velocity: int
    start: float
    length: float


@dataclass(frozen=True)
class WrittenVariation:
    """One variation as written: its seed and its notes (in beats)."""

    number: int
    seed: int
    notes: tuple[VariationNote, ...]
    complete: bool = True  # False: cut short (cancelled)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        notes = [[pitch, velocity, round(start, 9), round(length, 9)] for pitch, velocity, start, length in self.notes]
        return {"number": self.number, "seed": self.seed, "complete": self.complete, "notes": notes}

    @classmethod
    def from_dict(cls, data: dict) -> WrittenVariation:
        """A variation from JSON values, checked."""
        number, seed = data["number"], data["seed"]
        if not (isinstance(number, int) and 0 <= number < MAX_VARIATIONS and isinstance(seed, int)):
            raise ValueError(f"variation {number!r} with seed {seed!r}")
        rows = data["notes"]
        if not isinstance(rows, list) or len(rows) > MAX_VARIATION_NOTES:
            raise ValueError(f"variation {number + 1} holds too many notes")
        notes = []
        for pitch, velocity, start, length in rows:
            pitch, velocity, start, length = int(pitch), int(velocity), float(start), float(length)
            if not (0 <= pitch <= 127 and 1 <= velocity <= 127 and 0 <= start < 1e7 and 0 < length < 1e7):
                raise ValueError(f"a note of variation {number + 1} has pitch {pitch}, starts at {start} beats")
            notes.append(VariationNote(pitch, velocity, start, length))
        return cls(number, seed, tuple(notes), bool(data.get("complete", True)))


@dataclass(frozen=True)
class VariationSet:
    """The variations written by one Continue or Fill, to audition and pick from until the continuation they
    were written for is accepted or discarded. Kept in the session; outside the undo history."""

    kind: str  # "continue" or "fill"
    start: float  # beats: where they begin (a pick is heard from here)
    count: int  # how many were asked for
    settings: GenerationSettings
    variations: tuple[WrittenVariation, ...] = ()
    chosen: int = 0
    owned: frozenset[int] = (
        frozenset()
    )  # ids of the notes the set put in the song; live while one is a continuation note

    def variation(self, number: int) -> WrittenVariation | None:
        """The variation with this number, if it was written."""
        return next((variation for variation in self.variations if variation.number == number), None)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "kind": self.kind,
            "start": self.start,
            "count": self.count,
            "settings": self.settings.to_dict(),
            "chosen": self.chosen,
            "owned": sorted(self.owned),
            "variations": [variation.to_dict() for variation in self.variations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> VariationSet:
        """A set from JSON values, checked (ValueError, KeyError or TypeError names what is wrong)."""
        kind, count, chosen = data["kind"], data["count"], data.get("chosen", 0)
        if kind not in ("continue", "fill"):
            raise ValueError(f"variations of an unknown kind {kind!r}")
        if not (isinstance(count, int) and 1 <= count <= MAX_VARIATIONS and isinstance(chosen, int)):
            raise ValueError(f"{count!r} variations")
        start = float(data["start"])
        if not 0 <= start < 1e7:
            raise ValueError(f"variations start at {start} beats")
        variations = tuple(WrittenVariation.from_dict(dict(item)) for item in data["variations"])
        if len(variations) > count or len({variation.number for variation in variations}) != len(variations):
            raise ValueError("the variations are repeated")
        owned = frozenset(int(note_id) for note_id in data.get("owned", []))
        settings = GenerationSettings.from_dict(dict(data["settings"]))
        return cls(kind, start, count, settings, variations, chosen, owned)


DEFAULT_MODEL = "default"


def default_meta() -> dict[str, Any]:
    """The metadata of a new song (`variations`: the set being auditioned, kept outside the undo history)."""
    return {
        "tempo": 120.0,
        "time_signature": (4, 4),
        "settings": GenerationSettings(),
        "model": DEFAULT_MODEL,
        "variations": None,
    }


@dataclass(frozen=True)
class SongDiff:
    """One change to the song: notes removed and added (by id), metadata before and after."""

    removed: tuple[SongNote, ...] = ()
    added: tuple[SongNote, ...] = ()
    meta_before: dict = field(default_factory=dict)
    meta_after: dict = field(default_factory=dict)

    def inverse(self) -> SongDiff:
        """The diff that undoes this one."""
        return SongDiff(self.added, self.removed, self.meta_after, self.meta_before)

    def is_empty(self) -> bool:
        """Whether applying it changes nothing."""
        return not (self.removed or self.added or self.meta_before != self.meta_after)


class SongEditCommand(QUndoCommand):
    """An undoable song edit: a diff applied on redo and reversed on undo. Only `Song` makes them."""

    def __init__(
        self, song: Song, diff: SongDiff, text: str, merge_key: int = -1, already_applied: bool = False
    ) -> None:
        super().__init__(text)
        self.song = song
        self.diff = diff
        self._merge_key = merge_key
        self._skip_first_redo = already_applied

    def id(self) -> int:
        """Commands with the same non-negative id merge (a tempo spin box dragged through values)."""
        return self._merge_key

    def mergeWith(self, other: QUndoCommand) -> bool:
        """Folds a following metadata-only edit of the same kind into this one."""
        if not isinstance(other, SongEditCommand) or other.id() != self.id() or self.id() < 0:
            return False
        if self.diff.removed or self.diff.added or other.diff.removed or other.diff.added:
            return False
        self.diff = SongDiff(meta_before=self.diff.meta_before, meta_after=other.diff.meta_after)
        return True

    def redo(self) -> None:
        """Applies the diff (unless it was applied already while streaming in)."""
        if self._skip_first_redo:
            self._skip_first_redo = False
            return
        self.song._apply(self.diff)

    def undo(self) -> None:
        """Applies the inverse diff."""
        self.song._apply(self.diff.inverse())


@dataclass(frozen=True)
class NoteArrays:
    """The notes as parallel numpy arrays, sorted by start."""

    version: int
    ids: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    continuation: np.ndarray  # bool: the note belongs to the continuation

    @classmethod
    def from_notes(cls, notes: Sequence[SongNote], version: int = -1) -> NoteArrays:
        """Columns from notes (keeps their order)."""
        return cls(
            version,
            np.fromiter((n.id for n in notes), np.int64, len(notes)),
            np.fromiter((n.pitch for n in notes), np.int64, len(notes)),
            np.fromiter((n.velocity for n in notes), np.int64, len(notes)),
            np.fromiter((n.start for n in notes), np.float64, len(notes)),
            np.fromiter((n.start + n.length for n in notes), np.float64, len(notes)),
            np.fromiter((n.part == CONTINUATION for n in notes), bool, len(notes)),
        )


class SongLockedError(RuntimeError):
    """An edit was attempted while music streams in (a continuation being written, a take being recorded)."""


STREAM_TEXT = {CONTINUATION: "Continue", MOTIF: "Record"}  # the undo step a stream into each part becomes


@dataclass
class _Stream:
    """A streaming edit in progress: what it replaced, what has arrived, and how it lands."""

    part: str
    text: str
    quantize: float | None
    removed: tuple[SongNote, ...]
    added: list[SongNote] = field(default_factory=list)


class Song(QObject):
    """The document: tempo, time signature, motif and continuation notes, generation settings, model."""

    notes_changed = Signal()
    meta_changed = Signal(str)  # the key that changed: tempo, time_signature, settings, model
    writing_changed = Signal(bool)  # a continuation is being written (streamed in) or not
    applied = Signal(object)  # every SongDiff applied, in order: the autosave journal listens
    reset = Signal()  # the whole document was replaced (open, new, restore)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self._notes: dict[int, SongNote] = {}
        self._meta: dict[str, Any] = default_meta()
        self._next_id = 1
        self._index: tuple | None = None
        self._arrays: NoteArrays | None = None
        self.version = 0  # goes up whenever the notes change: views key their caches on it
        self._stream: _Stream | None = None

    # --- reading --------------------------------------------------------------------------------

    @property
    def tempo(self) -> float:
        """Beats (quarter notes) per minute."""
        return self._meta["tempo"]

    @property
    def time_signature(self) -> tuple[int, int]:
        """(beats per bar, note value of the beat), as written on a score."""
        return self._meta["time_signature"]

    @property
    def settings(self) -> GenerationSettings:
        """The generation settings."""
        return self._meta["settings"]

    @property
    def model(self) -> str:
        """Which model continues this song (a checkpoint name or path)."""
        return self._meta["model"]

    @property
    def variations(self) -> VariationSet | None:
        """The variations written for the continuation, while it can still be swapped for one of them."""
        return self._meta.get("variations")

    @property
    def beats_per_bar(self) -> float:
        """The bar length in quarter-note beats (6/8 is 3 beats)."""
        numerator, denominator = self.time_signature
        return numerator * 4.0 / denominator

    @property
    def is_writing(self) -> bool:
        """Whether music is streaming in (a continuation, a take); edits wait until it is done."""
        return self._stream is not None

    @property
    def stream_part(self) -> str | None:
        """The part music is streaming into (None when nothing streams)."""
        return self._stream.part if self._stream is not None else None

    def streamed_ids(self) -> frozenset[int]:
        """The notes the open stream has put in so far (playback hears them through its live feed instead)."""
        return frozenset(note.id for note in self._stream.added) if self._stream is not None else frozenset()

    def lock_message(self) -> str:
        """Why edits wait now, for the musician ("" when they do not)."""
        if self._stream is None:
            return ""
        if self._stream.part == CONTINUATION:
            return "The continuation is being written; edit the notes when it is done"
        return "A take is being recorded; edit the notes when it is done"

    def motif_end(self) -> float:
        """Where the motif ends, in beats: a continuation starts here."""
        return max((note.end for note in self._notes.values() if note.part == MOTIF), default=0.0)

    @property
    def is_modified(self) -> bool:
        """Whether there are changes since the last save."""
        return not self.undo_stack.isClean()

    def meta(self) -> dict[str, Any]:
        """A copy of the metadata."""
        return dict(self._meta)

    def __len__(self) -> int:
        return len(self._notes)

    def note(self, note_id: int) -> SongNote | None:
        """The note with this id, if it exists."""
        return self._notes.get(note_id)

    def notes(self, part: str | None = None) -> list[SongNote]:
        """All notes (or one part's), sorted by start, then pitch."""
        ordered = self._time_index()[4]
        if part is None:
            return list(ordered)
        return [note for note in ordered if note.part == part]

    def note_arrays(self) -> NoteArrays:
        """Every note as numpy columns (sorted by start), for drawing thousands of notes at once."""
        if self._arrays is None or self._arrays.version != self.version:
            self._arrays = NoteArrays.from_notes(self.notes(), self.version)
        return self._arrays

    def end_beat(self) -> float:
        """Where the last note ends, in beats (0 for an empty song)."""
        return max((note.end for note in self._notes.values()), default=0.0)

    def notes_in(self, start: float, end: float, low_pitch: int = 0, high_pitch: int = 127) -> list[SongNote]:
        """Notes that overlap the beats [start, end] and pitches [low, high], sorted by start."""
        starts, ordered, window, long_notes, _ = self._time_index()
        first = bisect.bisect_left(starts, start - window)
        last = bisect.bisect_right(starts, end)
        found = [note for note in ordered[first:last] if note.end >= start and low_pitch <= note.pitch <= high_pitch]
        if long_notes:
            found.extend(
                note
                for note in long_notes
                if note.start <= end and note.end >= start and low_pitch <= note.pitch <= high_pitch
            )
            found.sort(key=lambda note: (note.start, note.pitch))
        return found

    def note_at(self, beat: float, pitch: int) -> SongNote | None:
        """The note under a point of the grid (the latest-starting one where notes overlap)."""
        hits = [note for note in self.notes_in(beat, beat, pitch, pitch) if note.start <= beat < note.end]
        return hits[-1] if hits else None

    def _time_index(self) -> tuple[list[float], list[SongNote], float, list[SongNote], list[SongNote]]:
        """Notes sorted by start, so that a view finds the visible ones by bisection, not by a scan.

        Returns (starts of the short notes, the short notes, the longest short note's length, the long
        notes, every note in order). Long notes are kept apart so that one held chord does not widen
        the search window for all the others.
        """
        if self._index is None:
            ordered = sorted(self._notes.values(), key=lambda note: (note.start, note.pitch, note.id))
            short = [note for note in ordered if note.length <= _LONG_NOTE_BEATS]
            long_notes = [note for note in ordered if note.length > _LONG_NOTE_BEATS]
            window = max((note.length for note in short), default=0.0)
            self._index = ([note.start for note in short], short, window, long_notes, ordered)
        return self._index

    # --- beats and seconds: the one place they meet --------------------------------------------

    def to_seconds(self, beats: float) -> float:
        """Beats on this song's grid to seconds at its tempo."""
        return beats * 60.0 / self.tempo

    def to_beats(self, seconds: float) -> float:
        """Seconds to beats on this song's grid at its tempo."""
        return seconds * self.tempo / 60.0

    def performance_notes(self, part: str | None = None) -> list[Note]:
        """The notes (or one part's) in seconds, for MIDI export, playback and generation."""
        return [
            Note(note.pitch, note.velocity, self.to_seconds(note.start), self.to_seconds(note.end))
            for note in self.notes(part)
        ]

    def notes_from_performance(
        self, notes: Iterable[Note], part: str = MOTIF, offset_beats: float = 0.0, tempo: float | None = None
    ) -> list[SongNote]:
        """New grid notes (fresh ids, not yet in the song) from notes in seconds, at `tempo` or the song's."""
        beats_per_second = (tempo or self.tempo) / 60.0
        return [
            self.new_note(
                note.pitch,
                note.velocity,
                offset_beats + note.start * beats_per_second,
                (note.end - note.start) * beats_per_second,
                part,
            )
            for note in notes
        ]

    # --- editing: each call pushes one undoable command ----------------------------------------

    def new_note(self, pitch: int, velocity: int, start: float, length: float, part: str = MOTIF) -> SongNote:
        """A note with a fresh id, not yet in the song (pass it to `add_notes`)."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}")
        note_id = self._next_id
        self._next_id += 1
        return SongNote(note_id, 0, 1, 0.0, 1.0, part).with_(pitch=pitch, velocity=velocity, start=start, length=length)

    def add_notes(self, notes: Sequence[SongNote], text: str = "Add notes") -> None:
        """Adds notes (made with `new_note`)."""
        self.edit(added=notes, text=text)

    def remove_notes(self, note_ids: Iterable[int], text: str = "Delete notes") -> None:
        """Removes the notes with these ids."""
        self.edit(removed_ids=note_ids, text=text)

    def replace_notes(self, notes: Sequence[SongNote], text: str = "Edit notes") -> bool:
        """Replaces notes by id with changed copies (moved, resized, transposed, new velocity); False if none differ."""
        notes = [note for note in notes if self._notes.get(note.id) != note]
        return self.edit(removed_ids=[note.id for note in notes], added=notes, text=text)

    def edit(
        self,
        removed_ids: Iterable[int] = (),
        added: Sequence[SongNote] = (),
        text: str = "Edit",
        meta: dict[str, Any] | None = None,
        merge_key: int = -1,
    ) -> bool:
        """The general edit: remove notes by id, add notes, change metadata; one undo step.

        Returns False (and changes nothing) when there is nothing to change.
        """
        if self._stream is not None:
            raise SongLockedError(self.lock_message())
        removed = tuple(self._notes[note_id] for note_id in dict.fromkeys(removed_ids) if note_id in self._notes)
        meta = {key: value for key, value in (meta or {}).items() if self._meta.get(key) != value}
        for key in meta:
            if key not in self._meta:
                raise KeyError(f"unknown song property {key!r}")
        diff = SongDiff(removed, tuple(added), {key: self._meta[key] for key in meta}, meta)
        if diff.is_empty():
            return False
        self.undo_stack.push(SongEditCommand(self, diff, text, merge_key))
        return True

    def set_tempo(self, bpm: float) -> None:
        """Changes the tempo; notes keep their beats, so they play faster or slower."""
        bpm = float(bpm)
        if not MIN_TEMPO <= bpm <= MAX_TEMPO:
            raise ValueError(f"the tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} BPM")
        self.edit(meta={"tempo": bpm}, text=f"Tempo {bpm:g} BPM", merge_key=1)

    def set_time_signature(self, numerator: int, denominator: int) -> None:
        """Changes the time signature (the bar lines move; the notes stay)."""
        if not (1 <= numerator <= 32 and denominator in (1, 2, 4, 8, 16, 32)):
            raise ValueError(f"{numerator}/{denominator} is not a time signature Continuo supports")
        self.edit(
            meta={"time_signature": (int(numerator), int(denominator))},
            text=f"Time signature {numerator}/{denominator}",
            merge_key=2,
        )

    def set_settings(self, settings: GenerationSettings) -> None:
        """Changes the generation settings."""
        self.edit(meta={"settings": settings}, text="Generation settings", merge_key=3)

    def set_model(self, model: str) -> None:
        """Chooses the model that continues the song."""
        self.edit(meta={"model": str(model)}, text="Choose model")

    def set_variations(self, variations: VariationSet | None) -> None:
        """Records the variations written for the continuation (None: the set has ended). Not an edit: it stays
        outside the undo history (picking one is the edit), and a session keeps it."""
        if self._meta.get("variations") != variations:
            self._meta["variations"] = variations
            self.meta_changed.emit("variations")

    def replace_motif(self, notes: Sequence[SongNote], tempo: float | None = None, text: str = "Import motif") -> None:
        """Replaces the motif with these notes (an import), keeping the continuation."""
        self.edit(
            removed_ids=[note.id for note in self._notes.values() if note.part == MOTIF],
            added=[note.with_(part=MOTIF) for note in notes],
            meta={"tempo": float(tempo)} if tempo else None,
            text=text,
        )

    def quantize(self, note_ids: Iterable[int], step: float, ends: bool = False, text: str = "Quantize") -> bool:
        """Moves the notes' starts (and ends) to the nearest grid step, as one undo step; False if none moved."""
        notes = [note for note in (self._notes.get(note_id) for note_id in note_ids) if note is not None]
        return self.replace_notes([quantized(note, step, ends) for note in notes], text)

    def accept_continuation(self) -> bool:
        """The continuation becomes part of the motif, so that it can be continued again."""
        continuation = [note for note in self._notes.values() if note.part == CONTINUATION]
        if not continuation:
            return False
        return self.edit(
            removed_ids=[note.id for note in continuation],
            added=[note.with_(part=MOTIF) for note in continuation],
            text="Accept continuation",
        )

    def discard_continuation(self) -> bool:
        """Removes the continuation."""
        continuation = [note.id for note in self._notes.values() if note.part == CONTINUATION]
        return self.edit(removed_ids=continuation, text="Discard continuation") if continuation else False

    # --- music streaming in: one path for Continue, recording and the duet -------------------------

    def begin_stream(
        self, part: str, text: str | None = None, quantize: float | None = None, replace: Iterable[int] | None = None
    ) -> None:
        """Opens a streaming edit into `part` and locks the song until `commit` or `abort`.

        A stream into the continuation replaces the old one (taken out now, put back by `abort`); a
        stream into the motif (a take) adds to it. `replace` (note ids) names the notes to take out
        instead (Fill replaces the notes in its range, of either part). `quantize` (beats) puts each
        arriving note's start on that grid. The whole stream becomes one undo step, named `text`
        (Continue, Fill, Record).
        """
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}")
        if self._stream is not None:
            raise SongLockedError(self.lock_message())
        if replace is not None:
            old = tuple(self._notes[note_id] for note_id in dict.fromkeys(replace) if note_id in self._notes)
        elif part == CONTINUATION:
            old = tuple(note for note in self._notes.values() if note.part == CONTINUATION)
        else:
            old = ()
        if old:
            self._apply(SongDiff(removed=old))
        self._stream = _Stream(part, text or STREAM_TEXT[part], quantize, old)
        self.writing_changed.emit(True)

    def append(self, notes: Iterable[Note], part: str | None = None) -> list[SongNote]:
        """Adds notes that arrived (in seconds from the song's start) to the open stream; they are drawn at once.

        They go into the stream's part unless `part` names another (the duet's answers land in the
        continuation of a take).
        """
        stream = self._stream
        if stream is None:
            raise RuntimeError("call begin_stream() first")
        added = self.notes_from_performance(notes, part or stream.part)
        if stream.quantize:
            added = [quantized(note, stream.quantize) for note in added]
        # a take or a duet left running for hours stops growing at the song's limits (limits.py), so
        # whatever streams in stays a song the studio can draw, save and read back
        added = [
            note if note.end <= MAX_BEATS else note.with_(length=MAX_BEATS - note.start)
            for note in added
            if note.start + MIN_LENGTH <= MAX_BEATS
        ][: max(0, MAX_NOTES - len(self._notes))]
        if added:
            stream.added.extend(added)
            self._apply(SongDiff(added=tuple(added)))
        return added

    def commit(self) -> bool:
        """Ends the stream: what arrived (and what it replaced) becomes one undo step; False if nothing changed."""
        stream, self._stream = self._stream, None
        if stream is None:
            return False
        diff = SongDiff(stream.removed, tuple(stream.added))
        if not diff.is_empty():
            self.undo_stack.push(SongEditCommand(self, diff, stream.text, already_applied=True))
        self.writing_changed.emit(False)
        return not diff.is_empty()

    def abort(self) -> None:
        """Ends the stream and takes it back: its notes go, what it replaced returns."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._apply(SongDiff(tuple(stream.added), stream.removed))
        self.writing_changed.emit(False)

    # --- whole-document operations (not undoable: they start a new history) --------------------

    def load(self, notes: Iterable[SongNote], meta: dict[str, Any] | None = None) -> None:
        """Replaces the whole document (open, new, restore) and clears the undo history."""
        if self._stream is not None:
            self.abort()
        self._notes = {note.id: note for note in notes}
        self._meta = default_meta()
        self._meta.update(meta or {})
        self._next_id = max(self._notes, default=0) + 1
        self._index = None
        self.version += 1
        self.undo_stack.clear()
        self.reset.emit()
        self.notes_changed.emit()
        for key in self._meta:
            self.meta_changed.emit(key)

    def next_id(self) -> int:
        """The id the next new note will get (kept by the autosave so that ids never repeat)."""
        return self._next_id

    def apply_journal_diff(self, diff: SongDiff) -> None:
        """Applies a recorded diff (autosave restore), ids as recorded, outside the undo history."""
        self._apply(diff)

    def _apply(self, diff: SongDiff) -> None:
        """The one primitive that changes the document."""
        for note in diff.removed:
            self._notes.pop(note.id, None)
        for note in diff.added:
            self._notes[note.id] = note
            if note.id >= self._next_id:
                self._next_id = note.id + 1
        self._meta.update(diff.meta_after)
        if diff.removed or diff.added:
            self._index = None
            self.version += 1
        self.applied.emit(diff)
        if diff.removed or diff.added:
            self.notes_changed.emit()
        for key in diff.meta_after:
            self.meta_changed.emit(key)


def quantized(note: SongNote, step: float, ends: bool = False) -> SongNote:
    """The quantizer: the note's start moved to the nearest grid step, its length kept; with `ends`, its end
    moved to the nearest step too (at least one step after the start)."""
    start = snap_beat(note.start, step)
    length = max(snap_beat(note.end, step) - start, step) if ends else note.length
    return note.with_(start=start, length=length)


def snap_beat(beat: float, step: float | None) -> float:
    """A beat rounded to the nearest grid step (no snapping when step is None)."""
    if not step:
        return beat
    return round(round(beat / step) * step, 9)


def floor_beat(beat: float, step: float | None) -> float:
    """A beat moved back to the grid step it lies in (no snapping when step is None)."""
    if not step:
        return beat
    return round(math.floor(beat / step + 1e-9) * step, 9)
