"""The strips around the grid: the keyboard at the left, the bar/beat ruler on top, the velocity lane below."""

from __future__ import annotations

import bisect
import math

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPolygonF, QWheelEvent
from PySide6.QtWidgets import QInputDialog, QMenu, QSizePolicy, QWidget

from ..song import CONTINUATION, MAX_TEMPO, MIN_TEMPO, MOTIF, Song, SongLockedError, SongNote
from ..transport import Transport
from .painting import OVERVIEW_THRESHOLD, visible_estimate
from .state import Palette, RollState, is_black_key, pitch_name

KEYBOARD_WIDTH = 64
SCALE_MARK = 5  # pixels: the width of the mark on a key of the locked scale (twice that on the tonic)
RULER_HEIGHT = 34
LOOP_STRIP = 13
LANE_HEIGHT = 76
DRAG_PIXELS = 4  # how far the pointer moves in the ruler before a click becomes a drag


class _Strip(QWidget):
    """A strip that shares the roll's state and hands its wheel events to the roll."""

    wheel_scrolled = Signal(QWheelEvent)

    def __init__(self, song: Song, state: RollState, transport: Transport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.song, self.state, self.transport = song, state, transport
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        state.view_changed.connect(self.update)

    def wheelEvent(self, event: QWheelEvent) -> None:
        """Scroll or zoom, as over the grid."""
        self.wheel_scrolled.emit(event)
        event.accept()


class Keyboard(_Strip):
    """A piano keyboard aligned with the grid's rows; clicking a key auditions it."""

    def __init__(self, song: Song, state: RollState, transport: Transport, parent: QWidget | None = None) -> None:
        super().__init__(song, state, transport, parent)
        self.setFixedWidth(KEYBOARD_WIDTH)
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Expanding)
        self.pressed_pitch: int | None = None
        self._selecting: tuple[int, frozenset[int]] | None = (
            None  # a Ctrl/Shift drag: the first key, the selection before
        )
        state.scale_changed.connect(self.update)

    def paintEvent(self, event) -> None:
        """White keys full width, black keys shorter, a C label on each octave."""
        painter = QPainter(self)
        state = self.state
        width, height = self.width(), self.height()
        painter.fillRect(0, 0, width, height, QColor("#e9e9e9"))
        low, high = state.pitch_at(height), state.pitch_at(0)
        key_height = state.key_height
        font = painter.font()
        font.setPixelSize(max(7, min(11, int(key_height) - 2)))
        painter.setFont(font)
        for pitch in range(low, high + 1):
            y = state.y_of(pitch)
            pressed = pitch == self.pressed_pitch
            if is_black_key(pitch):
                painter.fillRect(
                    QRectF(0, y, width * 0.62, key_height), QColor("#5a8fd0") if pressed else QColor("#1b1d21")
                )
            else:
                if pressed:
                    painter.fillRect(QRectF(0, y, width, key_height), QColor("#9cc3f0"))
                if pitch % 12 in (0, 5):  # the border below C and F, where two white keys meet
                    painter.setPen(QColor("#9a9a9a"))
                    painter.drawLine(QLineF(0, y + key_height, width, y + key_height))
            if state.in_scale(pitch):  # a key lock: a mark on each key of its scale, wider on the tonic
                mark = SCALE_MARK * 2 if pitch % 12 == state.tonic else SCALE_MARK
                painter.fillRect(QRectF(0, y + 1, mark, max(1.0, key_height - 2)), Palette.scale_key)
            if pitch % 12 == 0 and key_height >= 7:
                painter.setPen(QColor("#333333"))
                painter.drawText(
                    QRectF(0, y, width - 4, key_height), Qt.AlignRight | Qt.AlignVCenter, pitch_name(pitch)
                )
        painter.setPen(QColor("#777777"))
        painter.drawLine(width - 1, 0, width - 1, height)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """Plays the key (through whatever playback engine listens); Ctrl-click selects every note of that
        pitch, Shift-click adds them to the selection, and dragging on from either selects every note of the
        keys dragged over (a range of pitches: the notes Accompany keeps)."""
        if event.button() != Qt.LeftButton:
            return
        pitch = self.state.pitch_at(event.position().y())
        modifiers = event.modifiers()
        if modifiers & (Qt.ControlModifier | Qt.ShiftModifier):
            base = self.state.selection if modifiers & Qt.ShiftModifier else frozenset()
            self._selecting = (pitch, base)
            self._select_range(pitch)
        self._press(pitch)

    def _select_range(self, pitch: int) -> None:
        """Selects the notes from the key pressed to `pitch` (with the selection there was, for Shift)."""
        first, base = self._selecting
        low, high = sorted((first, pitch))
        self.state.select(base | {note.id for note in self.song.notes() if low <= note.pitch <= high})

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        """Glissando: dragging along the keys plays each one (and selects their notes, after Ctrl or Shift)."""
        if self.pressed_pitch is not None:
            pitch = self.state.pitch_at(event.position().y())
            if pitch != self.pressed_pitch:
                self.transport.end_audition(self.pressed_pitch)
                self._press(pitch)
                if self._selecting is not None:
                    self._select_range(pitch)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        """Releases the key."""
        self._selecting = None
        if self.pressed_pitch is not None:
            self.transport.end_audition(self.pressed_pitch)
            self.pressed_pitch = None
            self.update()

    def _press(self, pitch: int) -> None:
        self.pressed_pitch = pitch
        self.transport.audition(pitch, self.state.velocity)
        self.update()


class Ruler(_Strip):
    """Bars and beats; the top strip holds the loop region. Below it a click moves the playhead and a drag
    chooses a span of time (the time range that Fill writes). A right-click puts a tempo or time signature
    change there, or takes one out."""

    message = Signal(str)  # for the status bar

    def __init__(self, song: Song, state: RollState, transport: Transport, parent: QWidget | None = None) -> None:
        super().__init__(song, state, transport, parent)
        self.setFixedHeight(RULER_HEIGHT)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        # kind, press beat, then the loop's start and end (a loop drag) or the press's x (below the loop strip)
        self._drag: tuple[str, float, float, float] | None = None
        transport.loop_changed.connect(self.update)
        transport.playhead_moved.connect(self.update)
        state.time_range_changed.connect(self.update)
        song.meta_changed.connect(self.update)
        song.reset.connect(lambda: self.set_note(""))  # another document: what was said of the last file's grid
        self.note = ""  # what the ruler says of the grid (a free performance's bars are its file's)

    def set_note(self, text: str) -> None:
        """Says something of the grid at the ruler's right end, and in its tooltip, until another document."""
        self.note = text
        self.setToolTip(text)
        self.update()

    def paintEvent(self, event) -> None:
        """Bar numbers, beat ticks, the loop region and the playhead."""
        painter = QPainter(self)
        state, transport = self.state, self.transport
        width, height = self.width(), self.height()
        painter.fillRect(0, 0, width, height, QColor("#30353d"))
        painter.fillRect(0, 0, width, LOOP_STRIP, QColor("#282c33"))
        x0, x1 = state.x_of(transport.loop_start), state.x_of(transport.loop_end)
        loop_color = QColor("#5fbf6a") if transport.loop_enabled else QColor("#6b7079")
        painter.fillRect(QRectF(x0, 2, x1 - x0, LOOP_STRIP - 4), loop_color)
        if state.time_range is not None:
            r0, r1 = (state.x_of(beat) for beat in state.time_range)
            painter.fillRect(QRectF(r0, LOOP_STRIP, r1 - r0, height - LOOP_STRIP), Palette.time_range_edge)
        tempo_map = self.song.tempo_map
        ppb = state.pixels_per_beat
        start, end = state.beat_at(0), state.beat_at(width)
        label_every = 1
        while tempo_map.shortest_bar(start, end) * label_every * ppb < 36:
            label_every *= 2
        painter.setPen(QColor("#c8ccd2"))
        font = painter.font()
        font.setPixelSize(11)
        painter.setFont(font)
        metre_starts = {beat for beat, _, _ in tempo_map.metres}
        taken: list[tuple[float, float]] = []  # the spans of the labels written, left to right
        for bar in tempo_map.bar_lines(start, end, 1 if ppb >= 12 else label_every):
            x = state.x_of(bar.beat)
            if bar.index % label_every == 0 or bar.beat in metre_starts:
                painter.drawLine(QLineF(x, LOOP_STRIP, x, height))
                label = str(bar.index + 1)
                if bar.beat in metre_starts and len(tempo_map.metres) > 1:  # where the metre changes, it is named
                    label += " {}/{}".format(*bar.metre)
                painter.drawText(QPointF(x + 3, LOOP_STRIP + 12), label)
                taken.append((x, x + 3 + painter.fontMetrics().horizontalAdvance(label)))
            if ppb >= 12:
                unit = 4.0 / bar.metre[1]  # the metre's beat, in quarter notes
                for beat in range(1, math.ceil(bar.length / unit - 1e-9)):
                    bx = state.x_of(bar.beat + beat * unit)
                    painter.drawLine(QLineF(bx, height - 6, bx, height))
        changes = tempo_map.tempi[1:]
        first = bisect.bisect_left(changes, (start, -1.0))
        shown = changes[first : bisect.bisect_right(changes, (end, math.inf))]
        if 0 < len(shown) <= width // 4:  # each tempo change marked, its tempo written where there is room
            painter.setPen(QColor("#e0a458"))
            metrics = painter.fontMetrics()
            for beat, bpm in shown:
                x = state.x_of(beat)
                painter.drawLine(QLineF(x, LOOP_STRIP, x, height))
                text = f"♩={bpm:.0f}" if abs(bpm - round(bpm)) < 0.05 else f"♩={bpm:.1f}"
                left = max([x + 3] + [right + 4 for low, right in taken if low <= x + 1 and right >= x - 1])
                right = left + metrics.horizontalAdvance(text)
                if all(right < low or left > high for low, high in taken):  # where there is room
                    painter.drawText(QPointF(left, LOOP_STRIP + 12), text)
                    taken.append((left, right))
        if self.note:  # in the loop strip's right end, dim, cut with an ellipsis (the tooltip has it whole)
            font.setPixelSize(10)
            painter.setFont(font)
            room = QRectF(width / 3, 0, width * 2 / 3 - 4, LOOP_STRIP)
            text = painter.fontMetrics().elidedText(self.note, Qt.ElideRight, int(room.width()))
            painter.setPen(QColor("#e0a458"))
            painter.drawText(room, Qt.AlignRight | Qt.AlignVCenter, text)
        x = state.x_of(transport.playhead)
        painter.setPen(Qt.NoPen)
        painter.setBrush(QColor("#f2f2f2"))
        painter.drawPolygon(QPolygonF([QPointF(x - 6, height - 10), QPointF(x + 6, height - 10), QPointF(x, height)]))
        painter.setPen(QColor("#1b1d21"))
        painter.drawLine(0, height - 1, width, height - 1)
        painter.end()

    def contextMenuEvent(self, event) -> None:
        """A tempo or time signature change where the ruler was right-clicked."""
        self.change_menu(self.state.beat_at(event.pos().x())).exec(event.globalPos())

    def change_menu(self, beat: float) -> QMenu:
        """The menu of changes at a beat: a tempo from the grid step there, a metre from the bar it lies in."""
        song = self.song
        at = max(0.0, self.state.snap(beat))
        bar = song.bar_at(max(0.0, beat))
        menu = QMenu(self)
        menu.setObjectName("tempo_menu")
        tempo = menu.addAction(f"Tempo Change at {song.bar_beat(at)}…", lambda: self.ask_tempo(at))
        tempo.setObjectName("tempo_change")
        metre = menu.addAction(f"Time Signature Change at Bar {bar.index + 1}…", lambda: self.ask_metre(bar.beat))
        metre.setObjectName("metre_change")
        tempo_map = song.tempo_map
        for change, _ in tempo_map.tempi[1:]:
            if song.bar_at(change).index == bar.index:
                menu.addAction(
                    f"Remove Tempo Change at {song.bar_beat(change)}",
                    lambda change=change: self._edit(lambda: song.remove_tempo_change(change)),
                )
        if tempo_map.metre_change_at(bar.beat):
            menu.addAction(
                f"Remove Time Signature Change at Bar {bar.index + 1}",
                lambda: self._edit(lambda: song.remove_time_signature_change(bar.beat)),
            )
        return menu

    def ask_tempo(self, beat: float) -> None:
        """Asks for the tempo from `beat` on."""
        song = self.song
        bpm, accepted = QInputDialog.getDouble(
            self, "Tempo Change", f"Tempo from {song.bar_beat(beat)} (BPM):", song.tempo_at(beat), MIN_TEMPO,
            MAX_TEMPO, 1,
        )  # fmt: skip
        if accepted:
            self._edit(lambda: song.set_tempo_at(beat, bpm))

    def ask_metre(self, beat: float) -> None:
        """Asks for the time signature from the bar line at `beat` on."""
        song = self.song
        current = "{}/{}".format(*song.time_signature_at(beat))
        choices = list(dict.fromkeys([current, "2/4", "3/4", "4/4", "5/4", "3/8", "6/8", "7/8", "9/8", "12/8"]))
        bar = song.bar_at(beat).index + 1
        text, accepted = QInputDialog.getItem(
            self, "Time Signature Change", f"Time signature from bar {bar} (for example 3/4):", choices, 0, True
        )
        if not accepted:
            return
        try:
            numerator, denominator = (int(part) for part in text.strip().split("/"))
        except ValueError:
            self.message.emit(f"{text.strip() or 'Nothing'} is not a time signature (write it as 3/4 or 7/8)")
            return
        self._edit(lambda: song.set_time_signature_at(beat, numerator, denominator))

    def _edit(self, change) -> None:
        try:
            change()
        except (SongLockedError, ValueError) as error:
            self.message.emit(str(error))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """In the loop strip: draw, move or stretch the loop; below it: set the playhead (a click) or choose a
        time range (a drag)."""
        if event.button() != Qt.LeftButton:
            return
        x, y = event.position().x(), event.position().y()
        beat = self.state.beat_at(x)
        transport = self.transport
        bypass = bool(event.modifiers() & Qt.AltModifier)
        if y < LOOP_STRIP:
            x0, x1 = self.state.x_of(transport.loop_start), self.state.x_of(transport.loop_end)
            if abs(x - x0) <= 5:
                kind = "loop_start"
            elif abs(x - x1) <= 5:
                kind = "loop_end"
            elif x0 < x < x1:
                kind = "loop_move"
            else:
                kind = "loop_new"
            self._drag = (kind, self.state.snap(beat, bypass), transport.loop_start, transport.loop_end)
        else:
            self._drag = ("playhead", self.state.snap(beat, bypass), x, 0.0)
            transport.set_playhead(self.state.snap(beat, bypass))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        """Follows the drag."""
        if self._drag is None:
            return
        kind, press_beat, loop_start, loop_end = self._drag
        bypass = bool(event.modifiers() & Qt.AltModifier)
        beat = self.state.snap(self.state.beat_at(event.position().x()), bypass)
        transport = self.transport
        if kind == "playhead":
            press_x = loop_start
            if abs(event.position().x() - press_x) >= DRAG_PIXELS:
                self._drag = ("time_range", press_beat, 0.0, 0.0)
                self.state.set_time_range(press_beat, beat)
        elif kind == "time_range":
            self.state.set_time_range(press_beat, beat)
        elif kind == "loop_new":
            if beat != press_beat:
                transport.set_loop(press_beat, beat, True)
        elif kind == "loop_move":
            delta = max(beat - press_beat, -loop_start)
            transport.set_loop(loop_start + delta, loop_end + delta)
        elif kind == "loop_start":
            transport.set_loop(min(beat, loop_end - 1e-3), loop_end)
        elif kind == "loop_end":
            transport.set_loop(loop_start, max(beat, loop_start + 1e-3))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        """Ends the drag; a click below the loop strip (no drag) clears the time range."""
        if self._drag is not None and self._drag[0] == "playhead":
            self.state.set_time_range(None)
        self._drag = None

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        """A double click on the loop strip turns looping on or off."""
        if event.position().y() < LOOP_STRIP:
            self.transport.set_loop_enabled(not self.transport.loop_enabled)


class VelocityLane(_Strip):
    """One stem per note at its start, as tall as its velocity; drag across stems to set velocities."""

    def __init__(self, song: Song, state: RollState, transport: Transport, parent: QWidget | None = None) -> None:
        super().__init__(song, state, transport, parent)
        self.setFixedHeight(LANE_HEIGHT)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self._preview: dict[int, SongNote] = {}
        self._dragging = False
        song.notes_changed.connect(self.update)
        state.selection_changed.connect(self.update)

    def velocity_at(self, y: float) -> int:
        """The velocity a height in the lane stands for."""
        usable = self.height() - 6
        return min(max(round((self.height() - 3 - y) / usable * 127), 1), 127)

    def y_of(self, velocity: int) -> float:
        """The height of a velocity's stem top."""
        return self.height() - 3 - velocity / 127 * (self.height() - 6)

    def _visible(self) -> list[SongNote]:
        state = self.state
        notes = self.song.notes_in(state.beat_at(0), state.beat_at(self.width()))
        return [self._preview.get(note.id, note) for note in notes if note.start >= state.beat_at(-4)]

    def paintEvent(self, event) -> None:
        """The stems, coloured like their notes."""
        painter = QPainter(self)
        width, height = self.width(), self.height()
        painter.fillRect(0, 0, width, height, QColor("#22262c"))
        painter.setPen(QColor("#3a3f47"))
        for velocity in (32, 64, 96, 127):
            painter.drawLine(QLineF(0, self.y_of(velocity), width, self.y_of(velocity)))
        selection = self.state.selection
        arrays = self.song.note_arrays()
        start, end = self.state.beat_at(-4), self.state.beat_at(width)
        if not self._preview and visible_estimate(arrays, start, end) > OVERVIEW_THRESHOLD:
            self._paint_overview(painter, arrays, start, end)
            painter.end()
            return
        # Batched by colour, selected stems last so they stay on top: one drawLines call per colour.
        batches: dict[tuple[bool, str, int], list[QLineF]] = {}
        levels = Palette.VELOCITY_LEVELS
        for note in self._visible():
            x = self.state.x_of(note.start) + 1
            key = (note.id in selection, note.part, note.velocity * levels // 128)
            batches.setdefault(key, []).append(QLineF(x, height - 3, x, self.y_of(note.velocity)))
        for (selected, part, level), lines in sorted(batches.items()):
            color = Palette.note_fill(part, level * 128 // levels + 1, selected)
            painter.setPen(QPen(color, 2))
            painter.drawLines(lines)
            painter.setPen(QPen(color, 4, Qt.SolidLine, Qt.SquareCap))
            painter.drawPoints([line.p2() for line in lines])
        painter.setPen(QColor("#1b1d21"))
        painter.drawLine(0, 0, width, 0)
        painter.end()

    def _paint_overview(self, painter: QPainter, arrays, start: float, end: float) -> None:
        """Thousands of stems: per pixel column, the loudest note's stem (numpy picks it)."""
        width, height = self.width(), self.height()
        mask = (arrays.starts >= start) & (arrays.starts <= end)
        xs = np.floor((arrays.starts[mask] - self.state.left_beat) * self.state.pixels_per_beat).astype(np.int64)
        velocities, continuation = arrays.velocities[mask], arrays.continuation[mask]
        inside = (xs >= 0) & (xs < width)
        xs, velocities, continuation = xs[inside], velocities[inside], continuation[inside]
        order = np.argsort(velocities, kind="stable")
        loudest = np.zeros(width, np.int64)
        part = np.zeros(width, bool)
        loudest[xs[order]] = velocities[order]  # the last write per column is the loudest
        part[xs[order]] = continuation[order]
        # One image: each column filled from its loudest stem's top down, in that stem's colour.
        levels = Palette.VELOCITY_LEVELS
        table = np.array(
            [0]
            + [
                Palette.note_fill(part, level * 128 // levels + 1).rgba()
                for part in (MOTIF, CONTINUATION)
                for level in range(levels)
            ],
            np.uint32,
        )
        codes = np.where(loudest > 0, 1 + loudest * levels // 128 + levels * part, 0)
        tops = np.array([self.y_of(int(velocity)) for velocity in range(128)])[loudest]
        rows = np.arange(height)[:, None]
        filled = (rows >= np.floor(tops)[None, :]) & (rows < height - 3)
        pixels = np.ascontiguousarray(np.where(filled, table[codes][None, :], np.uint32(0)).astype(np.uint32))
        painter.drawImage(0, 0, QImage(pixels.data, width, height, width * 4, QImage.Format_ARGB32))
        painter.setPen(QColor("#1b1d21"))
        painter.drawLine(0, 0, width, 0)

    def _targets(self, x: float) -> list[SongNote]:
        """The notes whose stems are under x; only selected ones when there is a selection."""
        selection = self.state.selection
        hits = [
            note
            for note in self.song.notes_in(self.state.beat_at(x - 4), self.state.beat_at(x + 4))
            if abs(self.state.x_of(note.start) - x) <= 4
        ]
        if selection:
            hits = [note for note in hits if note.id in selection]
        return hits

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """Starts setting velocities."""
        if event.button() == Qt.LeftButton and not self.song.is_writing:
            self._dragging = True
            self._paint_velocity(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        """Sets the velocity of each stem the pointer passes."""
        if self._dragging:
            self._paint_velocity(event.position())

    def _paint_velocity(self, point: QPointF) -> None:
        velocity = self.velocity_at(point.y())
        for note in self._targets(point.x()):
            self._preview[note.id] = note.with_(velocity=velocity)
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        """Commits the velocities as one command."""
        self._dragging = False
        preview, self._preview = self._preview, {}
        if preview and not self.song.is_writing:
            self.song.replace_notes(list(preview.values()), "Change velocity")
        self.update()
