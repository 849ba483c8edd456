"""Crash restore: the autosave of a studio that did not close (autosave.py writes it) is found at the next
launch, offered, and replayed into the song.

Each running studio holds an exclusive lock on its own `<id>.lock`; the kernel drops the lock when the
process dies, so an autosave whose lock can be taken belongs to a studio that did not close. Restore = the
snapshot, then the journal lines newer than it (each line carries a sequence number, so a kill between
writing a snapshot and starting the journal over is harmless).

Restore never blocks a start. Every autosave is read with the checks a session file gets (session.py, and
`autosave.parse_journal_line` for the journal): one that cannot be restored is moved to `autosave/damaged/`
(kept, never deleted) and said in one line; journal lines that fail the checks are left out and counted.
Every autosave that can be restored is offered, newest first.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QMessageBox, QWidget

from . import limits
from .autosave import FileLock, JournalLine, parse_journal_line, remove_file
from .document import Document
from .session import SessionData, SessionError, session_from_json, session_json
from .song import Song, SongDiff

DAMAGED = "damaged"  # the folder under autosave/ where autosaves that cannot be restored are kept
FUTURE_SLACK_SECONDS = 24 * 3600  # a clock set back a little still dates an autosave


@dataclass
class Orphan:
    """The autosave of a studio that did not close cleanly, read and checked."""

    id: str
    directory: Path
    saved_at: float
    document: str | None
    has_changes: bool
    _lock: FileLock | None = field(repr=False, default=None)
    session: SessionData | None = field(repr=False, default=None)  # the snapshot
    journal: list[JournalLine] = field(repr=False, default_factory=list)  # the edits after it, checked
    skipped: int = 0  # journal lines left out: damaged, or past the checks
    journal_unreadable: bool = False  # the journal could not be read at all (moved to the damaged folder)

    @property
    def snapshot_path(self) -> Path:
        """The whole song, as of the last snapshot."""
        return self.directory / f"{self.id}.json"

    @property
    def journal_path(self) -> Path:
        """The edits after that snapshot, one JSON line each."""
        return self.directory / f"{self.id}.journal"

    def discard(self) -> None:
        """Deletes this autosave."""
        for path in (self.snapshot_path, self.journal_path):
            try:
                remove_file(path)
            except OSError:  # a folder where a file should be: kept aside instead
                _set_aside(self.directory, [path])
        if self._lock is not None:
            self._lock.release(delete=True)

    def release(self) -> None:
        """Leaves it for a later launch."""
        if self._lock is not None:
            self._lock.release()


@dataclass
class Restored:
    """What a restore brought back: the view state to show, and what was left out of the journal."""

    view: dict[str, Any]
    skipped: int  # lines that failed the checks or would take the song past its limits
    journal_unreadable: bool = False

    def left_out(self) -> str:
        """What was left out, in words ("" for nothing)."""
        if self.journal_unreadable:
            return "the edits after the last snapshot could not be read and are kept in the damaged folder"
        if self.skipped:
            return f"{self.skipped} damaged edit{'s' * (self.skipped != 1)} left out"
        return ""


@dataclass
class Scan:
    """The autosaves found at a launch: those that can be restored (newest first), and one line for each that
    could not and was moved to the damaged folder."""

    orphans: list[Orphan]
    damaged: list[str]


def _set_aside(directory: Path, paths: list[Path]) -> Path:
    """Moves files (or whatever is at their path) into the damaged folder, never over another; returns it."""
    folder = directory / DAMAGED
    folder.mkdir(exist_ok=True)
    for path in paths:
        if not os.path.lexists(path):
            continue
        target = folder / path.name
        number = 1
        while os.path.lexists(target):
            target = folder / f"{path.stem}-{number}{path.suffix}"
            number += 1
        os.replace(path, target)
    return folder


def _read_capped(path: Path, cap: int) -> bytes:
    """A file's bytes, refused past `cap` (OSError for a folder or a file that cannot be read)."""
    with open(path, "rb") as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"it is over {cap // 2**20} MB")
    return data


def _journal(path: Path, after_seq: int) -> tuple[list[JournalLine], int]:
    """The journal lines newer than the snapshot that pass the checks, and how many did not.

    A line cut short by the kill is one of those; a journal that cannot be read at all is an OSError or
    ValueError.
    """
    try:
        data = _read_capped(path, limits.MAX_JOURNAL_BYTES)
    except FileNotFoundError:
        return [], 0
    lines, skipped = [], 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = parse_journal_line(raw)
        except ValueError:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors too
            skipped += 1
            continue
        if line.seq > after_seq:
            lines.append(line)
    return lines, skipped


def _info(data: dict) -> dict[str, Any]:
    """The snapshot's own record (sequence number, document, modified, when), a bad field read as unknown."""
    info = data.get("autosave")
    info = info if isinstance(info, dict) else {}
    seq = info.get("seq")
    saved_at = info.get("saved_at")
    document = info.get("document")
    modified = info.get("modified")
    return {
        "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0,
        "saved_at": saved_at
        if isinstance(saved_at, (int, float))
        and not isinstance(saved_at, bool)
        and math.isfinite(saved_at)
        and 0 < saved_at < time.time() + FUTURE_SLACK_SECONDS
        else None,
        "document": document
        if isinstance(document, str) and 0 < len(document) <= limits.MAX_TEXT_CHARS and "\0" not in document
        else None,
        "modified": modified if isinstance(modified, bool) else True,  # unknown: better offered than lost
    }


def _inspect(directory: Path, snapshot: Path, lock: FileLock) -> Orphan:
    """Reads and checks one autosave; raises SessionError (or OSError) when it cannot be restored."""
    orphan_id = snapshot.stem
    try:
        raw = _read_capped(snapshot, limits.MAX_SESSION_BYTES)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise SessionError(f"the autosave cannot be read ({reason})") from None
    data = session_json(raw, "the autosave")
    session = session_from_json(data, "the autosave")
    info = _info(data if isinstance(data, dict) else {})
    journal_path = directory / f"{orphan_id}.journal"
    try:
        journal, skipped = _journal(journal_path, info["seq"])
    except (OSError, ValueError):  # a folder, unreadable, or too large: the snapshot alone is restored
        _set_aside(directory, [journal_path])
        journal, skipped, unreadable = [], 0, True
    else:
        unreadable = False
    saved_at = info["saved_at"]
    if saved_at is None:
        saved_at = snapshot.stat().st_mtime
    if journal:
        saved_at = max(saved_at, journal_path.stat().st_mtime)
    has_changes = info["modified"] or bool(journal) or skipped > 0 or unreadable
    return Orphan(
        orphan_id, directory, saved_at, info["document"], has_changes, lock, session, journal, skipped, unreadable
    )


def scan(directory: Path) -> Scan:
    """Autosaves left by studios that crashed, newest first; ones without unsaved work are deleted, damaged ones
    moved to `damaged/`. Never raises: a launch always goes on."""
    directory = Path(directory)
    found = Scan([], [])
    try:
        if not directory.is_dir():
            return found
        snapshots = sorted(directory.glob("*.json"))
    except OSError:
        return found
    for snapshot in snapshots:
        lock = FileLock(directory / f"{snapshot.stem}.lock")
        try:
            if not lock.acquire():
                continue  # a studio that is running right now
        except OSError:
            continue
        try:
            orphan = _inspect(directory, snapshot, lock)
        except Exception as error:  # noqa: BLE001 - whatever is wrong with one autosave, the launch goes on
            reason = str(error) if isinstance(error, SessionError) else f"{type(error).__name__}: {error}"
            found.damaged.append(_damaged(directory, snapshot, lock, reason))
            continue
        if orphan.has_changes:
            found.orphans.append(orphan)
        else:
            orphan.discard()
    try:
        _sweep(directory)
    except OSError:
        pass
    found.orphans.sort(key=lambda orphan: orphan.saved_at, reverse=True)
    return found


def _damaged(directory: Path, snapshot: Path, lock: FileLock, reason: str) -> str:
    """Moves an autosave that cannot be restored aside (never deletes it); the line that says so."""
    try:
        folder = _set_aside(directory, [snapshot, directory / f"{snapshot.stem}.journal"])
        lock.release(delete=True)
    except OSError as error:
        lock.release()
        return f"An autosave could not be restored ({reason}) nor moved aside ({error.strerror or error})"
    reason = reason.removeprefix("the autosave: ").removeprefix("the autosave ")
    return f"An autosave could not be restored ({reason}); it is kept in {folder}"


def find_orphans(directory: Path) -> list[Orphan]:
    """Autosaves left by studios that crashed that can be restored, newest first (see `scan`)."""
    return scan(directory).orphans


def _sweep(directory: Path) -> None:
    """Removes what killed studios leave besides their autosave: half-written temporary files and locks
    of studios killed before their first snapshot."""
    now = time.time()
    for temporary in directory.glob(".*.tmp"):
        try:
            if now - temporary.stat().st_mtime > 60 and temporary.is_file():  # a write takes milliseconds
                temporary.unlink()
        except OSError:
            pass
    for lock_path in directory.glob("*.lock"):
        if (directory / f"{lock_path.stem}.json").exists():
            continue
        lock = FileLock(lock_path)
        try:
            if lock.acquire():
                journal = directory / f"{lock_path.stem}.journal"
                if journal.is_file() and journal.stat().st_size == 0:
                    remove_file(journal)
                elif os.path.lexists(journal):
                    _set_aside(directory, [journal])  # edits without their snapshot: kept, not restored
                lock.release(delete=True)
        except OSError:
            pass


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
        grows = sum(1 for note in line.added if song.note(note.id) is None) - len(removed)
        if len(song) + grows > limits.MAX_NOTES:
            skipped += 1
            continue
        song.apply_journal_diff(SongDiff(removed, line.added, {}, line.meta))
    song.undo_stack.resetClean()  # restored work is unsaved work
    return Restored(session.view, skipped, orphan.journal_unreadable)


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


def offer_restore(home: Path, document: Document, parent: QWidget, say: Callable[[str], None]) -> bool:
    """If earlier studios crashed with unsaved work, asks about each (newest first) whether to restore it into
    the document; True if one was restored. `say` puts a message in the status bar: what was restored, and the
    autosaves that could not be (set aside in the damaged folder)."""
    found = scan(home / "autosave")
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
