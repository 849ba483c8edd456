"""Transport state: the playhead, play/stop and the loop region. The playback engine drives it; views draw it."""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, Signal

from .limits import MAX_BEATS


def _beat(value) -> float:
    """A position on the grid within the longest song (0 for a value that is not a finite number)."""
    value = float(value)
    return min(max(0.0, value), MAX_BEATS) if math.isfinite(value) else 0.0


class Transport(QObject):
    """Where playback is and what it loops; positions are in beats on the song's grid.

    The piano roll sets the playhead and loop from gestures and auditions the keys and notes it touches; a
    playback engine listens to `playing_changed` and the auditions, reads `loop_*` and moves the playhead
    with `set_playhead`.
    """

    playhead_moved = Signal(float)
    playing_changed = Signal(bool)
    loop_changed = Signal()
    note_auditioned = Signal(int, int)  # pitch, velocity: a key clicked or a note drawn, to be heard once
    note_audition_ended = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.playhead = 0.0
        self.playing = False
        self.loop_start = 0.0
        self.loop_end = 4.0
        self.loop_enabled = False

    def set_playhead(self, beat: float) -> None:
        """Moves the playhead (never before the start nor past the longest song)."""
        beat = _beat(beat)
        if beat != self.playhead:
            self.playhead = beat
            self.playhead_moved.emit(beat)

    def set_playing(self, playing: bool) -> None:
        """Starts or stops playback (the engine does the sounding)."""
        if playing != self.playing:
            self.playing = bool(playing)
            self.playing_changed.emit(self.playing)

    def audition(self, pitch: int, velocity: int) -> None:
        """Sounds a note once, until `end_audition` (a key clicked, a note drawn or moved)."""
        self.note_auditioned.emit(pitch, velocity)

    def end_audition(self, pitch: int) -> None:
        """Releases a note being auditioned."""
        self.note_audition_ended.emit(pitch)

    def set_loop(self, start: float, end: float, enabled: bool | None = None) -> None:
        """Sets the loop region (ordered, at least a little long) and optionally turns it on or off."""
        start, end = sorted((_beat(start), _beat(end)))
        if end - start < 1e-6:
            return
        changed = (start, end) != (self.loop_start, self.loop_end)
        self.loop_start, self.loop_end = start, end
        if enabled is not None and enabled != self.loop_enabled:
            self.loop_enabled = bool(enabled)
            changed = True
        if changed:
            self.loop_changed.emit()

    def set_loop_enabled(self, enabled: bool) -> None:
        """Turns looping on or off."""
        if enabled != self.loop_enabled:
            self.loop_enabled = bool(enabled)
            self.loop_changed.emit()

    def to_dict(self) -> dict:
        """The parts worth keeping in a session file."""
        return {"playhead": self.playhead, "loop": [self.loop_start, self.loop_end, self.loop_enabled]}

    def load_dict(self, data: dict) -> None:
        """Restores what `to_dict` kept; bad values are ignored."""
        try:
            start, end, enabled = data.get("loop", [0.0, 4.0, False])
            self.set_loop(float(start), float(end), bool(enabled))
            self.set_playhead(float(data.get("playhead", 0.0)))
        except (TypeError, ValueError, OverflowError):  # a number too large for a float among them
            pass
