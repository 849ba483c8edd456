"""The roll's editing keys and the wheel: move, transpose, copy and paste, quantize, scroll and zoom."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.continuo.helpers import draw_note, key, summary


def test_arrows_move_and_transpose_shift_by_bar_and_octave(qtbot, roll):
    draw_note(qtbot, roll, 60, 1, 1)
    key(qtbot, roll, "Ctrl+A")  # a drawn note is not selected: the keys move what is chosen
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


def test_wheel_scrolls_and_ctrl_wheel_zooms_around_the_pointer(qtbot, roll):
    state = roll.state

    def wheel(modifiers, dy):
        at = QPointF(400, 100)
        event = QWheelEvent(
            at, roll.canvas.mapToGlobal(at), QPoint(), QPoint(0, dy), Qt.NoButton, modifiers, Qt.NoScrollPhase, False
        )
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
