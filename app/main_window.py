"""The studio window: the piano roll, a toolbar, menus, files, autosave and crash restore."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QSpinBox, QToolBar, QWidget)

from music_transformer import MidiFileError

from . import autosave as autosave_module
from .midi_files import MIDI_SUFFIXES, export_midi, is_midi_path, load_midi
from .piano_roll import SNAP_CHOICES, PianoRoll
from .session import SUFFIX, SessionError, read_session, write_session
from .settings import Preferences, data_home
from .song import CONTINUATION, MAX_TEMPO, MIN_TEMPO, Song, SongLockedError
from .transport import Transport

SESSION_FILTER = f"Continuo sessions (*{SUFFIX})"
MIDI_FILTER = "MIDI files (" + " ".join(f"*{suffix}" for suffix in MIDI_SUFFIXES) + ")"
OPEN_FILTER = f"Sessions and MIDI files (*{SUFFIX} " + " ".join(f"*{suffix}" for suffix in MIDI_SUFFIXES) + ")"
TIME_SIGNATURES = ["2/4", "3/4", "4/4", "5/4", "6/8", "7/8", "9/8", "12/8"]


class MainWindow(QMainWindow):
    """One studio window editing one song."""

    def __init__(self, home: Path | None = None, use_autosave: bool = True,
                 autosave_interval_ms: int = autosave_module.DEFAULT_INTERVAL_MS, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = Path(home) if home is not None else data_home()
        self.preferences = Preferences(self.home)
        self.song = Song(self)
        self.transport = Transport(self)
        self.roll = PianoRoll(self.song, self.transport, self)
        self.document_path: Path | None = None
        self._untitled_name = "Untitled"
        self.last_error: str | None = None
        self.setCentralWidget(self.roll)
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._make_toolbar()
        self._make_menus()
        self._position = QLabel("")
        self._count = QLabel("")
        self.statusBar().addPermanentWidget(self._position)
        self.statusBar().addPermanentWidget(self._count)
        self.roll.message.connect(self.show_message)
        self.roll.position_changed.connect(self._position.setText)
        self.song.undo_stack.cleanChanged.connect(self._clean_changed)
        self.song.notes_changed.connect(self._update_counts)
        self.song.writing_changed.connect(self._writing_changed)
        self.song.meta_changed.connect(self._meta_changed)
        self._update_title()
        self._update_counts()
        self.autosave: autosave_module.Autosave | None = None
        if use_autosave:
            self._start_autosave(autosave_interval_ms)
        self.roll.canvas.setFocus()

    # --- building the window ------------------------------------------------------------------

    def _make_toolbar(self) -> None:
        bar = QToolBar("Tools", self)
        bar.setObjectName("tools")
        bar.setMovable(False)
        self.addToolBar(bar)
        for name in ("tool_draw", "tool_select", "tool_erase"):
            bar.addAction(self.roll.actions_by_name[name])
        bar.addSeparator()
        bar.addWidget(QLabel(" Grid "))
        self.snap_box = QComboBox(self)
        self.snap_box.addItems(list(SNAP_CHOICES))
        self.snap_box.setCurrentText(self.roll.state.snap_name)
        self.snap_box.setFocusPolicy(Qt.ClickFocus)
        self.snap_box.currentTextChanged.connect(self.roll.state.set_snap)
        self.snap_box.activated.connect(self._back_to_roll)
        self.roll.state.snap_changed.connect(self.snap_box.setCurrentText)
        bar.addWidget(self.snap_box)
        bar.addSeparator()
        bar.addWidget(QLabel(" Tempo "))
        self.tempo_box = QDoubleSpinBox(self)
        self.tempo_box.setRange(MIN_TEMPO, MAX_TEMPO)
        self.tempo_box.setDecimals(1)
        self.tempo_box.setSuffix(" BPM")
        self.tempo_box.setValue(self.song.tempo)
        self.tempo_box.setKeyboardTracking(False)
        self.tempo_box.valueChanged.connect(self._tempo_edited)
        self.tempo_box.editingFinished.connect(self._back_to_roll)
        bar.addWidget(self.tempo_box)
        bar.addWidget(QLabel(" Time "))
        self.signature_box = QComboBox(self)
        self.signature_box.addItems(TIME_SIGNATURES)
        self.signature_box.setCurrentText("4/4")
        self.signature_box.setFocusPolicy(Qt.ClickFocus)
        self.signature_box.currentTextChanged.connect(self._signature_edited)
        self.signature_box.activated.connect(self._back_to_roll)
        bar.addWidget(self.signature_box)
        bar.addWidget(QLabel(" Velocity "))
        self.velocity_box = QSpinBox(self)
        self.velocity_box.setRange(1, 127)
        self.velocity_box.setValue(self.roll.state.velocity)
        self.velocity_box.setToolTip("Velocity of new notes")
        self.velocity_box.valueChanged.connect(lambda value: setattr(self.roll.state, "velocity", value))
        bar.addWidget(self.velocity_box)
        bar.addSeparator()
        self.play_action = QAction("Play", self)
        self.play_action.setCheckable(True)
        self.play_action.setShortcut(QKeySequence("Space"))
        self.play_action.setShortcutContext(Qt.WindowShortcut)
        self.play_action.triggered.connect(self.transport.set_playing)
        self.transport.playing_changed.connect(self._playing_changed)
        bar.addAction(self.play_action)
        loop = self.roll.actions_by_name["loop_toggle"]
        loop.setCheckable(True)
        self.transport.loop_changed.connect(self._loop_changed)
        bar.addAction(loop)
        bar.addSeparator()
        self.accept_action = QAction("Accept", self)
        self.accept_action.setToolTip("Make the continuation part of the motif (Ctrl+Return)")
        self.accept_action.setShortcut(QKeySequence("Ctrl+Return"))
        self.accept_action.triggered.connect(self.accept_continuation)
        self.discard_action = QAction("Discard", self)
        self.discard_action.setToolTip("Remove the continuation (Ctrl+Backspace)")
        self.discard_action.setShortcut(QKeySequence("Ctrl+Backspace"))
        self.discard_action.triggered.connect(self.discard_continuation)
        bar.addAction(self.accept_action)
        bar.addAction(self.discard_action)
        self._writing_label = QLabel("")
        bar.addWidget(self._writing_label)

    def _make_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        self._add(file_menu, "&New", QKeySequence.New, self.new_song)
        self._add(file_menu, "&Open…", QKeySequence.Open, self._open_dialog)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._add(file_menu, "&Import MIDI as Motif…", "Ctrl+I", self._import_dialog)
        file_menu.addSeparator()
        self._add(file_menu, "&Save", QKeySequence.Save, self.save)
        self._add(file_menu, "Save &As…", QKeySequence.SaveAs, self.save_as)
        export_menu = file_menu.addMenu("&Export MIDI")
        self._add(export_menu, "&Everything…", "Ctrl+E", lambda: self._export_dialog("everything"))
        self._add(export_menu, "&Motif Only…", None, lambda: self._export_dialog("motif"))
        self._add(export_menu, "&Continuation Only…", None, lambda: self._export_dialog("continuation"))
        file_menu.addSeparator()
        self._add(file_menu, "&Quit", QKeySequence.Quit, self.close)

        edit_menu = menus.addMenu("&Edit")
        undo = self.song.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.Undo)
        redo = self.song.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.undo_action, self.redo_action = undo, redo
        edit_menu.addAction(undo)
        edit_menu.addAction(redo)
        edit_menu.addSeparator()
        actions = self.roll.actions_by_name
        for name in ("cut", "copy", "paste", "duplicate", "delete", None, "select_all", "deselect", None,
                     "quantize", "quantize_ends", "transpose_up", "transpose_down", "octave_up", "octave_down",
                     "nudge_left", "nudge_right"):
            edit_menu.addSeparator() if name is None else edit_menu.addAction(actions[name])
        tools_menu = edit_menu.addMenu("&Tool")
        for name in ("tool_draw", "tool_select", "tool_erase"):
            tools_menu.addAction(actions[name])

        view_menu = menus.addMenu("&View")
        for name in ("zoom_in", "zoom_out", "zoom_keys_in", "zoom_keys_out", "zoom_fit"):
            view_menu.addAction(actions[name])

        transport_menu = menus.addMenu("&Transport")
        transport_menu.addAction(self.play_action)
        self._add(transport_menu, "Go to &Start", "Home", lambda: self.transport.set_playhead(0.0))
        transport_menu.addAction(actions["loop_toggle"])
        transport_menu.addAction(actions["loop_selection"])

        continuation_menu = menus.addMenu("&Continuation")
        continuation_menu.addAction(self.accept_action)
        continuation_menu.addAction(self.discard_action)
        self._update_continuation_actions()

    def _add(self, menu, text: str, shortcut, slot) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda checked=False: slot())
        menu.addAction(action)
        return action

    # --- reacting to the song -----------------------------------------------------------------

    def show_message(self, text: str, timeout_ms: int = 6000) -> None:
        """Shows a message in the status bar."""
        self.statusBar().showMessage(text, timeout_ms)

    def _back_to_roll(self, *args) -> None:
        """After a choice in the toolbar, the keys (arrows, Delete) go back to the notes."""
        self.roll.canvas.setFocus()

    def _clean_changed(self, clean: bool) -> None:
        self.setWindowModified(not clean)

    def _update_title(self) -> None:
        name = self.document_path.name if self.document_path else "Untitled"
        self.setWindowTitle(f"{name}[*] — Continuo")
        self.setWindowModified(self.song.is_modified)

    def _update_counts(self) -> None:
        motif = sum(1 for note in self.song.notes() if note.part != CONTINUATION)
        continuation = len(self.song) - motif
        text = f"{motif} motif notes"
        if continuation:
            text += f", {continuation} continuation"
        self._count.setText(text)
        self._update_continuation_actions()

    def _update_continuation_actions(self) -> None:
        has = any(note.part == CONTINUATION for note in self.song.notes()) and not self.song.is_writing
        if hasattr(self, "accept_action"):
            self.accept_action.setEnabled(has)
            self.discard_action.setEnabled(has)

    def _writing_changed(self, writing: bool) -> None:
        self._writing_label.setText("  Writing the continuation…" if writing else "")
        self.undo_action.setEnabled(not writing and self.song.undo_stack.canUndo())
        self.redo_action.setEnabled(not writing and self.song.undo_stack.canRedo())
        self._update_continuation_actions()

    def _meta_changed(self, key: str) -> None:
        if key == "tempo" and abs(self.tempo_box.value() - self.song.tempo) > 1e-6:
            self.tempo_box.blockSignals(True)
            self.tempo_box.setValue(self.song.tempo)
            self.tempo_box.blockSignals(False)
        elif key == "time_signature":
            text = "{}/{}".format(*self.song.time_signature)
            if self.signature_box.findText(text) < 0:
                self.signature_box.addItem(text)
            self.signature_box.blockSignals(True)
            self.signature_box.setCurrentText(text)
            self.signature_box.blockSignals(False)
            self.roll.update()

    def _tempo_edited(self, value: float) -> None:
        try:
            self.song.set_tempo(value)
        except SongLockedError as error:
            self.show_message(str(error).capitalize())

    def _signature_edited(self, text: str) -> None:
        numerator, denominator = (int(part) for part in text.split("/"))
        try:
            self.song.set_time_signature(numerator, denominator)
        except SongLockedError as error:
            self.show_message(str(error).capitalize())

    def _loop_changed(self) -> None:
        self.roll.actions_by_name["loop_toggle"].setChecked(self.transport.loop_enabled)

    def _playing_changed(self, playing: bool) -> None:
        self.play_action.setChecked(playing)
        self.play_action.setText("Stop" if playing else "Play")

    # --- continuation -------------------------------------------------------------------------

    def accept_continuation(self) -> None:
        """The continuation joins the motif (undoable)."""
        if not self.song.is_writing and self.song.accept_continuation():
            self.show_message("The continuation is now part of the motif")

    def discard_continuation(self) -> None:
        """Removes the continuation (undoable)."""
        if not self.song.is_writing and self.song.discard_continuation():
            self.show_message("Continuation discarded (Undo brings it back)")

    # --- files --------------------------------------------------------------------------------

    def show_error(self, title: str, text: str) -> None:
        """An error dialog that does not block (the message is also kept in `last_error`)."""
        self.last_error = text
        self.show_message(text, 10000)
        box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setObjectName("error_dialog")
        box.open()

    def view_state(self) -> dict:
        """The view worth keeping with a session."""
        return {"roll": self.roll.state.to_dict(), "transport": self.transport.to_dict()}

    def _apply_view_state(self, view: dict) -> None:
        if isinstance(view.get("roll"), dict):
            self.roll.state.load_dict(view["roll"])
        if isinstance(view.get("transport"), dict):
            self.transport.load_dict(view["transport"])

    def _set_document(self, path: Path | None) -> None:
        self.document_path = path
        if self.autosave is not None:
            self.autosave.set_document(str(path) if path else None)
        if path is not None:
            self.preferences.add_recent_file(path)
        self._update_title()

    def open_path(self, path: str | Path, ask_to_save: bool = True) -> bool:
        """Opens a session or a MIDI file as the song; on any problem, a dialog and the song untouched."""
        path = Path(path)
        if self.song.is_writing:
            self.show_error("Cannot open now", "Wait until the continuation is written, then open the file.")
            return False
        if is_midi_path(path):
            try:
                notes, tempo = load_midi(self.song, path)
            except MidiFileError as error:
                self.show_error("Cannot open the MIDI file", str(error))
                return False
            if ask_to_save and not self.maybe_save():
                return False
            # A new document from the file; the model and generation settings carry over from the last one.
            self.song.load(notes, {"tempo": tempo, "settings": self.song.settings, "model": self.song.model})
            self._set_document(None)
            self._untitled_name = path.stem  # Save suggests the MIDI file's name, never its path
            self.setWindowTitle(f"{path.name}[*] — Continuo")
            self.roll.zoom_to_fit()
            self.transport.set_playhead(0.0)
            self.show_message(f"Opened {path.name}: {len(notes)} notes at {tempo:g} BPM")
            self.preferences.add_recent_file(path)
            return True
        try:
            session = read_session(path)
        except SessionError as error:
            self.show_error("Cannot open the session", str(error))
            return False
        if ask_to_save and not self.maybe_save():
            return False
        self.song.load(session.notes, session.meta)
        self._apply_view_state(session.view)
        self._set_document(path)
        self.show_message(f"Opened {path.name}")
        return True

    def import_motif(self, path: str | Path) -> bool:
        """Replaces the motif with a MIDI file's notes, as one undoable step."""
        path = Path(path)
        try:
            notes, tempo = load_midi(self.song, path)
            self.song.replace_motif(notes, tempo, text=f"Import {path.name}")
        except MidiFileError as error:
            self.show_error("Cannot import the MIDI file", str(error))
            return False
        except SongLockedError as error:
            self.show_error("Cannot import now", str(error).capitalize())
            return False
        self.roll.zoom_to_fit()
        self.show_message(f"Imported {len(notes)} notes from {path.name} as the motif (Undo takes it back)")
        return True

    def save(self) -> bool:
        """Saves to the session file, asking for a name the first time."""
        if self.document_path is None:
            return self.save_as()
        return self.save_to(self.document_path)

    def save_as(self, path: str | Path | None = None) -> bool:
        """Saves under a new name (asked for when not given)."""
        if path is None:
            suggestion = self._dialog_folder() / f"{self._untitled_name}{SUFFIX}"
            chosen, _ = QFileDialog.getSaveFileName(self, "Save session", str(suggestion), SESSION_FILTER)
            if not chosen:
                return False
            path = chosen
        path = Path(path)
        if path.suffix.lower() != SUFFIX:
            path = path.with_name(path.name + SUFFIX)
        return self.save_to(path)

    def save_to(self, path: Path) -> bool:
        """Writes the session file atomically; on failure, a dialog and nothing lost."""
        try:
            write_session(self.song, path, self.view_state())
        except OSError as error:
            self.show_error("Cannot save", f"{path.name}: cannot be written ({error.strerror or error})")
            return False
        self.song.undo_stack.setClean()
        self._set_document(path)
        self.show_message(f"Saved {path.name}")
        return True

    def export_midi(self, path: str | Path, what: str = "everything") -> bool:
        """Exports everything, the motif or the continuation as a MIDI file."""
        path = Path(path)
        if path.suffix.lower() not in MIDI_SUFFIXES:
            path = path.with_name(path.name + ".mid")
        try:
            count = export_midi(self.song, path, what)
        except MidiFileError as error:
            self.show_error("Cannot export", str(error))
            return False
        self.show_message(f"Exported {count} notes to {path.name}")
        return True

    def new_song(self) -> bool:
        """Starts an empty song (asking to save the current one)."""
        if not self.maybe_save():
            return False
        self.song.load([])
        self._untitled_name = "Untitled"
        self._set_document(None)
        self.transport.set_playhead(0.0)
        return True

    def maybe_save(self) -> bool:
        """If there are unsaved changes, asks whether to save them; False means the user cancelled."""
        if not self.song.is_modified:
            return True
        name = self.document_path.name if self.document_path else "this song"
        box = QMessageBox(QMessageBox.Warning, "Unsaved changes", f"Save the changes to {name}?",
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        box.setObjectName("unsaved_changes")
        box.setDefaultButton(QMessageBox.Save)
        answer = box.exec()
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def _dialog_folder(self) -> Path:
        if self.document_path is not None:
            return self.document_path.parent
        recent = self.preferences.recent_files()
        return Path(recent[0]).parent if recent else Path.home()

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open", str(self._dialog_folder()),
                                              f"{OPEN_FILTER};;{SESSION_FILTER};;{MIDI_FILTER}")
        if path:
            self.open_path(path)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import MIDI as motif", str(self._dialog_folder()), MIDI_FILTER)
        if path:
            self.import_motif(path)

    def _export_dialog(self, what: str) -> None:
        stem = self.document_path.stem if self.document_path else "Untitled"
        suggestion = self._dialog_folder() / (f"{stem}.mid" if what == "everything" else f"{stem}-{what}.mid")
        path, _ = QFileDialog.getSaveFileName(self, f"Export MIDI ({what})", str(suggestion), MIDI_FILTER)
        if path:
            self.export_midi(path, what)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.preferences.recent_files()
        for path in recent:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda checked=False, path=path: self.open_path(path))
        if not recent:
            self.recent_menu.addAction("No recent files").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear", self.preferences.clear_recent_files)

    # --- drag and drop ------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        """Accepts MIDI and session files."""
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile() and (is_midi_path(urls[0].toLocalFile())
                                               or urls[0].toLocalFile().endswith(SUFFIX)):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        """A dropped MIDI file becomes the motif (undoable); a dropped session opens."""
        path = event.mimeData().urls()[0].toLocalFile()
        event.acceptProposedAction()
        # Opening may ask a question in a dialog; do it after the drop has finished.
        if is_midi_path(path):
            QTimer.singleShot(0, lambda: self.import_motif(path))
        else:
            QTimer.singleShot(0, lambda: self.open_path(path))

    # --- autosave and restore -----------------------------------------------------------------

    def _start_autosave(self, interval_ms: int) -> None:
        try:
            self.autosave = autosave_module.Autosave(self.song, self.home / "autosave", interval_ms,
                                                     view_state=self.view_state, parent=self)
        except OSError as error:
            self.show_message(f"Autosave is off: {error.strerror or error}", 15000)
            return
        self.autosave.failed.connect(lambda text: self.show_message(text, 15000))

    def offer_restore(self) -> bool:
        """If an earlier studio crashed with unsaved work, asks whether to restore it; True if restored."""
        orphans = autosave_module.find_orphans(self.home / "autosave")
        if not orphans:
            return False
        orphan = orphans[0]
        for other in orphans[1:]:
            other.release()  # offered at a later launch
        when = time.strftime("%H:%M on %d %b", time.localtime(orphan.saved_at))
        name = Path(orphan.document).name if orphan.document else "an untitled song"
        box = QMessageBox(QMessageBox.Question, "Restore unsaved work?",
                          f"Continuo closed unexpectedly while you were editing {name}.\n"
                          f"Restore the work autosaved at {when}?", QMessageBox.NoButton, self)
        box.setObjectName("restore_dialog")
        restore_button = box.addButton("Restore", QMessageBox.AcceptRole)
        discard_button = box.addButton("Discard", QMessageBox.DestructiveRole)
        box.addButton("Not Now", QMessageBox.RejectRole)
        box.setDefaultButton(restore_button)
        box.exec()
        clicked = box.clickedButton()
        if clicked is restore_button:
            try:
                view = autosave_module.restore(orphan, self.song)
            except SessionError as error:
                orphan.release()
                self.show_error("Cannot restore", f"{error}. The autosave is kept in {orphan.directory}.")
                return False
            self._apply_view_state(view)
            self.document_path = Path(orphan.document) if orphan.document else None
            if self.autosave is not None:
                self.autosave.set_document(orphan.document)
            self._update_title()
            self.song.undo_stack.resetClean()
            self.setWindowModified(True)
            orphan.discard()
            self.show_message(f"Restored {len(self.song)} notes from the autosave; save to keep them")
            return True
        if clicked is discard_button:
            orphan.discard()
        else:
            orphan.release()
        return False

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Asks about unsaved changes; a clean exit removes the autosave."""
        if self.song.is_writing:
            self.song.end_continuation()  # keep what was written so far
        if not self.maybe_save():
            event.ignore()
            return
        if self.autosave is not None:
            self.autosave.close()
            self.autosave = None
        event.accept()
