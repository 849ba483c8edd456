"""Notes on the studio's grid: `SongNote` (pitch, velocity, start and length in beats, and its part), the notes
as numpy columns for drawing (`NoteArrays`), and the quantizer that puts them on the grid. Plain values, no Qt:
the song (song.py) keeps them, the roll draws them, the recorder quantizes takes with them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .limits import MIN_NOTE_BEATS

MOTIF = "motif"
CONTINUATION = "continuation"
PARTS = (MOTIF, CONTINUATION)

MIN_LENGTH = MIN_NOTE_BEATS  # beats; a note never collapses to nothing


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
