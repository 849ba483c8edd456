"""Faithful export: a MIDI file written by the studio or by `continuo --export` carries the song's time
signatures, tempo map, key signature, a piano program and track names, and reads back as it plays."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import mido
import pytest

from music_transformer import read_midi

ROOT = Path(__file__).resolve().parents[2]
RESOLUTION = 480


def waltz(path: Path) -> None:
    """A waltz: 3/4 at 90 BPM, 140 BPM from bar 5 (beat 12), a quarter note on every beat and a few off it."""
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(140), time=12 * RESOLUTION),
        ]
    )
    events = []  # (tick, on, pitch)
    for beat in range(24):
        pitch = (48, 64, 67)[beat % 3] + (beat // 6) % 3
        events += [(beat * RESOLUTION, 1, pitch), (beat * RESOLUTION + 400, 0, pitch)]
    for tick in (1000, 7300, 9999):  # off the beat: each note keeps its own time
        events += [(tick, 1, 84), (tick + 100, 0, 84)]
    track, now = mido.MidiTrack(), 0
    for tick, on, pitch in sorted(events):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=90 if on else 0, time=tick - now))
        now = tick
    mido.MidiFile(type=1, ticks_per_beat=RESOLUTION, tracks=[conductor, track]).save(path)


def export(source: Path, out: Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, CONTINUO_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "continuo.main", "--export", str(out), str(source)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def timing(path: Path) -> tuple[list[tuple[int, int]], list[tuple[float, float]]]:
    """A file's time signatures and tempi (BPM), each with where it comes in beats."""
    midi = mido.MidiFile(path)
    metres, tempi = [], []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "time_signature":
                metres.append((tick / midi.ticks_per_beat, message.numerator, message.denominator))
            elif message.type == "set_tempo":
                tempi.append((tick / midi.ticks_per_beat, round(mido.tempo2bpm(message.tempo), 3)))
    return metres, tempi


def assert_same_notes(written: Path, source: Path) -> None:
    """Every note of the source comes back, each start and end within 2 ms."""
    back, original = read_midi(written), read_midi(source)
    assert len(back) == len(original)
    for got, want in zip(back, original, strict=True):
        assert (got.pitch, got.velocity) == (want.pitch, want.velocity)
        assert abs(got.start - want.start) <= 0.002 and abs(got.end - want.end) <= 0.002


@pytest.mark.timeout(240)
def test_a_headless_export_keeps_the_metre_both_tempi_and_every_note(tmp_path, home):
    source = tmp_path / "waltz.mid"
    waltz(source)
    out = tmp_path / "out.mid"
    result = export(source, out, home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "out.mid" in result.stdout and "3/4" in result.stdout
    metres, tempi = timing(out)
    assert metres == [(0.0, 3, 4)]
    assert tempi == [(0.0, 90.0), (12.0, 140.0)]
    assert_same_notes(out, source)
    midi = mido.MidiFile(out)
    names = [message.name for track in midi.tracks for message in track if message.type == "track_name"]
    programs = [message.program for track in midi.tracks for message in track if message.type == "program_change"]
    assert names == ["waltz", "Piano"] and programs == [0]

    # a session exports the same (its tempo map kept), and the WAV through the built-in synth
    result = export(out, tmp_path / "waltz.continuo", home)
    assert result.returncode == 2 and "writes a MIDI file (.mid) or a WAV file (.wav)" in result.stderr
    from continuo.document import read_file
    from continuo.session import write_session
    from continuo.song import Song

    read, song = read_file(source), Song()
    song.load(read.notes, read.meta)
    write_session(song, tmp_path / "waltz.continuo")
    result = export(tmp_path / "waltz.continuo", tmp_path / "session.mid", home)
    assert result.returncode == 0, result.stderr
    assert timing(tmp_path / "session.mid") == (metres, tempi)
    assert_same_notes(tmp_path / "session.mid", source)
    wav = tmp_path / "waltz.wav"
    result = export(source, wav, home)
    assert result.returncode == 0, result.stderr
    with wave.open(str(wav)) as audio:
        seconds = audio.getnframes() / audio.getframerate()
    last = max(note.end for note in read_midi(source))
    assert last <= seconds <= last + 3.0


@pytest.mark.timeout(240)
def test_a_damaged_file_is_named_and_nothing_is_written(tmp_path, home):
    source = tmp_path / "waltz.mid"
    waltz(source)
    damaged = tmp_path / "cut.mid"
    damaged.write_bytes(source.read_bytes()[:60])
    out = tmp_path / "out.mid"
    result = export(damaged, out, home)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("continuo: cut.mid: ")
    assert not out.exists() and sorted(path.name for path in tmp_path.glob("*.*")) == ["cut.mid", "waltz.mid"]
    out.write_bytes(b"kept")  # an earlier export at OUT stays as it was
    assert export(tmp_path / "missing.mid", out, home).returncode == 2
    assert out.read_bytes() == b"kept"
    result = export(damaged, tmp_path / "out.wav", home)
    assert result.returncode == 2 and not (tmp_path / "out.wav").exists()


def test_the_studio_exports_its_tempo_map_metres_and_key(window, tmp_path):
    source = tmp_path / "waltz.mid"
    waltz(source)
    assert window.open_path(source)
    song = window.song
    assert song.tempo_map.tempi == ((0.0, 90.0), (12.0, 140.0)) and song.time_signature == (3, 4)
    assert song.bar_beat(12.0).bar == 5  # the tempo change is at bar 5 of the score, as in the file
    song.set_time_signature(6, 8)  # then a change of metre at bar 3 of the 6/8 (beat 6)
    map_with_change = song.tempo_map
    from continuo.song import TempoMap

    song.set_tempo_map(TempoMap(map_with_change.tempi, ((0.0, 6, 8), (6.0, 2, 4))))
    settings = song.settings
    import dataclasses

    song.set_settings(dataclasses.replace(settings, key_mode="chosen", key_tonic=9, key_scale="minor"))
    out = tmp_path / "exported.mid"
    assert window.document.export_midi(out)
    metres, tempi = timing(out)
    assert metres == [(0.0, 6, 8), (6.0, 2, 4)] and tempi == [(0.0, 90.0), (12.0, 140.0)]
    keys = [message.key for track in mido.MidiFile(out).tracks for message in track if message.type == "key_signature"]
    assert keys == ["Am"]
    assert_same_notes(out, source)
    song.set_settings(dataclasses.replace(settings, key_mode="off"))
    assert window.document.export_midi(out)
    assert not [m for track in mido.MidiFile(out).tracks for m in track if m.type == "key_signature"]
