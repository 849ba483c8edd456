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


def _row_colours(widget, roll, pitches, x: int) -> dict[int, int]:
    """The colour (RGB) drawn at x in the middle of each pitch's row."""
    image = widget.grab().toImage()
    return {pitch: image.pixel(x, roll.point_for(0, pitch).y()) & 0xFFFFFF for pitch in pitches}


def test_a_key_lock_shades_its_scale_in_the_rows_and_marks_it_on_the_keys(qtbot, window, roll):
    panel = window.generation_panel
    pitches = range(60, 72)
    grid_x = round(roll.state.x_of(1.1))  # between grid lines
    rows_off = _row_colours(roll.canvas, roll, pitches, grid_x)
    keys_off = _row_colours(roll.keyboard, roll, pitches, 2)
    panel.key_mode_box.setCurrentIndex(panel.key_mode_box.findData("chosen"))  # the panel's Key: D major
    panel.tonic_box.setCurrentText("D")
    panel.scale_box.setCurrentText("major")
    qtbot.waitUntil(lambda: roll.state.tonic == 2, timeout=3000)
    d_major = {2, 4, 6, 7, 9, 11, 1}
    rows = _row_colours(roll.canvas, roll, pitches, grid_x)
    keys = _row_colours(roll.keyboard, roll, pitches, 2)
    for pitch in pitches:
        if pitch % 12 in d_major:  # lit (the tonic more), marked on the keyboard
            assert rows[pitch] != rows_off[pitch] and keys[pitch] != keys_off[pitch], pitch
        else:
            assert rows[pitch] == rows_off[pitch] and keys[pitch] == keys_off[pitch], pitch
    assert rows[62] != rows[64]  # the tonic's row stands out from the rest of the scale
    assert rows[64] != rows[66]  # and a black key's row of the scale still reads as a black key's
    panel.key_mode_box.setCurrentIndex(panel.key_mode_box.findData("off"))  # no lock, no shading
    qtbot.waitUntil(lambda: not roll.state.scale, timeout=3000)
    assert _row_colours(roll.canvas, roll, pitches, grid_x) == rows_off
    window.song.add_notes([window.song.new_note(p, 90, i, 1) for i, p in enumerate((57, 60, 64, 57, 62, 60, 57))])
    panel.key_mode_box.setCurrentIndex(panel.key_mode_box.findData("motif"))  # the key heard in the motif
    qtbot.waitUntil(lambda: roll.state.tonic == 9, timeout=3000)  # A minor
    assert roll.state.scale == frozenset({9, 11, 0, 2, 4, 5, 7})
