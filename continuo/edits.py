"""One change to the song and the undo command that applies it. Every edit of the song is a `SongDiff` (notes
removed and added, by id, and the metadata before and after); a `SongEditCommand` applies it forwards on redo
and backwards on undo, and the autosave journal records each diff applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtGui import QUndoCommand

from .notes import SongNote


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
    """An undoable song edit: a diff applied on redo and reversed on undo. Only `Song` makes them, handing in
    its one primitive that changes the document (`Song._apply`) as `apply`."""

    def __init__(
        self,
        apply: Callable[[SongDiff], None],
        diff: SongDiff,
        text: str,
        merge_key: int = -1,
        already_applied: bool = False,
    ) -> None:
        super().__init__(text)
        self._apply = apply
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
        self._apply(self.diff)

    def undo(self) -> None:
        """Applies the inverse diff."""
        self._apply(self.diff.inverse())
