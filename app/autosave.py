"""Autosave that survives a crash: a snapshot every few seconds plus a journal of every edit since.

Every change to the song (each `SongDiff`, undo and redo included) is appended to a journal file as one
JSON line the moment it happens, so a SIGKILL loses nothing that was on screen: the kernel keeps what
was written even when the process dies. Every few seconds, when something changed, the whole song is
written as a snapshot (atomically) and the journal starts over. Restore = snapshot + the journal lines
newer than it (each line carries a sequence number, so a kill between the two steps is harmless).

Each running studio holds an exclusive lock on its own `<id>.lock`; the kernel drops the lock when the
process dies, so files whose lock can be taken belong to a studio that did not close: restore.py offers
them at the next launch. A journal line is read back through `parse_journal_line`, with the checks a session
file gets (session.py), so that nothing a session would refuse is restored. The files are the musician's
own (mode 0600).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from music_transformer.files import atomic_write

from . import limits
from .session import check_meta, check_note, check_whole, load_json, song_to_dict
from .song import GenerationSettings, Song, SongDiff, SongNote

try:
    import fcntl
except ImportError:  # Windows: fall back to checking whether the recorded process still runs
    fcntl = None

DEFAULT_INTERVAL_MS = 3000
PRIVATE = 0o600  # an autosave holds unsaved work: the owner's alone


class FileLock:
    """An exclusive, non-blocking lock on a file, released by the kernel when its holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def acquire(self) -> bool:
        """Takes the lock if nobody (alive) holds it."""
        handle = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
        else:
            handle.seek(0)
            recorded = handle.read().strip()
            if recorded.isdigit() and int(recorded) != os.getpid() and _process_alive(int(recorded)):
                handle.close()
                return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return True

    def release(self, delete: bool = False) -> None:
        """Lets go of the lock, deleting the lock file first if asked."""
        if self._handle is None:
            return
        if delete:
            remove_file(self.path)
        self._handle.close()
        self._handle = None


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (only used where file locks are unavailable)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def remove_file(path: Path) -> None:
    """Removes a file if it is there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _meta_to_json(meta: dict[str, Any]) -> dict[str, Any]:
    """Song metadata as JSON values."""
    result = {}
    for key, value in meta.items():
        if isinstance(value, GenerationSettings):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = list(value)
        result[key] = value
    return result


def _note_row(note: SongNote) -> list:
    return [note.id, note.pitch, note.velocity, note.start, note.length, note.part]


@dataclass(frozen=True)
class JournalLine:
    """One journalled edit, checked: its sequence number, the ids it removed, the notes it added, the metadata
    it set (checked values, as the song holds them)."""

    seq: int
    removed: tuple[int, ...]
    added: tuple[SongNote, ...]
    meta: dict[str, Any]


def parse_journal_line(line: bytes | str) -> JournalLine:
    """A journal line read back; ValueError (UnicodeDecodeError for bytes that are not text) says what is wrong."""
    entry = load_json(line)
    if not isinstance(entry, dict):
        raise ValueError("a journal line is not a set of values")
    seq = check_whole(entry.get("seq"), 0, 2**63, "the edit's number")
    removed, added = entry.get("removed", []), entry.get("added", [])
    if not isinstance(removed, list) or not isinstance(added, list):
        raise ValueError("the edit's notes are not lists")
    if len(removed) > limits.MAX_NOTES or len(added) > limits.MAX_NOTES:
        raise ValueError("the edit holds more notes than a song")
    removed_ids = tuple(check_whole(note_id, 1, limits.MAX_NOTE_ID, "a removed note's id") for note_id in removed)
    notes = tuple(check_note(row) for row in added)
    if len({note.id for note in notes}) != len(notes):
        raise ValueError("the edit adds one note twice")
    return JournalLine(seq, removed_ids, notes, check_meta(entry.get("meta", {})))


class Autosave(QObject):
    """Keeps one studio window's song safe on disk while it runs; `close()` removes it on a clean exit."""

    failed = Signal(str)  # a message for the status bar; the song itself is unaffected

    def __init__(
        self,
        song: Song,
        directory: Path,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        view_state: Callable[[], dict] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.snapshot_path = self.directory / f"{self.id}.json"
        self.journal_path = self.directory / f"{self.id}.journal"
        self._lock = FileLock(self.directory / f"{self.id}.lock")
        if not self._lock.acquire():
            raise OSError(f"cannot lock {self._lock.path}")
        self._view_state = view_state or (lambda: {})
        self._document: dict[str, Any] = {"path": None, "modified": False}
        self._seq = 0
        self._snapshot_seq = -1
        self._journal = None
        self._failed = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        song.applied.connect(self._record)
        song.reset.connect(self.snapshot_now)
        song.undo_stack.cleanChanged.connect(self._clean_changed)
        self.snapshot_now()
        self._timer.start()

    def set_document(self, path: str | None) -> None:
        """Records which file the song belongs to, so that a restore can save back to it."""
        self._document["path"] = path
        self.snapshot_now()

    def _clean_changed(self, clean: bool) -> None:
        self._document["modified"] = not clean
        self._snapshot_seq = -1  # the flag lives in the snapshot: write one at the next tick

    def _record(self, diff: SongDiff) -> None:
        """Appends one applied change to the journal, at once."""
        self._seq += 1
        line = json.dumps(
            {
                "seq": self._seq,
                "removed": [note.id for note in diff.removed],
                "added": [_note_row(note) for note in diff.added],
                "meta": _meta_to_json(diff.meta_after),
            },
            separators=(",", ":"),
        )
        try:
            if self._journal is None:
                self._journal = self._open_journal("a")
            self._journal.write(line + "\n")
            self._journal.flush()  # into the kernel: survives the process being killed
        except OSError as error:
            self._fail(error)

    def _tick(self) -> None:
        if self._seq != self._snapshot_seq:
            self.snapshot_now()

    def snapshot_now(self) -> None:
        """Writes the whole song now and starts the journal over."""
        data = song_to_dict(self.song, self._view_state())
        data["autosave"] = {
            "seq": self._seq,
            "document": self._document["path"],
            "modified": self._document["modified"] or not self.song.undo_stack.isClean(),
            "saved_at": time.time(),
            "next_id": self.song.next_id(),
        }
        text = json.dumps(data, separators=(",", ":"))
        try:
            atomic_write(self.snapshot_path, lambda handle: handle.write(text.encode("utf-8")), mode=PRIVATE)
            if self._journal is not None:
                self._journal.close()
            self._journal = self._open_journal("w")
        except OSError as error:
            self._fail(error)
            return
        self._snapshot_seq = self._seq
        self._failed = False

    def _open_journal(self, mode: str):
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
        return open(os.open(self.journal_path, flags, PRIVATE), mode, encoding="utf-8")

    def _fail(self, error: OSError) -> None:
        if not self._failed:
            self._failed = True
            self.failed.emit(f"Autosave failed: {error.strerror or error} ({self.directory})")

    def close(self) -> None:
        """A clean exit: stops and deletes this studio's autosave files."""
        self._timer.stop()
        try:
            self.song.applied.disconnect(self._record)
            self.song.reset.disconnect(self.snapshot_now)
            self.song.undo_stack.cleanChanged.disconnect(self._clean_changed)
        except (RuntimeError, TypeError):
            pass
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        remove_file(self.snapshot_path)
        remove_file(self.journal_path)
        self._lock.release(delete=True)
