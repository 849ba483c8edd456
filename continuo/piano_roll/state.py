"""The piano roll's view state (scroll, zoom, tool, snap, selection) and its palette.

Every part of the roll (grid, keyboard, ruler, velocity lane) reads the same `RollState`, so they scroll
and zoom together. Geometry lives here: beats and pitches to pixels and back.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from ..limits import MAX_BEATS
from ..song import CONTINUATION, snap_beat

DRAW, SELECT, ERASE = "draw", "select", "erase"
TOOLS = (DRAW, SELECT, ERASE)

# name -> grid step in beats (a beat is a quarter note); None means no snapping
SNAP_CHOICES: dict[str, float | None] = {
    "1/4": 1.0,
    "1/8": 0.5,
    "1/16": 0.25,
    "1/32": 0.125,
    "1/4T": 2 / 3,
    "1/8T": 1 / 3,
    "1/16T": 1 / 6,
    "Off": None,
}

MIN_PIXELS_PER_BEAT, MAX_PIXELS_PER_BEAT = 0.4, 800.0
MIN_KEY_HEIGHT, MAX_KEY_HEIGHT = 3.0, 40.0
NUM_KEYS = 128
BLACK_KEYS = frozenset({1, 3, 6, 8, 10})
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(pitch: int) -> str:
    """C4 is middle C (MIDI 60)."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def is_black_key(pitch: int) -> bool:
    """Whether the pitch is a black key on the piano."""
    return pitch % 12 in BLACK_KEYS


class RollState(QObject):
    """Scroll position, zoom, tool, snap and selection, shared by every part of one piano roll."""

    view_changed = Signal()
    selection_changed = Signal()
    tool_changed = Signal(str)
    snap_changed = Signal(str)
    time_range_changed = Signal()
    scale_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.left_beat = 0.0  # the beat at the left edge of the grid
        self.top_key = 127.0 - 84.0  # rows scrolled off the top (row 0 is pitch 127): C6 at the top
        self.pixels_per_beat = 80.0
        self.key_height = 14.0
        self.tool = DRAW
        self.snap_name = "1/16"
        self.selection: frozenset[int] = frozenset()
        self.time_range: tuple[float, float] | None = None  # beats chosen in the ruler (what Fill writes)
        self.note_length = 1.0  # the length a new note gets: the last one drawn or resized
        self.velocity = 100  # the velocity a new note gets
        self.scale: frozenset[int] = frozenset()  # the locked key's pitch classes, shaded in the roll (none: no lock)
        self.tonic: int | None = None  # the locked key's tonic, a pitch class

    # --- geometry -------------------------------------------------------------------------------

    def x_of(self, beat: float) -> float:
        """The x pixel of a beat."""
        return (beat - self.left_beat) * self.pixels_per_beat

    def beat_at(self, x: float) -> float:
        """The beat under an x pixel."""
        return self.left_beat + x / self.pixels_per_beat

    def y_of(self, pitch: int) -> float:
        """The y pixel of the top of a pitch's row."""
        return (127 - pitch - self.top_key) * self.key_height

    def pitch_at(self, y: float) -> int:
        """The pitch whose row is under a y pixel (clamped to 0..127)."""
        return min(max(127 - math.floor(y / self.key_height + self.top_key), 0), 127)

    # --- snapping -------------------------------------------------------------------------------

    @property
    def snap_step(self) -> float | None:
        """The grid step in beats, or None when snap is off."""
        return SNAP_CHOICES[self.snap_name]

    def snap(self, beat: float, bypass: bool = False) -> float:
        """A beat on the grid (unchanged when snap is off or bypassed with Alt)."""
        return beat if bypass else snap_beat(beat, self.snap_step)

    def step_or_default(self) -> float:
        """The grid step, or a sixteenth when snap is off (for keys that nudge)."""
        return self.snap_step or 0.25

    # --- changes --------------------------------------------------------------------------------

    def set_view(
        self,
        left_beat: float | None = None,
        top_key: float | None = None,
        pixels_per_beat: float | None = None,
        key_height: float | None = None,
        visible_rows: float = 0.0,
    ) -> None:
        """Scrolls and zooms, clamped to sensible ranges; one `view_changed` for the lot."""
        before = (self.left_beat, self.top_key, self.pixels_per_beat, self.key_height)
        # Not-a-number is no scroll position: such a value is ignored (a comparison with NaN is always False).
        left_beat, top_key, pixels_per_beat, key_height = (
            value if value is None or math.isfinite(value) else None
            for value in (left_beat, top_key, pixels_per_beat, key_height)
        )
        if pixels_per_beat is not None:
            self.pixels_per_beat = min(max(pixels_per_beat, MIN_PIXELS_PER_BEAT), MAX_PIXELS_PER_BEAT)
        if key_height is not None:
            self.key_height = min(max(key_height, MIN_KEY_HEIGHT), MAX_KEY_HEIGHT)
        if left_beat is not None:
            self.left_beat = min(max(0.0, left_beat), MAX_BEATS)  # the longest song ends within the view
        if top_key is not None:
            self.top_key = top_key
        self.top_key = min(max(self.top_key, 0.0), max(0.0, NUM_KEYS - visible_rows))
        if (self.left_beat, self.top_key, self.pixels_per_beat, self.key_height) != before:
            self.view_changed.emit()

    def set_tool(self, tool: str) -> None:
        """Chooses draw, select or erase."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        if tool != self.tool:
            self.tool = tool
            self.tool_changed.emit(tool)

    def set_snap(self, name: str) -> None:
        """Chooses a grid (see SNAP_CHOICES)."""
        if name not in SNAP_CHOICES:
            raise ValueError(f"unknown grid {name!r}")
        if name != self.snap_name:
            self.snap_name = name
            self.snap_changed.emit(name)
            self.view_changed.emit()

    def set_time_range(self, start: float | None, end: float | None = None) -> None:
        """Chooses a span of time (beats, in either order); None, or an empty span, clears it."""
        span = None
        if start is not None and end is not None:
            low, high = sorted((max(0.0, float(start)), max(0.0, float(end))))
            span = (low, high) if high - low > 1e-6 else None
        if span != self.time_range:
            self.time_range = span
            self.time_range_changed.emit()

    def set_scale(self, pitch_classes, tonic: int | None) -> None:
        """The key a continuation keeps to (its scale's pitch classes and tonic), shown in the rows and keys; an
        empty scale shows none."""
        scale = frozenset(int(pitch_class) % 12 for pitch_class in pitch_classes)
        tonic = None if not scale or tonic is None else int(tonic) % 12
        if (scale, tonic) != (self.scale, self.tonic):
            self.scale, self.tonic = scale, tonic
            self.scale_changed.emit()

    def in_scale(self, pitch: int) -> bool:
        """Whether a pitch belongs to the locked key's scale (False without a lock)."""
        return pitch % 12 in self.scale

    def select(self, note_ids) -> None:
        """Replaces the selection."""
        selection = frozenset(note_ids)
        if selection != self.selection:
            self.selection = selection
            self.selection_changed.emit()

    def to_dict(self) -> dict:
        """The parts worth keeping in a session file."""
        return {
            "left_beat": self.left_beat,
            "top_key": self.top_key,
            "pixels_per_beat": self.pixels_per_beat,
            "key_height": self.key_height,
            "snap": self.snap_name,
            "tool": self.tool,
        }

    def load_dict(self, data: dict) -> None:
        """Restores what `to_dict` kept; bad values are ignored."""
        try:
            if data.get("snap") in SNAP_CHOICES:
                self.set_snap(data["snap"])
            if data.get("tool") in TOOLS:
                self.set_tool(data["tool"])
            self.set_view(
                float(data.get("left_beat", self.left_beat)),
                float(data.get("top_key", self.top_key)),
                float(data.get("pixels_per_beat", self.pixels_per_beat)),
                float(data.get("key_height", self.key_height)),
            )
        except (TypeError, ValueError, OverflowError):  # a number too large for a float among them
            pass


class Palette:
    """The roll's colours. Velocity shows as colour: soft notes pale, loud notes deep."""

    background = QColor("#262a31")
    black_key_row = QColor("#1f2228")
    row_line = QColor("#2e333b")
    octave_line = QColor("#49505b")
    sub_beat_line = QColor("#30353d")
    beat_line = QColor("#3c424c")
    bar_line = QColor("#5d6673")
    scale_row = QColor(120, 170, 255, 24)  # a row of the locked key's scale
    tonic_row = QColor(120, 170, 255, 52)  # a row of its tonic
    scale_key = QColor("#4a86d8")  # the mark on a key of the scale
    loop_shade = QColor(120, 200, 120, 28)
    loop_shade_off = QColor(160, 160, 160, 14)
    playhead = QColor("#f2f2f2")
    hint = QColor("#9aa3ae")  # the empty roll's words
    rubber_band_fill = QColor(120, 170, 255, 40)
    time_range_shade = QColor(255, 196, 120, 34)  # the span Fill writes
    time_range_edge = QColor(255, 196, 120, 150)
    rubber_band_edge = QColor(150, 190, 255)
    note_outline = QColor("#101216")
    selected_outline = QColor("#ffffff")
    MOTIF_HUE = 212
    CONTINUATION_HUE = 30
    VELOCITY_LEVELS = 8

    @classmethod
    def velocity_level(cls, velocity: int) -> int:
        """The colour step (0..7) of a velocity."""
        return min(max(int(velocity), 1), 127) * cls.VELOCITY_LEVELS // 128

    @classmethod
    def note_fill(cls, part: str, velocity: int, selected: bool = False, writing: bool = False) -> QColor:
        """The fill colour of a note."""
        hue = cls.CONTINUATION_HUE if part == CONTINUATION else cls.MOTIF_HUE
        level = cls.velocity_level(velocity)
        if selected:
            return QColor.fromRgba(QColor.fromHsv(hue, 70, 255).rgba())
        saturation = 90 + level * 165 // (cls.VELOCITY_LEVELS - 1)
        value = 255 - level * 60 // (cls.VELOCITY_LEVELS - 1)
        color = QColor.fromHsv(hue, saturation, value)
        if writing:  # still being written: see-through, drawn with a hatch and dashed edge on top
            color = QColor.fromHsv(hue, saturation // 2, value, 150)
        return QColor.fromRgba(color.rgba())  # 8-bit RGB: equal to the pixels it paints
