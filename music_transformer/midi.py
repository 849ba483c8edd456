"""MIDI files to and from `Note` lists, through pretty_midi.

Reading merges every non-drum instrument, honours tempo changes (pretty_midi converts ticks to seconds
through the tempo map: the first track's, or the other tracks' changes where the first has none; a file
timed in SMPTE frames keeps a steady clock) and applies the sustain pedal the way Magenta's preprocessing
does: a note released while CC64 is down sounds on until the pedal goes up, or until its pitch is struck
again; a note never released sounds to the end of its track. What it returns are the codec's canonical
notes (`events.canonical_notes`): unisons merged, restrikes ending the earlier note, every note's end in a
later 10 ms step of the codec's grid than its start (in seconds a note may still be shorter than 10 ms: 1.004 s
to 1.006 s spans two steps, and keeps its times); so the roll, the model and the exporter see the same music.
`write_midi` places every time in the same 10 ms step it was in, so exporting and reading back loses no note.

Reading is bounded: a walk over the bytes refuses a file past the limits (`limits.MAX_MIDI_*`, a piece
longer than `limits.MAX_PIECE_SECONDS`) and hands pretty_midi only the events reading uses (notes, the
pedal, programs and tempi), so a file full of controller moves, text or device data costs the walk only.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import math
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import limits
from .errors import MidiFileError
from .events import SECONDS_PER_TICK, Note, canonical_notes, start_tick, to_ticks
from .files import FileTooLargeError, NotRegularFileError, atomic_write, read_regular

SUSTAIN_CONTROLLER = 64
MELODY_TRACK = "MELODY"  # the track name that marks a file's lead line (POP909's; case and spaces aside)
# Bytes that follow the status byte of a channel or system message (mido's table); others are refused.
_DATA_BYTES = {**{kind: 2 for kind in (0x80, 0x90, 0xA0, 0xB0, 0xE0)}, 0xC0: 1, 0xD0: 1,
               0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}
_TEMPO, _TIME_SIGNATURE, _TRACK_NAME = 0x51, 0x58, 0x03
_MAX_TRACK_NAME = 64  # characters of a track's name that reading keeps
# How far from the edge of a 10 ms step `write_midi` keeps each time (a share of the step: 0.2 ms), far more
# than the rounding of any reader's tick-to-seconds conversion.
_STEP_MARGIN = 0.02


@dataclass(frozen=True)
class MidiFileTiming:
    """How a MIDI file counts its time, in its own ticks, as `read_midi_timed` walked it (for a grid's bars),
    and how many of its notes it never ends."""

    tempi: tuple[tuple[int, int], ...]  # (tick, microseconds a beat) the file states (see `_tempo_map`); 120 bpm before
    signatures: tuple[tuple[int, int, int], ...]  # (tick, numerator, denominator), in order, the last at a tick
    last_note: int  # the tick of the last note struck
    smpte: bool = False  # timed in SMPTE frames: a steady clock that the tempi (what the file states) do not move
    unreleased: int = 0  # pitched notes the file never released, held to the end of their track
    resolution: int = field(default=480, compare=False)  # ticks a beat (SMPTE: as `_smpte_as_beats` counts them)


class _Event:
    """What pretty_midi reads of a mido message, made by `_walk` (mido's own parser takes 10 µs a message)."""

    __slots__ = ("type", "time", "channel", "note", "velocity", "control", "value", "program", "tempo", "name")

    def __init__(self, kind: str, time: int, channel: int = 0, first: int = 0, second: int = 0,
                 name: str = "") -> None:
        self.type, self.time, self.channel = kind, time, channel  # time: ticks since the event before
        self.note = self.control = self.program = self.tempo = first
        self.velocity = self.value = second
        self.name = name


_KEPT = {0x80: "note_off", 0x90: "note_on", 0xB0: "control_change", 0xC0: "program_change"}


def _walk(name: str, data: bytes):
    """The file's notes, sustain pedal, program and tempo changes and track names as the mido file
    pretty_midi reads, walked over the bytes and bounded before anything is built, and the file's
    `MidiFileTiming`.

    Reads the tracks the header announces as mido would (running status, meta and sysex lengths) and
    builds only the events reading uses, a small object each, with the delta times of what was left out
    added to them. Every event walked counts towards `limits.MAX_MIDI_EVENTS` and every one kept towards
    `MAX_MIDI_KEPT_EVENTS`, and the piece's length is known through the tempo map, so any file up to the
    size cap is read in bounded time and memory. A file that breaks the format is refused here, in words.
    """
    import mido

    def damaged(reason: str) -> MidiFileError:
        return MidiFileError(f"{name}: damaged MIDI file ({reason})")

    def number(i: int, end: int) -> tuple[int, int]:  # a variable-length quantity: 7 bits a byte, 4 at most
        value = 0
        for last in range(i, min(i + 4, end)):
            value = (value << 7) | (data[last] & 0x7F)
            if not data[last] & 0x80:
                return value, last + 1
        raise damaged("a track runs past its end" if i + 4 > end else "a number longer than MIDI allows")

    header_length, _, tracks, division = struct.unpack(">IHHh", data[4:14])
    tempo, smpte = 500_000, division < 0  # microseconds a beat: MIDI's default, 120 bpm, until the file says
    if smpte:  # frames a second and ticks a frame: a steady clock that the file's tempo changes do not move
        frames, ticks_per_frame = -struct.unpack(">b", data[12:13])[0], data[13]
        if not ticks_per_frame:
            raise damaged("its header gives no ticks per frame")
        division, tempo = _smpte_as_beats(frames, ticks_per_frame)
    if division == 0:
        raise damaged("its header gives no ticks per beat")
    if tracks > limits.MAX_MIDI_TRACKS:
        raise MidiFileError(f"{name}: {tracks:,} tracks; Continuo reads files of up to {limits.MAX_MIDI_TRACKS:,}")
    midi = mido.MidiFile(type=1, ticks_per_beat=division)
    max_events, max_kept, max_notes, max_ticks = (limits.MAX_MIDI_EVENTS, limits.MAX_MIDI_KEPT_EVENTS,
                                                  limits.MAX_MIDI_NOTES, limits.MAX_MIDI_TICKS)
    events = kept = notes = last_tick = others = 0  # last_tick: of the last note or pedal event
    changes: list[tuple[int, int, int]] = []  # (track, tick, microseconds a beat) of every tempo change
    signatures: list[tuple[int, int, int]] = []  # (tick, numerator, denominator)
    last_note = unreleased = 0  # the tick of the last note struck; the notes held to their track's end
    position = 8 + header_length
    for track in range(tracks):
        while True:  # chunks of other kinds (a sequencer's own, karaoke lyrics) are passed over, as the standard asks
            if position + 8 > len(data):
                raise MidiFileError(f"{name}: the file is truncated (it announces {tracks} tracks and holds {track})")
            kind = data[position:position + 4]
            (length,) = struct.unpack(">I", data[position + 4:position + 8])
            if kind == b"MTrk":
                break
            if not (kind.isascii() and kind.isalnum()):  # not a chunk's name: the track before ran on
                raise damaged("a track does not start where the one before it ends")
            others += 1
            if others > limits.MAX_MIDI_OTHER_CHUNKS:
                raise MidiFileError(f"{name}: more than {limits.MAX_MIDI_OTHER_CHUNKS:,} chunks that are not "
                                    "tracks; Continuo reads files of up to that many")
            position += 8 + length
        i, end = position + 8, position + 8 + length
        if end > len(data):
            raise MidiFileError(f"{name}: the file is truncated (a track is cut off)")
        built = mido.MidiTrack()
        tick = written = 0  # ticks of this track: now, and at the last event kept
        sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) struck and not yet released: the tick
        status, named = None, False  # named: the track's first name kept (one a track, however many it states)
        while i < end:
            if data[i] < 0x80:  # the delta time, most often one byte
                tick += data[i]
                i += 1
            else:
                delta, i = number(i, end)
                tick += delta
            if tick >= max_ticks:
                raise MidiFileError(f"{name}: events are placed {tick:,} ticks in, far past the end of any piece "
                                    f"(Continuo reads up to {max_ticks:,} ticks)")
            events += 1
            if events > max_events:
                raise MidiFileError(f"{name}: more than {max_events:,} MIDI events (notes, pedal and controller "
                                    "moves, text); Continuo reads pieces up to that size")
            if i >= end:
                raise damaged("a track runs past its end")
            if data[i] < 0x80:  # running status: the status of the event before, and data now
                if status is None:
                    raise damaged("an event has no status byte")
                kind, running = status, True
            else:
                kind, running = data[i], False
                i += 1
                if kind != 0xFF:  # meta events do not set the running status
                    status = kind
            if kind >= 0xF0 and kind in (0xFF, 0xF0, 0xF7):  # meta (a type byte first) or sysex: a length, data
                meta_type = data[i] if kind == 0xFF and i < end else None
                i += kind == 0xFF or running  # mido drops a running-status sysex's first byte
                size, i = number(i, end)
                i += size
                if meta_type == _TEMPO and i <= end:
                    change = int.from_bytes(data[i - size:i - size + 3], "big")
                    if size < 3 or not change:
                        raise damaged("a tempo of zero" if size >= 3 else "a tempo change is cut short")
                    changes.append((track, tick, change))
                elif meta_type == _TIME_SIGNATURE and size >= 2 and i <= end:
                    signatures.append((tick, data[i - size], 2 ** min(data[i - size + 1], 16)))
                elif meta_type == _TRACK_NAME and i <= end and not named:  # its instrument's name (MELODY)
                    text = data[i - size:i - size + min(size, _MAX_TRACK_NAME)].decode("latin-1")
                    built.append(_Event("track_name", tick - written, name=text))
                    written, named = tick, True
                continue
            size = _DATA_BYTES.get(kind if kind >= 0xF0 else kind & 0xF0)
            if size is None or (running and not size):
                raise damaged(f"an unknown event (0x{kind:02X})")
            start, i = i, i + size
            if i > end:
                raise damaged("a track runs past its end")
            voice = kind & 0xF0
            if voice in _KEPT and (voice != 0xB0 or data[start] == SUSTAIN_CONTROLLER):
                first, second = data[start], data[i - 1] if size == 2 else 0
                if first > 0x7F or second > 0x7F:
                    raise damaged("a note or pedal event holds a value past 127")
                kept += 1
                if kept > max_kept:
                    raise MidiFileError(f"{name}: more than {max_kept:,} notes, pedal moves and instrument changes; "
                                        "Continuo reads pieces up to that size")
                if voice == 0x90 and second:
                    notes += 1
                    if notes > max_notes:
                        raise MidiFileError(f"{name}: more than {max_notes:,} notes; Continuo reads pieces up to "
                                            "that size")
                    sounding[kind & 0x0F, first] = tick
                    last_note = max(last_note, tick)
                elif voice in (0x80, 0x90):
                    sounding.pop((kind & 0x0F, first), None)  # one release ends every strike of the key (pretty_midi)
                built.append(_Event(_KEPT[voice], tick - written, kind & 0x0F, first, second))
                written = tick
                if voice != 0xC0:
                    last_tick = max(last_tick, tick)
        if i != end:
            raise damaged("a track runs past its end")
        for (channel, pitch), struck in sorted(sounding.items()):  # never released (a recording stopped with a
            built.append(_Event("note_off", tick - written, channel, pitch))  # key down): held to the track's end,
            written, last_tick = tick, max(last_tick, tick)  # as a synth would
            if channel != 9 and struck < tick:  # the drums are not read; a note struck at the very end stays out
                unreleased += 1
        built.append(_Event("end_of_track", 0))  # no track is empty: pretty_midi takes each one's last tick
        midi.tracks.append(built)
        position = end
    stated = _tempo_map(changes)
    if smpte:  # the file's clock: its tempo changes are only words
        tempi = [(0, tempo)]
    else:  # MIDI's 120 bpm until the file's first change
        tempi = stated if stated and stated[0][0] == 0 else [(0, tempo), *stated]
    conductor, written = mido.MidiTrack(), 0  # first: pretty_midi reads the tempo map from the first track only
    for tick, change in tempi:
        conductor.append(_Event("set_tempo", tick - written, first=change))
        written = tick
    conductor.append(_Event("end_of_track", 0))
    midi.tracks.insert(0, conductor)
    seconds = 0.0  # when the last note or pedal event comes, through the tempo map
    for index, (tick, tempo) in enumerate(tempi):
        following = tempi[index + 1][0] if index + 1 < len(tempi) else last_tick
        seconds += max(0, min(following, last_tick) - tick) * tempo / (1e6 * division)
    if seconds > limits.MAX_PIECE_SECONDS:
        raise _too_long(name, seconds)
    metre = _last_at_each_tick(sorted(signatures, key=lambda change: change[0]))  # stable: the file's order at a tick
    return midi, MidiFileTiming(tuple(stated), tuple(metre), last_note, smpte, unreleased, division)


def _tempo_map(changes: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """The tempo changes a file states, (tick, microseconds a beat), from those of every track (track, tick, tempo).

    The standard keeps the tempo map in the first track, and a file that has one there is read by it alone;
    a file whose tempo changes are all in other tracks (some converters write them with the notes) is read
    by those, in time order. Of changes at one tick the last counts."""
    first = [(tick, tempo) for track, tick, tempo in changes if track == 0]
    return _last_at_each_tick(first or sorted(((tick, tempo) for _, tick, tempo in changes), key=lambda c: c[0]))


def _last_at_each_tick(changes: list[tuple]) -> list[tuple]:
    """Changes (tick, ...) in time order, of those at one tick only the last (it is the one that holds)."""
    kept: list[tuple] = []
    for change in changes:
        if kept and kept[-1][0] == change[0]:
            kept[-1] = change
        else:
            kept.append(change)
    return kept


def _smpte_as_beats(frames: int, ticks_per_frame: int) -> tuple[int, int]:
    """A division in SMPTE frames as ticks per beat and a tempo (microseconds a beat) that time every tick
    the same: a beat of `frames` frames. 29 frames a second is drop-frame timecode, 29.97 a second."""
    per_second = 30_000 / 1001 if frames == 29 else frames
    return frames * ticks_per_frame, round(1e6 * frames / per_second)


def _too_long(name: str, seconds: float) -> MidiFileError:
    return MidiFileError(f"{name}: its notes run {seconds / 3600:,.1f} hours in; Continuo reads pieces of up to "
                         f"{limits.MAX_PIECE_SECONDS / 3600:g} hours")


def _sustained(notes: list, pedal_changes: list) -> list[Note]:
    """Lengthens the notes released while the sustain pedal is down until it goes up."""
    downs, ups = [], []  # pedal intervals where CC64 >= 64, in time order
    for change in sorted(pedal_changes, key=lambda c: c.time):
        if change.value >= 64 and len(downs) == len(ups):
            downs.append(change.time)
        elif change.value < 64 and len(downs) > len(ups):
            ups.append(change.time)
    if len(downs) > len(ups):
        ups.append(math.inf)
    last_time = max((note.end for note in notes), default=0.0)
    result = []
    for note in notes:
        end = note.end
        index = bisect.bisect_right(downs, end) - 1
        if index >= 0 and end < ups[index]:
            end = ups[index] if ups[index] != math.inf else max(last_time, note.start)
        result.append(Note(int(note.pitch), int(note.velocity), float(note.start), float(end)))
    return result


def read_midi(path: str | os.PathLike) -> list[Note]:
    """The canonical notes of a MIDI file, non-drum instruments merged, sorted by start then pitch."""
    return read_midi_timed(path)[0]


def read_midi_timed(path: str | os.PathLike) -> tuple[list[Note], MidiFileTiming]:
    """`read_midi`'s notes, and the file's tempo map and time signatures in its ticks."""
    notes, timing, _ = _read(path)
    return notes, timing


def read_midi_melody(path: str | os.PathLike) -> tuple[list[Note], frozenset[tuple[int, int]]]:
    """`read_midi`'s notes, and which of them a track named MELODY (as POP909 names its lead line) plays: the
    (pitch, start tick) of each, on the codec's 10 ms grid (empty when no track is so named)."""
    notes, _, melody = _read(path)
    return notes, melody


def _read(path: str | os.PathLike) -> tuple[list[Note], MidiFileTiming, frozenset[tuple[int, int]]]:
    path = Path(path)
    name = path.name or str(path)
    cap = limits.MAX_MIDI_FILE_BYTES
    try:
        data = read_regular(path, cap)  # a device or a FIFO is refused, never read or waited on
    except FileNotFoundError:
        raise MidiFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise MidiFileError(f"{name}: is a folder, not a MIDI file") from None
    except FileTooLargeError as error:
        raise MidiFileError(f"{name}: the file is {error.size / 2**20:.0f} MB; Continuo reads MIDI files up to "
                            f"{cap // 2**20} MB") from None
    except NotRegularFileError as error:
        raise MidiFileError(f"{name}: {error.strerror}; Continuo reads MIDI files") from None
    except OSError as error:
        raise MidiFileError(f"{name}: cannot be read ({error.strerror or error})") from None
    if not data:
        raise MidiFileError(f"{name}: the file is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI: unwrap the data chunk
        start = data.find(b"MThd")
        data = data[start:] if start >= 0 else data
    if data[:4] != b"MThd":
        raise MidiFileError(f"{name}: not a MIDI file (it does not start with a MIDI header)")
    if len(data) < 14:
        raise MidiFileError(f"{name}: the file is truncated (the MIDI header is incomplete)")

    with contextlib.redirect_stdout(io.StringIO()):  # pretty_midi imports pyfluidsynth, which prints under CI=1
        import pretty_midi

    events, timing = _walk(name, data)
    try:
        midi = pretty_midi.PrettyMIDI(mido_object=events)
    except Exception as error:  # noqa: BLE001 (the walk checked the format; this is pretty_midi's own verdict)
        reason = str(error).strip() or type(error).__name__
        raise MidiFileError(f"{name}: damaged or unsupported MIDI file ({reason})") from None

    instruments = [instrument for instrument in midi.instruments if instrument.notes]
    if not instruments:
        raise MidiFileError(f"{name}: the file has no notes")
    melodic = [instrument for instrument in instruments if not instrument.is_drum]
    if not melodic:
        raise MidiFileError(f"{name}: the file has only drum notes, and Continuo continues pitched music")
    notes: list[Note] = []
    melody: set[tuple[int, int]] = set()
    for instrument in melodic:
        pedal = [c for c in instrument.control_changes if c.number == SUSTAIN_CONTROLLER]
        played = [note for note in _sustained(instrument.notes, pedal) if note.velocity > 0]
        notes += played
        if instrument.name.strip().upper() == MELODY_TRACK:
            melody.update((note.pitch, start_tick(note.start)) for note in played)
    if not notes:
        raise MidiFileError(f"{name}: the file has no notes")
    last = max(note.end for note in notes)
    if last > limits.MAX_PIECE_SECONDS:  # known from the walk already, but for rounding
        raise _too_long(name, last)
    return canonical_notes(notes), timing, frozenset(melody)


# A key signature names sharps or flats and major or minor only: a mode is written as the major key whose
# notes it shares (D dorian as C major), the minor scales as their tonic's minor key.
_MAJOR_SPELLING = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_SPELLING = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")
_MODE_AS_MAJOR = {"major": 0, "major pentatonic": 0, "dorian": -2, "mixolydian": 5}


def key_signature(tonic: int, scale: str = "major") -> str:
    """The key signature a MIDI file writes for a key (mido's spelling: "Eb", "F#m")."""
    if scale in _MODE_AS_MAJOR:
        return _MAJOR_SPELLING[(tonic + _MODE_AS_MAJOR[scale]) % 12]
    return _MINOR_SPELLING[tonic % 12]


def write_midi(notes: Iterable[Note], path: str | os.PathLike, bpm: float = 120, program: int = 0, *,
               tempi: Sequence[tuple[float, float]] | None = None,
               time_signatures: Sequence[tuple[float, int, int]] | None = None,
               key: tuple[int, str] | None = None, track_name: str = "Continuo", title: str | None = None) -> None:
    """Writes notes as a piano MIDI file, atomically (temporary file, then rename).

    The file holds the canonical notes (`events.canonical_notes`), so that it reads back as it plays: a
    conductor track (its name `title`, the tempo map, the time signatures, the key signature) and one track of
    notes (named `track_name`, with its program), note-offs before note-ons at one tick. The tempo is `bpm`
    throughout, or `tempi`, (seconds, bpm) changes from 0; `time_signatures` are (seconds, numerator,
    denominator) changes; `key` a (tonic pitch class, scale name) for the key signature.
    """
    write_midi_parts([(track_name, notes)], path, bpm, program, tempi=tempi, time_signatures=time_signatures,
                     key=key, title=title)


def write_midi_parts(parts: Sequence[tuple[str, Iterable[Note]]], path: str | os.PathLike, bpm: float = 120,
                     program: int = 0, *, tempi: Sequence[tuple[float, float]] | None = None,
                     time_signatures: Sequence[tuple[float, int, int]] | None = None,
                     key: tuple[int, str] | None = None, title: str | None = None) -> None:
    """Writes parts (a track name and its notes each, e.g. a kept melody and its accompaniment) as one piano MIDI
    file, one track a part after the conductor track, as `write_midi` writes one."""
    tempi = [(0.0, bpm)] if tempi is None else [(float(at), value) for at, value in tempi]
    if not tempi or tempi[0][0] != 0.0 or any(b[0] <= a[0] for a, b in zip(tempi, tempi[1:], strict=False)):
        raise ValueError("the tempo changes must start at 0 s and come in order")
    for _, value in tempi:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not limits.MIN_BPM <= value <= limits.MAX_BPM:
            raise ValueError(f"the tempo must be {limits.MIN_BPM:g} to {limits.MAX_BPM:g} bpm, not {value!r}")
    if isinstance(program, bool) or not isinstance(program, int) or not 0 <= program <= 127:
        raise ValueError(f"the MIDI program must be a whole number 0..127, not {program!r}")
    import mido

    parts = [(name, canonical_notes(notes)) for name, notes in parts]
    # Each tempo as the file keeps it (microseconds a beat): ticks are placed by these, so that a reader's
    # times are the notes' to within half a tick, however many changes come before.
    changes = [(at, round(60_000_000 / value)) for at, value in tempi]
    last = max([note.end for _, notes in parts for note in notes] + [at for at, _ in changes] +
               [float(at) for at, _, _ in time_signatures or ()])
    beats = sum((min(following, last) - at) * 1e6 / tempo for (at, tempo), (following, _)
                in zip(changes, [*changes[1:], (last, 0)], strict=True) if at < last)
    # Sub-millisecond ticks at usual tempi, fewer a beat where a long piece would pass the ticks a reader
    # takes (still over 200 a beat within the limits: 0.75 ms at 400 bpm).
    resolution = min(960, int((limits.MAX_MIDI_TICKS - 2) / max(beats, 1.0)))
    starts: list[float] = []  # each change's time as a reader computes it from the ticks
    ticks: list[int] = []  # each change's tick
    for index, (at, _) in enumerate(changes):
        if index == 0:
            starts.append(0.0)
            ticks.append(0)
            continue
        previous = changes[index - 1][1]
        tick = max(ticks[-1] + 1, ticks[-1] + round((at - starts[-1]) * 1e6 * resolution / previous))
        starts.append(starts[-1] + (tick - ticks[-1]) * previous / (1e6 * resolution))
        ticks.append(tick)

    def exact_tick(seconds: float) -> float:
        index = max(0, bisect.bisect_right(starts, seconds) - 1)
        return ticks[index] + (seconds - starts[index]) * 1e6 * resolution / changes[index][1]

    def tick(seconds: float) -> int:
        """The MIDI tick nearest `seconds` (through the tempo map) within its own 10 ms step, and not within
        `_STEP_MARGIN` of the step's edge, so that reading the file back puts it in the same step (a strike moved
        one step on would merge with the next strike of its pitch, and a note would be lost). Monotonic, so no
        order changes."""
        step = to_ticks(seconds)
        low = math.ceil(exact_tick((step - 0.5 + _STEP_MARGIN) * SECONDS_PER_TICK))
        high = math.floor(exact_tick((step + 0.5 - _STEP_MARGIN) * SECONDS_PER_TICK))
        return min(max(round(exact_tick(seconds)), low), high)

    tracks = []
    for name, notes in parts:
        events = []  # (tick, 0 = off / 1 = on, pitch, velocity)
        for note in notes:
            start = tick(note.start)
            events += [(start, 1, note.pitch, note.velocity), (max(tick(note.end), start + 1), 0, note.pitch, 0)]
        events.sort()
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name),
                                mido.Message("program_change", program=program)])
        now = 0
        for when, kind, pitch, velocity in events:
            track.append(mido.Message("note_on" if kind else "note_off", note=pitch, velocity=velocity,
                                      time=when - now))
            now = when
        tracks.append(track)
    conductor_events = [(0, 0, mido.MetaMessage("track_name", name=title))] if title else []
    conductor_events += [(at, 1, mido.MetaMessage("set_tempo", tempo=tempo))
                         for at, (_, tempo) in zip(ticks, changes, strict=True)]
    for at, numerator, denominator in time_signatures or ():
        conductor_events.append((tick(float(at)), 2, mido.MetaMessage("time_signature", numerator=int(numerator),
                                                                      denominator=int(denominator))))
    if key is not None:
        conductor_events.append((0, 3, mido.MetaMessage("key_signature", key=key_signature(*key))))
    conductor, now = mido.MidiTrack(), 0
    for when, _, message in sorted(conductor_events, key=lambda event: event[:2]):
        conductor.append(message.copy(time=when - now))
        now = when
    midi = mido.MidiFile(type=1, ticks_per_beat=resolution)
    midi.tracks += [conductor, *tracks]
    atomic_write(path, lambda handle: midi.save(file=handle))
