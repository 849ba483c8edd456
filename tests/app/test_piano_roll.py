"""The piano roll driven as a musician drives it: mouse gestures, keys, wheel."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from conftest import drag, draw_note, key, summary


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


def test_arrows_move_and_transpose_shift_by_bar_and_octave(qtbot, roll):
    draw_note(qtbot, roll, 60, 1, 1)
    key(qtbot, roll, "Right")
    assert summary(roll.song) == [(60, 1.25, 1, 100)]
    key(qtbot, roll, "Left")
    key(qtbot, roll, "Shift+Right")
    assert summary(roll.song) == [(60, 5.0, 1, 100)]
    key(qtbot, roll, "Up")
    key(qtbot, roll, "Shift+Up")
    assert summary(roll.song) == [(73, 5.0, 1, 100)]
    key(qtbot, roll, "Shift+Down")
    key(qtbot, roll, "Down")
    key(qtbot, roll, "Shift+Left")
    key(qtbot, roll, "Shift+Left")  # stops at the start of the song
    assert summary(roll.song) == [(60, 0.0, 1, 100)]


def test_copy_paste_at_the_playhead_cut_and_duplicate(qtbot, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    draw_note(qtbot, roll, 64, 1, 1)
    key(qtbot, roll, "Ctrl+A")
    key(qtbot, roll, "Ctrl+C")
    roll.transport.set_playhead(8)
    key(qtbot, roll, "Ctrl+V")
    assert summary(roll.song)[2:] == [(60, 8, 1, 100), (64, 9, 1, 100)]
    assert roll.transport.playhead == 10  # the next paste follows on
    key(qtbot, roll, "Ctrl+D")  # duplicates the pasted pair after itself
    assert summary(roll.song)[4:] == [(60, 10, 1, 100), (64, 11, 1, 100)]
    key(qtbot, roll, "Ctrl+X")
    assert len(roll.song) == 4
    key(qtbot, roll, "Ctrl+Z")
    assert len(roll.song) == 6


def test_quantize_the_selection(qtbot, roll):
    song = roll.song
    song.add_notes([song.new_note(60, 90, 0.1, 0.9), song.new_note(62, 90, 1.13, 0.5)])
    roll.state.select([song.notes()[0].id])
    roll.state.set_snap("1/4")
    key(qtbot, roll, "Q")
    assert summary(song) == [(60, 0.0, 0.9, 90), (62, 1.13, 0.5, 90)]
    roll.state.select(())
    key(qtbot, roll, "Q")  # nothing selected: the whole motif
    assert summary(song) == [(60, 0.0, 0.9, 90), (62, 1.0, 0.5, 90)]


def test_velocity_lane_drag_sets_velocities(qtbot, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    draw_note(qtbot, roll, 64, 2, 1)
    roll.state.select(())
    lane = roll.velocity_lane
    x0, x2 = round(roll.state.x_of(0) + 1), round(roll.state.x_of(2) + 1)
    y = round(lane.y_of(40))
    drag(qtbot, lane, QPoint(x0, y), QPoint(x2, y))
    assert [n.velocity for n in roll.song.notes()] == [40, 40]
    assert roll.song.undo_stack.undoText() == "Change velocity"


def test_wheel_scrolls_and_ctrl_wheel_zooms_around_the_pointer(qtbot, roll):
    state = roll.state

    def wheel(modifiers, dy, at=QPointF(400, 100)):
        event = QWheelEvent(at, roll.canvas.mapToGlobal(at), QPoint(), QPoint(0, dy), Qt.NoButton, modifiers,
                            Qt.NoScrollPhase, False)
        QApplication.sendEvent(roll.canvas, event)

    state.set_view(left_beat=10)
    beat_under = state.beat_at(400)
    wheel(Qt.ControlModifier, 120)
    assert state.pixels_per_beat == 100
    assert abs(state.beat_at(400) - beat_under) < 1e-9
    top = state.top_key
    wheel(Qt.NoModifier, -120)
    assert state.top_key > top
    left = state.left_beat
    wheel(Qt.ShiftModifier, -120)
    assert state.left_beat > left
    height = state.key_height
    wheel(Qt.ControlModifier | Qt.ShiftModifier, 120)
    assert state.key_height > height
    key(qtbot, roll, "Ctrl+-")
    assert state.pixels_per_beat == 80


def test_ruler_sets_playhead_and_loop_and_space_plays(qtbot, roll, window):
    ruler = roll.ruler
    qtbot.mouseClick(ruler, Qt.LeftButton, Qt.NoModifier, QPoint(round(roll.state.x_of(2.02)), 28))
    assert roll.transport.playhead == 2.0
    drag(qtbot, ruler, QPoint(round(roll.state.x_of(8)), 6), QPoint(round(roll.state.x_of(12)), 6))
    assert (roll.transport.loop_start, roll.transport.loop_end, roll.transport.loop_enabled) == (8, 12, True)
    drag(qtbot, ruler, QPoint(round(roll.state.x_of(10)), 6), QPoint(round(roll.state.x_of(11)), 6))  # move it
    assert (roll.transport.loop_start, roll.transport.loop_end) == (9, 13)
    drag(qtbot, ruler, QPoint(round(roll.state.x_of(13)) - 2, 6), QPoint(round(roll.state.x_of(17)), 6))  # stretch
    assert (roll.transport.loop_start, roll.transport.loop_end) == (9, 17)
    qtbot.mouseDClick(ruler, Qt.LeftButton, Qt.NoModifier, QPoint(round(roll.state.x_of(10)), 6))
    assert not roll.transport.loop_enabled
    key(qtbot, roll, "Space")
    assert roll.transport.playing
    key(qtbot, roll, "Space")
    assert not roll.transport.playing


def test_keyboard_click_auditions_the_key(qtbot, roll):
    heard = []
    roll.transport.note_auditioned.connect(lambda pitch, velocity: heard.append(pitch))
    y = round(roll.state.y_of(67) + roll.state.key_height / 2)
    qtbot.mouseClick(roll.keyboard, Qt.LeftButton, Qt.NoModifier, QPoint(50, y))
    assert heard == [67]
    song = roll.song
    song.add_notes([song.new_note(67, 100, beat, 1) for beat in (0, 2)] + [song.new_note(60, 100, 1, 1)])
    qtbot.mouseClick(roll.keyboard, Qt.LeftButton, Qt.ControlModifier, QPoint(50, y))
    assert {song.note(i).pitch for i in roll.state.selection} == {67} and len(roll.state.selection) == 2
    y60 = round(roll.state.y_of(60) + roll.state.key_height / 2)
    qtbot.mouseClick(roll.keyboard, Qt.LeftButton, Qt.ShiftModifier, QPoint(10, y60))
    assert len(roll.state.selection) == 3


def test_edits_wait_while_the_continuation_is_written(qtbot, roll, window):
    from music_transformer import Note

    draw_note(qtbot, roll, 60, 0, 1)
    roll.song.begin_continuation()
    roll.song.append_continuation_notes([Note(62, 80, 0.5, 1.0)])
    draw_note(qtbot, roll, 70, 4, 1)  # refused, with a message
    assert [n.pitch for n in roll.song.notes()] == [60, 62]
    assert "being written" in window.statusBar().currentMessage()
    assert not window.undo_action.isEnabled()
    roll.song.end_continuation()
    assert window.undo_action.isEnabled()


def test_the_playhead_moving_repaints_only_where_it_was_and_is(qtbot, roll):
    from PySide6.QtCore import QEvent, QObject

    regions = []

    class Spy(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 - Qt's name
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


def test_accept_and_discard_from_the_keyboard_and_undo_them(qtbot, roll, window):
    from app.song import CONTINUATION, MOTIF

    song = roll.song
    song.add_notes([song.new_note(60, 100, 0, 1), song.new_note(64, 100, 1, 1, CONTINUATION)])
    assert window.accept_action.isEnabled()
    key(qtbot, roll, "Ctrl+Shift+Return")
    assert {n.part for n in song.notes()} == {MOTIF} and not window.accept_action.isEnabled()
    key(qtbot, roll, "Ctrl+Z")
    key(qtbot, roll, "Ctrl+Backspace")
    assert [n.part for n in song.notes()] == [MOTIF]
    key(qtbot, roll, "Ctrl+Z")
    assert [n.part for n in song.notes()] == [MOTIF, CONTINUATION]
