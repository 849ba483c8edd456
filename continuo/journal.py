"""The autosave folder's format, in one place: what autosave.py writes while the studio runs, and what
restore.py reads back at the next launch. No widgets.

One autosave is three files named after its id:

    <id>.json      a snapshot of the whole song: a session (session.py) with an "autosave" record (the number
                   of the last edit in it, the document it belongs to, whether it was modified, when, next id)
    <id>.journal   one JSON line per edit since the snapshot: its number, the ids it removed, the notes it
                   added, the metadata it set
    <id>.lock      held (exclusively) by the running studio; the kernel drops the lock when the process dies,
                   so an autosave whose lock can be taken belongs to a studio that did not close

Every change is appended to the journal the moment it happens, so a SIGKILL loses nothing that was on screen:
the kernel keeps what was written even when the process dies. Restore = the snapshot, then the journal lines
newer than it (each line carries its number, so a kill between writing a snapshot and starting the journal over
is harmless).

Everything is read back with the checks a session file gets (session.py), so that nothing a session would
refuse is restored, and reading never blocks a start: an autosave that cannot be restored is moved to
`damaged/` (kept, never deleted), and journal lines that fail the checks are left out and counted. The files
are the musician's own (mode 0600).
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from music_transformer.files import NONBLOCK, NotRegularFileError, read_regular

from . import limits
from .session import (
    SessionData,
    SessionError,
    check_meta,
    check_note,
    check_whole,
    load_json,
    session_from_json,
    session_json,
    song_to_dict,
)
from .song import GenerationSettings, Song, SongDiff, SongNote

try:
    import fcntl
except ImportError:  # Windows: fall back to checking whether the recorded process still runs
    fcntl = None

PRIVATE = 0o600  # an autosave holds unsaved work: the owner's alone
PRIVATE_FOLDER = 0o700  # the autosave folder and its damaged folder: the owner's alone too
DAMAGED = "damaged"  # the folder under autosave/ where autosaves that cannot be restored are kept
FUTURE_SLACK_SECONDS = 24 * 3600  # a clock set back a little still dates an autosave


def snapshot_path(directory: Path, autosave_id: str) -> Path:
    """The whole song, as of the last snapshot."""
    return directory / f"{autosave_id}.json"


def journal_path(directory: Path, autosave_id: str) -> Path:
    """The edits after that snapshot, one JSON line each."""
    return directory / f"{autosave_id}.journal"


def lock_path(directory: Path, autosave_id: str) -> Path:
    """The lock the running studio holds."""
    return directory / f"{autosave_id}.lock"


class FileLock:
    """An exclusive, non-blocking lock on a file, released by the kernel when its holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def acquire(self) -> bool:
        """Takes the lock if nobody (alive) holds it."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | NONBLOCK, PRIVATE)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a FIFO or a device planted where a lock goes
                raise NotRegularFileError(self.path, "not a regular file")
            if NONBLOCK:
                os.set_blocking(descriptor, True)
        except BaseException:
            os.close(descriptor)
            raise
        handle = open(descriptor, "a+")
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


# --- writing --------------------------------------------------------------------------------------------------


def snapshot_text(song: Song, view: dict[str, Any], seq: int, document: str | None, modified: bool) -> str:
    """The snapshot file's text: the song as a session, with the autosave's own record."""
    data = song_to_dict(song, view)
    data["autosave"] = {
        "seq": seq,
        "document": document,
        "modified": modified,
        "saved_at": time.time(),
        "next_id": song.next_id(),
    }
    return json.dumps(data, separators=(",", ":"))


def journal_line(seq: int, diff: SongDiff) -> str:
    """One edit as a journal line (without its newline)."""
    return json.dumps(
        {
            "seq": seq,
            "removed": [note.id for note in diff.removed],
            "added": [_note_row(note) for note in diff.added],
            "meta": _meta_to_json(diff.meta_after),
        },
        separators=(",", ":"),
    )


def open_journal(path: Path, append: bool):
    """The journal opened for writing (the owner's alone): appended to, or started over."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return open(os.open(path, flags, PRIVATE), "a" if append else "w", encoding="utf-8")


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


# --- reading ----------------------------------------------------------------------------------------------------


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
    past_cap: int = 0  # journal lines after the first MAX_JOURNAL_LINES, not read (the journal is kept aside)

    @property
    def snapshot_path(self) -> Path:
        """The whole song, as of the last snapshot."""
        return snapshot_path(self.directory, self.id)

    @property
    def journal_path(self) -> Path:
        """The edits after that snapshot, one JSON line each."""
        return journal_path(self.directory, self.id)

    def discard(self) -> None:
        """Deletes this autosave (restored, or discarded): a journal with lines past what was read is kept aside."""
        if self.past_cap:
            _set_aside(self.directory, [self.journal_path])
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
class Scan:
    """The autosaves found at a launch: those that can be restored (newest first), and one line for each that
    could not and was moved to the damaged folder."""

    orphans: list[Orphan]
    damaged: list[str]


def _set_aside(directory: Path, paths: list[Path]) -> Path:
    """Moves files (or whatever is at their path) into the damaged folder, never over another; returns it."""
    folder = directory / DAMAGED
    folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
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


def _read_journal(path: Path, after_seq: int) -> tuple[list[JournalLine], int, int]:
    """The journal lines newer than the snapshot that pass the checks, how many did not, and how many lines
    came after the first `limits.MAX_JOURNAL_LINES` (not read: `Orphan.discard` keeps the journal aside).

    A line cut short by the kill is one of those; a journal that cannot be read at all is an OSError or
    ValueError.
    """
    try:
        data = read_regular(path, limits.MAX_JOURNAL_BYTES)  # a device or a FIFO: an OSError, never waited on
    except FileNotFoundError:
        return [], 0, 0
    lines, skipped, count = [], 0, 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        count += 1
        if count > limits.MAX_JOURNAL_LINES:
            return lines, skipped, sum(1 for rest in data.split(b"\n") if rest.strip()) - limits.MAX_JOURNAL_LINES
        try:
            line = parse_journal_line(raw)
        except ValueError:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors too
            skipped += 1
            continue
        if line.seq > after_seq:
            lines.append(line)
    return lines, skipped, 0


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
        raw = read_regular(snapshot, limits.MAX_SESSION_BYTES)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise SessionError(f"the autosave cannot be read ({reason})") from None
    data = session_json(raw, "the autosave")
    session = session_from_json(data, "the autosave")
    info = _info(data if isinstance(data, dict) else {})
    edits = journal_path(directory, orphan_id)
    try:
        journal, skipped, past_cap = _read_journal(edits, info["seq"])
    except (OSError, ValueError):  # a folder, a FIFO, unreadable, or too large: the snapshot alone is restored
        _set_aside(directory, [edits])
        journal, skipped, past_cap, unreadable = [], 0, 0, True
    else:
        unreadable = False
    saved_at = info["saved_at"]
    if saved_at is None:
        saved_at = snapshot.stat().st_mtime
    if journal:
        saved_at = max(saved_at, edits.stat().st_mtime)
    has_changes = info["modified"] or bool(journal) or skipped > 0 or unreadable or past_cap > 0
    return Orphan(
        orphan_id,
        directory,
        saved_at,
        info["document"],
        has_changes,
        lock,
        session,
        journal,
        skipped,
        unreadable,
        past_cap,
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
        lock = FileLock(lock_path(directory, snapshot.stem))
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
        folder = _set_aside(directory, [snapshot, journal_path(directory, snapshot.stem)])
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
    for held in directory.glob("*.lock"):
        if snapshot_path(directory, held.stem).exists():
            continue
        lock = FileLock(held)
        try:
            if lock.acquire():
                journal = journal_path(directory, held.stem)
                if journal.is_file() and journal.stat().st_size == 0:
                    remove_file(journal)
                elif os.path.lexists(journal):
                    _set_aside(directory, [journal])  # edits without their snapshot: kept, not restored
                lock.release(delete=True)
        except OSError:
            pass
