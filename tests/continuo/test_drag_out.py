"""Out to a DAW: the handle in the roll's corner drags the song, or the selection, out as a .mid file. The drag
carries a file URL (what DAWs and file managers accept); the file it names reads back as the notes dragged."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from music_transformer import read_midi
from tests.continuo.helpers import drag, draw_note

pytestmark = pytest.mark.timeout(60)

TOLERANCE = 0.002  # seconds: every note within 2 ms


def notes_of(mime) -> tuple[str, list]:
    """The one file a drag's data names, and its notes as (pitch, start, end) in seconds."""
    assert mime is not None and mime.hasUrls() and "text/uri-list" in mime.formats()
    (url,) = mime.urls()
    assert url.isLocalFile() and url.toString().startswith("file://")
    notes = read_midi(url.toLocalFile())
    return url.toLocalFile(), [(note.pitch, note.start, note.end) for note in notes]


def close(found: list, expected: list) -> bool:
    return len(found) == len(expected) and all(
        a[0] == b[0] and abs(a[1] - b[1]) <= TOLERANCE and abs(a[2] - b[2]) <= TOLERANCE
        for a, b in zip(sorted(found), sorted(expected), strict=True)
    )


def test_the_song_or_the_selection_drags_out_as_a_midi_file_that_reads_back(qtbot, window, roll, home):
    handle = window.drag_out
    assert handle.isVisible() and "MIDI file" in handle.toolTip()
    assert handle.mime_data() is None  # an empty song: nothing to drag, and it says so
    assert "Nothing to drag out" in window.message_line.full_text
    window.signature_box.setCurrentText("3/4")
    window.tempo_box.setValue(90.0)
    roll.state.set_view(pixels_per_beat=40)
    for pitch, beat in ((60, 0), (64, 1), (67, 2), (72, 13), (71, 14)):
        draw_note(qtbot, roll, pitch, beat, 1)
    path, notes = notes_of(handle.mime_data())  # nothing selected: the whole song
    assert path.endswith("/dragged/Untitled.mid") and path.startswith(str(home))
    seconds = 60 / 90
    assert close(
        notes, [(p, b * seconds, (b + 1) * seconds) for p, b in ((60, 0), (64, 1), (67, 2), (72, 13), (71, 14))]
    )
    roll.state.set_tool("select")  # a box around the last two notes: the selection alone, from its bar's start
    drag(qtbot, roll.canvas, roll.point_for(12.6, 74), roll.point_for(15.5, 69))
    assert len(roll.state.selection) == 2
    path, notes = notes_of(handle.mime_data())
    assert path.endswith("/dragged/Untitled (selection).mid")
    assert close(notes, [(72, 1 * seconds, 2 * seconds), (71, 2 * seconds, 3 * seconds)])  # bar 5 starts at beat 12
    window.song.set_tempo_at(6.0, 60.0)  # a tempo change before the selection, and one inside it
    window.song.set_tempo_at(14.0, 120.0)  # the clip carries the map as it runs from the selection's bar
    path, notes = notes_of(handle.mime_data())
    assert close(notes, [(72, 1.0, 2.0), (71, 2.0, 2.5)])
    handle.last_path = None
    qtbot.mousePress(handle, Qt.LeftButton, pos=QPoint(4, 4))  # the gesture itself: press, move past the drag
    qtbot.mouseMove(handle, QPoint(4 + 3 * QApplication.startDragDistance(), 8))  # distance, and the drag starts
    assert handle.last_path == Path(path) and Path(path).exists()  # (offscreen, no drop target: it ends at once)
    qtbot.mouseClick(handle, Qt.LeftButton)  # a click, not a drag: it says what the handle does
    assert "Drag the song, or the selected notes" in window.message_line.full_text
