"""MIDI files in and out of the song, through music_transformer's `read_midi_timed` and `write_midi`.

Reading a file for the song (`read_midi_file`) needs no Song and no Qt, so the studio runs it on a helper
thread: the notes in seconds (the library's reading, every tempo change honoured), and the file's first tempo
and time signature for the grid, with a remark when the file changes tempo or metre, which a song with one
tempo and one time signature cannot hold (the notes keep their times; the bar lines follow the first ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from music_transformer import MidiFileError, Note, write_midi
from music_transformer.midi import MidiFileTiming, read_midi_timed

from . import limits
from .song import CONTINUATION, MOTIF, Song

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")
EXPORT_PARTS = {"everything": None, "motif": MOTIF, "continuation": CONTINUATION}
DEFAULT_TEMPO = 120.0  # MIDI's tempo until a file sets one
TEMPO_TOLERANCE = 0.5  # BPM: a "change" smaller than this is rounding in the file, not a change


@dataclass
class MidiTiming:
    """A MIDI file's tempo map and metre as far as the music goes: (tick, BPM) and (tick, (n, d)) changes."""

    tempi: list[tuple[int, float]] = field(default_factory=list)
    signatures: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # time signatures the song cannot take ("33/4")
    unreleased: int = 0  # notes the file never released: they sound to the end of their track

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
        """What the song cannot hold of the file's timing, and the notes the file never ends, in words (empty
        when there is nothing to say)."""
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
        if self.unreleased:
            many = self.unreleased > 1
            said.append(
                f"{self.unreleased} note{'s' * many} in the file {'are' if many else 'is'} never released, so "
                f"{'they sound' if many else 'it sounds'} to the end of {'their' if many else 'its'} track"
            )
        return said


@dataclass
class MidiFileRead:
    """A MIDI file read for the song: its notes in seconds, and its timing."""

    notes: list[Note]
    timing: MidiTiming


def midi_timing(file: MidiFileTiming) -> MidiTiming:
    """The song's view of a file's timing (the library's reading of it, one change a tick): tempi in BPM and
    the time signatures up to the last note, and the signatures a song cannot take."""
    timing = MidiTiming(unreleased=file.unreleased)
    # What comes after the last note changes nothing heard.
    timing.tempi = [(tick, 60_000_000 / tempo) for tick, tempo in file.tempi if tick <= file.last_note]
    for tick, numerator, denominator in file.signatures:
        if tick > file.last_note:
            break
        if 1 <= numerator <= limits.MAX_NUMERATOR and denominator in limits.DENOMINATORS:
            timing.signatures.append((tick, (numerator, denominator)))
        else:
            timing.unsupported.append(f"{numerator}/{denominator}")
    return timing


def read_midi_file(path: str | os.PathLike) -> MidiFileRead:
    """A MIDI file's notes (seconds, through the library's bounded reading) and its timing; raises MidiFileError.

    Needs no Song and no Qt: the studio calls it on a helper thread.
    """
    notes, timing = read_midi_timed(path)
    return MidiFileRead(notes, midi_timing(timing))


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
