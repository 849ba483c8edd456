"""Drives a running studio from a JSON script of user gestures: end-to-end tests and demos.

Set CONTINUO_SCRIPT to a file holding a JSON list of steps; each step runs after the previous one, through
the same widgets a musician uses (mouse events on the roll, key presses, dialog buttons):

    {"draw": [pitch, beat, length]}      drag with the draw tool from beat to beat + length
    {"select": [pitch, beat]}            click the note there with the select tool (it alone is selected)
    {"key": "Ctrl+Z"}                    press keys with the roll focused
    {"answer": "Restore"}                click a button in the open dialog
    {"dump": "path.json"}                write the song's notes (to compare after a restore)
    {"print": "text"}                    print a line to stdout (the test waits for it)
    {"wait_ms": 500}                     pause
    {"quit": true}                       close the window
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QPoint, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from .piano_roll import DRAW, SELECT

STEP_MS = 30


def dump_notes(song, path: str | os.PathLike) -> None:
    """Writes the song's notes and tempo as JSON."""
    rows = [[n.pitch, n.velocity, round(n.start, 6), round(n.length, 6), n.part] for n in song.notes()]
    Path(path).write_text(json.dumps({"tempo": song.tempo, "notes": rows}))


class Script(QObject):
    """Runs the steps of a script one after another on the event loop."""

    def __init__(self, window, steps: list[dict]) -> None:
        super().__init__(window)
        self.window = window
        self.steps = list(steps)

    def start(self) -> None:
        """Runs the first step once the event loop turns."""
        QTimer.singleShot(STEP_MS, self._next)

    def _next(self) -> None:
        if not self.steps:
            return
        # The autosave folder or a file given on the command line is still being read: wait, as a user would.
        if self.window.document.reading or self.window.restore_pending:
            QTimer.singleShot(STEP_MS, self._next)
            return
        step = self.steps.pop(0)
        if "answer" in step and not self._answer(step["answer"]):
            self.steps.insert(0, step)  # the dialog is not open yet: try again shortly
            QTimer.singleShot(STEP_MS, self._next)
            return
        # The next step is scheduled before this one runs: a step that opens a dialog blocks in the
        # dialog's own event loop, where the following step (say, answering it) must still run.
        QTimer.singleShot(int(step.get("wait_ms", STEP_MS)), self._next)
        self._run(step)

    def _run(self, step: dict) -> None:
        window, roll = self.window, self.window.roll
        if "draw" in step:
            pitch, beat, length = step["draw"]
            roll.state.set_tool(DRAW)
            roll.ensure_visible(beat, pitch)
            canvas = roll.canvas
            start = roll.point_for(beat, pitch) + QPoint(1, 0)
            end = roll.point_for(beat + length, pitch)
            QTest.mousePress(canvas, Qt.LeftButton, Qt.NoModifier, start)
            QTest.mouseMove(canvas, end)
            QTest.mouseRelease(canvas, Qt.LeftButton, Qt.NoModifier, end)
        elif "select" in step:
            pitch, beat = step["select"]
            roll.state.set_tool(SELECT)
            roll.ensure_visible(beat, pitch)
            QTest.mouseClick(roll.canvas, Qt.LeftButton, Qt.NoModifier, roll.point_for(beat, pitch) + QPoint(3, 0))
        elif "key" in step:
            roll.canvas.setFocus()
            combination = QKeySequence(step["key"])[0]
            QTest.keyClick(roll.canvas, combination.key(), combination.keyboardModifiers())
        elif "dump" in step:
            dump_notes(window.song, step["dump"])
        elif "print" in step:
            print(step["print"], flush=True)
        elif "quit" in step:
            window.close()

    def _answer(self, button_text: str) -> bool:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            return False
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                button.click()
                return True
        return False


def script_from_environment(window) -> Script | None:
    """The script named by CONTINUO_SCRIPT, if any."""
    path = os.environ.get("CONTINUO_SCRIPT")
    if not path:
        return None
    try:
        steps = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as error:
        print(f"continuo: cannot read the script {path}: {error}", file=sys.stderr)
        return None
    return Script(window, steps)
