"""The piano roll: a keyboard, a bar/beat ruler, the note grid with its tools, and a velocity lane."""

from .editor import PianoRoll
from .state import DRAW, ERASE, SELECT, SNAP_CHOICES, Palette, RollState, pitch_name

__all__ = ["PianoRoll", "RollState", "Palette", "SNAP_CHOICES", "DRAW", "SELECT", "ERASE", "pitch_name"]
