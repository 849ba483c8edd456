"""The piano roll: keyboard, ruler, note grid, velocity lane and scroll bars around one shared state,
with the editing actions (and their shortcuts) that a musician expects.

The view follows the music as a DAW's does: when a continuation starts, it moves to the seam; while it is
written (and not played), it pages to keep the newest notes in view; while playing, it pages with the playhead
(`follow_playhead`, View ▸ Follow Playhead). Scrolling by hand stops the following until the playhead is in
view again, the next play or Continue, or Home and End.
"""

from __future__ import annotations

import json
import math

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QKeySequence, QWheelEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QScrollBar, QWidget

from .. import limits
from ..session import check_real, check_whole, load_json
from ..song import CONTINUATION, MOTIF, EditRefusedError, Song, SongNote, floor_beat
from ..transport import Transport
from .canvas import NoteCanvas
from .rulers import KEYBOARD_WIDTH, Keyboard, Ruler, VelocityLane
from .state import DRAW, ERASE, NUM_KEYS, SELECT, RollState

CLIPBOARD_PREFIX = "continuo-notes:"
ZOOM_STEP = 1.25
LEAD = 0.1  # a page turned by following leaves this share of the view before the playhead or the newest notes
SEAM_LEAD = 0.2  # when writing starts, this share of the view shows the motif before the seam


class PianoRoll(QWidget):
    """The piano roll editor for one song."""

    message = Signal(str)  # for the status bar

    def __init__(self, song: Song, transport: Transport | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.song = song
        self.transport = transport or Transport(self)
        self.state = RollState(self)
        self.canvas = NoteCanvas(song, self.state, self.transport, self)
        self.keyboard = Keyboard(song, self.state, self.transport, self)
        self.ruler = Ruler(song, self.state, self.transport, self)
        self.velocity_lane = VelocityLane(song, self.state, self.transport, self)
        self.hbar = QScrollBar(Qt.Horizontal, self)
        self.vbar = QScrollBar(Qt.Vertical, self)
        lane_label = QLabel("Velocity", self)
        lane_label.setFixedWidth(KEYBOARD_WIDTH)
        lane_label.setAlignment(Qt.AlignCenter)
        lane_label.setStyleSheet("color: #9aa0a8; background: #22262c; font-size: 10px;")
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.ruler, 0, 1)
        layout.addWidget(self.keyboard, 1, 0)
        layout.addWidget(self.canvas, 1, 1)
        layout.addWidget(self.vbar, 1, 2)
        layout.addWidget(lane_label, 2, 0)
        layout.addWidget(self.velocity_lane, 2, 1)
        layout.addWidget(self.hbar, 3, 1)
        for strip in (self.canvas, self.keyboard, self.ruler, self.velocity_lane):
            strip.wheel_scrolled.connect(self._wheel)
        self.canvas.message.connect(self.message)
        self.ruler.message.connect(self.message)
        self.hbar.valueChanged.connect(self._hbar_moved)
        self.vbar.valueChanged.connect(self._vbar_moved)
        self.state.view_changed.connect(self._sync_scroll_bars)
        song.notes_changed.connect(self._notes_changed)
        song.reset.connect(self._song_reset)
        self.follow_playhead = True  # page with the playhead while playing (View ▸ Follow Playhead)
        self.scrolled_away = False  # the musician scrolled by hand: following waits (see the module's docstring)
        self._newest_written = -1.0  # the end of the newest note written while following the writing
        self.transport.playhead_moved.connect(self._follow_playhead)
        self.transport.playing_changed.connect(self._playing_changed)
        song.writing_changed.connect(self._writing_changed)
        song.applied.connect(self._follow_writing)
        self.setFocusProxy(self.canvas)
        self.actions_by_name: dict[str, QAction] = {}
        self._make_actions()

    def set_corner(self, widget: QWidget) -> None:
        """Puts a widget in the corner above the keyboard, beside the ruler (the window's drag-out handle)."""
        widget.setParent(self)
        widget.setFixedSize(KEYBOARD_WIDTH, self.ruler.height())
        self.layout().addWidget(widget, 0, 0)

    # --- geometry helpers (also used by tests and scripts that drive the roll) -----------------

    def point_for(self, beat: float, pitch: int) -> QPoint:
        """The canvas pixel in the middle of a pitch's row at a beat."""
        state = self.state
        return QPoint(round(state.x_of(beat)), math.floor(state.y_of(pitch) + state.key_height / 2))

    def ensure_visible(self, beat: float, pitch: int) -> None:
        """Scrolls so that a beat and pitch are on screen."""
        state = self.state
        left, top = state.left_beat, state.top_key
        visible_beats = self.canvas.width() / state.pixels_per_beat
        if not left <= beat <= left + visible_beats * 0.9:
            left = max(0.0, beat - visible_beats * 0.25)
        row = 127 - pitch
        if not top <= row <= top + self.canvas.visible_rows() - 1:
            top = row - self.canvas.visible_rows() / 2
        state.set_view(left_beat=left, top_key=top, visible_rows=self.canvas.visible_rows())

    # --- following the music ------------------------------------------------------------------

    def visible_beats(self) -> tuple[float, float]:
        """The first and last beat the grid shows."""
        state = self.state
        return state.left_beat, state.left_beat + max(self.canvas.width(), 1) / state.pixels_per_beat

    def show_beat(self, beat: float, lead: float = LEAD) -> None:
        """Scrolls so that a beat is `lead` of the view from its left edge (following resumes)."""
        left, right = self.visible_beats()
        self.state.set_view(left_beat=beat - lead * (right - left))
        self.scrolled_away = False

    def go_to_start(self) -> None:
        """Home: the playhead and the view to the song's start."""
        self.transport.set_playhead(0.0)
        self.show_beat(0.0, 0.0)

    def go_to_end(self) -> None:
        """End: the playhead to where the last note ends, shown near the right edge of the view."""
        end = self.song.end_beat()
        self.transport.set_playhead(end)
        self.show_beat(end, 0.9)

    def _user_scrolled(self) -> None:
        self.scrolled_away = True

    def _playing_changed(self, playing: bool) -> None:
        if playing:
            self.scrolled_away = False
            self._follow_playhead(self.transport.playhead)

    def _follow_playhead(self, beat: float) -> None:
        """While playing, a page is turned when the playhead reaches the right edge or leaves the view."""
        if not (self.follow_playhead and self.transport.playing):
            return
        left, right = self.visible_beats()
        inside = left <= beat < right - 2 / self.state.pixels_per_beat
        if self.scrolled_away:
            self.scrolled_away = not inside  # scrolled back to where the playhead is: following resumes
            return
        if not inside:
            self.show_beat(beat)

    def _writing_changed(self, writing: bool) -> None:
        """When a continuation starts, the view moves to the seam (the motif's end) unless it is well in view."""
        self._newest_written = -1.0
        if not (writing and self.song.stream_part == CONTINUATION):
            return
        self.scrolled_away = False
        seam = self.song.motif_end()
        left, right = self.visible_beats()
        if not left + 0.05 * (right - left) <= seam <= left + 0.5 * (right - left):
            self.show_beat(seam, SEAM_LEAD)

    def _follow_writing(self, diff) -> None:
        """While a continuation is written and not played, pages so that its newest notes stay in view."""
        if self.song.stream_part != CONTINUATION or self.scrolled_away:
            return
        written = [note for note in diff.added if note.part == CONTINUATION]
        if not written:
            return
        newest = max(written, key=lambda note: note.end)
        if newest.end < self._newest_written:
            return  # ends before the front (an earlier note was stretched past it to a grid step): the view stays
        self._newest_written = newest.end
        if self.transport.playing and self.follow_playhead:
            return  # the playhead leads the view while the music plays
        left, right = self.visible_beats()
        if left <= newest.start and newest.end <= right:
            return
        if newest.end - newest.start <= (1 - LEAD) * (right - left):
            self.show_beat(newest.start)  # the whole note, a little way in from the left
        else:  # a note held longer than the page (a pedalled chord): its end, where the writing is, near the right
            self.show_beat(newest.end, 1 - LEAD)

    # --- scrolling and zooming ----------------------------------------------------------------

    def _content_beats(self) -> float:
        state = self.state
        visible = self.canvas.width() / state.pixels_per_beat
        return max(self.song.end_beat() + 4 * self.song.beats_per_bar, state.left_beat + visible, 64.0)

    def _sync_scroll_bars(self) -> None:
        state = self.state
        for bar in (self.hbar, self.vbar):
            bar.blockSignals(True)
        width = self.canvas.width()
        self.hbar.setRange(0, max(0, int(self._content_beats() * state.pixels_per_beat) - width))
        self.hbar.setPageStep(max(1, width))
        self.hbar.setSingleStep(max(1, int(state.pixels_per_beat / 4)))
        self.hbar.setValue(int(round(state.left_beat * state.pixels_per_beat)))
        height = self.canvas.height()
        self.vbar.setRange(0, max(0, int(NUM_KEYS * state.key_height) - height))
        self.vbar.setPageStep(max(1, height))
        self.vbar.setSingleStep(max(1, int(state.key_height)))
        self.vbar.setValue(int(round(state.top_key * state.key_height)))
        for bar in (self.hbar, self.vbar):
            bar.blockSignals(False)

    def _hbar_moved(self, value: int) -> None:
        self._user_scrolled()
        self.state.set_view(left_beat=value / self.state.pixels_per_beat)

    def _vbar_moved(self, value: int) -> None:
        self.state.set_view(top_key=value / self.state.key_height, visible_rows=self.canvas.visible_rows())

    def scroll_by(self, pixels_x: float = 0.0, pixels_y: float = 0.0) -> None:
        """Scrolls by pixels."""
        state = self.state
        state.set_view(
            left_beat=state.left_beat + pixels_x / state.pixels_per_beat,
            top_key=state.top_key + pixels_y / state.key_height,
            visible_rows=self.canvas.visible_rows(),
        )

    def zoom_horizontal(self, factor: float, anchor_x: float | None = None) -> None:
        """Zooms time around a pixel of the grid (its beat stays put), the middle by default."""
        state = self.state
        x = self.canvas.width() / 2 if anchor_x is None else anchor_x
        beat = state.beat_at(x)
        new_ppb = state.pixels_per_beat * factor
        state.set_view(pixels_per_beat=new_ppb)
        state.set_view(left_beat=beat - x / state.pixels_per_beat)

    def zoom_vertical(self, factor: float, anchor_y: float | None = None) -> None:
        """Zooms the keys around a pixel of the grid (its row stays put)."""
        state = self.state
        y = self.canvas.height() / 2 if anchor_y is None else anchor_y
        row = state.top_key + y / state.key_height
        state.set_view(key_height=state.key_height * factor)
        state.set_view(top_key=row - y / state.key_height, visible_rows=self.canvas.visible_rows())

    def zoom_to_fit(self) -> None:
        """Shows every note (or the selection), or the first bars of an empty song."""
        notes = [self.song.note(note_id) for note_id in self.state.selection] or self.song.notes()
        notes = [note for note in notes if note is not None]
        width, height = max(self.canvas.width(), 100), max(self.canvas.height(), 60)
        if not notes:
            self.state.set_view(left_beat=0.0, pixels_per_beat=width / (4 * self.song.beats_per_bar))
            return
        start = min(note.start for note in notes)
        end = max(note.end for note in notes)
        low, high = min(note.pitch for note in notes), max(note.pitch for note in notes)
        bar = self.song.bar_at(start)
        start = bar.beat
        span = max(end - start, bar.length)
        rows = max(high - low + 5, 24)
        self.state.set_view(pixels_per_beat=width / (span * 1.04), key_height=height / rows)
        middle = 127 - (low + high) / 2
        self.state.set_view(
            left_beat=start, top_key=middle - self.canvas.visible_rows() / 2, visible_rows=self.canvas.visible_rows()
        )

    def _wheel(self, event: QWheelEvent) -> None:
        """Wheel scrolls; Shift+wheel scrolls sideways; Ctrl+wheel zooms time; Ctrl+Shift or Alt zooms keys."""
        modifiers = event.modifiers()
        angle = event.angleDelta()
        pixels = event.pixelDelta()
        source = self.sender()
        position = event.position()
        if source is not self.canvas:  # anchor zoom on the grid, whichever strip the wheel turned in
            position = self.canvas.mapFrom(source, position.toPoint()).toPointF()
        steps_y = (angle.y() or angle.x()) / 120.0
        if modifiers & Qt.ControlModifier and modifiers & Qt.ShiftModifier or modifiers & Qt.AltModifier:
            steps = (angle.y() or angle.x()) / 120.0
            self.zoom_vertical(ZOOM_STEP**steps, position.y())
        elif modifiers & Qt.ControlModifier:
            self.zoom_horizontal(ZOOM_STEP**steps_y, position.x())
        elif modifiers & Qt.ShiftModifier:
            delta = pixels.y() or pixels.x() or -(angle.y() or angle.x()) / 120.0 * 60
            self._user_scrolled()
            self.scroll_by(pixels_x=-delta if pixels.y() or pixels.x() else delta)
        else:
            dx = -pixels.x() if not pixels.isNull() else -angle.x() / 120.0 * 60
            dy = -pixels.y() if not pixels.isNull() else -angle.y() / 120.0 * 3 * self.state.key_height
            if dx:
                self._user_scrolled()
            self.scroll_by(dx, dy)

    def resizeEvent(self, event) -> None:
        """Keeps the scroll ranges right for the new size."""
        super().resizeEvent(event)
        self.state.set_view(visible_rows=self.canvas.visible_rows())
        self._sync_scroll_bars()

    # --- reacting to the song -----------------------------------------------------------------

    def _notes_changed(self) -> None:
        alive = {note_id for note_id in self.state.selection if self.song.note(note_id) is not None}
        if alive != self.state.selection:
            self.state.select(alive)
        self._sync_scroll_bars()

    def _song_reset(self) -> None:
        self.canvas.cancel_gesture()
        self.state.select(())
        self.state.set_time_range(None)

    # --- editing ------------------------------------------------------------------------------

    def selected_notes(self) -> list[SongNote]:
        """The selected notes, in time order."""
        notes = [self.song.note(note_id) for note_id in self.state.selection]
        return sorted((note for note in notes if note is not None), key=lambda note: (note.start, note.pitch))

    def _guard(self) -> bool:
        """Whether editing is possible now; says why not when it is not."""
        if self.song.is_writing:
            self.message.emit(self.song.lock_message())
            return False
        return True

    def fits(self, notes) -> bool:
        """Whether notes end within the longest song Continuo keeps; says so when they do not."""
        end = max((note.end for note in notes), default=0.0)
        if end > self.song.last_beat():
            self.message.emit(self.song.past_the_end(end))
            return False
        return True

    def select_all(self) -> None:
        """Selects every note."""
        self.state.select(note.id for note in self.song.notes())

    def deselect(self) -> None:
        """Clears the selection and the time range, and abandons a gesture in progress."""
        self.canvas.cancel_gesture()
        self.state.select(())
        self.state.set_time_range(None)

    def fill_range(self) -> tuple[float, float] | None:
        """The beats Fill writes: the time range chosen in the ruler, else the span of the selected notes."""
        if self.state.time_range is not None:
            return self.state.time_range
        notes = self.selected_notes()
        if not notes:
            return None
        return min(note.start for note in notes), max(note.end for note in notes)

    def delete_selection(self) -> None:
        """Deletes the selected notes."""
        if self._guard() and self.state.selection:
            self.song.remove_notes(self.state.selection, "Delete notes")

    def move_selection(self, beats: float = 0.0, semitones: int = 0, text: str = "Move notes") -> None:
        """Moves the selected notes in time and pitch (stopping at the song's start and the keyboard's ends)."""
        notes = self.selected_notes()
        if not notes or not self._guard():
            return
        beats = max(beats, -min(note.start for note in notes))
        semitones = min(max(semitones, -min(note.pitch for note in notes)), 127 - max(note.pitch for note in notes))
        if beats == 0 and semitones == 0:
            return
        moved = [note.with_(start=round(note.start + beats, 9), pitch=note.pitch + semitones) for note in notes]
        if not self.fits(moved):
            return
        self.song.replace_notes(moved, text)
        if semitones:
            self.transport.audition(notes[0].pitch + semitones, notes[0].velocity)
            self.transport.end_audition(notes[0].pitch + semitones)

    def nudge(self, steps: int, by_bar: bool = False) -> None:
        """Moves the selection by grid steps (or bars)."""
        if by_bar:  # the bar the selection starts in (or the playhead's)
            notes = self.selected_notes()
            size = self.song.bar_at(notes[0].start if notes else self.transport.playhead).length
        else:
            size = self.state.step_or_default()
        self.move_selection(beats=steps * size)

    def transpose(self, semitones: int) -> None:
        """Transposes the selection."""
        self.move_selection(semitones=semitones, text="Transpose")

    def quantize_selection(self, ends_too: bool = False) -> None:
        """Snaps the selected notes' starts (and ends) to the grid; all motif notes if none are selected."""
        if not self._guard():
            return
        notes = self.selected_notes() or self.song.notes(MOTIF)
        self.song.quantize([note.id for note in notes], self.state.step_or_default(), ends=ends_too)

    def copy_selection(self) -> None:
        """Puts the selected notes on the clipboard (times relative to the first one)."""
        notes = self.selected_notes()
        if not notes:
            return
        origin = floor_beat(notes[0].start, self.state.step_or_default())
        rows = [[note.pitch, note.velocity, round(note.start - origin, 9), note.length] for note in notes]
        # Plain text with a marker rather than a custom QMimeData: PySide6 6.12 frees a QMimeData handed to
        # the clipboard twice at exit; text works everywhere and round-trips through other apps unchanged.
        QGuiApplication.clipboard().setText(CLIPBOARD_PREFIX + json.dumps(rows))
        self.message.emit(f"Copied {len(notes)} note{'s' * (len(notes) != 1)}")

    def cut_selection(self) -> None:
        """Copies the selection, then deletes it."""
        if self._guard() and self.state.selection:
            self.copy_selection()
            self.song.remove_notes(self.state.selection, "Cut notes")

    def paste(self) -> None:
        """Pastes clipboard notes at the playhead, selects them and moves the playhead past them."""
        if not self._guard():
            return
        text = QGuiApplication.clipboard().text()
        if not text.startswith(CLIPBOARD_PREFIX):
            self.message.emit("Nothing to paste: copy some notes first")
            return
        try:  # the clipboard may hold anything another program put there: checked like a session's notes
            rows = load_json(text[len(CLIPBOARD_PREFIX) :])
            if not isinstance(rows, list) or len(rows) > limits.MAX_NOTES:
                raise ValueError("not a list of notes")
            at = self.transport.playhead
            notes = [
                self.song.new_note(
                    check_whole(p, limits.MIN_PITCH, limits.MAX_PITCH, "pitch"),
                    check_whole(v, limits.MIN_VELOCITY, limits.MAX_VELOCITY, "velocity"),
                    at + check_real(s, 0.0, limits.MAX_BEATS, "start"),
                    check_real(length, 0.0, limits.MAX_BEATS, "length", above=True),
                )
                for p, v, s, length in rows
            ]
        except (ValueError, TypeError):
            self.message.emit("The clipboard holds notes Continuo cannot read")
            return
        if notes and self.fits(notes):
            self.song.add_notes(notes, "Paste notes")
            self.state.select(note.id for note in notes)
            step = self.state.step_or_default()
            self.transport.set_playhead(math.ceil(max(note.end for note in notes) / step - 1e-9) * step)

    def duplicate_selection(self) -> None:
        """Copies the selection to just after itself, and selects the copy."""
        notes = self.selected_notes()
        if not notes or not self._guard():
            return
        step = self.state.step_or_default()
        start = min(note.start for note in notes)
        span = math.ceil((max(note.end for note in notes) - start) / step - 1e-9) * step
        copies = [
            self.song.new_note(note.pitch, note.velocity, note.start + span, note.length, MOTIF) for note in notes
        ]
        if not self.fits(copies):
            return
        self.song.add_notes(copies, "Duplicate notes")
        self.state.select(note.id for note in copies)

    def loop_selection(self) -> None:
        """Loops the selected notes' span (or the current bar), and turns looping on."""
        notes = self.selected_notes()
        song = self.song
        if notes:
            start = song.bar_at(min(note.start for note in notes)).beat
            end = song.bar_line_at_or_after(max(note.end for note in notes))
        else:
            bar = song.bar_at(self.transport.playhead)
            start, end = bar.beat, bar.beat + bar.length
        self.transport.set_loop(start, end, True)

    # --- actions ------------------------------------------------------------------------------

    def _make_actions(self) -> None:
        """The roll's commands, with shortcuts that work while the roll has focus."""
        group = QActionGroup(self)
        for name, text, key, tool in (
            ("tool_draw", "&Draw", "D", DRAW),
            ("tool_select", "&Select", "V", SELECT),
            ("tool_erase", "&Erase", "E", ERASE),
        ):
            action = self._action(name, text, [key], lambda checked=False, tool=tool: self.state.set_tool(tool))
            action.setCheckable(True)
            action.setChecked(self.state.tool == tool)
            group.addAction(action)
        self.state.tool_changed.connect(lambda tool: self.actions_by_name[f"tool_{tool}"].setChecked(True))
        self._action("select_all", "Select &All", [QKeySequence.SelectAll], self.select_all)
        self._action("deselect", "Deselect", ["Escape"], self.deselect)
        self._action("delete", "&Delete", [QKeySequence.Delete, "Backspace"], self.delete_selection)
        self._action("cut", "Cu&t", [QKeySequence.Cut], self.cut_selection)
        self._action("copy", "&Copy", [QKeySequence.Copy], self.copy_selection)
        self._action("paste", "&Paste", [QKeySequence.Paste], self.paste)
        self._action("duplicate", "D&uplicate", ["Ctrl+D"], self.duplicate_selection)
        self._action("nudge_left", "Move Left", ["Left"], lambda: self.nudge(-1))
        self._action("nudge_right", "Move Right", ["Right"], lambda: self.nudge(1))
        self._action("nudge_left_bar", "Move Left a Bar", ["Shift+Left"], lambda: self.nudge(-1, True))
        self._action("nudge_right_bar", "Move Right a Bar", ["Shift+Right"], lambda: self.nudge(1, True))
        self._action("transpose_up", "Transpose Up", ["Up"], lambda: self.transpose(1))
        self._action("transpose_down", "Transpose Down", ["Down"], lambda: self.transpose(-1))
        self._action("octave_up", "Octave Up", ["Shift+Up"], lambda: self.transpose(12))
        self._action("octave_down", "Octave Down", ["Shift+Down"], lambda: self.transpose(-12))
        self._action("quantize", "&Quantize", ["Q"], self.quantize_selection)
        self._action("quantize_ends", "Quantize Starts and Ends", ["Shift+Q"], lambda: self.quantize_selection(True))
        self._action("zoom_in", "Zoom &In", [QKeySequence.ZoomIn, "Ctrl+="], lambda: self.zoom_horizontal(ZOOM_STEP))
        self._action("zoom_out", "Zoom &Out", [QKeySequence.ZoomOut], lambda: self.zoom_horizontal(1 / ZOOM_STEP))
        self._action("zoom_keys_in", "Taller Keys", ["Ctrl+Shift+="], lambda: self.zoom_vertical(ZOOM_STEP))
        self._action("zoom_keys_out", "Shorter Keys", ["Ctrl+Shift+-"], lambda: self.zoom_vertical(1 / ZOOM_STEP))
        self._action("zoom_fit", "Zoom to &Fit", ["Ctrl+0"], self.zoom_to_fit)
        self._action("loop_selection", "&Loop Selection", ["Ctrl+L"], self.loop_selection)
        self._action(
            "loop_toggle",
            "Loop On/Off",
            ["L"],
            lambda: self.transport.set_loop_enabled(not self.transport.loop_enabled),
        )

    def _action(self, name: str, text: str, keys: list, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcuts([QKeySequence(key) for key in keys])
        action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda checked=False: self._run(slot))
        self.addAction(action)
        self.actions_by_name[name] = action
        return action

    def _run(self, slot) -> None:
        """Runs an action; an edit refused while a continuation is written becomes a message."""
        try:
            slot()
        except EditRefusedError as error:  # writing, or past the song's limits: nothing changed
            self.message.emit(str(error))
            self.message.emit(str(error))
