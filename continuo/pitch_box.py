"""A MIDI pitch typed and shown as a note name (A0, C4, C8): the boxes of the Continue panel's pitch range.
`parse_pitch` (the library's, shared with the command line) reads what is typed."""

from __future__ import annotations

import re

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QSpinBox

from music_transformer.keys import parse_pitch

from .piano_roll.state import pitch_name

__all__ = ["PitchSpinBox", "parse_pitch"]


class PitchSpinBox(QSpinBox):
    """A MIDI pitch shown as a note name (A0, C4, C8); takes a name or a number typed."""

    def textFromValue(self, value: int) -> str:  # noqa: N802 - Qt calls this override by its name
        """C4 for 60."""
        return pitch_name(value)

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt calls this override by its name
        """60 for "C4" or "60"."""
        pitch = parse_pitch(text)
        return self.value() if pitch is None else pitch

    def validate(self, text: str, position: int):
        """A name or number in range is acceptable; what could still become one is intermediate."""
        pitch = parse_pitch(text)
        if pitch is not None and self.minimum() <= pitch <= self.maximum():
            return QValidator.Acceptable, text, position
        if re.fullmatch(r"\s*([A-Ga-g][#b]?-?\d?|\d{0,3})\s*", text):
            return QValidator.Intermediate, text, position
        return QValidator.Invalid, text, position
