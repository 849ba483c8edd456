"""The parts of one studio that its actions and Help windows work with, in one small object.

The window builds them and lays them out (main_window.py); the actions (actions.py) and the Help windows
(help.py) take this object instead of the window, so that neither needs to know the window's type and the
window, its actions and its dialogs import one another in one direction only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMainWindow

if TYPE_CHECKING:  # the parts' own modules: this one stays a leaf that anything may import
    from .document import Document
    from .duet import DuetController
    from .generation import GenerationController
    from .generation_panel import GenerationPanel
    from .midi_input import MidiInputController
    from .piano_roll import PianoRoll
    from .playback.player import Player
    from .settings import Preferences
    from .song import Song
    from .transport import Transport


@dataclass(eq=False)
class Studio:
    """One window's song and the parts that play, write, record and save it."""

    window: QMainWindow  # the parent of the dialogs, the owner of the menu bar; Quit closes it
    song: Song
    transport: Transport
    roll: PianoRoll
    player: Player
    generation: GenerationController
    midi: MidiInputController
    duet: DuetController
    document: Document
    preferences: Preferences
    show_message: Callable[[str], None]  # a line in the window's status bar
    # The Continue panel shows some of the actions, so it is made after them; the window sets it then.
    panel: GenerationPanel | None = None
