"""Fixtures for the studio tests: a real window in a temporary home, and mouse helpers for the roll."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import app  # noqa: E402,F401 - first, so that its PySide6 workaround is in place before Qt is used

import pytest  # noqa: E402
from PySide6.QtCore import QPoint, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from app.main_window import MainWindow  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A per-test data home, so autosaves and recent files never touch the real one."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("CONTINUO_HOME", str(folder))
    return folder


@pytest.fixture
def window(qtbot, home):
    """A shown studio window with autosave on (a long interval: tests snapshot explicitly)."""
    win = MainWindow(home=home, autosave_interval_ms=60_000)
    win.resize(1100, 720)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    win.roll.canvas.setFocus()
    win.roll.state.set_view(left_beat=0.0, top_key=127 - 72, pixels_per_beat=80, key_height=14)
    yield win
    win.song.undo_stack.setClean()  # no "save changes?" question while tearing down
    win.close()
    win.deleteLater()


@pytest.fixture
def roll(window):
    """The window's piano roll."""
    return window.roll


def drag(qtbot, widget, start: QPoint, end: QPoint, modifiers=Qt.NoModifier, button=Qt.LeftButton) -> None:
    """Presses, moves in a few steps and releases, as a hand would."""
    qtbot.mousePress(widget, button, modifiers, start)
    for fraction in (0.25, 0.5, 0.75, 1.0):
        point = start + (end - start) * fraction
        qtbot.mouseMove(widget, point)
    qtbot.mouseRelease(widget, button, modifiers, end)


def draw_note(qtbot, roll, pitch: int, beat: float, length: float) -> None:
    """Draws a note with the draw tool: press at its start, drag to its end."""
    roll.state.set_tool("draw")
    start = roll.point_for(beat, pitch) + QPoint(1, 0)
    drag(qtbot, roll.canvas, start, roll.point_for(beat + length, pitch))


def key(qtbot, roll, sequence: str) -> None:
    """Presses a key combination with the roll focused."""
    from PySide6.QtGui import QKeySequence

    roll.canvas.setFocus()
    combination = QKeySequence(sequence)[0]
    qtbot.keyClick(roll.canvas, combination.key(), combination.keyboardModifiers())


def summary(song, part=None):
    """(pitch, start, length, velocity) of each note, rounded, in time order."""
    return [(n.pitch, round(n.start, 4), round(n.length, 4), n.velocity) for n in song.notes(part)]


def answer_next_dialog(button_text: str, seen: list | None = None) -> None:
    """Clicks a button of the next modal dialog once it opens (it blocks in its own event loop)."""

    def attempt() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            if seen is not None:
                seen.append(box.text())
            for button in box.buttons():
                if button.text().replace("&", "") == button_text:
                    button.click()
                    return
        QTimer.singleShot(20, attempt)

    QTimer.singleShot(20, attempt)
