"""The variations of one Continue or Fill: the set they make, kept with the song while its continuation can still
be swapped for another, and the swap itself. No Qt."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..song import (
    CONTINUATION,
    MIN_LENGTH,
    EditRefusedError,
    GenerationSettings,
    Song,
    SongNote,
    VariationNote,
    VariationSet,
    WrittenVariation,
)
from .messages import Variation


class VariationKeeper:
    """The set being written: the first variation opens it (with the notes it put in the song), the others join
    it while it lasts; it ends when none of those notes is still a continuation note."""

    def __init__(self, song: Song) -> None:
        self.song = song
        self._writing: dict[str, Any] = {}  # what is being written: kind, start beat, count, settings
        self._owned: set[int] = set()  # ids of the notes the first variation put in the song
        self._set: VariationSet | None = None  # the set being written (later variations join it)

    def begin(self, kind: str, start: float, count: int, settings: GenerationSettings) -> None:
        """A new set is being written: `count` variations of `kind` from the beat `start`."""
        self._writing = {"kind": kind, "start": start, "count": count, "settings": settings}
        self._owned = set()
        self._set = None

    def own(self, notes: Iterable[SongNote]) -> None:
        """Notes the first variation put in the song: the set lasts while one of them is a continuation note."""
        self._owned.update(note.id for note in notes)

    def forget(self) -> None:
        """Another document (open, new, restore): what is still being written belongs to none of it."""
        self._writing = {}
        self._set = None

    def keep(self, variation: Variation) -> None:
        """A variation written: the first opens the set (with the notes it put in the song), the others join it
        while it lasts."""
        to_beats = self.song.to_beats
        last = self.song.last_beat()  # kept as the song keeps what streams in: nothing past its last beat
        notes = []
        for note in variation.notes:
            start = round(to_beats(note.start), 9)
            if start + MIN_LENGTH <= last:
                length = max(MIN_LENGTH, min(round(to_beats(note.end - note.start), 9), last - start))
                notes.append(VariationNote(note.pitch, note.velocity, start, length))
        written = WrittenVariation(variation.number, variation.seed, tuple(notes), variation.complete)
        if not self._writing:
            return  # written for a song that has been replaced since
        if variation.number == 0:
            writing = self._writing
            self._set = VariationSet(
                writing["kind"],
                writing["start"],
                writing["count"],
                writing["settings"],
                (written,),
                owned=frozenset(self._owned),
            )
        elif self._set is not None and self.song.variations is self._set:
            self._set = dataclasses.replace(self._set, variations=self._set.variations + (written,))
        else:
            return  # its continuation was accepted or discarded meanwhile: the set has ended
        self.song.set_variations(self._set)

    def check(self) -> bool:
        """Ends the set when none of the notes it put in the song is still a continuation note (accepted,
        discarded, deleted, or the step that wrote them undone); True when it ended now."""
        current = self.song.variations
        if current is None or self.song.is_writing or not current.owned:
            return False
        arrays = self.song.note_arrays()
        owned = np.fromiter(current.owned, np.int64, len(current.owned))
        if np.isin(arrays.ids[arrays.continuation], owned).any():
            return False
        self._set = None
        self.song.set_variations(None)
        return True

    def choose(self, number: int) -> VariationSet | None:
        """Puts another variation in the place of the one in the song, as one undoable step; returns the set it
        was chosen from, or None when the set has ended (accepted or discarded) or music is streaming in."""
        current = self.song.variations
        chosen = current.variation(number) if current is not None else None
        if chosen is None or self.song.is_writing:
            return None
        song = self.song
        old = [note_id for note_id in current.owned if (note := song.note(note_id)) and note.part == CONTINUATION]
        added = [song.new_note(p, v, start, length, CONTINUATION) for p, v, start, length in chosen.notes]
        owned = current.owned | {note.id for note in added}
        updated = dataclasses.replace(current, chosen=number, owned=owned)
        song.set_variations(updated)  # before the edit: the notes it puts in belong to the set
        try:
            song.edit(removed_ids=old, added=added, text=f"Variation {number + 1}")
        except EditRefusedError:  # past the song's limits (a stored variation at beat 5e6): nothing changes
            song.set_variations(current)
            raise
        if self._set is current:
            self._set = updated
        return current
