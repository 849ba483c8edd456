"""The status bar through the real window: the position readout (the playhead and the pointer over the roll, as
bar.beat and m:ss.s, in the song's metre), messages that are never cut (shortened with the whole line in the
tooltip, the last ones a click away), and the sound indicator, whole at 900x600 and 1,600x1,000."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QMenu

from continuo.status_bar import clock

SIZES = [(900, 600), (1600, 1000)]
LONG = (
    "The file changes tempo 1633 times (from 61 to 240 BPM) and its metre 12 times: the bar lines follow the "
    "first tempo and metre, so bars and snap are the first tempo's. " * 3
).strip()


def inside(window, widget) -> bool:
    return window.rect().contains(QRect(widget.mapTo(window, widget.rect().topLeft()), widget.size()))


def test_clock_rounds_tenths_once():
    assert [clock(s) for s in (0, 3.625, 59.96, 61.04, 3600)] == ["0:00.0", "0:03.6", "1:00.0", "1:01.0", "60:00.0"]


def test_the_readout_follows_the_playhead_and_the_pointer_in_the_songs_metre(qtbot, window, roll):
    readout = window.position_readout
    assert readout.text() == "▶ 1.1  0:00.0"
    window.signature_box.setCurrentText("3/4")  # through the toolbar, as a musician changes it
    window.tempo_box.setValue(90.0)
    window.transport.set_playhead(7.25)  # bar 3 (of three beats), its second beat; 4.83 s at 90 BPM
    assert readout.text() == "▶ 3.2  0:04.8"
    roll.state.set_view(pixels_per_beat=40)
    qtbot.mouseMove(roll.canvas, roll.point_for(13.1, 64))
    assert readout.pointer_text == "↖ 5.2  0:08.7  E4"
    assert readout.text() == "▶ 3.2  0:04.8    ↖ 5.2  0:08.7  E4"
    window.signature_box.setCurrentText("6/8")  # beats are eighths: 4.5 quarters is bar 2, its fourth eighth
    window.transport.set_playhead(4.5)
    assert readout.playhead_text == "▶ 2.4  0:03.0"
    roll.canvas.leaveEvent(None)  # the pointer leaves the grid: only the playhead is read out
    assert readout.text() == "▶ 2.4  0:03.0"


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_no_message_is_cut_shortened_with_the_whole_line_kept(qtbot, window, size):
    qtbot.waitUntil(lambda: not window.player.opening, timeout=10000)  # the sound indicator's own words settled
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size, timeout=3000)
    song = window.song  # a long piece and its continuation: the counts take their room beside the message
    song.add_notes([song.new_note(60 + i % 12, 90, i * 0.5, 0.5) for i in range(2520)])
    song.add_notes([song.new_note(64 + i % 7, 90, 1260 + i * 0.5, 0.5, "continuation") for i in range(300)])
    window.transport.set_playhead(1234.5)
    assert window.count_label.text() == "2,520 + 300 notes" and "300 continuation notes" in window.count_label.toolTip()
    line = window.message_line
    window.show_message("Continuation discarded (Undo brings it back)")
    qtbot.wait(20)
    assert line.text() == "Continuation discarded (Undo brings it back)" and inside(window, line)
    window.show_message(LONG)
    qtbot.wait(20)
    assert line.full_text == LONG and window.statusBar().currentMessage() == LONG
    assert line.text().endswith("…") and LONG.startswith(line.text()[:-1])  # shortened, not cut mid-letter
    assert line.fontMetrics().horizontalAdvance(line.text()) <= line.width()
    assert LONG in line.toolTip()
    assert line.history()[:2] == [LONG, "Continuation discarded (Undo brings it back)"]
    window.statusBar().clearMessage()  # gone from the bar, still a click away
    assert line.text() == "" and line.history()[0] == LONG
    qtbot.mouseClick(line, Qt.LeftButton)
    menu = line.findChild(QMenu, "message_history")
    qtbot.waitUntil(menu.isVisible, timeout=3000)
    assert [action.toolTip() for action in menu.actions()][:2] == line.history()[:2]
    menu.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_the_sound_indicator_fits_whole_and_keeps_the_whole_problem_in_its_tooltip(qtbot, window, size):
    window.player.open_output("port:No such synth")  # a port that is not there: a problem to show
    qtbot.waitUntil(lambda: not window.player.opening, timeout=10000)
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size, timeout=3000)
    window.show_message(LONG)  # a long message beside it takes only the room left
    window.transport.set_playhead(400.0)
    qtbot.wait(50)
    indicator = window.output_indicator
    assert indicator.full_text.startswith("⚠ No sound")
    assert indicator.text() == indicator.short_text == "⚠ No sound: why?"  # whole, not shortened
    assert indicator.fontMetrics().horizontalAdvance(indicator.text()) < indicator.width()
    assert inside(window, indicator) and indicator.isVisible()
    assert indicator.full_text in indicator.toolTip() and "Playback ▸ Output" in indicator.toolTip()
    for widget in (window.position_readout, window.count_label, window.message_line):
        assert inside(window, widget) and widget.isVisible()
    readout = window.position_readout
    assert readout.fontMetrics().horizontalAdvance(readout.text()) <= readout.width()
