"""MIDI files to and from `Note` lists, through pretty_midi.

Reading merges every non-drum instrument, honours tempo changes (pretty_midi converts ticks to seconds
through the tempo map) and applies the sustain pedal the way Magenta's preprocessing does: a note
released while CC64 is down sounds on until the pedal goes up, or until its pitch is struck again.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import MidiFileError
from .events import Note

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_NOTES = 1_000_000
SUSTAIN_CONTROLLER = 64
_MIN_BYTES_PER_NOTE = 6  # a note-on and a note-off, each a 1-byte delta and 2 data bytes (running status)


def _variable_length(data: bytes, i: int, end: int) -> tuple[int, int]:
    """The variable-length quantity at data[i] (7 bits a byte, high bit set on all but the last) and
    the position after it."""
    value = 0
    while i < end:
        value = (value << 7) | (data[i] & 0x7F)
        i += 1
        if not data[i - 1] & 0x80:
            break
    return value, i


def _count_notes_at_most(data: bytes, limit: int) -> int:
    """Counts note-ons (velocity > 0) in a standard MIDI file's bytes, stopping once past `limit`.

    A quick scan that skips over events without building messages, so that a file with millions of
    notes is refused in about a second instead of being parsed in full.
    """
    count = 0
    position = 14
    size = len(data)
    while position + 8 <= size:
        chunk_type = data[position:position + 4]
        (length,) = struct.unpack(">I", data[position + 4:position + 8])
        position += 8
        end = min(position + length, size)
        if chunk_type != b"MTrk":
            position = end
            continue
        status = 0
        i = position
        while i < end:
            while i < end and data[i] & 0x80:  # variable-length delta time
                i += 1
            i += 1
            if i >= end:
                break
            byte = data[i]
            if byte & 0x80:
                status = byte
                i += 1
                if byte in (0xFF, 0xF0, 0xF7):  # meta (after its type byte) or sysex: length, payload
                    length, i = _variable_length(data, i + (byte == 0xFF), end)
                    i += length
                    continue
            kind = status & 0xF0
            if kind in (0xC0, 0xD0):
                i += 1
            else:
                if kind == 0x90 and i + 1 < end and data[i + 1] > 0:
                    count += 1
                    if count > limit:
                        return count
                i += 2
        position = end
    return count


def _sustained(notes: list, pedal_changes: list) -> list[tuple[int, int, float, float]]:
    """Lengthens notes released while the sustain pedal is down, as (pitch, velocity, start, end)."""
    # Pedal intervals where CC64 >= 64.
    intervals = []
    down_at = None
    for change in sorted(pedal_changes, key=lambda c: c.time):
        if change.value >= 64 and down_at is None:
            down_at = change.time
        elif change.value < 64 and down_at is not None:
            intervals.append((down_at, change.time))
            down_at = None
    if down_at is not None:
        intervals.append((down_at, float("inf")))
    result = []
    for note in notes:
        end = note.end
        for down, up in intervals:
            if down <= note.end < up:
                end = up
                break
        result.append([note.pitch, note.velocity, note.start, end])
    # A pitch struck again while an earlier one still rings ends the earlier one there.
    result.sort(key=lambda n: (n[0], n[2]))
    for earlier, later in zip(result, result[1:]):
        if earlier[0] == later[0] and earlier[3] > later[2]:
            earlier[3] = later[2]
    last_time = max((n.end for n in notes), default=0.0)
    for n in result:
        if n[3] == float("inf"):
            n[3] = max(last_time, n[2])
    return [tuple(n) for n in result]


def read_midi(path: str | os.PathLike) -> list[Note]:
    """The notes of a MIDI file, non-drum instruments merged, sorted by start then pitch."""
    path = Path(path)
    name = path.name or str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise MidiFileError(f"{name}: no such file") from None
    except OSError as error:
        raise MidiFileError(f"{name}: cannot be read ({error.strerror or error})") from None
    if path.is_dir():
        raise MidiFileError(f"{name}: is a folder, not a MIDI file")
    if size == 0:
        raise MidiFileError(f"{name}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise MidiFileError(f"{name}: the file is {size / 2**20:.0f} MB; Continuo reads MIDI files up to "
                            f"{MAX_FILE_BYTES // 2**20} MB")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MidiFileError(f"{name}: cannot be read ({error.strerror or error})") from None
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI: unwrap the data chunk
        start = data.find(b"MThd")
        data = data[start:] if start >= 0 else data
    if data[:4] != b"MThd":
        raise MidiFileError(f"{name}: not a MIDI file (it does not start with a MIDI header)")
    if len(data) < 14:
        raise MidiFileError(f"{name}: the file is truncated (the MIDI header is incomplete)")
    if len(data) >= MAX_NOTES * _MIN_BYTES_PER_NOTE and _count_notes_at_most(data, MAX_NOTES) > MAX_NOTES:
        raise MidiFileError(f"{name}: more than {MAX_NOTES:,} notes; Continuo reads pieces up to that size")

    import io

    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as error:  # pretty_midi and mido raise many types for damaged files
        reason = str(error).strip() or type(error).__name__
        if isinstance(error, EOFError) or "end of file" in reason.lower() or "truncated" in reason.lower():
            reason = f"the file is truncated ({reason})"
        raise MidiFileError(f"{name}: damaged or unsupported MIDI file ({reason})") from None

    instruments = [instrument for instrument in midi.instruments if instrument.notes]
    if not instruments:
        raise MidiFileError(f"{name}: the file has no notes")
    melodic = [instrument for instrument in instruments if not instrument.is_drum]
    if not melodic:
        raise MidiFileError(f"{name}: the file has only drum notes, and Continuo continues pitched music")
    notes: list[Note] = []
    for instrument in melodic:
        pedal = [c for c in instrument.control_changes if c.number == SUSTAIN_CONTROLLER]
        for pitch, velocity, start, end in _sustained(instrument.notes, pedal):
            if 0 < velocity and end >= start:
                notes.append(Note(int(pitch), int(velocity), float(start), float(end)))
    if not notes:
        raise MidiFileError(f"{name}: the file has no notes")
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


def write_midi(notes: Iterable[Note], path: str | os.PathLike, bpm: float = 120, program: int = 0) -> None:
    """Writes notes as a one-track piano MIDI file at a tempo, atomically (temporary file, then rename)."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=float(bpm))  # sub-ms ticks at usual tempi
    instrument = pretty_midi.Instrument(program=program, name="Continuo")
    for pitch, velocity, start, end in _without_overlaps(notes):
        instrument.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=end))
    midi.instruments.append(instrument)
    atomic_write(path, lambda handle: midi.write(handle))


def _without_overlaps(notes: Iterable[Note]) -> list[tuple[int, int, float, float]]:
    """Notes made unambiguous for a MIDI file: on one pitch, a note struck again ends the earlier one."""
    cleaned = sorted(((int(n.pitch), min(max(int(n.velocity), 1), 127), max(float(n.start), 0.0),
                       max(float(n.end), float(n.start) + 0.001)) for n in notes),
                     key=lambda n: (n[0], n[2], n[3]))
    result = []
    for index, (pitch, velocity, start, end) in enumerate(cleaned):
        following = cleaned[index + 1] if index + 1 < len(cleaned) else None
        if following is not None and following[0] == pitch and following[2] < end:
            end = following[2]
        if end > start:
            result.append((pitch, velocity, start, end))
    return result


def atomic_write(path: str | os.PathLike, write) -> None:
    """Calls write(binary file) on a temporary file beside `path`, then renames it over `path`."""
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        raise
