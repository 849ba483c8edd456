"""Continuations that end their phrase on a bar line, and long runs of variations: the heard one written first,
its progress and the time left on the bar, the others behind it. The bundled model, real widgets."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from PySide6.QtCore import Qt

from continuo.song import CONTINUATION, GenerationSettings
from tests.continuo.helpers import draw_note, wait_done

pytestmark = pytest.mark.timeout(120)

_EPSILON = 1e-6


def draw_motif(qtbot, roll) -> None:
    """C E G in quarters and a C of an eighth: the motif ends half a beat before the bar line, at beat 3.5."""
    for index, pitch in enumerate((60, 64, 67)):
        draw_note(qtbot, roll, pitch, index, 1)
    draw_note(qtbot, roll, 72, 3, 0.5)


def test_continue_ends_its_phrase_on_the_bar_line_after_the_length(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    draw_motif(qtbot, roll)
    assert song.motif_end() == pytest.approx(3.5)
    assert panel.end_at_bar_box.isChecked() and song.settings.end_at_bar  # on by default
    song.set_settings(dataclasses.replace(song.settings, length=2, seed=3))
    window.generation.listen = False
    requests = []  # what the worker is asked for, seen on its way (the worker writes it as asked)
    worker = window.generation.worker
    asked = worker.generate
    worker.generate = lambda request: (requests.append(request), asked(request))
    qtbot.mouseClick(panel.continue_button, Qt.LeftButton)
    wait_done(qtbot, window)
    notes = song.notes(CONTINUATION)
    assert notes and min(note.start for note in notes) >= 3.5 - _EPSILON
    # on past 11.5 (the motif's end and 8 beats) to the bar line at 12, within a bar of what was asked
    request = requests[-1]
    assert song.to_beats(request.start + request.seconds) == pytest.approx(12.0)
    assert song.to_beats(request.release_seconds) == pytest.approx(1.0)
    assert max(note.end for note in notes) <= 12.0 + _EPSILON
    assert max(note.start for note in notes) < 11.0 - _EPSILON  # the last beat strikes nothing: it releases

    panel.end_at_bar_box.setChecked(False)  # as before: the length asked for, wherever it ends
    assert not song.settings.end_at_bar
    window.generation.continue_song()  # replaces the continuation not yet accepted
    wait_done(qtbot, window)
    assert song.to_beats(requests[-1].start + requests[-1].seconds) == pytest.approx(11.5)
    assert requests[-1].release_seconds == 0.0
    assert max(note.end for note in song.notes(CONTINUATION)) <= 11.5 + _EPSILON


def test_the_phrase_ends_on_the_bar_line_of_the_songs_tempo_map(qtbot, studio, roll):
    """Bars of 3/4 at 120 BPM, then 4/4 at 60 BPM from beat 6: two bars after the motif's end (half-way through
    bar 2) is a third of the way through bar 4 (beats 10 to 14), so the phrase ends on beat 14, and its last
    beat, at 60 BPM, lasts a second."""
    from continuo.song import TempoMap

    window, song = studio, studio.song
    song.set_tempo_map(TempoMap(((0.0, 120.0), (6.0, 60.0)), ((0.0, 3, 4), (6.0, 4, 4))))
    draw_motif(qtbot, roll)
    song.set_settings(dataclasses.replace(song.settings, length=2, seed=3))
    window.generation.listen = False
    requests = []
    worker = window.generation.worker
    asked = worker.generate
    worker.generate = lambda request: (requests.append(request), asked(request))
    assert window.generation.continue_song()
    wait_done(qtbot, window)
    request = requests[-1]
    assert request.start == pytest.approx(1.75)
    assert song.to_beats(request.start + request.seconds) == pytest.approx(14.0)
    assert request.release_seconds == pytest.approx(1.0)
    assert max(note.end for note in song.notes(CONTINUATION)) <= 14.0 + _EPSILON


def test_end_at_a_bar_line_is_kept_in_sessions_and_older_ones_open_with_it_on(qtbot, window, tmp_path):
    panel, song = window.generation_panel, window.song
    panel.end_at_bar_box.setChecked(False)
    path = tmp_path / "song.continuo"
    assert window.document.save_to(path)
    data = json.loads(path.read_text())
    assert data["settings"]["end_at_bar"] is False
    assert window.open_path(path, ask_to_save=False)
    assert not song.settings.end_at_bar and not panel.end_at_bar_box.isChecked()
    del data["settings"]["end_at_bar"]  # a session saved before the option
    path.write_text(json.dumps(data))
    assert window.open_path(path, ask_to_save=False)
    assert song.settings.end_at_bar and panel.end_at_bar_box.isChecked()
    for value in ("yes", 1, None):
        with pytest.raises(ValueError, match="end_at_bar"):
            GenerationSettings.from_dict({"end_at_bar": value})


def test_the_heard_variation_is_written_first_with_its_progress_and_the_others_go_on_behind(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    draw_motif(qtbot, roll)
    song.set_settings(dataclasses.replace(song.settings, length=40, variations=3, seed=5))
    window.generation.listen = False
    shown = []  # (variation the progress is of, fraction, the bar's text)
    window.generation.progress.connect(
        lambda number, count, fraction: shown.append((number, fraction, panel.progress_bar.format()))
    )
    behind = []  # whether the others were still being written when the heard one was done
    song.writing_changed.connect(lambda writing: writing or behind.append(window.generation.generating))
    assert window.generation.continue_song()
    wait_done(qtbot, window, 90000)
    numbers = [number for number, _, _ in shown]
    switch = numbers.index(-1)
    assert set(numbers[:switch]) == {0} and set(numbers[switch:]) == {-1}  # the heard one, then the others
    assert max(fraction for number, fraction, _ in shown if number == 0) >= 0.95  # its bar runs to its end
    assert shown[0][2].startswith("Variation 1 of 3: ") and shown[-1][2].startswith("Variations 2–3: ")
    assert behind == [True]  # the song had the heard one while the others were still written
    variations = window.generation.variations
    assert [v.number for v in variations] == [0, 1, 2] and all(v.complete and v.notes for v in variations)
    assert len({tuple(v.notes) for v in variations}) == 3
    assert len(song.notes(CONTINUATION)) == len(variations[0].notes)


def test_the_time_left_is_estimated_after_two_seconds_of_writing(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    draw_motif(qtbot, roll)
    song.set_settings(dataclasses.replace(song.settings, length=400, variations=2))
    window.generation.listen = False
    texts = []
    window.generation.progress.connect(lambda *args: texts.append((time.perf_counter(), panel.progress_bar.format())))
    started = time.perf_counter()
    assert window.generation.continue_song()
    qtbot.waitUntil(lambda: texts and "left" in texts[-1][1], timeout=60000)
    first = next(when for when, text in texts if "left" in text)
    assert first - started >= 2.0  # not before the pace has settled
    assert all("left" not in text for when, text in texts if when - started < 1.9)
    assert texts[-1][1].startswith("Variation 1 of 2: ") and window.generation.seconds_left > 0
    window.generation.cancel()
    wait_done(qtbot, window, 10000)
    assert [v.number for v in window.generation.variations] == [0]  # the other never began: none is kept
