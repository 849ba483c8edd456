"""MIDI files: pedal, drums, tempo, overlaps, export, and every kind of bad input."""

import os
import struct
from pathlib import Path

import pretty_midi
import pytest

from music_transformer import MidiFileError, Note, read_midi, write_midi


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


def test_write_then_read_keeps_every_note(tmp_path):
    notes = [Note(60, 100, 0.0, 0.5), Note(64, 70, 0.25, 1.0), Note(67, 30, 1.0, 1.01)]
    write_midi(notes, tmp_path / "out.mid", bpm=90)
    back = read_midi(tmp_path / "out.mid")
    assert [(n.pitch, n.velocity) for n in back] == [(60, 100), (64, 70), (67, 30)]
    for original, read in zip(notes, back):
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
    read = []
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or read_bytes(self))
    with pytest.raises(MidiFileError, match="50 MB"):
        read_midi(path)
    assert not read  # refused from its size alone


def test_a_file_over_a_million_notes_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    """The quick scan refuses it: the MIDI parser (seconds and gigabytes for such a file) never runs."""
    path = tmp_path / "million.mid"
    note = b"\x00\x90\x3c\x40\x01\x80\x3c\x00"
    path.write_bytes(_midi_bytes(note * 1_000_001 + b"\x00\xff\x2f\x00"))
    parsed = []
    parse = pretty_midi.PrettyMIDI
    monkeypatch.setattr(pretty_midi, "PrettyMIDI", lambda *args, **kwargs: parsed.append(1) or parse(*args, **kwargs))
    with pytest.raises(MidiFileError, match="more than 1,000,000 notes"):
        read_midi(path)
    assert not parsed
    path.write_bytes(_midi_bytes(note * 1000 + b"\x00\xff\x2f\x00"))  # a normal file goes to the parser
    assert len(read_midi(path)) == 1000 and parsed == [1]


def test_the_quick_note_count_skips_meta_sysex_and_short_events(tmp_path):
    import mido

    from music_transformer.midi import _count_notes_at_most

    track = mido.MidiTrack([mido.MetaMessage("track_name", name="x" * 200),  # a length past one byte
                            mido.MetaMessage("set_tempo", tempo=500000),
                            mido.Message("sysex", data=[0x7E] * 150),
                            mido.Message("program_change", program=5)])
    for index in range(300):
        track.append(mido.Message("note_on", note=40 + index % 40, velocity=90, time=10))
        track.append(mido.Message("aftertouch", value=3))
        track.append(mido.Message("note_on", note=40 + index % 40, velocity=0, time=10))  # a note-off
    path = tmp_path / "count.mid"
    file = mido.MidiFile()
    file.tracks.append(track)
    file.save(path)
    data = path.read_bytes()
    assert _count_notes_at_most(data, 1000) == 300
    assert _count_notes_at_most(data, 100) == 101  # stops as soon as it is past the limit
