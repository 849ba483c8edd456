"""Session files (`.continuo`): the whole song as JSON, read back with checks that name the problem.

The format carries a version. A file from a newer Continuo is refused with a message that says so, and a
damaged one with a message that says what is wrong; nothing is ever written over a file that failed.

Version 2 adds the tempo map: `tempo_changes` ([beat, BPM], ...) and `metre_changes` ([beat, numerator,
denominator], ...) after the first tempo and time signature, and the Continue length in its own unit
(`settings.length`, bars or seconds, where version 1 kept `length_beats`). A song of one tempo and one metre
is still written as version 1 (with both lengths), so that an older Continuo opens it as before; version 1
files open as a song of one tempo and one metre.

This is also the studio's one validation layer for songs read from disk: the checks below (`load_json`,
`check_note`, `check_meta`) read session files and autosave snapshots here, and the autosave journal's lines in
autosave.py, against the limits in limits.py. Every number is finite and within them, or the input is refused
with a `ValueError` (a `SessionError` for a file) in words a musician understands.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from music_transformer.files import FileTooLargeError, NotRegularFileError, atomic_write, read_regular

from . import limits
from .generation_settings import GenerationSettings, VariationSet
from .notes import PARTS, SongNote
from .song import Song
from .tempo_map import TempoMap

FORMAT_NAME = "continuo-session"
FORMAT_VERSION = 2
SUFFIX = ".continuo"
NOTE_FIELDS = ["id", "pitch", "velocity", "start", "length", "part"]
MAX_SESSION_BYTES = limits.MAX_SESSION_BYTES


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
    tempo_map = song.tempo_map
    settings = meta["settings"].to_dict()
    # what version 1 kept, for an older Continuo: the length in beats of the song's first bars or tempo
    unit_beats = song.beats_per_bar if settings["length_unit"] == "bars" else song.tempo / 60.0
    settings["length_beats"] = round(settings["length"] * unit_beats, 6)
    data = {
        "format": FORMAT_NAME,
        "version": 1 if tempo_map.is_steady else FORMAT_VERSION,
        "tempo": meta["tempo"],
        "time_signature": list(meta["time_signature"]),
        "model": meta["model"],
        "settings": settings,
        "view": view or {},
        "note_fields": NOTE_FIELDS,
        "notes": [
            # times as the song holds them (the shortest text that reads back the same float): rounded, a note
            # came back 1e-16 off, and a note at the last beat could read as past it
            [note.id, note.pitch, note.velocity, note.start, note.length, note.part]
            for note in song.notes()
        ],
    }
    if meta.get("variations") is not None:  # the variations still to pick from (until accepted or discarded)
        data["variations"] = meta["variations"].to_dict()
    if not tempo_map.is_steady:
        data["tempo_changes"] = [[round(beat, 9), bpm] for beat, bpm in meta["tempo_changes"]]
        data["metre_changes"] = [[round(beat, 9), n, d] for beat, n, d in meta["metre_changes"]]
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
        raw = read_regular(path, MAX_SESSION_BYTES)  # a device or a FIFO is refused, never read or waited on
    except FileNotFoundError:
        raise SessionError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise SessionError(f"{name}: is a folder, not a session file") from None
    except FileTooLargeError:
        raise SessionError(f"{name}: the file is too large to be a Continuo session") from None
    except NotRegularFileError as error:
        raise SessionError(f"{name}: {error.strerror}; Continuo opens session and MIDI files") from None
    except OSError as error:
        raise SessionError(f"{name}: cannot be read ({error.strerror or error})") from None
    return session_from_bytes(raw, name)


def session_from_bytes(raw: bytes, name: str) -> SessionData:
    """Parses and checks session JSON (from a file or an autosave)."""
    return session_from_json(session_json(raw, name), name)


def session_json(raw: bytes, name: str) -> Any:
    """The JSON of a session file, every number finite; SessionError when it is not JSON."""
    if not raw.strip():
        raise SessionError(f"{name}: the file is empty")
    if len(raw) > limits.MAX_SESSION_BYTES:
        raise SessionError(f"{name}: the file is too large to be a Continuo session")
    try:
        return load_json(raw)
    except UnicodeDecodeError:
        raise SessionError(f"{name}: not a Continuo session (the file is not text)") from None
    except json.JSONDecodeError as error:
        raise SessionError(
            f"{name}: the session file is damaged (unreadable at line {error.lineno}, "
            f"column {error.colno}); it may have been cut short"
        ) from None
    except ValueError as error:
        raise SessionError(f"{name}: the session file is damaged ({error})") from None


def session_from_json(data: Any, name: str) -> SessionData:
    """Checks parsed session JSON (`session_json`); SessionError says what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise SessionError(f"{name}: not a Continuo session file")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SessionError(f"{name}: the session file is damaged (its format version is missing)")
    if version > FORMAT_VERSION:
        raise SessionError(
            f"{name}: made by a newer version of Continuo (session format {version}); this "
            f"version opens format {FORMAT_VERSION}. Update Continuo to open it."
        )
    try:
        return _parse(data)
    except KeyError as error:
        raise SessionError(f"{name}: the session file is damaged (missing {error})") from None
    except ValueError as error:
        raise SessionError(f"{name}: the session file is damaged ({error})") from None


def _parse(data: dict[str, Any]) -> SessionData:
    """The checked contents of a version-1 or 2 session (ValueError or KeyError says what is wrong)."""
    meta = check_meta(
        {key: data[key] for key in ("tempo", "time_signature")}
        | {key: data[key] for key in ("model", "variations") if data.get(key) is not None}
        | {key: data[key] for key in ("tempo_changes", "metre_changes") if key in data}
    )
    if data.get("settings") is not None:  # a version-1 length in beats is read in this song's bars or tempo
        numerator, denominator = meta["time_signature"]
        meta["settings"] = check_settings(data["settings"], numerator * 4.0 / denominator, meta["tempo"])
    check_tempo_map(meta)
    meta.setdefault("settings", GenerationSettings())
    meta.setdefault("model", "default")
    meta.setdefault("variations", None)
    fields = data.get("note_fields", NOTE_FIELDS)
    if fields != NOTE_FIELDS:
        raise ValueError("the notes are stored in an unknown layout")
    rows = data["notes"]
    if not isinstance(rows, list):
        raise ValueError("the notes are not a list")
    if len(rows) > limits.MAX_NOTES:
        raise ValueError(f"it holds {len(rows):,} notes; Continuo keeps songs of up to {limits.MAX_NOTES:,}")
    notes: list[SongNote] = []
    seen: set[int] = set()
    for row in rows:
        note = check_note(row)
        if note.id in seen:
            raise ValueError(f"note id {note.id} is repeated")
        seen.add(note.id)
        notes.append(note)
    end = max((note.start + note.length for note in notes), default=0.0)
    tempo_map = TempoMap(  # what the library exports and continues: two hours, through the song's tempo map
        ((0.0, meta["tempo"]), *meta.get("tempo_changes", ())),
        ((0.0, *meta["time_signature"]), *meta.get("metre_changes", ())),
    )
    last = limits.map_beat_limit(tempo_map.beats)
    if end > last + 1e-6:
        reason = (
            limits.past_the_end(end, meta["tempo"])
            if tempo_map.is_steady
            else limits.past_the_end(end, meta["tempo"], tempo_map.seconds(end), last)
        )
        raise ValueError(reason.replace("The song would end", "its notes end", 1))
    view = data.get("view")
    return SessionData(notes, meta, view if isinstance(view, dict) else {})  # the view's owners check its values


# --- the checks: one layer for session files, autosave snapshots and journal lines ---------------------------


class _NotFiniteError(ValueError):
    """A number in the JSON that is not finite (1e999, NaN, Infinity)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFiniteError(f"the number {text[:24]} is too large")
    return value


def _constant(text: str) -> float:
    raise _NotFiniteError(f"{text} is not a number Continuo keeps")


def load_json(raw: bytes | str) -> Any:
    """JSON whose every number is finite. Raises UnicodeDecodeError, json.JSONDecodeError, or ValueError in words
    (a number too large or too long, nesting too deep)."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        raise ValueError("the data is nested too deeply") from None
    except (json.JSONDecodeError, _NotFiniteError):
        raise
    except ValueError:  # Python's cap on the digits of a whole number
        raise ValueError("a number has too many digits") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_whole(value: Any, low: int, high: int, what: str) -> int:
    """A whole number within low..high (a float with nothing after the point counts)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} is {_shown(value)}, not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{what} is {value}; it must be {low:,} to {high:,}")
    return value


def check_real(value: Any, low: float, high: float, what: str, above: bool = False) -> float:
    """A finite number within low..high (strictly above `low` with `above`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {_shown(value)}, not a number")
    value = float(value)
    if not (math.isfinite(value) and (value > low if above else value >= low) and value <= high):
        raise ValueError(f"{what} is {value:g}; it must be {'above' if above else 'from'} {low:g} to {high:g}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > limits.MAX_TEXT_CHARS or "\0" in value:
        raise ValueError(f"{what} is {_shown(value)}, not a name")
    return value


def check_note(row: Any) -> SongNote:
    """A stored note ([id, pitch, velocity, start, length, part], beats) within the limits."""
    if not isinstance(row, list) or len(row) != len(NOTE_FIELDS):
        raise ValueError(f"a note is stored as {_shown(row)}, not its {len(NOTE_FIELDS)} fields")
    note_id = check_whole(row[0], 1, limits.MAX_NOTE_ID, "a note's id")
    pitch = check_whole(row[1], limits.MIN_PITCH, limits.MAX_PITCH, "a note's pitch")
    velocity = check_whole(row[2], limits.MIN_VELOCITY, limits.MAX_VELOCITY, "a note's velocity")
    start = check_real(row[3], 0.0, limits.MAX_BEATS, "a note's start (in beats)")
    length = check_real(row[4], limits.MIN_NOTE_BEATS, limits.MAX_BEATS, "a note's length (in beats)")
    if start + length > limits.MAX_BEATS + 1e-6:  # a note at the very end, its times rounded when saved
        raise ValueError(
            f"a note at beat {start:,.0f} ends past beat {limits.MAX_BEATS:,.0f}, the end of the longest song "
            f"Continuo keeps ({limits.MAX_PIECE_SECONDS / 3600:g} hours at {limits.MAX_TEMPO:g} BPM)"
        )
    part = row[5]
    if part not in PARTS:
        raise ValueError(f"a note belongs to an unknown part {_shown(part)}")
    return SongNote(note_id, pitch, velocity, start, length, part)


def check_tempo(value: Any) -> float:
    """A tempo in BPM."""
    return check_real(value, limits.MIN_TEMPO, limits.MAX_TEMPO, "the tempo (BPM)")


def check_time_signature(value: Any) -> tuple[int, int]:
    """A time signature [beats in a bar, note value of the beat]."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"the time signature is {_shown(value)}, not two numbers")
    numerator = check_whole(value[0], 1, limits.MAX_NUMERATOR, "the time signature's beats in a bar")
    denominator = check_whole(value[1], 1, max(limits.DENOMINATORS), "the time signature's beat")
    if denominator not in limits.DENOMINATORS:
        raise ValueError(f"time signature {numerator}/{denominator} is not supported")
    return numerator, denominator


def _from_dict(kind, value: Any, what: str, *args):
    """A dataclass's own checked `from_dict`, its errors said as damage."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} are {_shown(value)}, not a set of values")
    try:
        return kind.from_dict(dict(value), *args)
    except KeyError as error:
        raise ValueError(f"{what} are missing {error}") from None
    except (TypeError, ValueError, OverflowError, AttributeError) as error:
        raise ValueError(f"{what} are damaged ({str(error)[:120] or type(error).__name__})") from None


def check_settings(value: Any, beats_per_bar: float = 4.0, tempo: float = 120.0) -> GenerationSettings:
    """The generation settings (an older length in beats read in bars of `beats_per_bar`, or at `tempo`)."""
    return _from_dict(GenerationSettings, value, "the generation settings", beats_per_bar, tempo)


def check_variations(value: Any) -> VariationSet | None:
    """The variations being auditioned (None: none)."""
    return None if value is None else _from_dict(VariationSet, value, "the variations")


def check_model(value: Any) -> str:
    """Which model continues the song: a checkpoint's name or path."""
    return _text(value, "the model")


def check_tempo_changes(value: Any) -> tuple[tuple[float, float], ...]:
    """The tempo changes after the first tempo: [beat, BPM] pairs, in order, after beat 0."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"the tempo changes are {_shown(value)}, not a list")
    if len(value) > limits.MAX_TEMPO_CHANGES:
        raise ValueError(f"{len(value):,} tempo changes; Continuo keeps up to {limits.MAX_TEMPO_CHANGES:,}")
    changes = []
    for change in value:
        if not isinstance(change, (list, tuple)) or len(change) != 2:
            raise ValueError(f"a tempo change is {_shown(change)}, not a beat and a tempo")
        beat = check_real(change[0], 0.0, limits.MAX_BEATS, "a tempo change's beat", above=True)
        if changes and beat <= changes[-1][0]:
            raise ValueError(f"the tempo changes are out of order at beat {beat:g}")
        changes.append((beat, check_tempo(change[1])))
    return tuple(changes)


def check_metre_changes(value: Any) -> tuple[tuple[float, int, int], ...]:
    """The time signature changes after the first: [beat, numerator, denominator], in order, after beat 0."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"the time signature changes are {_shown(value)}, not a list")
    if len(value) > limits.MAX_METRE_CHANGES:
        raise ValueError(f"{len(value):,} time signature changes; Continuo keeps up to {limits.MAX_METRE_CHANGES:,}")
    changes = []
    for change in value:
        if not isinstance(change, (list, tuple)) or len(change) != 3:
            raise ValueError(f"a time signature change is {_shown(change)}, not a beat and a time signature")
        beat = check_real(change[0], 0.0, limits.MAX_BEATS, "a time signature change's beat", above=True)
        if changes and beat <= changes[-1][0]:
            raise ValueError(f"the time signature changes are out of order at beat {beat:g}")
        changes.append((beat, *check_time_signature(change[1:])))
    return tuple(changes)


def check_tempo_map(meta: dict[str, Any]) -> None:
    """Fills in a song of one tempo and one metre where the metadata holds no changes (older sessions)."""
    meta.setdefault("tempo_changes", ())
    meta.setdefault("metre_changes", ())


META_CHECKS = {
    "tempo": check_tempo,
    "time_signature": check_time_signature,
    "tempo_changes": check_tempo_changes,
    "metre_changes": check_metre_changes,
    "settings": check_settings,
    "model": check_model,
    "variations": check_variations,
}


def check_meta(meta: Any) -> dict[str, Any]:
    """Song metadata from JSON values (some or all of META_CHECKS' keys), each checked; unknown keys are refused."""
    if not isinstance(meta, dict):
        raise ValueError(f"the song's settings are {_shown(meta)}, not a set of values")
    unknown = sorted(str(key) for key in meta if key not in META_CHECKS)
    if unknown:
        raise ValueError(f"unknown song property {_shown(unknown[0])}")
    return {key: META_CHECKS[key](value) for key, value in meta.items()}
