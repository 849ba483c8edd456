"""The window's status bar: messages that are never cut (shortened to the room there is, with the whole line in
the tooltip and the last ones a click away), and the position readout: where the playhead is and where the
pointer is over the roll, as bar.beat and m:ss.s.

The readout asks the song where a beat falls in the metre and in time (`Song.bar_beat` and `Song.to_seconds`,
through the tempo map): it holds no bar maths of its own.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy, QStatusBar, QWidget

from .piano_roll import PianoRoll, pitch_name
from .song import Song
from .transport import Transport

HISTORY = 30  # messages kept to read again
HISTORY_TIP = "Click to read the recent messages again"
PLAYHEAD_MARK, POINTER_MARK = "▶", "↖"
WIDEST_READOUT = f"{PLAYHEAD_MARK} 999.9  9:59.9    {POINTER_MARK} 999.9  9:59.9  C#4"  # wider ones widen it


def clock(seconds: float) -> str:
    """Seconds as m:ss.s (tenths rounded once, so 59.96 s reads 1:00.0, never 0:60.0)."""
    tenths = round(max(0.0, seconds) * 10)
    minutes, rest = divmod(tenths, 600)
    return f"{minutes}:{rest // 10:02d}.{rest % 10}"


def bar_beat(song: Song, beat: float) -> str:
    """A beat as bar.beat, both counted from 1, in the song's metre."""
    return str(song.bar_beat(beat))


def position_text(song: Song, beat: float) -> str:
    """bar.beat and m:ss.s of a beat."""
    return f"{bar_beat(song, beat)}  {clock(song.to_seconds(beat))}"


class MessageLine(QLabel):
    """The latest message, shortened to its room with the whole line in the tooltip; a click lists the last ones."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("message_line")
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # takes the room the others leave
        self.setCursor(Qt.PointingHandCursor)
        self._full = ""
        self._history: deque[tuple[float, str]] = deque(maxlen=HISTORY)
        self.menu: QMenu | None = None

    @property
    def full_text(self) -> str:
        """The whole message shown now ("" when none)."""
        return self._full

    def history(self) -> list[str]:
        """The recent messages, newest first."""
        return [text for _, text in reversed(self._history)]

    def show_text(self, text: str) -> None:
        """Shows a message (kept in the history), or clears the line ("")."""
        self._full = text
        if text:
            self._history.append((time.time(), text))
        self.setToolTip(f"{text}\n\n{HISTORY_TIP}" if text else HISTORY_TIP if self._history else "")
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(0, self.width() - 4)))

    def resizeEvent(self, event) -> None:
        """Shortens the line to its new width."""
        super().resizeEvent(event)
        self._elide()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """Lists the recent messages, newest first, above the line."""
        if event.button() != Qt.LeftButton or not self._history:
            return
        self.menu = menu = QMenu(self)
        menu.setObjectName("message_history")
        for at, text in reversed(self._history):
            action = menu.addAction(f"{time.strftime('%H:%M:%S', time.localtime(at))}  {text}")
            action.setToolTip(text)
        menu.popup(self.mapToGlobal(QPoint(0, 0)))


class StatusBar(QStatusBar):
    """A status bar whose messages go to a `MessageLine`, which shortens rather than cuts them.

    `showMessage` and `currentMessage` work as Qt's do (a message and its timeout); only the drawing differs.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message_line = MessageLine(self)
        self.addPermanentWidget(self.message_line, 1)  # permanent: never hidden behind a message of Qt's own
        self.messageChanged.connect(self.message_line.show_text)

    def paintEvent(self, event) -> None:
        """Draws nothing of the message itself: the message line shows it."""


class PositionReadout(QLabel):
    """Where the playhead is and, while the pointer is over the roll's grid, where the pointer is (and its pitch)."""

    def __init__(self, song: Song, transport: Transport, roll: PianoRoll, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("position_readout")
        self.song, self.transport = song, transport
        self.setToolTip("Bar.beat and minutes:seconds of the playhead (▶) and of the pointer over the roll (↖)")
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance(WIDEST_READOUT) + 8)  # no jitter as it changes
        self._pointer: tuple[float, int] | None = None
        transport.playhead_moved.connect(self.refresh)
        roll.canvas.hover_changed.connect(self._hover)
        song.meta_changed.connect(self.refresh)
        self.refresh()

    @property
    def playhead_text(self) -> str:
        """The playhead's part of the readout."""
        return f"{PLAYHEAD_MARK} {position_text(self.song, self.transport.playhead)}"

    @property
    def pointer_text(self) -> str:
        """The pointer's part ("" while it is not over the grid)."""
        if self._pointer is None:
            return ""
        beat, pitch = self._pointer
        return f"{POINTER_MARK} {position_text(self.song, beat)}  {pitch_name(pitch)}"

    def _hover(self, beat: float, pitch: int) -> None:
        self._pointer = None if beat < 0 or pitch < 0 else (beat, pitch)
        self.refresh()

    def refresh(self, *args) -> None:
        """Reads the playhead, the pointer and the song's metre again."""
        pointer = self.pointer_text
        self.setText(f"{self.playhead_text}    {pointer}" if pointer else self.playhead_text)
