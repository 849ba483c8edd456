"""Crash restore: the autosave of a studio that did not close (autosave.py writes it) is found at the next
launch, offered, and replayed into the song.

Each running studio holds an exclusive lock on its own `<id>.lock`; the kernel drops the lock when the
process dies, so an autosave whose lock can be taken belongs to a studio that did not close. Restore = the
snapshot, then the journal lines newer than it (each line carries a sequence number, so a kill between
writing a snapshot and starting the journal over is harmless).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QMessageBox, QWidget

from .autosave import FileLock, remove_file
from .document import Document
from .session import SessionError, session_from_bytes
from .song import GenerationSettings, Song, SongDiff, SongNote


def _meta_from_json(meta: dict[str, Any]) -> dict[str, Any]:
    """Song metadata from JSON values."""
    result = dict(meta)
    if "settings" in result:
        result["settings"] = GenerationSettings.from_dict(result["settings"])
    if "time_signature" in result:
        result["time_signature"] = tuple(int(value) for value in result["time_signature"])
    if "tempo" in result:
        result["tempo"] = float(result["tempo"])
    return result


@dataclass
class Orphan:
    """The autosave of a studio that did not close cleanly."""

    id: str
    directory: Path
    saved_at: float
    document: str | None
    has_changes: bool
    _lock: FileLock | None = field(repr=False, default=None)

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
        remove_file(self.snapshot_path)
        remove_file(self.journal_path)
        if self._lock is not None:
            self._lock.release(delete=True)

    def release(self) -> None:
        """Leaves it for a later launch."""
        if self._lock is not None:
            self._lock.release()


def _journal_entries(path: Path, after_seq: int) -> list[dict]:
    """The journal lines newer than the snapshot; a line cut short by the kill is dropped."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("seq", 0) > after_seq:
            entries.append(entry)
    return entries


def find_orphans(directory: Path) -> list[Orphan]:
    """Autosaves left by studios that crashed, newest first; ones without unsaved work are deleted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    orphans = []
    for snapshot in directory.glob("*.json"):
        orphan_id = snapshot.stem
        lock = FileLock(directory / f"{orphan_id}.lock")
        try:
            if not lock.acquire():
                continue  # a studio that is running right now
        except OSError:
            continue
        try:
            data = json.loads(snapshot.read_bytes())
            info = data.get("autosave", {})
            seq = int(info.get("seq", 0))
        except (OSError, ValueError, AttributeError):
            info, seq = {}, 0
        journal = _journal_entries(directory / f"{orphan_id}.journal", seq)
        orphan = Orphan(
            orphan_id,
            directory,
            float(info.get("saved_at") or snapshot.stat().st_mtime),
            info.get("document"),
            bool(info.get("modified")) or bool(journal),
            lock,
        )
        if journal:
            orphan.saved_at = max(orphan.saved_at, (directory / f"{orphan_id}.journal").stat().st_mtime)
        if orphan.has_changes:
            orphans.append(orphan)
        else:
            orphan.discard()
    _sweep(directory)
    orphans.sort(key=lambda orphan: orphan.saved_at, reverse=True)
    return orphans


def _sweep(directory: Path) -> None:
    """Removes what killed studios leave besides their autosave: half-written temporary files and locks
    of studios killed before their first snapshot."""
    now = time.time()
    for temporary in directory.glob(".*.tmp"):
        try:
            if now - temporary.stat().st_mtime > 60:  # an atomic write takes milliseconds; this one died
                temporary.unlink()
        except OSError:
            pass
    for lock_path in directory.glob("*.lock"):
        if (directory / f"{lock_path.stem}.json").exists():
            continue
        lock = FileLock(lock_path)
        try:
            if lock.acquire():
                remove_file(directory / f"{lock_path.stem}.journal")
                lock.release(delete=True)
        except OSError:
            pass


def restore(orphan: Orphan, song: Song) -> dict[str, Any]:
    """Loads an orphan's snapshot and replays its journal into the song; returns its view state.

    Raises SessionError if the snapshot cannot be read. The restored song counts as unsaved.
    """
    try:
        raw = orphan.snapshot_path.read_bytes()
    except OSError as error:
        raise SessionError(f"the autosave cannot be read ({error.strerror or error})") from None
    data = session_from_bytes(raw, "the autosave")
    seq = int(json.loads(raw).get("autosave", {}).get("seq", 0))
    song.load(data.notes, data.meta)
    for entry in _journal_entries(orphan.journal_path, seq):
        try:
            removed = tuple(
                note for note in (song.note(note_id) for note_id in entry.get("removed", [])) if note is not None
            )
            added = tuple(
                SongNote(int(i), int(p), int(v), float(s), float(length), str(part))
                for i, p, v, s, length, part in entry.get("added", [])
            )
            meta = _meta_from_json(entry.get("meta", {}))
        except (TypeError, ValueError):
            continue  # one damaged line does not cost the rest
        song.apply_journal_diff(SongDiff(removed, added, {}, meta))
    song.undo_stack.resetClean()  # restored work is unsaved work
    return data.view


def offer_restore(
    home: Path, document: Document, parent: QWidget, say: Callable[[str], None], complain: Callable[[str, str], None]
) -> bool:
    """If an earlier studio crashed with unsaved work, asks whether to restore it into the document; True if
    restored. `say` puts a message in the status bar, `complain` shows an error (title, text)."""
    orphans = find_orphans(home / "autosave")
    if not orphans:
        return False
    orphan = orphans[0]
    for other in orphans[1:]:
        other.release()  # offered at a later launch
    when = time.strftime("%H:%M on %d %b", time.localtime(orphan.saved_at))
    name = Path(orphan.document).name if orphan.document else "an untitled song"
    box = QMessageBox(
        QMessageBox.Question,
        "Restore unsaved work?",
        f"Continuo closed unexpectedly while you were editing {name}.\nRestore the work autosaved at {when}?",
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
    if clicked is restore_button:
        try:
            view = restore(orphan, document.song)
        except SessionError as error:
            orphan.release()
            complain("Cannot restore", f"{error}. The autosave is kept in {orphan.directory}.")
            return False
        document.apply_view_state(view)
        document.set_path(Path(orphan.document) if orphan.document else None, remember=False)
        orphan.discard()
        say(f"Restored {len(document.song)} notes from the autosave; save to keep them")
        return True
    if clicked is discard_button:
        orphan.discard()
    else:
        orphan.release()
    return False
