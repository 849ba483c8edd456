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

ENDED_KEPT = 16  # ended sets remembered for an undo to bring back


def _holds(live: np.ndarray, variations: VariationSet) -> bool:
    """Whether one of the notes the set put in the song is a continuation note now."""
    owned = np.fromiter(variations.owned, np.int64, len(variations.owned))
    return bool(np.isin(live, owned).any())


class VariationKeeper:
    """The set being written: the first variation opens it (with the notes it put in the song), the others join
    it while it lasts; it ends when none of those notes is still a continuation note.

    The set follows the undo history through its notes: an ended set is remembered, and comes back when an undo
    (or redo) makes its notes a continuation again (Undo after Accept or Discard); its ▶ marker names the variation
    whose notes the song holds now (Undo after a pick).
    """

    def __init__(self, song: Song) -> None:
        self.song = song
        self._writing: dict[str, Any] = {}  # what is being written: kind, start beat, count, settings
        self._owned: set[int] = set()  # ids of the notes the first variation put in the song
        self._set: VariationSet | None = None  # the set being written (later variations join it)
        self._picks: dict[int, int] = {}  # note id -> the variation that put it in the song
        self._ended: list[VariationSet] = []  # sets that ended, newest first: an undo may bring one back

    def begin(self, kind: str, start: float, count: int, settings: GenerationSettings) -> None:
        """A new set is being written: `count` variations of `kind` from the beat `start`."""
        if self._set is not None:
            self._remember(self._set)  # the set it replaces comes back if the new Continue is undone
        self._writing = {"kind": kind, "start": start, "count": count, "settings": settings}
        self._owned = set()
        self._set = None

    def own(self, notes: Iterable[SongNote]) -> None:
        """Notes the first variation put in the song: the set lasts while one of them is a continuation note."""
        notes = list(notes)
        self._owned.update(note.id for note in notes)
        self._picks.update((note.id, 0) for note in notes)

    def forget(self) -> None:
        """Another document (open, new, restore): what is still being written belongs to none of it."""
        self._writing = {}
        self._set = None
        self._picks = {}
        self._ended = []

    def _remember(self, ended: VariationSet) -> None:
        self._ended = [ended] + [old for old in self._ended if old is not ended][: ENDED_KEPT - 1]

    def keep(self, variation: Variation) -> None:
        """A variation written: the first opens the set (with the notes it put in the song), the others join it
        while it lasts."""
        to_beats = self.song.to_beats
        last = self.song.last_beat()  # kept as the song keeps what streams in: nothing past its last beat
        notes = []
        for note in variation.notes:
            start = round(to_beats(note.start), 9)
            if start + MIN_LENGTH <= last:
                length = max(MIN_LENGTH, min(round(to_beats(note.end) - to_beats(note.start), 9), last - start))
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
        """Follows the notes after an edit, an undo or a redo; True when the set shown changed. The set ends when
        none of the notes it put in the song is still a continuation note (accepted, discarded, deleted, or the
        step that wrote them undone); an ended set whose notes are a continuation again comes back; the marker
        moves to the variation whose notes the song holds."""
        if self.song.is_writing:
            return False
        arrays = self.song.note_arrays()
        live = arrays.ids[arrays.continuation]
        current = self.song.variations
        if current is not None:
            if not current.owned:
                return False  # a set from an older session, which does not name its notes: it stays
            if _holds(live, current):
                return self._mark(current, live)
            self._remember(current)
            self._set = None
            self.song.set_variations(None)
        for ended in self._ended:
            if _holds(live, ended):
                self._ended.remove(ended)
                self._set = ended  # the set in the song again: a new Continue remembers it in turn
                self.song.set_variations(ended)
                self._mark(ended, live)
                return True
        return current is not None

    def _mark(self, current: VariationSet, live: np.ndarray) -> bool:
        """Moves the set's marker to the variation whose notes the song holds; True when it moved."""
        present = np.intersect1d(live, np.fromiter(current.owned, np.int64, len(current.owned)))
        numbers = {self._picks[note_id] for note_id in present.tolist() if note_id in self._picks}
        if len(numbers) != 1 or current.chosen in numbers:
            return False
        updated = dataclasses.replace(current, chosen=numbers.pop())
        if self._set is current:
            self._set = updated
        self.song.set_variations(updated)
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
        self._picks.update((note.id, number) for note in added)
        song.set_variations(updated)  # before the edit: the notes it puts in belong to the set
        try:
            song.edit(removed_ids=old, added=added, text=f"Variation {number + 1}")
        except EditRefusedError:  # past the song's limits (a stored variation at beat 5e6): nothing changes
            song.set_variations(current)
            raise
        if self._set is current:
            self._set = updated
        return current
