"""The view follows the music: to the seam when writing starts, with the newest notes while they are written,
page by page with the playhead while playing (View ▸ Follow Playhead), Home and End; scrolling by hand
stops the following; the empty roll says what to do first."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QCheckBox

from continuo.playback import RecorderSink
from continuo.song import CONTINUATION
from tests.continuo.helpers import draw_note, key


def in_view(roll, beat: float) -> bool:
    left, right = roll.visible_beats()
    return left <= beat <= right


def long_song(window, bars: int = 16) -> None:
    song = window.song
    song.add_notes([song.new_note(60 + beat % 12, 90, beat, 1) for beat in range(bars * 4)])


def shift_wheel(qtbot, roll, notches: int) -> None:
    """Turns the wheel with Shift held over the grid: the roll scrolls sideways."""
    position = QPointF(roll.canvas.width() / 2, roll.canvas.height() / 2)
    event = QWheelEvent(
        position,
        roll.canvas.mapToGlobal(position),
        QPoint(),
        QPoint(0, -120 * notches),
        Qt.NoButton,
        Qt.ShiftModifier,
        Qt.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(roll.canvas, event)


@pytest.mark.timeout(60)
def test_the_view_turns_pages_with_the_playhead_and_follow_playhead_turns_it_off(qtbot, window, roll):
    window.player.use_sinks([RecorderSink()])
    long_song(window)
    window.song.set_tempo(400)  # 64 beats in under 10 s
    roll.state.set_view(left_beat=0, pixels_per_beat=roll.canvas.width() / 8)  # two bars in view
    assert window.studio_actions.follow_playhead_action.isChecked()  # on by default
    lefts, outside = set(), []

    def watch(beat: float) -> None:
        lefts.add(round(roll.state.left_beat, 6))
        if not in_view(roll, beat):
            outside.append(beat)

    roll.transport.playhead_moved.connect(watch)
    key(qtbot, roll, "Space")
    qtbot.waitUntil(lambda: roll.transport.playhead > 20, timeout=20000)
    key(qtbot, roll, "Space")
    assert not outside  # the playhead never left the view
    assert len(lefts) >= 3  # pages turned: 8 beats each
    steps = sorted(lefts)
    assert all(later - earlier >= 8 * 0.8 for earlier, later in zip(steps, steps[1:], strict=False))  # by pages
    # View ▸ Follow Playhead off: the view stays where it is.
    window.studio_actions.follow_playhead_action.trigger()
    assert not roll.follow_playhead and window.preferences.get("follow_playhead") is False
    key(qtbot, roll, "Home")
    left = roll.state.left_beat
    key(qtbot, roll, "Space")
    qtbot.waitUntil(lambda: roll.transport.playhead > 12, timeout=20000)
    key(qtbot, roll, "Space")
    assert roll.state.left_beat == left and not in_view(roll, roll.transport.playhead)


@pytest.mark.timeout(60)
def test_scrolling_away_while_playing_stops_following_until_the_playhead_is_in_view(qtbot, window, roll):
    window.player.use_sinks([RecorderSink()])
    long_song(window, 32)
    window.song.set_tempo(400)
    roll.state.set_view(left_beat=0, pixels_per_beat=roll.canvas.width() / 8)
    key(qtbot, roll, "Space")
    qtbot.waitUntil(lambda: roll.transport.playhead > 2, timeout=10000)
    shift_wheel(qtbot, roll, 100)  # far to the right, away from the playhead
    away = roll.state.left_beat
    assert roll.scrolled_away and away > 40
    qtbot.waitUntil(lambda: roll.transport.playhead > 12, timeout=10000)
    assert roll.state.left_beat == away  # left where the musician put it
    key(qtbot, roll, "Space")
    key(qtbot, roll, "Space")  # playing again follows again
    qtbot.waitUntil(lambda: in_view(roll, roll.transport.playhead), timeout=5000)
    key(qtbot, roll, "Space")


def test_home_and_end_go_to_the_start_and_the_end_of_the_song(qtbot, window, roll):
    long_song(window)
    roll.state.set_view(left_beat=20, pixels_per_beat=roll.canvas.width() / 8)
    roll.transport.set_playhead(22)
    key(qtbot, roll, "End")
    assert roll.transport.playhead == window.song.end_beat() == 64
    assert in_view(roll, 64) and roll.state.left_beat > 50
    key(qtbot, roll, "Home")
    assert roll.transport.playhead == 0 and roll.state.left_beat == 0


@pytest.mark.timeout(120)
def test_writing_moves_to_the_seam_and_keeps_the_newest_notes_in_view(qtbot, studio, roll):
    window, song = studio, studio.song
    listen = next(box for box in window.generation_panel.findChildren(QCheckBox) if "Play while" in box.text())
    if listen.isChecked():
        qtbot.mouseClick(listen, Qt.LeftButton)  # watch it written, without playing it
    for beat, pitch in enumerate((60, 64, 67, 72, 67, 64, 60, 62)):
        draw_note(qtbot, roll, pitch, beat, 1)
    roll.state.set_view(left_beat=0, pixels_per_beat=roll.canvas.width() / 8.5)  # the seam at the right edge
    song.set_settings(dataclasses.replace(song.settings, length=12, seed=3))
    at_start, newest_shown = [], []
    song.writing_changed.connect(lambda writing: writing and at_start.append(roll.visible_beats()))

    def written(diff) -> None:
        notes = [note for note in diff.added if note.part == CONTINUATION]
        if notes:
            newest = max(notes, key=lambda note: note.end)
            left, right = roll.visible_beats()
            fits = newest.end - newest.start <= 0.9 * (right - left)  # else only its end can be in view
            newest_shown.append(in_view(roll, newest.end) and (in_view(roll, newest.start) or not fits))

    song.applied.connect(written)
    key(qtbot, roll, "Ctrl+Return")
    qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=90000)
    left, right = at_start[0]
    assert left < 8 < left + 0.5 * (right - left)  # the view moved to the seam, with the motif before it
    assert len(newest_shown) >= 5 and all(newest_shown)
    assert max(note.end for note in song.notes(CONTINUATION)) > 8 + (right - left)  # past the first page


def test_the_empty_roll_says_what_to_do_first(qtbot, window, roll):
    canvas = roll.canvas
    assert "then press Continue" in canvas.hint
    band = canvas.hint_rect().toRect()
    empty = canvas.grab(band).toImage()
    draw_note(qtbot, roll, 60, 0, 1)
    assert canvas.hint == ""
    roll.state.set_view(left_beat=100)  # nothing in view: only the grid where the words were
    drawn = canvas.grab(band).toImage()
    light = [
        sum(image.pixelColor(x, y).lightness() > 120 for x in range(0, image.width(), 2) for y in range(image.height()))
        for image in (empty, drawn)
    ]
    assert light[0] > 200 and light[1] < light[0] / 10  # the words are drawn, and gone with the first note


def test_a_note_held_longer_than_the_page_shows_its_end_where_the_writing_is(qtbot, window, roll):
    from music_transformer import Note

    song = window.song
    roll.state.set_view(left_beat=0, pixels_per_beat=roll.canvas.width() / 8)  # eight beats a page
    song.begin_stream(CONTINUATION)
    try:
        song.append([Note(60, 80, 2.0, 2.5)])  # 120 BPM: beats 4 to 5, on the page: the view stays
        assert roll.visible_beats() == (0, 8)
        song.append([Note(64, 80, 3.5, 4.5)])  # beats 7 to 9: the whole note, a little way in from the left
        left, right = roll.visible_beats()
        assert 0 < left < 7 and 9 <= right
        song.append([Note(48, 80, 4.5, 12.0)])  # beats 9 to 24, twice the page: its end near the right edge
        left, right = roll.visible_beats()
        assert left <= 24 <= right and right - 24 < 0.2 * (right - left)
    finally:
        song.commit()


def test_notes_released_together_in_separate_batches_each_show_whole(qtbot, window, roll):
    """A chord's notes end on the same tick but may reach the roll in different batches (the studio takes
    the worker's notes every 25 ms): the later batch's note, which began earlier, is shown whole too."""
    from music_transformer import Note

    song = window.song
    roll.state.set_view(left_beat=0, pixels_per_beat=roll.canvas.width() / 8)
    song.begin_stream(CONTINUATION)
    try:
        song.append([Note(72, 80, 10.0, 10.5)])  # beats 20 to 21: the view pages to it
        left, right = roll.visible_beats()
        assert left <= 20 and 21 <= right and left > 17
        song.append([Note(48, 80, 8.5, 10.5)])  # beats 17 to 21, released with it: whole in view
        left, right = roll.visible_beats()
        assert left <= 17 and 21 <= right
        song.append([Note(52, 80, 8.0, 9.0)])  # beats 16 to 18 ends before the front: the view stays
        assert roll.visible_beats() == (left, right)
    finally:
        song.commit()
