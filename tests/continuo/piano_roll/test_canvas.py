"""The note grid, driven as a musician drives it with the mouse, and what it draws: note colours where notes
are and nowhere else."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from continuo.piano_roll import Palette
from continuo.song import CONTINUATION, MOTIF
from music_transformer import Note
from tests.continuo.helpers import drag, draw_note, key, summary


def test_draw_notes_with_the_mouse_then_undo_and_redo(qtbot, roll, window):
    draw_note(qtbot, roll, 60, 0, 1)
    draw_note(qtbot, roll, 64, 1, 0.5)
    draw_note(qtbot, roll, 67, 2, 2)
    assert summary(roll.song) == [(60, 0, 1, 100), (64, 1, 0.5, 100), (67, 2, 2, 100)]
    assert window.isWindowModified()
    key(qtbot, roll, "Ctrl+Z")
    assert [n.pitch for n in roll.song.notes()] == [60, 64]
    key(qtbot, roll, "Ctrl+Z")
    key(qtbot, roll, "Ctrl+Shift+Z")
    assert [n.pitch for n in roll.song.notes()] == [60, 64]
    key(qtbot, roll, "Ctrl+Y")
    assert [n.pitch for n in roll.song.notes()] == [60, 64, 67]


def test_a_click_draws_a_note_of_the_last_length_on_the_grid(qtbot, roll):
    draw_note(qtbot, roll, 62, 1, 0.75)
    qtbot.mouseClick(roll.canvas, Qt.LeftButton, Qt.NoModifier, roll.point_for(3.1, 65))
    assert summary(roll.song)[-1] == (65, 3.0, 0.75, 100)  # snapped back to the 1/16 grid, last length


def test_a_drawn_note_is_not_left_selected_so_zoom_to_fit_shows_the_song_and_fill_waits(qtbot, roll, window):
    draw_note(qtbot, roll, 60, 0, 1)
    draw_note(qtbot, roll, 72, 14, 2)
    assert roll.state.selection == frozenset()
    key(qtbot, roll, "Ctrl+0")  # Zoom to Fit: every note, not the one drawn last
    left, right = roll.visible_beats()
    assert left <= 0 and right >= 16
    window.studio_actions._update()
    assert not window.studio_actions.fill_action.isEnabled()
    assert "first choose a time range" in window.studio_actions.fill_action.toolTip()
    roll.state.set_tool("select")  # a double click with the select tool draws a note: not selected either
    qtbot.mouseDClick(roll.canvas, Qt.LeftButton, Qt.NoModifier, roll.point_for(4.1, 64))
    assert len(roll.song) == 3 and roll.state.selection == frozenset()


def test_move_and_resize_snap_to_the_grid(qtbot, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    roll.state.set_tool("select")
    roll.state.select(())
    # Move: grab the middle, drag right by about 1.1 beats and up two semitones.
    grab = roll.point_for(0.5, 60)
    drag(qtbot, roll.canvas, grab, roll.point_for(1.6, 62))
    assert summary(roll.song) == [(62, 1.0, 1.0, 100)]
    # Resize the end to about 3.4 beats: snaps to 3.5 on the 1/16 grid... at 1/8 it is 3.5 too.
    roll.state.set_snap("1/8")
    edge = roll.point_for(2.0, 62) - QPoint(2, 0)
    drag(qtbot, roll.canvas, edge, roll.point_for(3.43, 62))
    assert summary(roll.song) == [(62, 1.0, 2.5, 100)]
    # Resize the start to beat 0.5.
    drag(qtbot, roll.canvas, roll.point_for(1.0, 62) + QPoint(2, 0), roll.point_for(0.52, 62))
    assert summary(roll.song) == [(62, 0.5, 3.0, 100)]
    # Each gesture was one undo step.
    for expected in ([(62, 1.0, 2.5, 100)], [(62, 1.0, 1.0, 100)], [(60, 0.0, 1.0, 100)]):
        roll.song.undo_stack.undo()
        assert summary(roll.song) == expected


def test_alt_drag_moves_off_the_grid(qtbot, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    roll.state.set_tool("select")
    drag(qtbot, roll.canvas, roll.point_for(0.5, 60), roll.point_for(0.5 + 13 / 80, 60), Qt.AltModifier)
    assert abs(roll.song.notes()[0].start - 13 / 80) < 0.02


def test_rubber_band_shift_click_and_delete(qtbot, roll):
    for pitch, beat in ((60, 0), (62, 1), (64, 2), (65, 6)):
        draw_note(qtbot, roll, pitch, beat, 0.5)
    roll.state.set_tool("select")
    # A rubber band over the first three notes, from empty grid.
    drag(qtbot, roll.canvas, roll.point_for(-0.0, 66) + QPoint(2, 0), roll.point_for(2.9, 59))
    selected = {roll.song.note(i).pitch for i in roll.state.selection}
    assert selected == {60, 62, 64}
    # Shift-click takes one away and adds another.
    qtbot.mouseClick(roll.canvas, Qt.LeftButton, Qt.ShiftModifier, roll.point_for(1.25, 62))
    qtbot.mouseClick(roll.canvas, Qt.LeftButton, Qt.ControlModifier, roll.point_for(6.25, 65))
    assert {roll.song.note(i).pitch for i in roll.state.selection} == {60, 64, 65}
    key(qtbot, roll, "Delete")
    assert [n.pitch for n in roll.song.notes()] == [62]
    key(qtbot, roll, "Ctrl+Z")
    assert len(roll.song) == 4


def test_dragging_one_of_several_selected_notes_moves_them_all(qtbot, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    draw_note(qtbot, roll, 64, 0, 1)
    key(qtbot, roll, "Ctrl+A")
    roll.state.set_tool("select")
    drag(qtbot, roll.canvas, roll.point_for(0.5, 64), roll.point_for(2.5, 64))
    assert summary(roll.song) == [(60, 2.0, 1.0, 100), (64, 2.0, 1.0, 100)]
    assert roll.song.undo_stack.count() == 3


def test_erase_tool_and_right_click(qtbot, roll):
    for beat in range(4):
        draw_note(qtbot, roll, 60, beat, 1)
    draw_note(qtbot, roll, 72, 0, 1)
    roll.state.set_tool("erase")
    drag(qtbot, roll.canvas, roll.point_for(0.5, 60), roll.point_for(2.5, 60))
    assert summary(roll.song) == [(72, 0, 1, 100), (60, 3, 1, 100)]
    roll.state.set_tool("draw")
    qtbot.mouseClick(roll.canvas, Qt.RightButton, Qt.NoModifier, roll.point_for(0.5, 72))
    assert summary(roll.song) == [(60, 3, 1, 100)]
    roll.song.undo_stack.undo()
    roll.song.undo_stack.undo()
    assert len(roll.song) == 5


def test_edits_wait_while_the_continuation_is_written(qtbot, roll, window):
    from music_transformer import Note

    draw_note(qtbot, roll, 60, 0, 1)
    roll.song.begin_stream(CONTINUATION)
    roll.song.append([Note(62, 80, 0.5, 1.0)])
    draw_note(qtbot, roll, 70, 4, 1)  # refused, with a message
    assert [n.pitch for n in roll.song.notes()] == [60, 62]
    assert "being written" in window.statusBar().currentMessage()
    assert not window.studio_actions.undo_action.isEnabled()
    roll.song.commit()
    assert window.studio_actions.undo_action.isEnabled()


def test_the_playhead_moving_repaints_only_where_it_was_and_is(qtbot, roll):
    from PySide6.QtCore import QEvent, QObject

    regions = []

    class Spy(QObject):
        def eventFilter(self, watched, event):
            if event.type() == QEvent.Paint:
                regions.append(event.rect())
            return False

    spy = Spy()
    roll.canvas.installEventFilter(spy)
    qtbot.wait(20)
    regions.clear()
    roll.transport.set_playhead(4)
    qtbot.waitUntil(lambda: bool(regions), timeout=1000)
    assert all(rect.width() < roll.canvas.width() / 2 for rect in regions)
    roll.canvas.removeEventFilter(spy)


def pixel(image, point):
    return QColor(image.pixel(point.x(), point.y()))


def test_drawn_notes_have_note_colour_at_their_positions_and_nowhere_else(qtbot, roll):
    notes = [(60, 0, 1), (64, 2, 0.5), (67, 4, 2)]
    for pitch, beat, length in notes:
        draw_note(qtbot, roll, pitch, beat, length)
    roll.state.select(())
    image = roll.canvas.grab().toImage()
    motif = Palette.note_fill(MOTIF, 100)
    for pitch, beat, length in notes:
        centre = roll.point_for(beat + length / 2, pitch)
        assert pixel(image, centre) == motif, (pitch, beat)
    # Everywhere else on the grid there is no note colour: scan the whole image.
    inside = set()
    for pitch, beat, length in notes:
        top = round(roll.state.y_of(pitch))
        for x in range(round(roll.state.x_of(beat)), round(roll.state.x_of(beat + length)) + 1):
            for y in range(top, top + round(roll.state.key_height) + 1):
                inside.add((x, y))
    motif_rgb = motif.rgb()
    stray = [
        (x, y)
        for x in range(0, image.width(), 2)
        for y in range(0, image.height(), 2)
        if image.pixel(x, y) == motif_rgb and (x, y) not in inside
    ]
    assert not stray, stray[:5]
    assert sum(1 for x, y in inside if 0 <= x < image.width() and image.pixel(x, y) == motif_rgb) > 500


def test_selection_velocity_and_parts_show_as_colour(qtbot, roll):
    song = roll.song
    soft, loud = song.new_note(60, 20, 0, 1), song.new_note(62, 127, 0, 1)
    continuation = song.new_note(64, 127, 0, 1, CONTINUATION)
    song.add_notes([soft, loud, continuation])
    roll.state.select([loud.id])
    image = roll.canvas.grab().toImage()
    colours = {note.id: pixel(image, roll.point_for(0.5, note.pitch)) for note in (soft, loud, continuation)}
    assert colours[soft.id] == Palette.note_fill(MOTIF, 20)
    assert colours[loud.id] == Palette.note_fill(MOTIF, 127, selected=True)
    assert colours[continuation.id] == Palette.note_fill(CONTINUATION, 127)
    assert len({c.rgb() for c in colours.values()}) == 3
    assert Palette.note_fill(MOTIF, 20) != Palette.note_fill(MOTIF, 127)


def test_a_continuation_being_written_looks_unfinished(qtbot, roll):
    song = roll.song
    song.begin_stream(CONTINUATION)
    song.append([Note(64, 127, 0.0, 1.0)])  # beats 0..2 at 120 BPM
    writing = roll.canvas.grab().toImage()
    song.commit()
    done = roll.canvas.grab().toImage()
    where = roll.point_for(1.0, 64)
    assert pixel(done, where) == Palette.note_fill(CONTINUATION, 127)
    row = [writing.pixel(x, where.y()) for x in range(round(roll.state.x_of(0.2)), round(roll.state.x_of(1.8)))]
    assert Palette.note_fill(CONTINUATION, 127).rgb() not in row
    assert len(set(row)) >= 2  # hatched: more than one colour along the note


def test_thousands_of_notes_in_view_draw_as_one_image_with_the_same_colours(qtbot, roll):
    from continuo.piano_roll.painting import OVERVIEW_THRESHOLD

    song = roll.song
    notes = [song.new_note(48 + (i % 5) * 2, 127, i * 0.25, 0.25) for i in range(OVERVIEW_THRESHOLD + 500)]
    lone = song.new_note(80, 20, 100, 8)
    song.add_notes(notes + [lone])
    roll.state.set_view(left_beat=0, top_key=127 - 84, pixels_per_beat=4, key_height=8)
    image = roll.canvas.grab().toImage()
    loud, soft = Palette.note_fill(MOTIF, 127).rgb(), Palette.note_fill(MOTIF, 20).rgb()
    centre = roll.point_for(104, 80)
    assert image.pixel(centre.x(), centre.y()) == soft
    for index in range(200, 205):  # one note on each of the five pitches, around beat 50
        point = roll.point_for(index * 0.25 + 0.125, 48 + (index % 5) * 2)
        assert image.pixel(point.x(), point.y()) == loud
    for pitch in (49, 51, 60, 79):  # rows without notes
        y = roll.point_for(0, pitch).y()
        assert all(image.pixel(x, y) not in (loud, soft) for x in range(0, image.width(), 3))
    roll.state.select([lone.id])
    image = roll.canvas.grab().toImage()
    assert image.pixel(centre.x(), centre.y()) == Palette.note_fill(MOTIF, 20, selected=True).rgb()
    lane = roll.velocity_lane.grab().toImage()
    x = round(roll.state.x_of(50)) + 1
    assert lane.pixel(x, lane.height() - 6) == loud
    assert lane.pixel(x, round(roll.velocity_lane.y_of(127)) - 3) != loud  # stems stop at their velocity


def test_the_longest_song_paints_at_every_zoom_and_scroll_position(qtbot, roll, window):
    from continuo.limits import MAX_BEATS

    song = roll.song
    song.set_tempo(400)  # the fastest tempo: the most beats in two hours
    song.add_notes([song.new_note(60, 100, 0, 1), song.new_note(72, 100, MAX_BEATS - 2, 2)])
    state = roll.state
    for left, pixels_per_beat in ((0.0, 0.4), (MAX_BEATS - 4, 800.0), (1e300, 800.0), (float("inf"), 1e300)):
        state.set_view(left_beat=left, pixels_per_beat=pixels_per_beat)
        assert 0 <= state.left_beat <= MAX_BEATS and 0 < state.pixels_per_beat <= 800
        window.grab()  # every strip paints (an exception in a paint event fails the test)
    state.set_view(left_beat=float("nan"))
    assert state.left_beat == MAX_BEATS
    roll.zoom_to_fit()
    window.grab()
    roll.transport.set_playhead(1e300)
    assert roll.transport.playhead == MAX_BEATS
    window.grab()


def test_edits_past_the_end_of_the_longest_song_are_refused_in_words(qtbot, roll, window):
    from continuo.limits import MAX_BEATS

    song = roll.song
    song.set_tempo(400)  # the fastest tempo: the most beats in two hours
    last = song.new_note(60, 100, MAX_BEATS - 1, 1)
    song.add_notes([last])
    roll.state.select({last.id})
    key(qtbot, roll, "Shift+Right")  # a bar later would end past the limit
    assert song.note(last.id) == last
    assert "Continuo keeps songs of up to 2 hours" in window.statusBar().currentMessage()
    roll.state.set_view(left_beat=MAX_BEATS - 1, pixels_per_beat=80)
    draw_note(qtbot, roll, 64, MAX_BEATS + 0.5, 1)  # drawn in the grid shown past the end
    assert len(song) == 1
    QApplication.clipboard().setText("continuo-notes:[[60, 100, 1e999, 1]]")  # from another program
    key(qtbot, roll, "Ctrl+V")
    assert len(song) == 1 and "cannot read" in window.statusBar().currentMessage()
