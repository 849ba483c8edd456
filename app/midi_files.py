"""MIDI files in and out of the song, through music_transformer's `read_midi` and `write_midi`."""

from __future__ import annotations

import os
from pathlib import Path

from music_transformer import MidiFileError, read_midi, write_midi

from .song import CONTINUATION, MAX_TEMPO, MIN_TEMPO, MOTIF, Song, SongNote

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")
EXPORT_PARTS = {"everything": None, "motif": MOTIF, "continuation": CONTINUATION}


def file_tempo(path: str | os.PathLike) -> float | None:
    """The first tempo a MIDI file sets, in BPM, or None if it sets none (MIDI's default is then 120)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)  # the tempo sits at the start of the first track
    except OSError:
        return None
    # A set-tempo meta event is FF 51 03 and three bytes of microseconds per quarter note; 0xFF is never a
    # data byte inside note events, so the first match is the tempo event.
    index = data.find(b"\xff\x51\x03")
    if index < 0 or index + 6 > len(data):
        return None
    microseconds = int.from_bytes(data[index + 3 : index + 6], "big")
    if microseconds <= 0:
        return None
    return 60_000_000 / microseconds


def load_midi(song: Song, path: str | os.PathLike) -> tuple[list[SongNote], float]:
    """A MIDI file's notes as motif notes on the grid, and its tempo; raises MidiFileError.

    The notes get their beats from the file's own tempo, so the file's bars line up with the grid.
    """
    notes = read_midi(path)
    tempo = file_tempo(path) or 120.0
    tempo = round(min(max(tempo, MIN_TEMPO), MAX_TEMPO), 3)
    return song.notes_from_performance(notes, MOTIF, tempo=tempo), tempo


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
    return len(notes)


def is_midi_path(path: str | os.PathLike) -> bool:
    """Whether a path names a MIDI file (by its suffix)."""
    return Path(path).suffix.lower() in MIDI_SUFFIXES
