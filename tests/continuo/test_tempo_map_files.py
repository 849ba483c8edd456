"""The tempo map in files: a MIDI file opens with every tempo and metre change, on its own beats; a session keeps
the map, older sessions still open as before; opening a file leaves the Continue settings as they were."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mido
import pytest

from continuo.session import FORMAT_VERSION, SessionError, read_session, write_session
from continuo.song import Song, TempoMap
from music_transformer import Note, read_midi, write_midi
from tests.continuo.test_export import waltz

ROOT = Path(__file__).resolve().parents[2]


def test_a_midi_file_opens_on_its_own_beats_so_bar_numbers_are_the_scores(window, tmp_path):
    """The tempo change at bar 5 no longer moves the bar lines: every note lies on the file's beats (with one
    tempo, the notes after 140 BPM drifted off the grid: bar 9 read as bar 7)."""
    path = tmp_path / "waltz.mid"
    waltz(path)
    assert window.open_path(path)
    song = window.song
    starts = sorted({note.start for note in song.notes() if note.pitch != 84})
    assert starts == [float(beat) for beat in range(24)]  # a quarter note on every beat, as in the file
    assert [song.bar_beat(beat) for beat in (12.0, 21.0, 23.0)] == [(5, 1, 0.0), (8, 1, 0.0), (8, 3, 0.0)]
    for note, original in zip(song.performance_notes(), read_midi(path), strict=True):  # and keep their times
        assert note.start == pytest.approx(original.start, abs=1e-5)  # 666,667 µs a beat: 90 BPM kept
    assert "the song keeps every change" in window.statusBar().currentMessage()
    assert "changes tempo 1 time (90–140 BPM)" in window.tempo_box.toolTip()  # the box shows the first tempo
    window.tempo_box.setValue(45.0)  # half as fast: the whole map scales
    assert song.tempo_map.tempi == ((0.0, 45.0), (12.0, 70.0))
    assert "(45–70 BPM)" in window.tempo_box.toolTip()


def test_opening_a_three_four_file_leaves_the_continue_length_as_it_was(window, tmp_path):
    song, panel = window.song, window.generation_panel
    song.set_settings(dataclasses.replace(song.settings, length=200.0, length_unit="bars"))
    before = song.settings
    path = tmp_path / "waltz.mid"
    waltz(path)
    assert window.open_path(path, ask_to_save=False)
    assert song.time_signature == (3, 4)
    assert song.settings == before and panel.length_box.value() == 200.0 and panel.unit_box.currentText() == "bars"
    panel.unit_box.setCurrentText("seconds")  # 200 bars of 3/4 from the motif's end, at 140 BPM
    assert panel.length_box.value() == pytest.approx(200 * 3 * 60 / 140, abs=0.05)
    assert song.settings.length_unit == "seconds"


def test_a_session_keeps_the_tempo_map_and_a_steady_one_stays_readable_by_older_versions(window, tmp_path):
    song = window.song
    tempo_map = TempoMap(((0.0, 90.0), (12.0, 140.0), (30.5, 70.25)), ((0.0, 3, 4), (12.0, 2, 4), (20.0, 6, 8)))
    song.set_tempo_map(tempo_map)
    song.add_notes([song.new_note(60, 90, 12.0, 1.0)])
    path = tmp_path / "map.continuo"
    assert window.document.save_to(path)
    assert json.loads(path.read_text())["version"] == FORMAT_VERSION == 2
    song.load([])
    assert song.tempo_map == TempoMap()
    assert window.open_path(path)
    assert song.tempo_map == tempo_map and song.bar_beat(12.0) == (5, 1, 0.0)
    steady = tmp_path / "steady.continuo"
    song.load([])
    song.set_settings(dataclasses.replace(song.settings, length=6.0))
    write_session(song, steady)
    data = json.loads(steady.read_text())  # as an older Continuo reads it: version 1, the length in beats
    assert data["version"] == 1 and data["settings"]["length_beats"] == 24.0 and "tempo_changes" not in data


def test_older_sessions_open_as_before_with_their_length_in_their_own_bars(window, tmp_path):
    example = read_session(ROOT / "assets" / "examples" / "sketch.continuo")  # saved before the tempo map
    assert example.meta["tempo_changes"] == () and example.meta["metre_changes"] == ()
    assert example.meta["settings"].length == 6.0 and example.meta["settings"].length_unit == "bars"  # 24 beats
    path = tmp_path / "old.continuo"
    write_session(Song(), path)
    data = json.loads(path.read_text())
    data.update(version=1, tempo=90.0, time_signature=[3, 4])
    data["settings"] = {"length_beats": 600.0, "length_unit": "bars"}  # a session's 200 bars of 3/4
    path.write_text(json.dumps(data))
    assert window.open_path(path)
    assert window.song.settings.length == 200.0 and window.generation_panel.length_box.value() == 200.0
    data["settings"] = {"length_beats": 45.0, "length_unit": "seconds"}  # 45 beats at 90 BPM: 30 s
    path.write_text(json.dumps(data))
    assert window.open_path(path, ask_to_save=False) and window.song.settings.length == 30.0


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"tempo_changes": [[8.0, 90.0], [4.0, 60.0]]}, "the tempo changes are out of order at beat 4"),
        ({"tempo_changes": [[8.0, 4000.0]]}, "the tempo (BPM) is 4000"),
        ({"tempo_changes": [[0.0, 90.0]]}, "a tempo change's beat is 0"),
        ({"metre_changes": [[4.0, 5, 7]]}, "time signature 5/7 is not supported"),
        ({"metre_changes": "3/4"}, "not a list"),
    ],
)
def test_a_damaged_tempo_map_is_refused_in_words(tmp_path, changes, words):
    path = tmp_path / "damaged.continuo"
    write_session(Song(), path)
    data = json.loads(path.read_text()) | {"version": 2} | changes
    path.write_text(json.dumps(data))
    with pytest.raises(SessionError, match="damaged") as refused:
        read_session(path)
    assert words in str(refused.value)


def test_playback_and_the_autosave_follow_the_map(window, tmp_path):
    from continuo.playback.player import song_events

    song = window.song
    song.set_tempo_map(TempoMap(((0.0, 120.0), (4.0, 60.0))))
    song.add_notes([song.new_note(60, 90, 6.0, 1.0)])
    on = [event for event in song_events(song) if event[1] == 0x90 or event[3] > 0]
    assert on[0][0] == pytest.approx(2.0 + 2.0)  # four beats at 120 BPM, two at 60


def test_a_performance_that_follows_no_beat_is_said_to(window, tmp_path):
    """A recording timed freely over a steady 120 BPM (as a take recorded without a click) opens on the file's
    grid, and the message says that the bars are the file's, not the music's."""
    import random

    rng = random.Random(3)
    notes, time = [], 0.0
    for _ in range(200):
        time += rng.uniform(0.05, 0.4)
        notes.append(Note(rng.randrange(48, 84), 70, time, time + 0.3))
    path = tmp_path / "take.mid"
    write_midi(notes, path)
    assert window.open_path(path)
    assert "follow no beat" in window.statusBar().currentMessage()
    ruler = window.roll.ruler
    assert ruler.note.startswith("Free performance") and ruler.toolTip() == ruler.note  # said while it is open
    grid = tmp_path / "grid.mid"
    write_midi([Note(60 + i % 7, 80, i * 0.25, i * 0.25 + 0.2) for i in range(64)], grid)
    assert window.open_path(grid, ask_to_save=False)
    assert "follow no beat" not in window.statusBar().currentMessage() and ruler.note == ""
    late = tmp_path / "late.mid"  # on a beat, 0.6 of the file's beat late throughout (as POP909's files are)
    write_midi([Note(60 + i % 7, 80, 0.3 + i * 0.5, 0.3 + i * 0.5 + 0.2) for i in range(64)], late)
    assert window.open_path(late, ask_to_save=False)
    assert "0.40 of a beat before the file's beats" in ruler.note  # as near as 0.6 after
    window.document.new_song()
    assert ruler.note == ""


def test_headless_reading_needs_no_window(tmp_path):
    from continuo.midi_files import read_midi_file

    path = tmp_path / "waltz.mid"
    waltz(path)
    tempo_map = read_midi_file(path).timing.tempo_map()
    assert tempo_map.tempi == ((0.0, 90.0), (12.0, 140.0)) and tempo_map.metre == (3, 4)
    assert mido.MidiFile(path).ticks_per_beat == 480


def test_crash_restore_brings_back_the_tempo_map(qapp, tmp_path):
    """From the snapshot (a session) and from the journal's lines (each change of the map an edit)."""
    from continuo import autosave, restore
    from continuo.journal import find_orphans
    from tests.continuo.helpers import crash

    song = Song()
    saver = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    song.set_tempo_map(TempoMap(((0.0, 100.0), (8.0, 50.0)), ((0.0, 3, 4), (9.0, 5, 8))))
    song.add_notes([song.new_note(60, 100, 9.0, 1.0)])
    saver.snapshot_now()
    song.set_tempo(120.0)  # journalled: every tempo scaled alike
    song.set_tempo_map(TempoMap(song.tempo_map.tempi, ((0.0, 3, 4), (9.0, 5, 8), (11.5, 4, 4))))
    crash(saver)
    restored = Song()
    restore.restore(find_orphans(tmp_path)[0], restored)
    assert restored.tempo_map == song.tempo_map and restored.tempo_map.tempi == ((0.0, 120.0), (8.0, 60.0))
    assert restored.meta() == song.meta()


def answer_input(value) -> None:
    """Types `value` into the next input dialog once it opens, and presses OK."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QInputDialog

    def attempt() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QInputDialog):
            QTimer.singleShot(20, attempt)
            return
        if isinstance(value, str):
            dialog.setTextValue(value)
        else:
            dialog.setDoubleValue(value)
        dialog.accept()

    QTimer.singleShot(20, attempt)


def test_the_ruler_puts_a_tempo_or_metre_change_where_it_was_clicked_and_takes_it_out(window, roll):
    """Right-click in the ruler: a tempo from that grid step, a metre from that bar; each one undo step, the
    notes keep their beats, and a metre that is not one is said in the status bar."""
    song = window.song
    song.add_notes([song.new_note(60, 90, 9.0, 1.0)])

    def act(menu, name: str) -> None:
        [action] = [action for action in menu.actions() if action.objectName() == name or action.text() == name]
        action.trigger()

    answer_input(60.0)
    act(roll.ruler.change_menu(8.1), "tempo_change")  # the grid (1/16) puts it on beat 8.0: bar 3
    assert song.tempo_map.tempi == ((0.0, 120.0), (8.0, 60.0))
    assert song.to_seconds(9.0) == pytest.approx(4.0 + 1.0) and song.notes()[0].start == 9.0
    assert song.undo_stack.undoText() == "Tempo 60 BPM at 3.1"
    answer_input("3/4")
    act(roll.ruler.change_menu(9.5), "metre_change")  # bar 3 begins on beat 8
    assert song.tempo_map.metres == ((0.0, 4, 4), (8.0, 3, 4)) and song.bar_beat(11.0) == (4, 1, 0.0)
    for typed, said in (("3/0", "3/0 is not a time signature Continuo supports"), ("waltz", "waltz is not a time")):
        answer_input(typed)
        act(roll.ruler.change_menu(9.5), "metre_change")
        assert said in window.statusBar().currentMessage() and song.tempo_map.metres[1] == (8.0, 3, 4)
    act(roll.ruler.change_menu(9.0), "Remove Tempo Change at 3.1")
    act(roll.ruler.change_menu(9.0), "Remove Time Signature Change at Bar 3")
    assert song.tempo_map == TempoMap()
    song.undo_stack.undo()
    song.undo_stack.undo()
    assert song.tempo_map.tempi[1] == (8.0, 60.0) and song.tempo_map.metres[1] == (8.0, 3, 4)


def test_the_beat_phase_of_a_file_on_its_grid_off_it_by_a_constant_and_free():
    """Sixteenths, most of them off the beat, are on the grid (0); the same notes with chords on the beats, 0.3 of
    a beat late, are said to be (without the chords a sixteenths' grid tells its beat only to a quarter of it),
    and onsets at random follow no beat (None)."""
    import random

    from continuo.midi_files import beat_phase

    steady = TempoMap.steady(120.0)  # half a second a beat
    sixteenths = [Note(60, 80, 0.125 * step, 0.125 * step + 0.1) for step in range(400) if step % 4 in (1, 2, 3)]
    assert beat_phase(sixteenths, steady) == 0.0
    chords = [Note(pitch, 80, 0.5 * beat, 0.5 * beat + 0.3) for beat in range(100) for pitch in (48, 52, 55)]
    late = [Note(n.pitch, 80, n.start + 0.15, n.end + 0.15) for n in sorted(sixteenths + chords, key=lambda n: n.start)]
    assert beat_phase(late, steady) == pytest.approx(0.3, abs=0.01)
    rng = random.Random(5)
    free = sorted(rng.uniform(0, 200) for _ in range(500))
    assert beat_phase([Note(60, 80, start, start + 0.2) for start in free], steady) is None
