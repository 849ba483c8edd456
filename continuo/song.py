"""The song: the one document the studio edits, every edit an undo command. Testable without a window.

Notes live on the grid in beats (a beat is a quarter note); `music_transformer` works in seconds. The
conversion between the two happens here and only here, through the song's tempo map (tempo_map.py: every tempo
and metre change a file brings): `Song.to_seconds`, `Song.to_beats`, `Song.seconds_between`,
`Song.performance_notes` and `Song.notes_from_performance`; and between beats and bars: `Song.bar_beat`,
`Song.bar_at`, `Song.bar_lines`, `Song.add_bars`, `Song.bar_line_at_or_after`.

Every change goes through one primitive, `Song._apply`, which takes a `SongDiff` (notes removed, notes
added, metadata before and after). Undo commands hold a diff and apply it forwards or backwards (edits.py);
the autosave journal records every applied diff, so replaying the journal restores every edit.

Music that arrives over time (a continuation being written, a take being played) comes in through one
streaming edit: `begin_stream(part)`, `append(notes)` as they arrive (drawn at once), then `commit()` (one
undo step) or `abort()`. While a stream is open the song is locked: every other edit raises
`SongLockedError` until it ends.

The song's parts have rooms of their own: its notes and the quantizer in notes.py, the diff and the undo
command in edits.py, the generation settings and the variation sets in generation_settings.py. The names
the studio uses from them can be imported from here too.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from music_transformer import Note

from . import limits
from .edits import SongDiff, SongEditCommand
from .generation_settings import ANY_STYLE, GenerationSettings, VariationNote, VariationSet, WrittenVariation
from .limits import (
    DENOMINATORS,
    MAX_BEATS,
    MAX_METRE_CHANGES,
    MAX_NOTES,
    MAX_NUMERATOR,
    MAX_TEMPO,
    MAX_TEMPO_CHANGES,
    MIN_TEMPO,
)
from .notes import CONTINUATION, MIN_LENGTH, MOTIF, PARTS, NoteArrays, SongNote, floor_beat, quantized, snap_beat
from .tempo_map import BarBeat, BarLine, TempoMap

# What the studio imports from here: the song's own names and those of its parts' rooms.
__all__ = [
    "ANY_STYLE", "CONTINUATION", "DEFAULT_MODEL", "MAX_TEMPO", "MIN_LENGTH", "MIN_TEMPO", "MOTIF", "PARTS",
    "BarBeat", "BarLine", "EditRefusedError", "GenerationSettings", "NoteArrays", "Song", "SongDiff",
    "SongLimitError", "SongLockedError", "SongNote", "TempoMap", "VariationNote", "VariationSet", "WrittenVariation",
    "default_meta", "floor_beat", "quantized", "snap_beat", "tempo_map_meta",
]  # fmt: skip

_LONG_NOTE_BEATS = 16.0  # notes longer than this are kept out of the time index's search window


DEFAULT_MODEL = "default"


def default_meta() -> dict[str, Any]:
    """The metadata of a new song (`variations`: the set being auditioned, kept outside the undo history).

    The tempo map is four keys: the first tempo and time signature (what the toolbar shows and edits), and the
    changes after them, `tempo_changes` ((beat, BPM), ...) and `metre_changes` ((beat, numerator, denominator),
    ...), both empty in a song of one tempo and one metre (and in every session saved before they were kept).
    """
    return {
        "tempo": 120.0,
        "time_signature": (4, 4),
        "tempo_changes": (),
        "metre_changes": (),
        "settings": GenerationSettings(),
        "model": DEFAULT_MODEL,
        "variations": None,
    }


def tempo_map_meta(tempo_map: TempoMap) -> dict[str, Any]:
    """The song's four metadata keys that hold a tempo map (see `default_meta`)."""
    return {
        "tempo": tempo_map.tempo,
        "time_signature": tempo_map.metre,
        "tempo_changes": tempo_map.tempi[1:],
        "metre_changes": tempo_map.metres[1:],
    }


class EditRefusedError(Exception):
    """An edit the song does not take; nothing changed, and the message says why, for the musician."""


class SongLockedError(EditRefusedError, RuntimeError):
    """An edit was attempted while music streams in (a continuation being written, a take being recorded)."""


class SongLimitError(EditRefusedError, ValueError):
    """An edit that would take the song past the limits a session is read with (limits.py): too many notes, a
    note past the song's last beat at its tempo, a value out of range. Refused before it lands, so that what
    the studio saves it always reopens."""


# what a note's end may pass the song's last beat by: its times rounded, as the session reader allows
END_TOLERANCE = 1e-6


def check_added_note(note: SongNote) -> None:
    """A note about to enter the song, within the limits a session's notes are read with (SongLimitError)."""
    if not (
        isinstance(note.id, int)
        and 1 <= note.id <= limits.MAX_NOTE_ID
        and isinstance(note.pitch, int)
        and limits.MIN_PITCH <= note.pitch <= limits.MAX_PITCH
        and isinstance(note.velocity, int)
        and limits.MIN_VELOCITY <= note.velocity <= limits.MAX_VELOCITY
        and note.part in PARTS
    ):
        raise SongLimitError(f"A note of pitch {note.pitch!r}, velocity {note.velocity!r} is not one Continuo keeps")
    start, length = note.start, note.length
    if not (math.isfinite(start) and math.isfinite(length) and start >= 0 and length >= limits.MIN_NOTE_BEATS):
        raise SongLimitError(f"A note at beat {start!r}, {length!r} beats long, is not one Continuo keeps")


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
    meta_changed = Signal(str)  # the key: tempo, time_signature, tempo_changes, metre_changes, settings, model
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
        self._tempo_map: TempoMap | None = None
        self._tempo_map_key: tuple | None = None

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
    def tempo_map(self) -> TempoMap:
        """Every tempo and metre change, from beat 0."""
        meta = self._meta
        key = (meta["tempo"], meta["time_signature"], meta["tempo_changes"], meta["metre_changes"])
        if self._tempo_map is None or self._tempo_map_key != key:
            self._tempo_map = TempoMap(
                ((0.0, meta["tempo"]), *meta["tempo_changes"]), ((0.0, *meta["time_signature"]), *meta["metre_changes"])
            )
            self._tempo_map_key = key
        return self._tempo_map

    @property
    def beats_per_bar(self) -> float:
        """The first bar's length in quarter-note beats (6/8 is 3 beats); `bar_at(beat).length` elsewhere."""
        numerator, denominator = self.time_signature
        return numerator * 4.0 / denominator

    def tempo_at(self, beat: float) -> float:
        """The tempo in force at a beat, in BPM."""
        return self.tempo_map.tempo_at(beat)

    def time_signature_at(self, beat: float) -> tuple[int, int]:
        """The time signature in force at a beat."""
        return self.tempo_map.metre_at(beat)

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
        """A beat on this song's grid to its time in seconds from the start, through the tempo map."""
        return self.tempo_map.seconds(beats)

    def to_beats(self, seconds: float) -> float:
        """A time in seconds from the start to its beat on this song's grid, through the tempo map."""
        return self.tempo_map.beats(seconds)

    def seconds_between(self, start: float, end: float) -> float:
        """How long the beats from `start` to `end` last, in seconds (a length at that place in the song)."""
        tempo_map = self.tempo_map
        return tempo_map.seconds(end) - tempo_map.seconds(start)

    def bar_beat(self, beat: float) -> BarBeat:
        """Where a beat lies as bar.beat (both from 1, the beat in the metre's unit: eighths in 6/8)."""
        return self.tempo_map.bar_beat(beat)

    def bar_beat_at(self, seconds: float) -> BarBeat:
        """Where a time (seconds from the start) lies as bar.beat."""
        tempo_map = self.tempo_map
        return tempo_map.bar_beat(tempo_map.beats(seconds))

    def bar_at(self, beat: float) -> BarLine:
        """The bar a beat lies in: its first beat, its index (0 is bar 1), its length in beats, its metre."""
        return self.tempo_map.bar_at(beat)

    def bar_lines(self, start: float, end: float, every: int = 1) -> list[BarLine]:
        """The bar lines between two beats (every `every`-th bar), for the grid and the ruler."""
        return self.tempo_map.bar_lines(start, end, every)

    def bar_line_at_or_after(self, beat: float) -> float:
        """The first bar line at `beat` or after it."""
        return self.tempo_map.bar_line_at_or_after(beat)

    def add_bars(self, beat: float, bars: float) -> float:
        """The beat `bars` bars after `beat` (each bar as long as the metre where it lies)."""
        return self.tempo_map.add_bars(beat, bars)

    def performance_notes(self, part: str | None = None) -> list[Note]:
        """The notes (or one part's) in seconds, for MIDI export, playback and generation."""
        notes = self.notes(part)
        tempo_map = self.tempo_map
        starts = tempo_map.seconds_array(np.fromiter((note.start for note in notes), np.float64, len(notes))).tolist()
        ends = tempo_map.seconds_array(np.fromiter((note.end for note in notes), np.float64, len(notes))).tolist()
        return [
            Note(note.pitch, note.velocity, start, end) for note, start, end in zip(notes, starts, ends, strict=True)
        ]

    def notes_from_performance(
        self,
        notes: Iterable[Note],
        part: str = MOTIF,
        offset_beats: float = 0.0,
        tempo: float | None = None,
        tempo_map: TempoMap | None = None,
    ) -> list[SongNote]:
        """New grid notes (fresh ids, not yet in the song) from notes in seconds (from `offset_beats`), through
        `tempo_map`, or at one `tempo`, or through the song's own map."""
        if tempo_map is None:
            tempo_map = TempoMap.steady(tempo) if tempo else self.tempo_map
        notes = list(notes)
        offset = tempo_map.seconds(offset_beats) if offset_beats else 0.0
        times = np.fromiter((time for note in notes for time in (note.start, note.end)), np.float64, 2 * len(notes))
        beats = np.round(tempo_map.beats_array(times + offset), 9).tolist()  # a file's beats come out whole
        return [
            self.new_note(note.pitch, note.velocity, beats[2 * index], beats[2 * index + 1] - beats[2 * index], part)
            for index, note in enumerate(notes)
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
        self.check_diff(diff)
        self.undo_stack.push(SongEditCommand(self._apply, diff, text, merge_key))
        return True

    def last_beat(self, tempo_map: TempoMap | None = None) -> float:
        """The last beat this song may reach through its tempo map (or `tempo_map`): two hours in."""
        return limits.map_beat_limit((tempo_map or self.tempo_map).beats)

    def past_the_end(self, end: float, tempo_map: TempoMap | None = None) -> str:
        """Why the song cannot reach beat `end` (through its tempo map, or `tempo_map`), in words."""
        tempo_map = tempo_map or self.tempo_map
        if tempo_map.is_steady:
            return limits.past_the_end(end, tempo_map.tempo)
        return limits.past_the_end(end, tempo_map.tempo, tempo_map.seconds(end), self.last_beat(tempo_map))

    def check_diff(self, diff: SongDiff) -> None:
        """Refuses (SongLimitError, nothing changed) a change that would leave a song the session reader refuses:
        more than MAX_NOTES notes, a note out of range or past the last beat, a tempo at which the notes would
        run past two hours. Every edit is checked here before it lands, and every autosave line before it is
        replayed."""
        tempo = diff.meta_after.get("tempo", self.tempo)
        if not (isinstance(tempo, (int, float)) and MIN_TEMPO <= tempo <= MAX_TEMPO):
            raise SongLimitError(f"The tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} BPM")
        timing = ("tempo", "time_signature", "tempo_changes", "metre_changes")
        tempo_map = self.tempo_map
        if any(key in diff.meta_after for key in timing):  # the map after the edit: it sets the last beat
            meta = {key: diff.meta_after.get(key, self._meta[key]) for key in timing}
            try:
                tempo_map = TempoMap(
                    ((0.0, meta["tempo"]), *meta["tempo_changes"]),
                    ((0.0, *meta["time_signature"]), *meta["metre_changes"]),
                )
            except (TypeError, ValueError) as error:
                raise SongLimitError(f"The tempo map is not one Continuo keeps: {error}") from None
        if "settings" in diff.meta_after:  # the session reader's own check: a seed of -5 is refused as it is set
            try:
                GenerationSettings.from_dict(diff.meta_after["settings"].to_dict())
            except (TypeError, ValueError, OverflowError, AttributeError) as error:
                raise SongLimitError(f"The generation settings are not ones Continuo keeps: {error}") from None
        last = self.last_beat(tempo_map)
        removed = {note.id for note in diff.removed if note.id in self._notes}
        for note in diff.added:
            check_added_note(note)
        end = max((note.end for note in diff.added), default=0.0)
        if last < self.last_beat():  # slower: the notes that stay run longer
            end = max(end, max((n.end for n in self._notes.values() if n.id not in removed), default=0.0))
        if end > last + END_TOLERANCE:
            raise SongLimitError(self.past_the_end(end, tempo_map))
        count = (
            len(self._notes) - len(removed) + sum(1 for n in diff.added if n.id not in self._notes or n.id in removed)
        )
        if count > MAX_NOTES:
            raise SongLimitError(
                f"The song would hold {count:,} notes; Continuo keeps songs of up to {MAX_NOTES:,} notes"
            )

    def set_tempo(self, bpm: float) -> None:
        """Changes the tempo; notes keep their beats, so they play faster or slower. In a song whose tempo
        changes, every later tempo is scaled alike, so the music keeps its shape (as a DAW's tempo scaling)."""
        bpm = float(bpm)
        if not MIN_TEMPO <= bpm <= MAX_TEMPO:
            raise ValueError(f"the tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} BPM")
        scaled = self.tempo_map.with_tempo(bpm, MIN_TEMPO, MAX_TEMPO)
        self.edit(meta={"tempo": bpm, "tempo_changes": scaled.tempi[1:]}, text=f"Tempo {bpm:g} BPM", merge_key=1)

    def set_tempo_map(self, tempo_map: TempoMap, text: str = "Tempo map") -> bool:
        """Replaces every tempo and metre change at once (one undo step); notes keep their beats."""
        if len(tempo_map.tempi) > MAX_TEMPO_CHANGES + 1 or len(tempo_map.metres) > MAX_METRE_CHANGES + 1:
            raise ValueError(
                f"a song keeps up to {MAX_TEMPO_CHANGES:,} tempo and {MAX_METRE_CHANGES:,} time signature changes"
            )
        if tempo_map.tempi[-1][0] > MAX_BEATS or tempo_map.metres[-1][0] > MAX_BEATS:
            raise ValueError(f"a change lies within the song's {MAX_BEATS:,.0f} beats")
        for _, bpm in tempo_map.tempi:
            if not MIN_TEMPO <= bpm <= MAX_TEMPO:
                raise ValueError(f"the tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} BPM")
        for _, numerator, denominator in tempo_map.metres:
            if not (1 <= numerator <= MAX_NUMERATOR and denominator in DENOMINATORS):
                raise ValueError(f"{numerator}/{denominator} is not a time signature Continuo supports")
        return self.edit(meta=tempo_map_meta(tempo_map), text=text)

    def set_tempo_at(self, beat: float, bpm: float) -> bool:
        """A tempo change at `beat` (at 0, the first tempo); notes keep their beats, so what follows plays faster
        or slower. One undo step."""
        bpm = float(bpm)
        if not MIN_TEMPO <= bpm <= MAX_TEMPO:
            raise ValueError(f"the tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} BPM")
        if not 0.0 <= beat <= MAX_BEATS:
            raise ValueError(f"a tempo change lies within the song's {MAX_BEATS:,.0f} beats")
        where = self.bar_beat(beat)
        return self.set_tempo_map(self.tempo_map.with_tempo_change(beat, bpm), f"Tempo {bpm:g} BPM at {where}")

    def remove_tempo_change(self, beat: float) -> bool:
        """Takes out the tempo change at `beat` (False when there is none there)."""
        if not self.tempo_map.tempo_change_at(beat):
            return False
        return self.set_tempo_map(self.tempo_map.without_tempo_change(beat), "Remove tempo change")

    def set_time_signature_at(self, beat: float, numerator: int, denominator: int) -> bool:
        """A time signature change at `beat` (a bar line; at 0, the first metre); the bars after it follow."""
        if not (1 <= numerator <= MAX_NUMERATOR and denominator in DENOMINATORS):
            raise ValueError(f"{numerator}/{denominator} is not a time signature Continuo supports")
        if not 0.0 <= beat <= MAX_BEATS:
            raise ValueError(f"a time signature change lies within the song's {MAX_BEATS:,.0f} beats")
        text = f"Time signature {numerator}/{denominator} at bar {self.bar_at(beat).index + 1}"
        return self.set_tempo_map(self.tempo_map.with_metre_change(beat, numerator, denominator), text)

    def remove_time_signature_change(self, beat: float) -> bool:
        """Takes out the time signature change at `beat` (False when there is none there)."""
        if not self.tempo_map.metre_change_at(beat):
            return False
        return self.set_tempo_map(self.tempo_map.without_metre_change(beat), "Remove time signature change")

    def set_time_signature(self, numerator: int, denominator: int) -> None:
        """Changes the time signature (the bar lines move; the notes stay)."""
        if not (1 <= numerator <= MAX_NUMERATOR and denominator in DENOMINATORS):
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
        outside the undo history (picking one is the edit), and a session keeps it, so a set whose notes the
        session reader would refuse is refused here (SongLimitError)."""
        if variations is not None:
            for variation in variations.variations:
                for note in variation.notes:
                    start, length = note.start, note.length
                    if not (
                        0.0 <= start
                        and limits.MIN_NOTE_BEATS <= length
                        and start + length <= limits.MAX_BEATS + END_TOLERANCE
                    ):
                        raise SongLimitError(
                            f"Variation {variation.number + 1} has a note at beat {start:g}, {length:g} beats long, "
                            "past the longest song Continuo keeps"
                        )
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
        last = self.last_beat()
        added = [
            note if note.end <= last else note.with_(length=last - note.start)
            for note in added
            if note.start + MIN_LENGTH <= last
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
            self.undo_stack.push(SongEditCommand(self._apply, diff, stream.text, already_applied=True))
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
