"""Autosave that survives a crash: a snapshot every few seconds plus a journal of every edit since.

Every change to the song (each `SongDiff`, undo and redo included) is appended to a journal file as one
JSON line the moment it happens, so a SIGKILL loses nothing that was on screen: the kernel keeps what
was written even when the process dies. Every few seconds, when something changed, the whole song is
written as a snapshot (atomically) and the journal starts over. Restore = snapshot + the journal lines
newer than it (each line carries a sequence number, so a kill between the two steps is harmless).

Each running studio holds an exclusive lock on its own `<id>.lock`; the kernel drops the lock when the
process dies, so files whose lock can be taken belong to a studio that did not close: those are offered
for restore at the next launch.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from music_transformer.midi import atomic_write

from .session import SessionError, session_from_bytes, song_to_dict
from .song import GenerationSettings, Song, SongDiff, SongNote

try:
    import fcntl
except ImportError:  # Windows: fall back to checking whether the recorded process still runs
    fcntl = None

DEFAULT_INTERVAL_MS = 3000


class _Lock:
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
            _unlink(self.path)
        self._handle.close()
        self._handle = None


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (only used where file locks are unavailable)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _unlink(path: Path) -> None:
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


def _note_row(note: SongNote) -> list:
    return [note.id, note.pitch, note.velocity, note.start, note.length, note.part]


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
        self._lock = _Lock(self.directory / f"{self.id}.lock")
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
                self._journal = open(self.journal_path, "a", encoding="utf-8")
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
            atomic_write(self.snapshot_path, lambda handle: handle.write(text.encode("utf-8")))
            if self._journal is not None:
                self._journal.close()
            self._journal = open(self.journal_path, "w", encoding="utf-8")
        except OSError as error:
            self._fail(error)
            return
        self._snapshot_seq = self._seq
        self._failed = False

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
        _unlink(self.snapshot_path)
        _unlink(self.journal_path)
        self._lock.release(delete=True)


@dataclass
class Orphan:
    """The autosave of a studio that did not close cleanly."""

    id: str
    directory: Path
    saved_at: float
    document: str | None
    has_changes: bool
    _lock: _Lock = field(repr=False, default=None)

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
        _unlink(self.snapshot_path)
        _unlink(self.journal_path)
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
        lock = _Lock(directory / f"{orphan_id}.lock")
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
        lock = _Lock(lock_path)
        try:
            if lock.acquire():
                _unlink(directory / f"{lock_path.stem}.journal")
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
