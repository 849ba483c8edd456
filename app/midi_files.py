"""MIDI files in and out of the song, through music_transformer's `read_midi` and `write_midi`.

Reading a file for the song (`read_midi_file`) needs no Song and no Qt, so the studio runs it on a helper
thread: the notes in seconds (the library's reading, every tempo change honoured), and the file's first tempo
and time signature for the grid, with a remark when the file changes tempo or metre, which a song with one
tempo and one time signature cannot hold (the notes keep their times; the bar lines follow the first ones).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from music_transformer import MidiFileError, Note, read_midi, write_midi
from music_transformer import limits as library_limits

from . import limits
from .song import CONTINUATION, MOTIF, Song

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")
EXPORT_PARTS = {"everything": None, "motif": MOTIF, "continuation": CONTINUATION}
DEFAULT_TEMPO = 120.0  # MIDI's tempo until a file sets one
TEMPO_TOLERANCE = 0.5  # BPM: a "change" smaller than this is rounding in the file, not a change
_TEMPO, _TIME_SIGNATURE = 0x51, 0x58


@dataclass
class MidiTiming:
    """A MIDI file's tempo map and metre as far as the music goes: (tick, BPM) and (tick, (n, d)) changes."""

    tempi: list[tuple[int, float]] = field(default_factory=list)
    signatures: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # time signatures the song cannot take ("33/4")

    @property
    def tempo(self) -> float:
        """The first tempo, in BPM, within the song's range."""
        bpm = self.tempi[0][1] if self.tempi else DEFAULT_TEMPO
        return round(min(max(bpm, limits.MIN_TEMPO), limits.MAX_TEMPO), 3)

    @property
    def time_signature(self) -> tuple[int, int]:
        """The first time signature (4/4 when the file sets none)."""
        return self.signatures[0][1] if self.signatures else (4, 4)

    def tempo_changes(self) -> list[float]:
        """The tempi the music passes through, in order, when it changes (empty when it keeps one)."""
        values = [bpm for _, bpm in self.tempi]
        if self.tempi and self.tempi[0][0] > 0:
            values.insert(0, DEFAULT_TEMPO)  # 120 BPM until the first tempo event
        kept = values[:1]
        for bpm in values[1:]:
            if abs(bpm - kept[-1]) >= TEMPO_TOLERANCE:
                kept.append(bpm)
        return kept if len(kept) > 1 else []

    def signature_changes(self) -> list[tuple[int, int]]:
        """The time signatures the music passes through, in order, when it changes (empty when it keeps one)."""
        kept: list[tuple[int, int]] = []
        for _, signature in self.signatures:
            if not kept or signature != kept[-1]:
                kept.append(signature)
        return kept if len(kept) > 1 else []

    def remarks(self) -> list[str]:
        """What the song cannot hold of the file's timing, in words (empty when it holds it all)."""
        said = []
        tempi = self.tempo_changes()
        if tempi:
            low, high = min(tempi), max(tempi)
            said.append(
                f"the file changes tempo {len(tempi) - 1} time{'s' * (len(tempi) > 2)} ({low:g}–{high:g} BPM); "
                f"the song keeps {self.tempo:g} BPM, so the notes keep their times and the bar lines follow "
                f"{self.tempo:g} BPM"
            )
        metres = self.signature_changes()
        if metres:
            shown = ", ".join(f"{n}/{d}" for n, d in metres[:4]) + (", …" if len(metres) > 4 else "")
            said.append(f"the file changes metre ({shown}); the song keeps {metres[0][0]}/{metres[0][1]}")
        if self.unsupported:
            said.append(f"its time signature {self.unsupported[0]} is not one Continuo keeps")
        return said


@dataclass
class MidiFileRead:
    """A MIDI file read for the song: its notes in seconds, and its timing."""

    notes: list[Note]
    timing: MidiTiming


def midi_timing(data: bytes) -> MidiTiming:
    """The tempo map (the first track's, the one the library reads) and the time signatures of MIDI bytes that
    `read_midi` accepted, up to the last note. Walks the events as the library's walk does; stops quietly at
    anything it does not expect (the notes were read already)."""
    timing = MidiTiming()
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        data = data[max(data.find(b"MThd"), 0) :]
    if data[:4] != b"MThd" or len(data) < 14:
        return timing
    header_length, _, tracks, division = struct.unpack(">IHHh", data[4:14])
    if division <= 0:
        return timing
    tempi: list[tuple[int, float]] = []
    signatures: list[tuple[int, tuple[int, int]]] = []
    last_note = 0
    position = 8 + header_length
    for track in range(tracks):
        if data[position : position + 4] != b"MTrk":
            break
        (length,) = struct.unpack(">I", data[position + 4 : position + 8])
        i, end = position + 8, min(position + 8 + length, len(data))
        tick, status = 0, None
        while i < end:
            delta, i = _number(data, i, end)
            tick += delta
            if i >= end:
                break
            if data[i] < 0x80:
                if status is None:
                    break
                kind, running = status, True
            else:
                kind, running = data[i], False
                i += 1
                if kind != 0xFF:
                    status = kind
            if kind in (0xFF, 0xF0, 0xF7):
                meta_type = data[i] if kind == 0xFF and i < end else None
                i += kind == 0xFF or running
                size, i = _number(data, i, end)
                body, i = data[i : i + size], i + size
                if meta_type == _TEMPO and track == 0 and size >= 3 and int.from_bytes(body[:3], "big"):
                    tempi.append((tick, 60_000_000 / int.from_bytes(body[:3], "big")))
                elif meta_type == _TIME_SIGNATURE and size >= 2:
                    signatures.append((tick, (body[0], 2 ** min(body[1], 16))))
                continue
            size = 1 if (kind & 0xF0) in (0xC0, 0xD0) or kind in (0xF1, 0xF3) else 0 if kind >= 0xF4 else 2
            if (kind & 0xF0) == 0x90 and i + 1 < end and data[i + 1]:
                last_note = max(last_note, tick)
            i += size
        position += 8 + length
    tempi.sort(key=lambda change: change[0])  # stable: events at one tick keep the file's order
    signatures.sort(key=lambda change: change[0])
    # What comes at the music's start counts from tick 0; what comes after the last note changes nothing heard.
    timing.tempi = _from_start([change for change in tempi if change[0] <= last_note])
    for tick, (numerator, denominator) in _from_start([change for change in signatures if change[0] <= last_note]):
        if 1 <= numerator <= limits.MAX_NUMERATOR and denominator in limits.DENOMINATORS:
            timing.signatures.append((tick, (numerator, denominator)))
        else:
            timing.unsupported.append(f"{numerator}/{denominator}")
    return timing


def _from_start(changes: list[tuple[int, object]]) -> list[tuple[int, object]]:
    """Changes at one tick: the last one holds; the first change's tick stays (a later start is a change)."""
    kept: list[tuple[int, object]] = []
    for tick, value in changes:
        if kept and kept[-1][0] == tick:
            kept[-1] = (tick, value)
        else:
            kept.append((tick, value))
    return kept


def _number(data: bytes, i: int, end: int) -> tuple[int, int]:
    """A variable-length quantity (7 bits a byte, at most 4 bytes) and the index after it."""
    value = 0
    for index in range(i, min(i + 4, end)):
        value = (value << 7) | (data[index] & 0x7F)
        if not data[index] & 0x80:
            return value, index + 1
    return value, end


def read_midi_file(path: str | os.PathLike) -> MidiFileRead:
    """A MIDI file's notes (seconds, through the library's bounded reading) and its timing; raises MidiFileError.

    Needs no Song and no Qt: the studio calls it on a helper thread.
    """
    notes = read_midi(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(library_limits.MAX_MIDI_FILE_BYTES + 1)
    except OSError as error:
        raise MidiFileError(f"{Path(path).name}: cannot be read ({error.strerror or error})") from None
    return MidiFileRead(notes, midi_timing(data))


def export_midi(song: Song, path: str | os.PathLike, what: str = "everything") -> int:
    """Writes the song (everything, the motif or the continuation) as a MIDI file; returns the note count.

    Raises MidiFileError when there is nothing to write or the file cannot be written.
    """
    part = EXPORT_PARTS[what]
    notes = song.performance_notes(part)
    name = Path(path).name
    if not notes:
        raise MidiFileError(f"{name}: nothing to export (the {what if part else 'song'} has no notes)")
    try:
        write_midi(notes, path, bpm=song.tempo)
    except OSError as error:
        raise MidiFileError(f"{name}: cannot be written ({error.strerror or error})") from None
    except ValueError as error:  # the library's limits, e.g. a song longer than it writes at this tempo
        raise MidiFileError(f"{name}: cannot be exported ({error})") from None
    return len(notes)


def is_midi_path(path: str | os.PathLike) -> bool:
    """Whether a path names a MIDI file (by its suffix)."""
    return Path(path).suffix.lower() in MIDI_SUFFIXES
