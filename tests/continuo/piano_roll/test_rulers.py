"""The strips around the grid: the ruler (playhead, loop), the keyboard (audition, select by pitch) and the
velocity lane."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt

from tests.continuo.helpers import drag, draw_note, key


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
