"""The status bar's sound indicator: where the music goes now, or that there is no sound, in a few words that fit
a 900-pixel window; what is wrong in one line (naming what was tried) and what to do are in its tooltip, and a
click opens Playback ▸ Output."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QMenu, QSizePolicy, QToolButton, QWidget

from .player import NONE, Player

MAX_WIDTH = 320  # pixels: the rest of the status bar keeps room for the messages, the position and the count
MIN_WIDTH = 90


class OutputIndicator(QToolButton):
    """Shows the player's output; clicking it pops up the output menu."""

    def __init__(self, player: Player, menu: QMenu | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.player = player
        self.menu = menu
        self.setObjectName("output_indicator")
        self.setAutoRaise(True)
        self.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.setMaximumWidth(MAX_WIDTH)
        self.setCursor(Qt.PointingHandCursor)
        self._full = ""
        self._short = ""
        self.clicked.connect(self.open_menu)
        player.output_changed.connect(self.refresh)
        player.daw_port_changed.connect(self.refresh)
        self.refresh()

    @property
    def full_text(self) -> str:
        """The whole line (the button shows it in a few words; its tooltip holds it all)."""
        return self._full

    @property
    def short_text(self) -> str:
        """What the button shows: where the music goes, or that there is none, in a few words."""
        return self._short

    def refresh(self, *args) -> None:
        """Reads the player's output and problem again."""
        player = self.player
        sinks = [sink for sink in player.scheduler.sinks if sink is not None and sink is not player.daw_port]
        if player.output is not None or sinks:
            self._full = "♪ " + (player.output.name if player.output is not None else ", ".join(s.name for s in sinks))
            # "♪ built-in synth": its soundfont or port detail goes to the tooltip
            self._short = self._full.split(" (", 1)[0]
            advice = f"{self._full}\n\nWhere the music plays. Click to choose another output (Playback ▸ Output)."
        elif player.choice == NONE:
            self._full = self._short = "No sound output"
            advice = "No Sound is chosen. Click to choose an output (Playback ▸ Output)."
        elif player.output_problem:
            problem = player.output_problem
            self._full = "⚠ " + (problem if problem.startswith("No sound") else f"No sound: {problem}")
            self._short = "⚠ No sound: why?"
            advice = (
                f"{self._full}\n\n{player.output_error or problem}\n\nClick to choose an output (Playback ▸ Output)."
            )
        else:  # chosen, not open yet and nothing wrong known: it is being opened
            self._full = "♪ Opening the sound output…"
            self._short = "♪ Opening…"
            advice = "Click to choose an output (Playback ▸ Output)."
        if player.daw_port is not None:
            advice += "\n\nEverything played goes to the MIDI port “Continuo” too, for a DAW to record."
        self.setToolTip(advice)
        self.updateGeometry()  # the status bar gives it the room its new line wants
        self._elide()

    def _elide(self) -> None:
        width = max(self.width(), MIN_WIDTH) - 16
        self.setText(self.fontMetrics().elidedText(self._short, Qt.ElideRight, width))

    def sizeHint(self):  # noqa: N802 - Qt's name
        """As wide as its few words, up to MAX_WIDTH."""
        hint = super().sizeHint()
        hint.setWidth(min(MAX_WIDTH, self.fontMetrics().horizontalAdvance(self._short) + 28))
        return hint

    def minimumSizeHint(self):  # noqa: N802 - Qt's name
        """Narrow enough never to widen the window: the line is shortened to fit."""
        hint = super().minimumSizeHint()
        hint.setWidth(MIN_WIDTH)
        return hint

    def resizeEvent(self, event) -> None:
        """Shortens the line to the width it gets."""
        super().resizeEvent(event)
        self._elide()

    def open_menu(self) -> None:
        """Pops up Playback ▸ Output above the indicator."""
        if self.menu is not None:
            self.menu.popup(self.mapToGlobal(QPoint(0, 0)))  # Qt moves it up when it does not fit below
