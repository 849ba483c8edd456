"""MIDI files: pedal, drums, tempo, overlaps, export, and every kind of bad input."""

import io
import os
import stat
import struct
import time
from pathlib import Path

import pretty_midi
import pytest

from music_transformer import MidiFileError, Note, decode, encode, limits, read_midi, write_midi
from music_transformer.events import canonical_notes, to_ticks
from music_transformer.files import atomic_write
from music_transformer.midi import MidiFileTiming, read_midi_melody, read_midi_timed


def _piano(*notes, program=0, is_drum=False, pedal=()):
    instrument = pretty_midi.Instrument(program=program, is_drum=is_drum)
    for pitch, start, end in notes:
        instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=start, end=end))
    for time_, value in pedal:
        instrument.control_changes.append(pretty_midi.ControlChange(64, value, time_))
    return instrument


def _write(tmp_path, *instruments, name="song.mid", tempo=120.0):
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    midi.instruments.extend(instruments)
    path = tmp_path / name
    midi.write(str(path))
    return path


def test_sustain_pedal_lengthens_released_notes_until_it_lifts(tmp_path):
    path = _write(tmp_path, _piano((60, 0.0, 0.5), (64, 0.1, 0.3), (67, 3.0, 3.5),
                                   pedal=[(0.2, 127), (2.0, 0)]))
    notes = {n.pitch: n for n in read_midi(path)}
    assert notes[64].end == pytest.approx(2.0, abs=0.01)  # released at 0.3 with the pedal down
    assert notes[60].end == pytest.approx(2.0, abs=0.01)
    assert notes[67].end == pytest.approx(3.5, abs=0.01)  # after the pedal: untouched


def test_a_restruck_pitch_under_the_pedal_ends_the_earlier_note(tmp_path):
    path = _write(tmp_path, _piano((60, 0.0, 0.2), (60, 1.0, 1.2), pedal=[(0.1, 100), (3.0, 0)]))
    first, second = read_midi(path)
    assert first.end == pytest.approx(1.0, abs=0.01) and second.end == pytest.approx(3.0, abs=0.01)


def test_non_drum_instruments_merge_and_drums_are_left_out(tmp_path):
    path = _write(tmp_path, _piano((60, 0.0, 1.0)), _piano((48, 0.5, 1.0), program=32),
                  _piano((36, 0.0, 0.1), is_drum=True))
    assert [n.pitch for n in read_midi(path)] == [60, 48]


def test_tempo_changes_are_honoured(tmp_path):
    import mido
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))  # 120 bpm
    track.append(mido.Message("note_on", note=60, velocity=80, time=0))
    track.append(mido.Message("note_off", note=60, velocity=0, time=480))  # one beat = 0.5 s
    track.append(mido.MetaMessage("set_tempo", tempo=1000000, time=0))  # 60 bpm
    track.append(mido.Message("note_on", note=62, velocity=80, time=0))
    track.append(mido.Message("note_off", note=62, velocity=0, time=480))  # one beat = 1 s
    path = tmp_path / "tempo.mid"
    midi.save(str(path))
    first, second = read_midi(path)
    assert (first.start, first.end) == pytest.approx((0.0, 0.5))
    assert (second.start, second.end) == pytest.approx((0.5, 1.5))


@pytest.mark.parametrize(("first", "with_notes", "d_ends"), [
    ([], [(480, 1_000_000)], 1.5),  # the tempo map with the notes: a beat in, 60 bpm
    ([(480, 1_000_000)], [(0, 125_000)], 1.5),  # the first track's; a stray 480 bpm with the notes moves nothing
    ([], [], 1.0),  # none: 120 bpm
], ids=["with the notes", "the first track's over a stray one", "none"])
def test_the_tempo_map_is_the_first_tracks_or_else_the_others(tmp_path, first, with_notes, d_ends):
    """The standard keeps the tempo map in the first track; some converters write it with the notes. The
    timing says what the file states (120 bpm before its first change is MIDI's, not the file's)."""
    import mido

    def track(tempi, notes=()):
        events = [(tick, mido.MetaMessage("set_tempo", tempo=tempo)) for tick, tempo in tempi]
        for pitch, start in notes:
            events += [(start, mido.Message("note_on", note=pitch, velocity=64)),
                       (start + 480, mido.Message("note_off", note=pitch))]
        result, now = mido.MidiTrack(), 0
        for tick, message in sorted(events, key=lambda event: (event[0], event[1].type != "note_off")):
            result.append(message.copy(time=tick - now))
            now = tick
        return result

    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    midi.tracks += [track(first), track(with_notes, [(60, 0), (62, 480)])]
    midi.save(str(tmp_path / "tempo.mid"))
    notes, timing = read_midi_timed(tmp_path / "tempo.mid")
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0.0, 0.5), (62, 0.5, pytest.approx(d_ends))]
    assert timing.tempi == (((480, 1_000_000),) if d_ends > 1 else ())
    assert timing.last_note == 480 and not timing.smpte


@pytest.mark.parametrize(("frames", "per_second"), [(24, 24), (25, 25), (29, 30_000 / 1001), (30, 30)])
def test_a_file_timed_in_smpte_frames_keeps_a_steady_clock(tmp_path, frames, per_second):
    """Such a file counts ticks of a frame, not of a beat, and its tempo changes move nothing; 29 is drop-frame
    timecode, 29.97 frames a second. Two tracks, a tempo change and running status, as a DAW writes them."""
    first = (b"\x00\xff\x51\x03\x0f\x42\x40\x00\x90\x3c\x40\x83\x60\x3c\x00"  # 1 s a beat; 480 ticks
             b"\x00\xff\x51\x03\x03\xd0\x90\x00\x90\x3e\x50\x87\x40\x80\x3e\x00\x00\xff\x2f\x00")  # 250 ms; 960
    second = b"\x8f\x00\x90\x43\x64\x81\x70\x43\x00\x00\xff\x2f\x00"  # at 1,920 ticks, for 240
    data = b"MThd" + struct.pack(">IHHbB", 6, 1, 2, -frames, 80)
    for track in (first, second):
        data += b"MTrk" + struct.pack(">I", len(track)) + track
    (tmp_path / "timecode.mid").write_bytes(data)
    tick = 1 / (per_second * 80)
    assert [(n.pitch, n.velocity, n.start, n.end) for n in read_midi(tmp_path / "timecode.mid")] == [
        (60, 64, 0.0, pytest.approx(480 * tick)), (62, 80, pytest.approx(480 * tick), pytest.approx(1440 * tick)),
        (67, 100, pytest.approx(1920 * tick), pytest.approx(2160 * tick))]
    timing = read_midi_timed(tmp_path / "timecode.mid")[1]  # what the file states, for a grid: not its clock
    assert timing == MidiFileTiming(((0, 1_000_000), (480, 250_000)), (), last_note=1920, smpte=True)


def test_a_note_never_released_is_held_to_the_end_of_its_track(tmp_path):
    """A recording stopped with a key down: the note sounds on to its track's end, as a synth plays it, instead
    of vanishing. A note struck and released at one tick does not become one (nothing of it sounds)."""
    first = (b"\x00\x90\x3c\x40"  # C struck, never released
             b"\x83\x60\x90\x40\x50\x00\x3e\x30\x00\x3e\x00"  # a beat later E, and D struck and released at once
             b"\x83\x60\x80\x40\x00\x83\x60\xff\x2f\x00")  # E released a beat later; the track ends a beat after
    second = b"\x00\x91\x30\x20\x00\xff\x2f\x00"  # struck at the end of its track: nothing of it sounds either
    data = b"MThd" + struct.pack(">IHHH", 6, 1, 2, 480)
    for track in (first, second):
        data += b"MTrk" + struct.pack(">I", len(track)) + track
    (tmp_path / "held.mid").write_bytes(data)
    notes, timing = read_midi_timed(tmp_path / "held.mid")
    assert [(n.pitch, n.velocity, n.start, n.end) for n in notes] == [(60, 64, 0.0, 1.5), (64, 80, 0.5, 1.0)]
    assert timing.unreleased == 1  # for the studio to say so


def test_write_then_read_keeps_every_note(tmp_path):
    notes = [Note(60, 100, 0.0, 0.5), Note(64, 70, 0.25, 1.0), Note(67, 30, 1.0, 1.01)]
    write_midi(notes, tmp_path / "out.mid", bpm=90)
    back = read_midi(tmp_path / "out.mid")
    assert [(n.pitch, n.velocity) for n in back] == [(60, 100), (64, 70), (67, 30)]
    for original, read in zip(notes, back, strict=True):
        assert read.start == pytest.approx(original.start, abs=1e-3)
        assert read.end == pytest.approx(original.end, abs=1e-3)
    assert pretty_midi.PrettyMIDI(str(tmp_path / "out.mid")).get_tempo_changes()[1][0] == pytest.approx(90, abs=0.01)


def test_export_makes_overlaps_on_one_pitch_unambiguous(tmp_path):
    write_midi([Note(60, 100, 0.0, 2.0), Note(60, 80, 0.5, 1.0)], tmp_path / "out.mid")
    assert [(n.start, n.end) for n in read_midi(tmp_path / "out.mid")] == [(0.0, 0.5), (0.5, 1.0)]


def _midi_bytes(track: bytes) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + track


BAD_FILES = {
    "random bytes": os.urandom(5000),
    "truncated": _midi_bytes(b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00" * 10 + b"\x00\xff\x2f\x00")[:-40],
    "empty": b"",
    "header only": b"MThd\x00\x00",
    "no notes": _midi_bytes(b"\x00\xff\x51\x03\x07\xa1\x20\x00\xff\x2f\x00"),
    "drums only": _midi_bytes(b"\x00\x99\x24\x40\x60\x89\x24\x00\x00\xff\x2f\x00"),
    "header says MIDI, body is garbage": b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0" + os.urandom(2000),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, kind):
    path = tmp_path / "motif.mid"
    path.write_bytes(BAD_FILES[kind])
    with pytest.raises(MidiFileError, match="motif.mid") as error:
        read_midi(path)
    assert "Traceback" not in str(error.value)
    if kind in ("empty", "no notes", "drums only"):
        assert {"empty": "empty", "no notes": "no notes", "drums only": "drum"}[kind] in str(error.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MidiFileError, match="no such file"):
        read_midi(tmp_path / "nowhere.mid")
    with pytest.raises(MidiFileError, match="folder"):
        read_midi(tmp_path)


def test_a_file_over_50_mb_is_refused_without_being_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.mid"
    with open(path, "wb") as handle:
        handle.write(_midi_bytes(b"\x00\xff\x2f\x00"))
        handle.truncate(51 * 1024 * 1024)
    opened = []
    open_path = Path.open
    monkeypatch.setattr(Path, "open",
                        lambda self, *args, **kwargs: opened.append(self) or open_path(self, *args, **kwargs))
    with pytest.raises(MidiFileError, match="50 MB"):
        read_midi(path)
    assert not opened  # refused from its size alone


@pytest.fixture
def parsed(monkeypatch):
    """Counts the runs of the MIDI parser (pretty_midi), to show what the quick walk refuses before it."""
    runs = []
    parse = pretty_midi.PrettyMIDI
    monkeypatch.setattr(pretty_midi, "PrettyMIDI", lambda *args, **kwargs: runs.append(1) or parse(*args, **kwargs))
    return runs


def test_a_file_over_the_note_limit_is_refused_before_it_is_parsed(tmp_path, parsed):
    """The quick walk refuses it: the MIDI parser (seconds and gigabytes for such a file) never runs."""
    path = tmp_path / "many.mid"
    note = b"\x00\x90\x3c\x40\x01\x80\x3c\x00"
    path.write_bytes(_midi_bytes(note * (limits.MAX_MIDI_NOTES + 1) + b"\x00\xff\x2f\x00"))
    with pytest.raises(MidiFileError, match=f"more than {limits.MAX_MIDI_NOTES:,} notes"):
        read_midi(path)
    assert not parsed
    note = b"\x00\x90\x3c\x40\x60\x80\x3c\x00"  # 0.1 s each: notes 1 tick apart would be unisons
    path.write_bytes(_midi_bytes(note * 1000 + b"\x00\xff\x2f\x00"))  # a normal file goes to the parser
    assert len(read_midi(path)) == 1000 and parsed == [1]


def test_a_flood_of_controller_moves_is_refused_quickly(tmp_path, parsed):
    """Every event counts, not only notes: 16 MB of controller messages took a minute and 2.4 GB to parse."""
    path = tmp_path / "knobs.mid"
    path.write_bytes(_midi_bytes(b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xb0\x07\x40"
                                 + b"\x00\x07\x40" * limits.MAX_MIDI_EVENTS + b"\x00\xff\x2f\x00"))
    started = time.process_time()  # CPU time: the tests may share the machine
    with pytest.raises(MidiFileError, match=f"more than {limits.MAX_MIDI_EVENTS:,} MIDI events"):
        read_midi(path)
    assert time.process_time() - started < 5 and not parsed


def _file_with_every_kind_of_event():
    import mido

    track = mido.MidiTrack([mido.MetaMessage("track_name", name="x" * 200),  # a length past one byte
                            mido.MetaMessage("set_tempo", tempo=500000),
                            mido.Message("sysex", data=[0x7E] * 150),
                            mido.Message("program_change", program=5)])
    for index in range(300):
        track.append(mido.Message("note_on", note=40 + index % 40, velocity=90, time=10))
        track.append(mido.Message("aftertouch", value=3))
        track.append(mido.Message("note_on", note=40 + index % 40, velocity=0, time=10))  # a note-off
    file = mido.MidiFile()
    file.tracks.append(track)
    buffer = io.BytesIO()
    file.save(file=buffer)
    return buffer.getvalue(), len(track) + 1  # mido adds the end of the track


@pytest.mark.parametrize("limit,count", [("MAX_MIDI_NOTES", 300), ("MAX_MIDI_EVENTS", None),
                                         ("MAX_MIDI_KEPT_EVENTS", 300 + 300 + 1)])
def test_the_quick_walk_counts_exactly_what_the_parser_reads(tmp_path, monkeypatch, limit, count):
    """Meta, sysex, running status and short events are walked over the way mido reads them: a file with
    exactly the limit is read, one with one more is refused. Kept for the parser: the notes on and off and
    the program change."""
    data, events = _file_with_every_kind_of_event()
    count = count or events
    path = tmp_path / "count.mid"
    path.write_bytes(data)
    monkeypatch.setattr(limits, limit, count)
    assert len(read_midi(path)) == 300
    monkeypatch.setattr(limits, limit, count - 1)
    with pytest.raises(MidiFileError, match="count.mid: more than"):
        read_midi(path)


def test_what_reading_does_not_use_is_walked_over_not_parsed(tmp_path):
    """30 MB of device data (sysex) and 300,000 controller moves cost the walk only: the notes come back."""
    notes = b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\x90\x40\x40\x60\x80\x40\x00"
    sysex = b"\x00\xf0\xbd\x84\x3f" + b"\x7e" * 999_999  # a million bytes: the most mido reads in one event
    knobs = b"\x00\xb0\x07\x40" + b"\x00\x07\x40" * 300_000 + b"\x00\xe0\x00\x40" + b"\x00\x10\x40" * 10_000
    path = tmp_path / "busy.mid"
    path.write_bytes(_midi_bytes(sysex * 30 + knobs + notes + b"\x00\xb0\x40\x7f\x60\x40\x00" + notes
                                 + b"\x00\xff\x2f\x00"))
    started = time.process_time()
    read = read_midi(path)
    assert time.process_time() - started < 5
    assert [(n.pitch, round(n.start, 2), round(n.end, 2)) for n in read] == \
        [(60, 0.0, 0.1), (64, 0.1, 0.3), (60, 0.3, 0.4), (64, 0.4, 0.5)]  # 64 held by the pedal kept


def test_the_notes_of_a_track_named_melody_are_marked_as_the_melody(tmp_path):
    song = pretty_midi.PrettyMIDI()
    for name, pitch in ((" melody ", 72), ("PIANO", 48), ("", 60)):  # POP909 names its lead line's track so
        track = pretty_midi.Instrument(0, name=name)
        track.notes += [pretty_midi.Note(80, pitch + k, 0.5 * k, 0.5 * k + 0.4) for k in range(4)]
        song.instruments.append(track)
    song.write(str(tmp_path / "song.mid"))
    notes, melody = read_midi_melody(tmp_path / "song.mid")
    assert len(notes) == 12 and melody == {(72 + k, 50 * k) for k in range(4)}
    assert read_midi_melody(tmp_path / "song.mid")[0] == read_midi(tmp_path / "song.mid")
    # A track that names itself a million bytes long, again and again, costs the walk only; its first name counts.
    name = b"\x00\xff\x03\xbd\x84\x40" + b"MELODY" + b"x" * 999_994
    path = tmp_path / "named.mid"
    note = b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00"
    path.write_bytes(_midi_bytes(name * 20 + b"\x00\xff\x03\x06MELODY" + note))
    assert read_midi_melody(path)[1] == frozenset()  # its name is "MELODYxxx...": not a melody track
    path.write_bytes(_midi_bytes(b"\x00\xff\x03\x06MELODY" + name + note))
    assert read_midi_melody(path)[1] == {(60, 0)}


HOSTILE = {  # (track bytes, header: division and track count) -> what the message says
    "a note placed years in": (b"\x00\xff\x51\x03\xff\xff\xff\x00\x90\x3c\x40\x84\xc4\xb4\x76\x80\x3c\x00"
                               b"\x00\xff\x2f\x00", 1, 1, "hours in"),
    "a pedal lifted years in": (b"\x00\xff\x51\x03\xff\xff\xff\x00\xb0\x40\x7f\x00\x90\x3c\x40\x01\x80\x3c\x00"
                                b"\x84\xc4\xb4\x76\xb0\x40\x00\x00\xff\x2f\x00", 1, 1, "hours in"),
    "an event past the tick limit": (b"\x00\x90\x3c\x40\xff\xff\xff\x7f\x80\x3c\x00\x00\xff\x2f\x00", 480, 1,
                                     "ticks in"),
    "a delta time of five bytes": (b"\x00\x90\x3c\x40" + b"\xff" * 100_000 + b"\x7f\x80\x3c\x00\x00\xff\x2f\x00", 480,
                                   1, "longer than MIDI allows"),
    "SMPTE timing with no ticks per frame": (b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00", -(25 << 8), 1,
                                            "ticks per frame"),
    "no ticks per beat": (b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00", 0, 1, "ticks per beat"),
    "a tempo of zero": (b"\x00\xff\x51\x03\x00\x00\x00\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00", 480, 1,
                        "tempo of zero"),
    "too many tracks": (b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00", 480, limits.MAX_MIDI_TRACKS + 1,
                        "tracks"),
    "an unknown event": (b"\x00\x90\x3c\x40\x60\xf4\x00\xff\x2f\x00", 480, 1, "unknown event"),
    "data before any status": (b"\x00\x3c\x40\x00\xff\x2f\x00", 480, 1, "no status"),
    "a track missing": (b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00", 480, 2, "truncated"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_files_are_refused_before_they_cost_time_or_memory(tmp_path, kind, parsed):
    track, division, tracks, message = HOSTILE[kind]
    path = tmp_path / "hostile.mid"
    path.write_bytes(b"MThd" + struct.pack(">IHHh", 6, 1, tracks, division) + b"MTrk"
                     + struct.pack(">I", len(track)) + track)
    started = time.process_time()
    with pytest.raises(MidiFileError, match=f"hostile.mid: .*{message}"):
        read_midi(path)
    assert time.process_time() - started < 2
    assert not parsed  # the walk knows the piece's length too, through the tempo map


def test_chunks_that_are_not_tracks_are_passed_over(tmp_path):
    """The standard asks readers to skip chunks of kinds they do not know: a sequencer's own (Yamaha's XF
    chunks), before the first track and between tracks."""
    tracks = [b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00\x00\xff\x2f\x00",  # C for a beat, then G for a beat
              b"\x83\x60\x90\x43\x50\x83\x60\x43\x00\x00\xff\x2f\x00"]
    other = b"XFIH" + struct.pack(">I", 6) + b"\x00\x01MTrk"  # its data may hold anything, a track's name too
    data = b"MThd" + struct.pack(">IHHH", 6, 1, 2, 480) + other
    for track in tracks:
        data += b"MTrk" + struct.pack(">I", len(track)) + track + other
    (tmp_path / "xf.mid").write_bytes(data)
    assert [(n.pitch, n.start, n.end) for n in read_midi(tmp_path / "xf.mid")] == [(60, 0.0, 0.5), (67, 0.5, 1.0)]


@pytest.mark.parametrize(("between", "message"), [
    ((b"XFKM" + struct.pack(">I", 0)) * (limits.MAX_MIDI_OTHER_CHUNKS + 1), "chunks that are not tracks"),
    (b"\x00\x90\x3c\x40\x00\x00\x00\x00", "does not start where the one before it ends"),  # a track ran on
    (b"XFKM" + struct.pack(">I", 1_000_000), "truncated"),
], ids=["too many other chunks", "a track that ran on", "another chunk cut off"])
def test_what_stands_where_a_track_should_be_is_refused_in_words(tmp_path, between, message, parsed):
    track = b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00"
    data = (b"MThd" + struct.pack(">IHHH", 6, 1, 2, 480) + b"MTrk" + struct.pack(">I", len(track)) + track + between
            + b"MTrk" + struct.pack(">I", len(track)) + track)
    (tmp_path / "odd.mid").write_bytes(data)
    started = time.process_time()
    with pytest.raises(MidiFileError, match=f"odd.mid: .*{message}"):
        read_midi(tmp_path / "odd.mid")
    assert time.process_time() - started < 2
    assert not parsed


def test_a_track_that_runs_past_its_length_is_refused_before_the_parser_reads_on(tmp_path, parsed):
    """mido reads such a track on into the rest of the file (megabytes of it) before it fails."""
    body = b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + b"\x00\xb0\x07\x40" + b"\x00\x07\x40" * 100_000
    data = b"MThd" + struct.pack(">IHHH", 6, 1, 1, 480) + b"MTrk" + struct.pack(">I", 10) + body
    (tmp_path / "overrun.mid").write_bytes(data)
    with pytest.raises(MidiFileError, match="runs past its end"):
        read_midi(tmp_path / "overrun.mid")
    assert not parsed


def test_many_pedal_lifts_are_read_in_linear_time(tmp_path):
    """Each note finds its pedal interval by bisection (a note times every lift took minutes for 40,000)."""
    body = (b"\x00\x90\x3c\x40\x0a\x80\x3c\x00\x00\xb0\x40\x7f\x0a\xb0\x40\x00") * 20_000
    path = tmp_path / "pedal.mid"
    path.write_bytes(_midi_bytes(body + b"\x00\xff\x2f\x00"))
    started = time.process_time()
    notes = read_midi(path)
    assert len(notes) == 20_000 and time.process_time() - started < 10
    beat = 0.5 / 480  # seconds per tick at 120 bpm
    assert notes[0].end == pytest.approx(20 * beat)  # held by the pedal until it lifts


# --- canonical notes: what is read is what the model and the exporter see -----------------------------


def test_unisons_merge_into_the_longer_and_louder_note(tmp_path):
    loud, long = _piano((60, 0.0, 1.0)), _piano((60, 0.0, 2.0), program=40)
    loud.notes[0].velocity = 120
    (note,) = read_midi(_write(tmp_path, loud, long))
    assert (note.pitch, note.velocity, note.start) == (60, 120, 0.0)
    assert note.end == pytest.approx(2.0)


def test_a_restrike_ends_the_earlier_note_and_no_note_is_shorter_than_a_tick(tmp_path):
    path = _write(tmp_path, _piano((60, 0.0, 2.0), (62, 0.5, 0.503)), _piano((60, 1.0, 1.5), program=40))
    notes = read_midi(path)
    assert [(n.pitch, n.start) for n in notes] == [(60, 0.0), (62, 0.5), (60, 1.0)]
    assert notes[0].end == pytest.approx(1.0) and notes[2].end == pytest.approx(1.5)
    assert notes[1].end == pytest.approx(0.51)  # one tick of the codec's 10 ms grid


def test_what_is_read_survives_the_codec_within_10_ms(tmp_path):
    """decode(encode(notes)) gives back the notes read: the same count, each time within 10 ms."""
    path = _write(tmp_path, _piano((60, 0.0, 3.0), (60, 1.0, 1.2), (64, 0.5, 0.6), (60, 0.003, 0.5), (67, 2.0, 2.004),
                                   pedal=[(0.1, 127), (6.0, 0)]),
                  _piano((60, 2.0, 2.5), (64, 0.5, 4.0), program=40))
    notes = read_midi(path)
    back = decode(encode(notes))
    assert len(back) == len(notes) == 5  # the unisons merged
    key = lambda note: (note.pitch, to_ticks(note.start))  # noqa: E731 (a sort key)
    for read, decoded in zip(sorted(notes, key=key), sorted(back, key=key), strict=True):
        assert read.pitch == decoded.pitch
        assert read.start == pytest.approx(decoded.start, abs=0.01) and read.end == pytest.approx(decoded.end, abs=0.01)
    assert canonical_notes(notes) == notes


def test_written_files_are_canonical_and_readable_by_everyone(tmp_path):
    """Exports get the mode of any new file (0644 under the usual umask), not the temporary file's 0600."""
    previous = os.umask(0o022)
    try:
        write_midi([Note(60, 90, 0.0, 1.0), Note(60, 80, 0.0, 0.5), Note(62, 80, 0.2, 0.2)], tmp_path / "out.mid")
        assert stat.S_IMODE(os.stat(tmp_path / "out.mid").st_mode) == 0o644
        os.umask(0o077)
        write_midi([Note(60, 90, 0.0, 1.0)], tmp_path / "private.mid")
        assert stat.S_IMODE(os.stat(tmp_path / "private.mid").st_mode) == 0o600
    finally:
        os.umask(previous)
    assert [(n.pitch, n.velocity, n.start, round(n.end, 3)) for n in read_midi(tmp_path / "out.mid")] == \
        [(60, 90, 0.0, 1.0), (62, 80, 0.2, 0.21)]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mid", "private.mid"]
    atomic_write(tmp_path / "journal", lambda handle: handle.write(b"{}"), mode=0o600)
    assert stat.S_IMODE(os.stat(tmp_path / "journal").st_mode) == 0o600


@pytest.mark.parametrize("bpm", [0, -120, float("nan"), float("inf"), 10_000, "fast"])
def test_write_refuses_a_tempo_outside_the_limits(tmp_path, bpm):
    with pytest.raises(ValueError, match="tempo"):
        write_midi([Note(60, 90, 0.0, 1.0)], tmp_path / "out.mid", bpm=bpm)
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "out.mid").write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out.mid", fail)
    assert (tmp_path / "out.mid").read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_a_track_with_nothing_to_read_is_no_trouble(tmp_path):
    """A conductor track of a time signature and a name only: nothing in it is kept for the parser."""
    import mido

    file = mido.MidiFile(type=1, ticks_per_beat=480)
    file.tracks.append(mido.MidiTrack([mido.MetaMessage("time_signature", numerator=3, denominator=4),
                                       mido.MetaMessage("track_name", name="conductor")]))
    file.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=80),
                                       mido.Message("note_off", note=60, time=480)]))
    file.save(tmp_path / "conductor.mid")
    (note,) = read_midi(tmp_path / "conductor.mid")
    assert (note.pitch, note.start, note.end) == (60, 0.0, 0.5)


def test_write_midi_keeps_a_tempo_map_time_signatures_and_a_key(tmp_path):
    """Each note reads back within half a tick however many tempo changes come before it; the metres come in
    where they were asked for; the key is spelled as a signature names it (D dorian shares C major's)."""
    import mido

    tempi = [(0.0, 90.0)] + [(1.0 + 0.37 * index, 60.0 + (index * 7) % 200) for index in range(300)]
    notes = [Note(60 + index % 24, 80, 0.05 + 0.41 * index, 0.05 + 0.41 * index + 0.3) for index in range(280)]
    path = tmp_path / "map.mid"
    write_midi(notes, path, tempi=tempi, time_signatures=[(0.0, 3, 4), (2.0 / 3, 5, 8)], key=(2, "dorian"),
               track_name="Piano", title="Map")
    back = read_midi(path)
    assert len(back) == len(notes)
    assert max(abs(a.start - b.start) for a, b in zip(back, notes, strict=True)) < 0.001
    _, timing = read_midi_timed(path)
    assert len(timing.tempi) == len(tempi) and timing.signatures[1][1:] == (5, 8)
    assert timing.signatures[1][0] == timing.resolution  # 2/3 s at 90 BPM is the first beat's end
    midi = mido.MidiFile(path)
    meta = {message.type: message for track in midi.tracks for message in track if message.is_meta}
    assert meta["key_signature"].key == "C" and [t.name for t in midi.tracks] == ["Map", "Piano"]
    with pytest.raises(ValueError, match="in order"):
        write_midi(notes, path, tempi=[(0.0, 90.0), (2.0, 80.0), (1.0, 70.0)])
    assert read_midi(path) == back  # a refused write leaves the file as it was
