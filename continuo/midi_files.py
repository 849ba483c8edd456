"""MIDI files in and out of the song, through music_transformer's `read_midi_timed` and `write_midi`.

Reading a file for the song (`read_midi_file`) needs no Song and no Qt, so the studio runs it on a helper
thread: the notes in seconds (the library's reading, every tempo change honoured), and the file's tempo map and
metre changes (`MidiTiming.tempo_map`), in the file's own beats, so that the notes land on the file's grid and
the bar numbers are the score's.

A performance whose notes follow no beat of its file (a recording made without a click, a scanned piano roll
whose tempo changes only follow the paper's speed) still opens on the file's own grid: that is the grid every
DAW and notation program shows for the file, so bar 17 here is bar 17 there, and a performance whose tempo map
was made to follow the music (a map with a change on every beat) gets the score's bars from it. Such a file is
recognised (`beat_phase`) and the opening message says that its bars are the file's, not the music's; so is
a file whose notes follow its beat a constant part of a beat off (POP909's files: their grid starts off the
music's first beat).

Export (`export_midi`) writes what the song holds: the tempo map, every time signature, the key signature
when a key is set, a piano program and named tracks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from music_transformer import MidiFileError, Note, write_midi
from music_transformer.keys import detect_key
from music_transformer.midi import MidiFileTiming, read_midi_timed

from . import limits
from .song import CONTINUATION, MOTIF, Song
from .tempo_map import TempoMap

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")
EXPORT_PARTS = {"everything": None, "motif": MOTIF, "continuation": CONTINUATION}
DEFAULT_TEMPO = 120.0  # MIDI's tempo until a file sets one
TEMPO_TOLERANCE = 0.5  # BPM: a "change" smaller than this is rounding in the file, not a change
# Onsets within this many beats of a sixteenth or a triplet eighth count as on the grid; a file whose notes are
# on it less often than ON_BEAT_SHARE follows no beat (a random onset lands there about 30 % of the time).
ON_GRID_BEATS = 0.03
ON_BEAT_SHARE = 0.6
GRID_POINTS = np.array([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0])
PHASE_SAMPLE = 2000  # onsets read to tell whether a file follows its beat
PHASE_MARGIN = 0.1  # a file on its own grid for all but this share more than another offset's is on its grid


@dataclass
class MidiTiming:
    """A MIDI file's tempo map and metre as far as the music goes: (tick, BPM) and (tick, (n, d)) changes."""

    tempi: list[tuple[int, float]] = field(default_factory=list)
    signatures: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # time signatures the song cannot take ("33/4")
    unreleased: int = 0  # notes the file never released: they sound to the end of their track
    resolution: int = 480  # the file's ticks a beat
    clamped: list[float] = field(default_factory=list)  # tempi past the song's range, kept at its nearest end
    phase: float | None = 0.0  # where the onsets lie against the file's beats (`beat_phase`; None: no beat)

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

    def tempo_map(self, exact: bool = False) -> TempoMap:
        """The file's tempo map and metre changes in its own beats (ticks over its resolution), the tempi within
        the song's range, rounded to a thousandth of a BPM (`exact`: as the file states them, for placing its
        notes on its beats)."""
        resolution = max(1, self.resolution)
        tempi: list[tuple[float, float]] = []
        for tick, bpm in self.tempi if self.tempi and self.tempi[0][0] == 0 else [(0, DEFAULT_TEMPO), *self.tempi]:
            kept = min(max(bpm, limits.MIN_TEMPO), limits.MAX_TEMPO)
            kept = kept if exact else round(kept, 3)
            if not tempi or kept != tempi[-1][1]:
                tempi.append((tick / resolution, kept))
        metres: list[tuple[float, int, int]] = []
        for tick, (numerator, denominator) in self.signatures or [(0, (4, 4))]:
            beat = 0.0 if not metres else tick / resolution
            if not metres or (numerator, denominator) != metres[-1][1:]:
                metres.append((beat, numerator, denominator))
        return TempoMap(tuple(tempi[: limits.MAX_TEMPO_CHANGES + 1]), tuple(metres[: limits.MAX_METRE_CHANGES + 1]))

    def grid_note(self) -> str:
        """What the ruler says of the file's grid while it is open ("" when its notes follow its beats)."""
        if self.phase is None:
            return "Free performance: its notes follow no beat, so the bars are the file's"
        if abs(self.phase) > ON_GRID_BEATS:
            side = "after" if self.phase > 0 else "before"
            return f"The notes lie {abs(self.phase):.2f} of a beat {side} the file's beats, so the bars are the file's"
        return ""

    def remarks(self) -> list[str]:
        """What the song does with the file's timing, and the notes the file never ends, in words (empty when
        there is nothing to say)."""
        said = []
        changes = []
        tempi = self.tempo_changes()
        if tempi:
            low, high = min(tempi), max(tempi)
            changes.append(f"changes tempo {len(tempi) - 1:,} time{'s' * (len(tempi) > 2)} ({low:g}–{high:g} BPM)")
        metres = self.signature_changes()
        if metres:
            shown = ", ".join(f"{n}/{d}" for n, d in metres[:4]) + (", …" if len(metres) > 4 else "")
            changes.append(f"changes metre ({shown})")
        if changes:
            said.append(f"the file {' and '.join(changes)}: the song keeps every change, and its bars follow them")
        if self.phase is None:
            said.append("its notes follow no beat of the file (a free performance): the bars are the file's")
        elif abs(self.phase) > ON_GRID_BEATS:
            said.append(
                f"its notes follow its beat {abs(self.phase):.2f} of a beat {'late' if self.phase > 0 else 'early'}"
                ": the bars are the file's"
            )
        if self.clamped:
            kept = min(max(self.clamped[0], limits.MIN_TEMPO), limits.MAX_TEMPO)
            said.append(
                f"tempo {self.clamped[0]:g} BPM is kept at {kept:g} "
                f"(Continuo plays {limits.MIN_TEMPO:g} to {limits.MAX_TEMPO:g} BPM)"
            )
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
    timing = MidiTiming(unreleased=file.unreleased, resolution=file.resolution)
    # What comes after the last note changes nothing heard; an SMPTE file's clock is steady, whatever it states.
    stated = file.tempi[:1] if file.smpte else file.tempi
    timing.tempi = [(tick, 60_000_000 / tempo) for tick, tempo in stated if tick <= file.last_note]
    timing.clamped = [bpm for _, bpm in timing.tempi if not limits.MIN_TEMPO <= bpm <= limits.MAX_TEMPO]
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
    notes, file = read_midi_timed(path)
    timing = midi_timing(file)
    timing.phase = beat_phase(notes, timing.tempo_map(exact=True))
    return MidiFileRead(notes, timing)


def beat_phase(notes: list[Note], tempo_map: TempoMap) -> float | None:
    """Where the notes' onsets lie against the map's beats: 0 when on them (sixteenths or triplets), the offset
    in beats (-0.5 to 0.5) when they follow the beat a constant part of it late or early (a file whose grid
    starts off the music's first beat), None when they follow no beat (a performance timed freely over it)."""
    if len(notes) < 16:
        return 0.0  # too few to tell: a sketch, which keeps its file's grid in any case
    starts = np.array([note.start for note in notes])
    if len(starts) > PHASE_SAMPLE:  # evenly through the piece: enough to tell, a moment's work for any file
        starts = starts[np.linspace(0, len(starts) - 1, PHASE_SAMPLE).astype(int)]
    phase = tempo_map.beats_array(starts) % 1.0
    offsets = np.arange(0.0, 1.0, 0.01)
    shifted = (phase[None, :] - offsets[:, None]) % 1.0
    distance = np.min(np.abs(shifted[:, :, None] - GRID_POINTS[None, None, :]), axis=2)
    shares = np.mean(distance <= ON_GRID_BEATS, axis=1)
    if shares.max() < ON_BEAT_SHARE:
        return None
    if shares[0] >= max(ON_BEAT_SHARE, shares.max() - PHASE_MARGIN):
        return 0.0  # on the file's grid, as nearly as on any other (a grid of triplets catches a few more)
    # Of the offsets that put the onsets on a grid, the one that puts the most on whole beats (a triplet's or a
    # half beat's offset puts them on the grid too, as its off-beats); the first, 0, where as many are on it.
    on_beats = np.mean(np.minimum(shifted, 1.0 - shifted) <= ON_GRID_BEATS, axis=1)
    best = int(np.argmax(np.where(shares >= ON_BEAT_SHARE, on_beats, -1.0)))
    residual = (shifted[best] + 0.5) % 1.0 - 0.5  # each onset's distance from its whole beat, signed
    close = residual[np.abs(residual) <= ON_GRID_BEATS]
    offset = float(offsets[best] + (np.mean(close) if len(close) else 0.0)) % 1.0
    return offset - 1.0 if offset >= 0.5 else offset


def export_midi(song: Song, path: str | os.PathLike, what: str = "everything", title: str | None = None) -> int:
    """Writes the song (everything, the motif or the continuation) as a MIDI file; returns the note count.

    The file carries the song's tempo map and time signatures, the key signature when a key is chosen, the
    piano program the studio plays and named tracks (the conductor track is `title`, the song's name).
    Raises MidiFileError when there is nothing to write or the file cannot be written.
    """
    part = EXPORT_PARTS[what]
    notes = song.performance_notes(part)
    name = Path(path).name
    if not notes:
        raise MidiFileError(f"{name}: nothing to export (the {what if part else 'song'} has no notes)")
    tempo_map = song.tempo_map
    try:
        write_midi(
            notes,
            path,
            tempi=[(tempo_map.seconds(beat), bpm) for beat, bpm in tempo_map.tempi],
            time_signatures=[(tempo_map.seconds(beat), n, d) for beat, n, d in tempo_map.metres],
            key=_key(song),
            track_name=f"Piano ({what})" if part else "Piano",
            title=title or Path(path).stem,
        )
    except OSError as error:
        raise MidiFileError(f"{name}: cannot be written ({error.strerror or error})") from None
    except ValueError as error:  # the library's limits, e.g. a song longer than it writes at this tempo
        raise MidiFileError(f"{name}: cannot be exported ({error})") from None
    return len(notes)


def _key(song: Song) -> tuple[int, str] | None:
    """The key set for the song (chosen, or locked to the motif's): the one its export names, None when off."""
    settings = song.settings
    if settings.key_mode == "chosen":
        return settings.key_tonic, settings.key_scale
    if settings.key_mode == "motif":
        key = detect_key(song.performance_notes(MOTIF))
        return (key.tonic, key.scale) if key is not None else None
    return None


def is_midi_path(path: str | os.PathLike) -> bool:
    """Whether a path names a MIDI file (by its suffix)."""
    return Path(path).suffix.lower() in MIDI_SUFFIXES
