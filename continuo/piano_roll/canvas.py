"""The note grid: draws the visible part of the song and turns mouse gestures into undoable edits.

Drawing is immediate-mode: each paint asks the song's time index for the notes in view (a bisection,
not a scan) and painting.py draws them in batches of one colour, so a 10,000-note song paints as fast as
the few hundred notes on screen. While a gesture is in progress the canvas shows a preview of its result; the
song changes once, when the mouse is released, as one command on the undo stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..song import CONTINUATION, MIN_LENGTH, EditRefusedError, Song, SongNote, floor_beat
from ..transport import Transport
from .painting import (
    OVERVIEW_THRESHOLD,
    note_rect,
    paint_grid,
    paint_hint,
    paint_loop,
    paint_notes,
    paint_overview,
    paint_time_range,
    visible_estimate,
)
from .state import DRAW, ERASE, NUM_KEYS, SELECT, Palette, RollState

EMPTY_HINT = "Draw a few notes, or play your MIDI keyboard, then press Continue"

EDGE_PIXELS = 5  # how close to a note's end the pointer must be to resize instead of move
DRAG_THRESHOLD = 3


@dataclass
class _Gesture:
    """A mouse gesture in progress."""

    kind: str  # create, move, resize_end, resize_start, erase, rubber_band
    press: QPointF
    press_beat: float
    press_pitch: int
    anchor: SongNote | None = None
    originals: dict[int, SongNote] = field(default_factory=dict)
    base_selection: frozenset[int] = frozenset()
    moved: bool = False
    toggled: bool = False
    free: bool = False  # Alt was held at the press: off the grid for the whole drag


class NoteCanvas(QWidget):
    """The grid of notes."""

    hover_changed = Signal(float, int)  # beat, pitch under the pointer
    message = Signal(str)  # for the status bar
    wheel_scrolled = Signal(QWheelEvent)  # handed to the roll, which scrolls or zooms

    def __init__(self, song: Song, state: RollState, transport: Transport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.song = song
        self.state = state
        self.transport = transport
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(200, 120)
        self._gesture: _Gesture | None = None
        self._preview: dict[int, SongNote] = {}  # notes shown changed while a gesture is in progress
        self._hidden: set[int] = set()  # notes shown erased while erasing
        self._rubber_band: QRectF | None = None
        self._writing_ids: set[int] = set()
        for signal in (
            song.notes_changed,
            state.view_changed,
            state.selection_changed,
            state.time_range_changed,
            state.scale_changed,
            transport.loop_changed,
        ):
            signal.connect(self.update)
        self._playhead_x = state.x_of(transport.playhead)
        transport.playhead_moved.connect(self._playhead_moved)
        song.writing_changed.connect(self._writing_changed)
        song.applied.connect(self._track_writing)

    # --- what is where --------------------------------------------------------------------------

    def visible_rows(self) -> float:
        """How many pitch rows fit in the height."""
        return self.height() / self.state.key_height

    def note_rect(self, note: SongNote) -> QRectF:
        """The rectangle a note is drawn in."""
        return note_rect(self.state, note)

    def note_at(self, point: QPointF) -> SongNote | None:
        """The note under a point, as shown (previews included); a note too thin to hit gets 2 px of slack."""
        beat = self.state.beat_at(point.x())
        pitch = self.state.pitch_at(point.y())
        slack = 2 / self.state.pixels_per_beat
        candidates = self._shown_notes(beat - slack, beat + slack, pitch, pitch)
        for note in reversed(candidates):
            if note.start <= beat < note.end:
                return note
        for note in reversed(candidates):
            if note.length * self.state.pixels_per_beat < 6 and note.start - slack <= beat <= note.end + slack:
                return note
        return None

    def _shown_notes(self, start: float, end: float, low: int, high: int) -> list[SongNote]:
        """The song's notes in a region, with the gesture's preview applied."""
        notes = [
            note
            for note in self.song.notes_in(start, end, low, high)
            if note.id not in self._preview and note.id not in self._hidden
        ]
        if self._preview:
            notes.extend(
                note
                for note in self._preview.values()
                if note.end >= start and note.start <= end and low <= note.pitch <= high
            )
        return notes

    def _visible_region(self, rect: QRect | None = None) -> tuple[float, float, int, int]:
        """Beats and pitches in a rectangle of the canvas (all of it by default)."""
        state = self.state
        rect = rect or self.rect()
        return (
            state.beat_at(rect.left() - 1),
            state.beat_at(rect.right() + 1),
            state.pitch_at(rect.bottom() + 1),
            state.pitch_at(rect.top() - 1),
        )

    def _playhead_moved(self, beat: float) -> None:
        """Repaints only the two slivers where the playhead was and is: cheap at 60 frames a second."""
        x = self.state.x_of(beat)
        for old_or_new in (self._playhead_x, x):
            self.update(QRect(math.floor(old_or_new) - 2, 0, 5, self.height()))
        self._playhead_x = x

    # --- painting -------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:
        """Grid, loop region, time range, notes, rubber band, playhead, and the hint while the roll is empty."""
        painter = QPainter(self)
        state, width, height = self.state, self.width(), self.height()
        self._playhead_x = state.x_of(self.transport.playhead)
        paint_grid(painter, state, width, height, self.song.tempo_map)
        paint_loop(painter, state, self.transport, width, height)
        paint_time_range(painter, state, width, height)
        region = self._visible_region(event.rect())
        if visible_estimate(self.song.note_arrays(), region[0], region[1]) > OVERVIEW_THRESHOLD:
            arrays = self.song.note_arrays()
            paint_overview(painter, state, arrays, region, width, self._preview, self._hidden, self._writing_ids)
        else:
            paint_notes(painter, state, self._shown_notes(*region), self._writing_ids)
        if self._rubber_band is not None:
            painter.setPen(QPen(Palette.rubber_band_edge, 1))
            painter.setBrush(Palette.rubber_band_fill)
            painter.drawRect(self._rubber_band.normalized())
        x = state.x_of(self.transport.playhead)
        if 0 <= x <= width:
            painter.setPen(QPen(Palette.playhead, 1))
            painter.drawLine(QLineF(x, 0, x, height))
        if self.hint:
            paint_hint(painter, self.hint_rect(), self.hint)
        painter.end()

    @property
    def hint(self) -> str:
        """What the empty roll says to do first ("" once there are notes)."""
        return EMPTY_HINT if not len(self.song) and not self.song.is_writing and not self._preview else ""

    def hint_rect(self) -> QRectF:
        """Where the hint is drawn: a band across the middle of the grid."""
        return QRectF(0, self.height() / 2 - 30, self.width(), 60)

    # --- the continuation being written ---------------------------------------------------------

    def _writing_changed(self, writing: bool) -> None:
        if not writing:
            self._writing_ids.clear()
        self.update()

    def _track_writing(self, diff) -> None:
        if self.song.stream_part == CONTINUATION:  # a take's notes are drawn as they are; a continuation's hatched
            self._writing_ids.update(note.id for note in diff.added if note.part == CONTINUATION)

    # --- mouse ----------------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """Starts a gesture: draw, select, move, resize, erase or rubber band, by tool and place."""
        self.setFocus(Qt.MouseFocusReason)
        if self._gesture is not None:
            return
        if self.song.is_writing:
            self.message.emit(self.song.lock_message())
            return
        point = event.position()
        state = self.state
        beat, pitch = state.beat_at(point.x()), state.pitch_at(point.y())
        modifiers = event.modifiers()
        additive = bool(modifiers & (Qt.ShiftModifier | Qt.ControlModifier))
        hit = self.note_at(point)
        gesture = _Gesture("", point, beat, pitch, free=bool(modifiers & Qt.AltModifier))
        erase = state.tool == ERASE or (event.button() == Qt.RightButton and state.tool == DRAW)
        if event.button() == Qt.RightButton and not erase:
            return
        if erase:
            gesture.kind = "erase"
            self._gesture = gesture
            self._erase_at(point)
            return
        if event.button() != Qt.LeftButton:
            return
        if hit is not None:
            if additive:
                gesture.toggled = True
                selection = set(state.selection)
                selection.symmetric_difference_update({hit.id})
                state.select(selection)
                if hit.id not in state.selection:
                    return  # toggled off: nothing to drag
            elif hit.id not in state.selection:
                state.select({hit.id})
            self.transport.audition(hit.pitch, hit.velocity)
            gesture.anchor = hit
            gesture.kind = self._edge_kind(hit, point)
            gesture.originals = {
                note_id: note for note_id in state.selection if (note := self.song.note(note_id)) is not None
            }
            self._gesture = gesture
            return
        if state.tool == DRAW:
            start = floor_beat(beat, None if modifiers & Qt.AltModifier else state.snap_step)
            note = self.song.new_note(pitch, state.velocity, start, state.note_length)
            gesture.kind = "create"
            gesture.anchor = note
            self._preview = {note.id: note}
            self._gesture = gesture
            self.transport.audition(pitch, state.velocity)
            self.update()
            return
        gesture.kind = "rubber_band"
        gesture.base_selection = state.selection if additive else frozenset()
        if not additive:
            state.select(())
        self._gesture = gesture

    def _edge_kind(self, note: SongNote, point: QPointF) -> str:
        """Move, or resize when the pointer is at either end of a note wide enough to have ends."""
        rect = self.note_rect(note)
        edge = min(EDGE_PIXELS, rect.width() / 4)
        if point.x() >= rect.right() - edge:
            return "resize_end"
        if point.x() <= rect.left() + edge and rect.width() > 12:
            return "resize_start"
        return "move"

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        """With the select tool, a double click on empty grid draws a note; on a note, deletes it."""
        if self.state.tool == SELECT and event.button() == Qt.LeftButton and not self.song.is_writing:
            hit = self.note_at(event.position())
            self._gesture = None
            self._rubber_band = None
            if hit is None:
                state = self.state
                beat, pitch = state.beat_at(event.position().x()), state.pitch_at(event.position().y())
                note = self.song.new_note(pitch, state.velocity, floor_beat(beat, state.snap_step), state.note_length)
                try:
                    self.song.add_notes([note], "Draw note")
                except EditRefusedError as error:  # past the song's last beat, or its last note
                    self.message.emit(str(error))
                    return
                state.select(())  # as with the draw tool: a drawn note is not a choice
            else:
                self.song.remove_notes([hit.id], "Delete note")
            self.update()
            return
        self.mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        """Updates the gesture's preview, or the cursor shape when hovering."""
        point = event.position()
        state = self.state
        beat, pitch = state.beat_at(point.x()), state.pitch_at(point.y())
        self.hover_changed.emit(beat, pitch)
        gesture = self._gesture
        if gesture is None:
            self._update_cursor(point)
            return
        if not gesture.moved and (point - gesture.press).manhattanLength() < DRAG_THRESHOLD:
            return
        gesture.moved = True
        bypass = gesture.free or bool(event.modifiers() & Qt.AltModifier)
        if gesture.kind == "erase":
            self._erase_at(point)
        elif gesture.kind == "rubber_band":
            self._rubber_band = QRectF(gesture.press, point)
            rect = self._rubber_band.normalized()
            low, high = state.pitch_at(rect.bottom()), state.pitch_at(rect.top())
            inside = {
                note.id
                for note in self.song.notes_in(state.beat_at(rect.left()), state.beat_at(rect.right()), low, high)
            }
            state.select(gesture.base_selection | inside)
        elif gesture.kind == "create":
            note = gesture.anchor
            minimum = state.snap_step if (state.snap_step and not bypass) else MIN_LENGTH * 10
            end = state.snap(beat, bypass)
            self._preview = {note.id: note.with_(length=max(end - note.start, minimum))}
        elif gesture.kind == "move":
            self._preview_move(gesture, beat, pitch, bypass)
        else:
            self._preview_resize(gesture, beat, bypass)
        self.update()

    def _preview_move(self, gesture: _Gesture, beat: float, pitch: int, bypass: bool) -> None:
        anchor = gesture.anchor
        new_start = self.state.snap(anchor.start + beat - gesture.press_beat, bypass)
        delta = new_start - anchor.start
        semitones = pitch - gesture.press_pitch
        notes = gesture.originals.values()
        delta = max(delta, -min(note.start for note in notes))
        semitones = min(max(semitones, -min(note.pitch for note in notes)), 127 - max(note.pitch for note in notes))
        self._preview = {note.id: note.with_(start=note.start + delta, pitch=note.pitch + semitones) for note in notes}

    def _preview_resize(self, gesture: _Gesture, beat: float, bypass: bool) -> None:
        anchor = gesture.anchor
        step = self.state.snap_step if not bypass else None
        minimum = step or MIN_LENGTH * 10
        moved = beat - gesture.press_beat
        if gesture.kind == "resize_end":
            new_end = max(self.state.snap(anchor.end + moved, bypass), anchor.start + minimum)
            delta = new_end - anchor.end
            self._preview = {
                note.id: note.with_(length=max(note.length + delta, minimum)) for note in gesture.originals.values()
            }
        else:
            new_start = min(self.state.snap(anchor.start + moved, bypass), anchor.end - minimum)
            delta = new_start - anchor.start
            delta = max(delta, -min(note.start for note in gesture.originals.values()))
            self._preview = {
                note.id: note.with_(
                    start=note.start + min(delta, note.length - minimum),
                    length=note.length - min(delta, note.length - minimum),
                )
                for note in gesture.originals.values()
            }

    def _erase_at(self, point: QPointF) -> None:
        hit = self.note_at(point)
        if hit is not None and hit.id not in self._hidden:
            self._hidden.add(hit.id)
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        """Ends the gesture: the song changes here, once, as one undoable command."""
        gesture, self._gesture = self._gesture, None
        if gesture is None:
            return
        try:
            self._finish(gesture)
        except EditRefusedError as error:  # music began streaming in while the mouse was down, or the edit
            self.message.emit(str(error))  # would pass the song's limits: the gesture is dropped
        self.update()

    def _finish(self, gesture: _Gesture) -> None:
        state = self.state
        preview, self._preview = self._preview, {}
        hidden, self._hidden = self._hidden, set()
        self._rubber_band = None
        if gesture.anchor is not None:
            self.transport.end_audition(gesture.anchor.pitch)
        end = max((note.end for note in preview.values()), default=0.0)
        if end > self.song.last_beat():
            self.message.emit(self.song.past_the_end(end))
            return
        if gesture.kind == "erase" and hidden:
            self.song.remove_notes(hidden, "Erase notes" if len(hidden) > 1 else "Erase note")
            state.select(state.selection - hidden)
        elif gesture.kind == "create":
            note = preview[gesture.anchor.id]
            self.song.add_notes([note], "Draw note")
            state.note_length = note.length
            # Drawn, not chosen: a click in empty grid clears the selection, so Zoom to Fit shows the whole song
            # and Fill waits for a range rather than taking the last note's span.
            state.select(())
        elif gesture.kind in ("move", "resize_end", "resize_start") and gesture.moved and preview:
            text = {"move": "Move notes", "resize_end": "Resize notes", "resize_start": "Resize notes"}[gesture.kind]
            self.song.replace_notes(list(preview.values()), text)
            if gesture.kind != "move":
                state.note_length = preview[gesture.anchor.id].length
        elif gesture.kind == "move" and not gesture.moved and not gesture.toggled:
            state.select({gesture.anchor.id})  # a click on one of several selected notes selects just it

    def _update_cursor(self, point: QPointF) -> None:
        tool = self.state.tool
        hit = self.note_at(point)
        if tool == ERASE:
            shape = Qt.ForbiddenCursor if hit else Qt.ArrowCursor
        elif hit is not None:
            kind = self._edge_kind(hit, point)
            shape = Qt.SizeHorCursor if kind.startswith("resize") else Qt.SizeAllCursor
        else:
            shape = Qt.CrossCursor if tool == DRAW else Qt.ArrowCursor
        if self.cursor().shape() != shape:
            self.setCursor(shape)

    def leaveEvent(self, event) -> None:
        """Clears the position readout."""
        self.hover_changed.emit(-1.0, -1)

    def wheelEvent(self, event: QWheelEvent) -> None:
        """Scroll or zoom: the roll decides, so every part of it behaves the same."""
        self.wheel_scrolled.emit(event)
        event.accept()

    def cancel_gesture(self) -> None:
        """Abandons a gesture in progress (Escape): nothing changes."""
        self._gesture = None
        self._preview, self._hidden, self._rubber_band = {}, set(), None
        self.update()


__all__ = ["NoteCanvas", "NUM_KEYS"]
