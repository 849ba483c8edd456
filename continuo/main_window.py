"""The studio window: the piano roll in the middle, the Continue panel at the right, a toolbar, the menus and
the status bar, wired to the song, playback, generation, MIDI input and the document.

The window only lays these out and connects them. What a command does lives with its owner: the file's life
in document.py, every action and its enable rule in actions.py, crash restore in restore.py. The actions and
the Help windows take the window's parts as a `Studio` (studio.py), never the window itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSpinBox,
    QToolBar,
    QWidget,
)

from .actions import StudioActions
from .autosave import DEFAULT_INTERVAL_MS
from .document import Document
from .drag_out import DragOut
from .duet import DuetController
from .generation import GenerationController
from .generation_panel import GenerationPanel
from .journal import Scan
from .limits import MAX_TEMPO, MIN_TEMPO
from .midi_input import MidiInputController
from .notes import CONTINUATION
from .piano_roll import SNAP_CHOICES, PianoRoll
from .playback.indicator import OutputIndicator
from .playback.player import Player
from .restore import offer_restore, scan_in_background
from .session import check_time_signature
from .settings import Preferences, data_home
from .song import EditRefusedError, Song, SongLockedError
from .status_bar import PositionReadout, StatusBar
from .studio import Studio
from .transport import Transport


class PanelScroller(QScrollArea):
    """The Continue panel's scroll area, which keeps its place when the control that has the focus is greyed out
    (Accept greys the variations list, Continue the settings): the focus goes back to the roll, where the keys
    work, instead of to the next control down, which Qt would scroll into view (the panel jumped to its bottom)."""

    def __init__(self, parent: QWidget, rest: QWidget) -> None:
        super().__init__(parent)
        self._rest = rest

    def focusNextPrevChild(self, next: bool) -> bool:  # noqa: A002, N802 - Qt's names
        """Tab moves on and scrolls to the next control; a greyed-out control hands the focus to the roll."""
        focused = QApplication.focusWidget()
        if focused is not None and not focused.isEnabled() and self.isAncestorOf(focused):
            self._rest.setFocus(Qt.OtherFocusReason)
            return True
        return super().focusNextPrevChild(next)


TIME_SIGNATURES = ["2/4", "3/4", "4/4", "5/4", "3/8", "6/8", "7/8", "9/8", "12/8"]
OTHER_SIGNATURE = "Other…"  # the last entry: asks for any time signature


class MainWindow(QMainWindow):
    """One studio window editing one song."""

    def __init__(
        self,
        home: Path | None = None,
        use_autosave: bool = True,
        autosave_interval_ms: int = DEFAULT_INTERVAL_MS,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.home = Path(home) if home is not None else data_home()
        self.restore_pending = False  # the autosave folder is being read at launch (offer_restore_later)
        self.preferences = Preferences(self.home)
        self.last_error: str | None = None  # the text of the last error dialog (the command line prints it)
        self.song = Song(self)
        self.transport = Transport(self)
        self.roll = PianoRoll(self.song, self.transport, self)
        self.player = Player(self.song, self.transport, self.preferences, self)
        self.generation = GenerationController(self.song, self.player, self)
        # The keyboard is heard through whatever the player plays into now (MIDI thru).
        self.midi = MidiInputController(self.song, self.transport, self._outputs, self.preferences, self)
        self.duet = DuetController(self.midi, self.generation, self.preferences, self)
        self.document = Document(self.song, self.roll, self.transport, self.preferences, self)
        self.studio = Studio(
            window=self,
            song=self.song,
            transport=self.transport,
            roll=self.roll,
            player=self.player,
            generation=self.generation,
            midi=self.midi,
            duet=self.duet,
            document=self.document,
            preferences=self.preferences,
            show_message=self.show_message,
        )
        self.studio_actions = actions = StudioActions(self.studio)
        self.generation_panel = GenerationPanel(
            self.song,
            self.generation,
            actions.continue_action,
            actions.cancel_action,
            self,
            fill_action=actions.fill_action,
            from_playhead_action=actions.from_playhead_action,
            accompany_action=actions.accompany_action,
        )
        self.studio.panel = self.generation_panel
        self.generation.grid_step = lambda: self.roll.state.snap_step  # Snap to the grid: the roll's
        self.setCentralWidget(self.roll)
        self.drag_out = DragOut(self.document, self.roll, self.home)  # the song or the selection out to a DAW
        self.roll.set_corner(self.drag_out)
        self._make_dock()
        self._make_toolbar()
        actions.build_menus(self.menuBar())
        self._make_status_bar()
        self._connect()
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._name_changed(self.document.name)
        if use_autosave:
            self.document.start_autosave(self.home, autosave_interval_ms)
        self.generation.load_model()  # in the background: Continue is ready by the time a motif is drawn
        self.player.open_output()
        if self.player.daw_port_wanted and sys.platform != "win32":
            self.player.set_daw_port(True)  # the port a DAW records from, as the musician left it
        if self.midi.choice:
            self.midi.open_input(self.midi.choice)  # the keyboard chosen last time, in the background
        self.roll.canvas.setFocus()

    # --- the layout ----------------------------------------------------------------------------------------

    def _make_dock(self) -> None:
        dock = QDockWidget("Continue", self)
        dock.setObjectName("continue_dock")
        scroller = PanelScroller(dock, self.roll.canvas)  # the panel scrolls rather than make the window too tall
        scroller.setWidget(self.generation_panel)
        scroller.setWidgetResizable(True)
        scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # narrowed, it wraps; it scrolls down only
        # As narrow as the panel can be, never narrower (no control cut off at the right).
        scroller.setMinimumWidth(
            self.generation_panel.minimumSizeHint().width() + scroller.verticalScrollBar().sizeHint().width()
        )
        scroller.setFrameShape(QScrollArea.NoFrame)
        dock.setWidget(scroller)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)

    def _make_toolbar(self) -> None:
        state, actions = self.roll.state, self.studio_actions
        bar = QToolBar("Tools", self)
        bar.setObjectName("tools")
        bar.setMovable(False)
        self.addToolBar(bar)
        bar.addActions([self.roll.actions_by_name[name] for name in ("tool_draw", "tool_select", "tool_erase")])
        bar.addSeparator()
        # Labels only where the value alone would not say what it is: the toolbar fits a 900-pixel window.
        self.snap_box = self._labelled(bar, " Grid ", QComboBox(self))
        self.snap_box.setToolTip("The grid notes snap to when you draw and move them (hold Alt to leave it)")
        self.snap_box.addItems(list(SNAP_CHOICES))
        self.snap_box.setCurrentText(state.snap_name)
        self.snap_box.setFocusPolicy(Qt.ClickFocus)
        self.snap_box.currentTextChanged.connect(state.set_snap)
        self.snap_box.activated.connect(self._back_to_roll)
        state.snap_changed.connect(self.snap_box.setCurrentText)
        bar.addSeparator()
        self.tempo_box = self._labelled(bar, "", QDoubleSpinBox(self))
        self.tempo_box.setToolTip("Tempo: beats (quarter notes) per minute")
        self.tempo_box.setRange(MIN_TEMPO, MAX_TEMPO)
        self.tempo_box.setDecimals(1)
        self.tempo_box.setSuffix(" BPM")
        self.tempo_box.setValue(self.song.tempo)
        self.tempo_box.setKeyboardTracking(False)
        self.tempo_box.valueChanged.connect(self._tempo_edited)
        self.tempo_box.editingFinished.connect(self._back_to_roll)
        self.signature_box = self._labelled(bar, "", QComboBox(self))
        self.signature_box.setToolTip("Time signature: beats in a bar / the note that gets the beat")
        self.signature_box.addItems(TIME_SIGNATURES + [OTHER_SIGNATURE])
        self.signature_box.setCurrentText("4/4")
        self.signature_box.setFocusPolicy(Qt.ClickFocus)
        self.signature_box.currentTextChanged.connect(self._signature_edited)
        self.signature_box.activated.connect(self._back_to_roll)
        self.velocity_box = self._labelled(bar, " Vel. ", QSpinBox(self))
        self.velocity_box.setRange(1, 127)
        self.velocity_box.setValue(state.velocity)
        self.velocity_box.setKeyboardTracking(False)  # "64" typed is 64, not 6 then 64
        self.velocity_box.setToolTip("Velocity: how hard new notes are struck, 1 (softest) to 127 (loudest)")
        self.velocity_box.valueChanged.connect(lambda value: setattr(state, "velocity", value))
        bar.addSeparator()
        bar.addActions([actions.play_action, actions.loop_action])
        bar.addSeparator()
        bar.addActions([actions.continue_action, actions.cancel_action, actions.accept_action, actions.discard_action])

    @staticmethod
    def _labelled(bar: QToolBar, label: str, box: QWidget) -> QWidget:
        """A box in the toolbar, after its label (if it has one)."""
        if label:
            bar.addWidget(QLabel(label))
        bar.addWidget(box)
        return box

    def _back_to_roll(self, *args) -> None:
        """After a choice in the toolbar, the keys (arrows, Delete) go back to the notes."""
        self.roll.canvas.setFocus()

    def _outputs(self) -> list:
        return self.player.scheduler.sinks

    def _make_status_bar(self) -> None:
        bar = StatusBar(self)  # messages shortened to their room, never cut, the last ones a click away
        self.setStatusBar(bar)
        self.message_line = bar.message_line
        self.position_readout = PositionReadout(self.song, self.transport, self.roll, self)
        self.count_label = QLabel("")
        self._writing_label = QLabel("")  # in the status bar: the toolbar keeps its room for its buttons
        self.output_indicator = OutputIndicator(self.player, self.studio_actions.output_menu, self)
        for widget in (self._writing_label, self.position_readout, self.count_label, self.output_indicator):
            bar.addPermanentWidget(widget)
        self._update_counts()

    # --- the wiring ----------------------------------------------------------------------------------------

    def _connect(self) -> None:
        # Bound methods, not lambdas: Qt disconnects them when the window goes, before its parts are deleted.
        for source in (self.player, self.midi):
            source.message.connect(self._show_long_message)
        for source in (self.generation, self.duet):
            source.message.connect(self._show_message_for_a_while)
        self.roll.message.connect(self.show_message)
        self.document.message.connect(self.show_message)
        self.document.error.connect(self.show_error)
        self.generation.error.connect(self.show_error)
        self.document.name_changed.connect(self._name_changed)
        self.generation_panel.load_requested.connect(self.studio_actions.load_model_dialog)
        self.midi.recorder.counting_in.connect(self._counting_in)
        self.roll.state.snap_changed.connect(self.generation_panel.set_grid_name)
        self.generation_panel.set_grid_name(self.roll.state.snap_name)
        self.generation_panel.key_changed.connect(self._key_changed)
        self._key_changed(self.generation_panel.locked_key)
        self.midi.audio_servers_changed.connect(self.player.servers_changed)
        self.song.reset.connect(self.generation.cancel)
        self.song.undo_stack.cleanChanged.connect(self._clean_changed)
        self.song.notes_changed.connect(self._update_counts)
        self.song.writing_changed.connect(self._writing_changed)
        self.song.meta_changed.connect(self._meta_changed)

    def show_message(self, text: str, timeout_ms: int = 6000) -> None:
        """Shows a message in the status bar."""
        self.statusBar().showMessage(text, timeout_ms)

    def _show_long_message(self, text: str) -> None:
        self.show_message(text, 15000)  # a lost port, a missing synth: worth reading

    def _show_message_for_a_while(self, text: str) -> None:
        self.show_message(text, 10000)

    def _counting_in(self, beats: int) -> None:
        if beats:
            self.show_message(f"Count-in: {beats}", 1000)

    def _key_changed(self, key) -> None:
        """The locked key's scale shaded in the roll and marked on its keyboard (none without a lock)."""
        self.roll.state.set_scale(key.pitch_classes() if key is not None else (), key.tonic if key else None)

    def _clean_changed(self, clean: bool) -> None:
        self.setWindowModified(not clean)

    def show_error(self, title: str, text: str) -> None:
        """An error dialog that does not block (the message is also kept in `last_error`)."""
        self.last_error = text
        self.show_message(text, 10000)
        box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setObjectName("error_dialog")
        box.open()

    def _name_changed(self, name: str) -> None:
        self.setWindowTitle(f"{name}[*] — Continuo")
        self.setWindowModified(self.song.is_modified)

    def _update_counts(self) -> None:
        continuation = int(self.song.note_arrays().continuation.sum())
        motif = len(self.song) - continuation
        # Short, so that the messages beside it keep their room at 900 pixels; the tooltip says it in full.
        self.count_label.setText(f"{motif:,} + {continuation:,} notes" if continuation else f"{motif:,} notes")
        self.count_label.setToolTip(
            f"{motif:,} motif notes and {continuation:,} continuation notes"
            if continuation
            else f"{motif:,} motif notes"
        )

    def _writing_changed(self, writing: bool) -> None:
        continuing = writing and self.song.stream_part == CONTINUATION
        self._writing_label.setText("  Writing the continuation…" if continuing else "")

    def _meta_changed(self, key: str) -> None:
        if key == "tempo" and abs(self.tempo_box.value() - self.song.tempo) > 1e-6:
            self.tempo_box.blockSignals(True)
            self.tempo_box.setValue(self.song.tempo)
            self.tempo_box.blockSignals(False)
        elif key == "time_signature":
            text = "{}/{}".format(*self.song.time_signature)
            if self.signature_box.findText(text) < 0:
                self.signature_box.insertItem(self.signature_box.count() - 1, text)  # before "Other…"
            self.signature_box.blockSignals(True)
            self.signature_box.setCurrentText(text)
            self.signature_box.blockSignals(False)
            self.roll.update()
        if key in ("tempo", "tempo_changes", "time_signature", "metre_changes"):
            self._show_tempo_map()

    def _show_tempo_map(self) -> None:
        """The toolbar's tempo and metre are the song's first; their tooltips say what changes after them."""
        tempo_map = self.song.tempo_map
        tempo_tip = "Tempo at the start: beats (quarter notes) per minute"
        if len(tempo_map.tempi) > 1:
            tempi = [bpm for _, bpm in tempo_map.tempi]
            changes = len(tempi) - 1
            tempo_tip += (
                f". The song changes tempo {changes:,} time{'s' * (changes > 1)} ({min(tempi):g}–{max(tempi):g} BPM); "
                "a new tempo here scales every change alike"
            )
        self.tempo_box.setToolTip(tempo_tip)
        metre_tip = "Time signature of the first bar: beats in a bar / the note that gets the beat"
        if len(tempo_map.metres) > 1:
            later = ", ".join(
                f"{n}/{d} at bar {tempo_map.bar_at(beat).index + 1}" for beat, n, d in tempo_map.metres[1:6]
            )
            metre_tip += f". Then {later}{', …' if len(tempo_map.metres) > 6 else ''} (named in the ruler)"
        self.signature_box.setToolTip(metre_tip)
        self.roll.update()

    def _tempo_edited(self, value: float) -> None:
        try:
            self.song.set_tempo(value)
        except EditRefusedError as error:  # writing, or slower than the song's notes allow
            self.show_message(str(error))
            self._meta_changed("tempo")  # the box shows the song's tempo again

    def _signature_edited(self, text: str) -> None:
        if text == OTHER_SIGNATURE:
            text, accepted = QInputDialog.getText(
                self, "Time Signature", "Beats in a bar / the note value of the beat (for example 11/8):"
            )
            try:
                numerator, denominator = check_time_signature([int(part) for part in text.strip().split("/")])
            except ValueError:
                if accepted and text.strip():
                    self.show_message(f"{text.strip()} is not a time signature Continuo keeps (for example 5/4, 7/8)")
                self._meta_changed("time_signature")  # the box shows the song's time signature again
                return
        else:
            numerator, denominator = (int(part) for part in text.split("/"))
        try:
            self.song.set_time_signature(numerator, denominator)
        except SongLockedError as error:
            self.show_message(str(error))
        self._meta_changed("time_signature")

    # --- what the command line and scripts ask of a window -------------------------------------------------

    def open_path(self, path: str | Path, ask_to_save: bool = True, wait: bool = True) -> bool:
        """Opens a session or a MIDI file in this window (`continuo FILE`; in the background with wait=False)."""
        return self.document.open_path(path, ask_to_save, wait)

    def offer_restore(self, found: Scan | None = None) -> bool:
        """Offers to restore the work of a studio that crashed (`found`: the autosave folder already scanned);
        True if restored."""
        return offer_restore(self.home, self.document, self, lambda text: self.show_message(text, 20000), found)

    def offer_restore_later(self, then: Callable[[bool], None] = lambda restored: None) -> None:
        """Reads the autosave folder on a helper thread, so the window answers at once, then offers to restore
        (a dialog, on the GUI thread) and calls `then(restored)`. A failure is said, never in the way of a start:
        the autosaves stay on disk for the next launch."""

        def scanned(found: Scan | Exception) -> None:
            self.restore_pending = False  # a script may answer the dialog now
            restored = False
            try:
                if isinstance(found, Exception):
                    raise found
                restored = self.offer_restore(found)
            except Exception as error:  # noqa: BLE001 - crash restore never blocks a start
                print(f"continuo: crash restore failed ({type(error).__name__}: {error})", file=sys.stderr)
                self.show_message("Crash restore failed; the autosaves are kept for the next launch", 20000)
            then(restored)

        self.restore_pending = True
        scan_in_background(self.home, self, scanned)

    # --- Qt's events ---------------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accepts MIDI and session files (but not the studio's own clip dragged out, dropped back on it)."""
        if event.source() is None and self.document.accepts_drop(event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        """A dropped MIDI file becomes the motif (undoable); a dropped session opens."""
        if event.source() is not None:  # dragged out of this studio and let go over it: nothing to do
            event.ignore()
            return
        event.acceptProposedAction()
        self.document.drop(event.mimeData().urls())

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stops the model and the sound, asks about unsaved changes; a clean exit removes the autosave."""
        if self.generation.generating:
            self.generation.close()  # cancels, waits for the worker, keeps what was written (one undo step)
        self.duet.stop()
        self.midi.stop_recording()  # the take so far becomes part of the song before the save question
        self.song.commit()  # anything else still streaming in is kept too
        if not self.document.maybe_save():
            event.ignore()
            return
        self.generation.close()
        self.duet.close()
        self.midi.close()
        self.transport.set_playing(False)
        self.player.close()
        self.document.close()
        event.accept()
