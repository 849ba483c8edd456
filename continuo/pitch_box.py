"""A MIDI pitch typed and shown as a note name (A0, C4, C8): the boxes of the Continue panel's pitch range."""

from __future__ import annotations

import re

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QSpinBox

from music_transformer.keys import PITCH_CLASS_NAMES

from .piano_roll.state import pitch_name

_PITCH_NAME = re.compile(r"\s*([A-Ga-g])\s*([#b]?)\s*(-?\d+)\s*$")


def parse_pitch(text: str) -> int | None:
    """A pitch from a note name ("C4" is 60, "A#0", "Bb3") or a MIDI number; None if it is neither."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _PITCH_NAME.match(text)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    pitch_class = PITCH_CLASS_NAMES.index(letter.upper()) + {"#": 1, "b": -1, "": 0}[accidental]
    return (int(octave) + 1) * 12 + pitch_class


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
