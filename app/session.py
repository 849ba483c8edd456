"""Session files (`.continuo`): the whole song as JSON, read back with checks that name the problem.

The format carries a version. A file from a newer Continuo is refused with a message that says so, and a
damaged one with a message that says what is wrong; nothing is ever written over a file that failed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from music_transformer.midi import atomic_write

from .song import PARTS, GenerationSettings, Song, SongNote, VariationSet

FORMAT_NAME = "continuo-session"
FORMAT_VERSION = 1
SUFFIX = ".continuo"
NOTE_FIELDS = ["id", "pitch", "velocity", "start", "length", "part"]
MAX_SESSION_BYTES = 200 * 1024 * 1024


class SessionError(Exception):
    """A session file that cannot be opened; the message is for the musician."""


@dataclass
class SessionData:
    """What a session file holds: the song's notes and metadata, and view state worth keeping."""

    notes: list[SongNote]
    meta: dict[str, Any]
    view: dict[str, Any]


def song_to_dict(song: Song, view: dict[str, Any] | None = None) -> dict[str, Any]:
    """The song as JSON-ready values."""
    meta = song.meta()
    data = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tempo": meta["tempo"],
        "time_signature": list(meta["time_signature"]),
        "model": meta["model"],
        "settings": meta["settings"].to_dict(),
        "view": view or {},
        "note_fields": NOTE_FIELDS,
        "notes": [
            [note.id, note.pitch, note.velocity, round(note.start, 9), round(note.length, 9), note.part]
            for note in song.notes()
        ],
    }
    if meta.get("variations") is not None:  # the variations still to pick from (until accepted or discarded)
        data["variations"] = meta["variations"].to_dict()
    return data


def write_session(song: Song, path: str | os.PathLike, view: dict[str, Any] | None = None) -> None:
    """Writes the song as a session file, atomically (temporary file, then rename)."""
    text = json.dumps(song_to_dict(song, view), separators=(",", ":"))
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def read_session(path: str | os.PathLike) -> SessionData:
    """Reads a session file; raises SessionError with a clear message if it cannot be used."""
    path = Path(path)
    name = path.name or str(path)
    try:
        if path.stat().st_size > MAX_SESSION_BYTES:
            raise SessionError(f"{name}: the file is too large to be a Continuo session")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SessionError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise SessionError(f"{name}: is a folder, not a session file") from None
    except OSError as error:
        raise SessionError(f"{name}: cannot be read ({error.strerror or error})") from None
    return session_from_bytes(raw, name)


def session_from_bytes(raw: bytes, name: str) -> SessionData:
    """Parses and checks session JSON (from a file or an autosave)."""
    if not raw.strip():
        raise SessionError(f"{name}: the file is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SessionError(f"{name}: not a Continuo session (the file is not text)") from None
    except json.JSONDecodeError as error:
        raise SessionError(
            f"{name}: the session file is damaged (unreadable at line {error.lineno}, "
            f"column {error.colno}); it may have been cut short"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise SessionError(f"{name}: not a Continuo session file")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise SessionError(f"{name}: the session file is damaged (its format version is missing)")
    if version > FORMAT_VERSION:
        raise SessionError(
            f"{name}: made by a newer version of Continuo (session format {version}); this "
            f"version opens format {FORMAT_VERSION}. Update Continuo to open it."
        )
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise SessionError(f"{name}: the session file is damaged ({detail})") from None


def _parse(data: dict[str, Any]) -> SessionData:
    """The checked contents of a version-1 session."""
    tempo = float(data["tempo"])
    if not 20 <= tempo <= 400:
        raise ValueError(f"tempo {tempo:g} BPM is out of range")
    numerator, denominator = (int(value) for value in data["time_signature"])
    if not (1 <= numerator <= 32 and denominator in (1, 2, 4, 8, 16, 32)):
        raise ValueError(f"time signature {numerator}/{denominator} is not supported")
    settings = GenerationSettings.from_dict(dict(data.get("settings") or {}))
    model = str(data.get("model") or "default")
    fields = data.get("note_fields", NOTE_FIELDS)
    if list(fields) != NOTE_FIELDS:
        raise ValueError("the notes are stored in an unknown layout")
    notes: list[SongNote] = []
    seen: set[int] = set()
    for row in data["notes"]:
        note_id, pitch, velocity, start, length, part = row
        note_id, pitch, velocity = int(note_id), int(pitch), int(velocity)
        start, length = float(start), float(length)
        if not (0 <= pitch <= 127 and 1 <= velocity <= 127):
            raise ValueError(f"a note has pitch {pitch} and velocity {velocity}")
        if not (start >= 0 and length > 0) or start != start or length != length:
            raise ValueError(f"a note starts at {start} and lasts {length} beats")
        if part not in PARTS:
            raise ValueError(f"a note belongs to an unknown part {part!r}")
        if note_id in seen or note_id < 1:
            raise ValueError(f"note id {note_id} is repeated or invalid")
        seen.add(note_id)
        notes.append(SongNote(note_id, pitch, velocity, start, length, part))
    view = data.get("view") or {}
    if not isinstance(view, dict):
        view = {}
    variations = data.get("variations")
    variations = VariationSet.from_dict(dict(variations)) if variations is not None else None
    meta = {
        "tempo": tempo,
        "time_signature": (numerator, denominator),
        "settings": settings,
        "model": model,
        "variations": variations,
    }
    return SessionData(notes, meta, view)
