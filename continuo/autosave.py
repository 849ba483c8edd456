"""Autosave that survives a crash: a snapshot every few seconds plus a journal of every edit since.

Every change to the song (each `SongDiff`, undo and redo included) is appended to the journal the moment it
happens; every few seconds, when something changed, the whole song is written as a snapshot (atomically) and
the journal starts over. The files and their format are journal.py's, which restore.py reads back at the
next launch; this module is the writer that runs while the studio runs.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from music_transformer.files import atomic_write

from .journal import (
    PRIVATE,
    PRIVATE_FOLDER,
    FileLock,
    journal_line,
    journal_path,
    lock_path,
    open_journal,
    remove_file,
    snapshot_path,
    snapshot_text,
)
from .song import Song, SongDiff

DEFAULT_INTERVAL_MS = 3000


def private_folder(directory: Path) -> None:
    """Makes the autosave folder (the owner's alone: it holds unsaved work), or makes one an older version left
    readable by others private."""
    directory.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    if os.name == "posix" and directory.stat().st_mode & 0o077:
        try:
            os.chmod(directory, PRIVATE_FOLDER)
        except OSError:  # another user's folder: writing into it fails next, with its own message
            pass


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
        private_folder(self.directory)
        self.id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.snapshot_path = snapshot_path(self.directory, self.id)
        self.journal_path = journal_path(self.directory, self.id)
        self._lock = FileLock(lock_path(self.directory, self.id))
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
        line = journal_line(self._seq, diff)
        try:
            if self._journal is None:
                self._journal = open_journal(self.journal_path, append=True)
            self._journal.write(line + "\n")
            self._journal.flush()  # into the kernel: survives the process being killed
        except OSError as error:
            self._fail(error)

    def _tick(self) -> None:
        if self._seq != self._snapshot_seq:
            self.snapshot_now()

    def snapshot_now(self) -> None:
        """Writes the whole song now and starts the journal over."""
        modified = self._document["modified"] or not self.song.undo_stack.isClean()
        text = snapshot_text(self.song, self._view_state(), self._seq, self._document["path"], modified)
        try:
            atomic_write(self.snapshot_path, lambda handle: handle.write(text.encode("utf-8")), mode=PRIVATE)
            if self._journal is not None:
                self._journal.close()
            self._journal = open_journal(self.journal_path, append=False)
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
        remove_file(self.snapshot_path)
        remove_file(self.journal_path)
        self._lock.release(delete=True)
