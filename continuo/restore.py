"""Crash restore at launch: the autosaves of studios that did not close (journal.py finds and checks them) are
offered, newest first, and the one chosen is replayed into the song.

Restore never blocks a start: an autosave that cannot be restored was already moved to `autosave/damaged/` by
the scan, and is said in one line in the status bar, as are the journal lines that were left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMessageBox, QWidget

from . import limits
from .background import run_in_background
from .document import Document
from .journal import DAMAGED, Orphan, Scan, scan
from .session import SessionError
from .song import Song, SongDiff, SongLimitError


@dataclass
class Restored:
    """What a restore brought back: the view state to show, and what was left out of the journal."""

    view: dict[str, Any]
    skipped: int  # lines that failed the checks or would take the song past its limits
    journal_unreadable: bool = False
    past_cap: int = 0  # journal lines past the most a restore reads (kept in the damaged folder)

    def left_out(self) -> str:
        """What was left out, in words ("" for nothing)."""
        if self.journal_unreadable:
            return "the edits after the last snapshot could not be read and are kept in the damaged folder"
        if self.past_cap:
            return (
                f"the last {self.past_cap:,} edits, past the first {limits.MAX_JOURNAL_LINES:,}, are kept in the "
                "damaged folder"
            )
        if self.skipped:
            return f"{self.skipped} damaged edit{'s' * (self.skipped != 1)} left out"
        return ""


def restore(orphan: Orphan, song: Song) -> Restored:
    """Loads an orphan's snapshot and replays its checked journal lines into the song.

    The restored song counts as unsaved. Lines that would take the song past its limits are left out and
    counted with those that failed the checks.
    """
    session = orphan.session
    if session is None:
        raise SessionError("the autosave was not read (find it with scan or find_orphans)")
    song.load(session.notes, session.meta)
    skipped = orphan.skipped
    for line in orphan.journal:
        removed = tuple(note for note in (song.note(note_id) for note_id in line.removed) if note is not None)
        diff = SongDiff(removed, line.added, {}, line.meta)
        try:
            song.check_diff(diff)  # the limits every edit is held to: too many notes, past two hours
        except SongLimitError:
            skipped += 1
            continue
        song.apply_journal_diff(diff)
    song.undo_stack.resetClean()  # restored work is unsaved work
    return Restored(session.view, skipped, orphan.journal_unreadable, orphan.past_cap)


def _ask(orphan: Orphan, number: int, count: int, parent: QWidget) -> str:
    """Asks about one autosave: "restore", "discard" or "later"."""
    when = time.strftime("%H:%M on %d %b", time.localtime(orphan.saved_at))
    name = Path(orphan.document).name if orphan.document else "an untitled song"
    which = f" (autosave {number} of {count}, newest first)" if count > 1 else ""
    box = QMessageBox(
        QMessageBox.Question,
        "Restore unsaved work?",
        f"Continuo closed unexpectedly while you were editing {name}.\nRestore the work autosaved at {when}?{which}",
        QMessageBox.NoButton,
        parent,
    )
    box.setObjectName("restore_dialog")
    restore_button = box.addButton("Restore", QMessageBox.AcceptRole)
    discard_button = box.addButton("Discard", QMessageBox.DestructiveRole)
    box.addButton("Not Now", QMessageBox.RejectRole)
    box.setDefaultButton(restore_button)
    box.exec()
    clicked = box.clickedButton()
    return "restore" if clicked is restore_button else "discard" if clicked is discard_button else "later"


def offer_restore(
    home: Path, document: Document, parent: QWidget, say: Callable[[str], None], found: Scan | None = None
) -> bool:
    """If earlier studios crashed with unsaved work, asks about each (newest first) whether to restore it into
    the document; True if one was restored. `say` puts a message in the status bar: what was restored, and the
    autosaves that could not be (set aside in the damaged folder). `found`: the autosave folder already scanned
    (on a helper thread, `scan_in_background`), else it is scanned here."""
    if found is None:
        found = scan(home / "autosave")
    if found.orphans and (len(document.song) or not document.song.undo_stack.isClean()):
        for orphan in found.orphans:  # the musician began work while the folder was read: never replaced
            orphan.release()
        say("Unsaved work from a studio that closed unexpectedly is kept; it is offered at the next launch")
        return False
    if found.damaged:
        say(found.damaged[0] if len(found.damaged) == 1 else f"{len(found.damaged)} autosaves could not be "
            f"restored; they are kept in {home / 'autosave' / DAMAGED}")  # fmt: skip
    orphans = found.orphans
    for number, orphan in enumerate(orphans, 1):
        answer = _ask(orphan, number, len(orphans), parent)
        if answer == "discard":
            orphan.discard()
        elif answer == "later":
            orphan.release()
        else:
            for other in orphans[number:]:
                other.release()  # offered at a later launch
            restored = restore(orphan, document.song)
            document.apply_view_state(restored.view)
            document.set_path(Path(orphan.document) if orphan.document else None, remember=False)
            orphan.discard()
            text = f"Restored {len(document.song)} notes from the autosave; save to keep them"
            if restored.left_out():
                text += f" ({restored.left_out()})"
            say(text)
            return True
    return False


def scan_in_background(home: Path, owner: QObject, done: Callable[[Scan | Exception], None]) -> None:
    """Reads the autosave folder on a helper thread (a large journal takes a second or more, and a start never
    waits on it), then calls `done` with the `Scan`, or the error that stopped it, on the GUI thread."""

    def work() -> Scan | Exception:
        try:
            return scan(home / "autosave")
        except Exception as error:  # noqa: BLE001 - said by `done`; the autosaves stay on disk
            return error

    def orphaned(found: Scan | Exception) -> None:  # the window closed first: the autosaves stay for later
        if isinstance(found, Scan):
            for orphan in found.orphans:
                orphan.release()

    run_in_background(owner, "continuo-restore-scan", work, done, orphaned)
