"""The studio window: the piano roll, a toolbar, menus, files, autosave and crash restore."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QScrollArea,
    QSpinBox,
    QToolBar,
    QWidget,
)

from music_transformer import MidiFileError

from . import autosave as autosave_module
from .duet import DuetController
from .generation import GenerationController
from .generation_panel import GenerationPanel
from .midi_files import MIDI_SUFFIXES, export_midi, is_midi_path, load_midi
from .midi_input import VIRTUAL_INPUT, MidiInputController
from .piano_roll import SNAP_CHOICES, PianoRoll
from .playback.audio_export import AudioExport
from .playback.player import AUTO, NONE, PORT_PREFIX, SYNTH, VIRTUAL, Player
from .playback.sinks import GM_FAMILIES, GM_INSTRUMENTS
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

    audio_exported = Signal(str, bool)  # path, whether it was written

    def __init__(
        self,
        home: Path | None = None,
        use_autosave: bool = True,
        autosave_interval_ms: int = autosave_module.DEFAULT_INTERVAL_MS,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.home = Path(home) if home is not None else data_home()
        self.preferences = Preferences(self.home)
        self.song = Song(self)
        self.transport = Transport(self)
        self.roll = PianoRoll(self.song, self.transport, self)
        self.player = Player(self.song, self.transport, self.preferences, self)
        self.generation = GenerationController(self.song, self.player, self)
        # The keyboard is heard through whatever the player plays into (MIDI thru).
        self.midi = MidiInputController(
            self.song,
            self.transport,
            thru=lambda: self.player.scheduler.sinks,
            preferences=self.preferences,
            parent=self,
        )
        self.duet = DuetController(self.midi, self.preferences, self)
        self.document_path: Path | None = None
        self._untitled_name = "Untitled"
        self.last_error: str | None = None
        self._audio_export: AudioExport | None = None
        self.setCentralWidget(self.roll)
        self._make_generation_panel()
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._make_toolbar()
        self._make_menus()
        self._position = QLabel("")
        self._count = QLabel("")
        self._output_label = QLabel("")
        self.statusBar().addPermanentWidget(self._position)
        self.statusBar().addPermanentWidget(self._count)
        self.statusBar().addPermanentWidget(self._output_label)
        self.player.message.connect(lambda text: self.show_message(text, 15000))
        self.player.output_changed.connect(self._output_changed)
        self.generation.message.connect(lambda text: self.show_message(text, 10000))
        self.generation.model_failed.connect(self._model_failed)
        self.generation.model_loaded.connect(self._model_loaded)
        self.generation.busy_changed.connect(lambda busy: self._update_generation_actions())
        self.song.reset.connect(self.generation.cancel)
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
        self._user_model_load: str | None = None
        self.generation.load_model()  # in the background: Continue is ready by the time a motif is drawn
        self.player.open_output()
        self.midi.message.connect(lambda text: self.show_message(text, 15000))
        self.duet.message.connect(lambda text: self.show_message(text, 10000))
        self.midi.recorder.counting_in.connect(
            lambda beats: self.show_message(f"Count-in: {beats}", 1000) if beats else None
        )
        if self.midi.choice:
            self.midi.open_input(self.midi.choice)  # the keyboard chosen last time, in the background
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
        self.accept_action.setToolTip("Make the continuation part of the motif (Ctrl+Shift+Enter)")
        self.accept_action.setShortcut(QKeySequence("Ctrl+Shift+Return"))
        self.accept_action.triggered.connect(self.accept_continuation)
        self.discard_action = QAction("Discard", self)
        self.discard_action.setToolTip("Remove the continuation (Ctrl+Backspace)")
        self.discard_action.setShortcut(QKeySequence("Ctrl+Backspace"))
        self.discard_action.triggered.connect(self.discard_continuation)
        self.continue_action = QAction("Continue", self)
        self.continue_action.setToolTip("Write a continuation of the motif (Ctrl+Enter)")
        # Ctrl+Enter on either Enter key: the main one is Return to Qt, the keypad's is Enter
        self.continue_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.continue_action.triggered.connect(self.continue_song)
        self.cancel_action = QAction("Cancel", self)
        self.cancel_action.setToolTip("Stop writing; keep what was written (Ctrl+.)")
        self.cancel_action.setShortcut(QKeySequence("Ctrl+."))
        self.cancel_action.triggered.connect(self.generation.cancel)
        bar.addAction(self.continue_action)
        bar.addAction(self.cancel_action)
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
        self._add(file_menu, "Export &Audio (WAV)…", "Ctrl+Shift+E", self._export_audio_dialog)
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
        for name in (
            "cut",
            "copy",
            "paste",
            "duplicate",
            "delete",
            None,
            "select_all",
            "deselect",
            None,
            "quantize",
            "quantize_ends",
            "transpose_up",
            "transpose_down",
            "octave_up",
            "octave_down",
            "nudge_left",
            "nudge_right",
        ):
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

        playback_menu = menus.addMenu("&Playback")
        self.output_menu = playback_menu.addMenu("&Output")
        self.output_menu.aboutToShow.connect(self._fill_output_menu)
        instrument_menu = playback_menu.addMenu("&Instrument")
        self._instrument_group = QActionGroup(self)
        current = int(self.preferences.get("program", 0))
        for family_index, family in enumerate(GM_FAMILIES):
            family_menu = instrument_menu.addMenu(family)
            for program in range(family_index * 8, family_index * 8 + 8):
                action = family_menu.addAction(GM_INSTRUMENTS[program])
                action.setCheckable(True)
                action.setChecked(program == current)
                action.setActionGroup(self._instrument_group)
                action.triggered.connect(lambda checked=False, program=program: self.player.set_program(program))
        self._add(playback_menu, "Choose &SoundFont…", None, self._soundfont_dialog)
        self._add(playback_menu, "All Notes &Off", "Ctrl+Shift+.", self.player.all_notes_off)

        self._make_record_menu(menus)

        continuation_menu = menus.addMenu("&Continuation")
        continuation_menu.addAction(self.continue_action)
        continuation_menu.addAction(self.cancel_action)
        self._add(continuation_menu, "&Load Model…", None, self._load_model_dialog)
        continuation_menu.addSeparator()
        continuation_menu.addAction(self.accept_action)
        continuation_menu.addAction(self.discard_action)
        self._update_continuation_actions()

    def _make_record_menu(self, menus) -> None:
        """Record: the MIDI input (refreshed as keyboards come and go), takes, thru, quantize, duet."""
        midi, recorder = self.midi, self.midi.recorder
        record_menu = menus.addMenu("&Record")
        self.midi_input_menu = record_menu.addMenu("MIDI &Input")
        self.midi_input_menu.aboutToShow.connect(self._fill_midi_input_menu)
        self.record_action = self._add(
            record_menu, "&Record", "Ctrl+R", lambda: self.record_action.setChecked(midi.toggle_recording())
        )
        self.record_action.setCheckable(True)
        midi.recorder.recording_changed.connect(self.record_action.setChecked)
        record_menu.addSeparator()
        for text, getter, setter in (
            ("Count-&in (1 Bar)", lambda: recorder.count_in_bars > 0, lambda on: recorder.set_count_in(1 if on else 0)),
            ("&Metronome", lambda: recorder.metronome, recorder.set_metronome),
            ("&Overdub (Play While Recording)", lambda: recorder.overdub, recorder.set_overdub),
            ("MIDI &Thru", lambda: midi.thru_enabled, midi.set_thru),
        ):
            action = QAction(text, self)
            action.setCheckable(True)
            action.setChecked(getter())
            action.toggled.connect(setter)
            record_menu.addAction(action)
        quantize_menu = record_menu.addMenu("&Quantize While Recording")
        group = QActionGroup(self)
        for text, step in (("Off", None), ("1/4", 1.0), ("1/8", 0.5), ("1/16", 0.25), ("1/32", 0.125)):
            action = quantize_menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(recorder.quantize_step == step)
            action.setActionGroup(group)
            action.triggered.connect(lambda checked=False, step=step: recorder.set_quantize(step))
        self._add(
            record_menu,
            "Quantize &Last Take",
            None,
            lambda: recorder.quantize_last_take() or self.show_message("Nothing to quantize"),
        )
        record_menu.addSeparator()
        self.duet_action = QAction("&Duet Mode (Call and Response)", self)
        self.duet_action.setCheckable(True)
        self.duet_action.toggled.connect(self._toggle_duet)
        self.duet.enabled_changed.connect(self.duet_action.setChecked)
        record_menu.addAction(self.duet_action)
        self._add(record_menu, "Duet &Pause…", None, self._duet_pause_dialog)

    def _duet_pause_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        seconds, accepted = QInputDialog.getDouble(
            self, "Duet Pause", "The model answers after a pause of (seconds):", self.duet.pause, 0.1, 10.0, 2
        )
        if accepted:
            self.duet.set_pause(seconds)

    def _toggle_duet(self, on: bool) -> None:
        if on and not self.duet.enabled:
            if self.midi.input is None:
                self.show_message("Choose a MIDI input first (Record ▸ MIDI Input)")
                self.duet_action.setChecked(False)
                return
            self.duet.start()
        elif not on:
            self.duet.stop()

    def _fill_midi_input_menu(self) -> None:
        menu = self.midi_input_menu
        menu.clear()
        current = self.midi.input.port_name if self.midi.input is not None else ""
        group = QActionGroup(menu)
        for text, value in (
            [("None", "")]
            + [(name, name) for name in self.midi.available]
            + [("The Studio's Own Input Port", VIRTUAL_INPUT)]
        ):
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(
                value == (VIRTUAL_INPUT if self.midi.input is not None and self.midi.input.virtual else current)
            )
            action.setActionGroup(group)
            action.triggered.connect(lambda checked=False, value=value: self.midi.open_input(value))
        if not self.midi.available:
            menu.addSeparator()
            menu.addAction("No keyboard found (plug one in; this list updates by itself)").setEnabled(False)

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
        self._update_generation_actions()
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
            self.show_message(str(error))

    def _signature_edited(self, text: str) -> None:
        numerator, denominator = (int(part) for part in text.split("/"))
        try:
            self.song.set_time_signature(numerator, denominator)
        except SongLockedError as error:
            self.show_message(str(error))

    def _loop_changed(self) -> None:
        self.roll.actions_by_name["loop_toggle"].setChecked(self.transport.loop_enabled)

    def _playing_changed(self, playing: bool) -> None:
        self.play_action.setChecked(playing)
        self.play_action.setText("Stop" if playing else "Play")

    # --- continuation -------------------------------------------------------------------------

    def _make_generation_panel(self) -> None:
        self.generation_panel = GenerationPanel(self.song, self.generation, self)
        self.generation_panel.load_requested.connect(self._load_model_dialog)
        dock = QDockWidget("Continue", self)
        dock.setObjectName("continue_dock")
        scroller = QScrollArea(dock)  # the panel scrolls rather than making the window taller than the screen
        scroller.setWidget(self.generation_panel)
        scroller.setWidgetResizable(True)
        scroller.setFrameShape(QScrollArea.NoFrame)
        dock.setWidget(scroller)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        self.generation_dock = dock

    def _update_generation_actions(self) -> None:
        if not hasattr(self, "continue_action"):
            return
        generating = self.generation.generating
        self.continue_action.setEnabled(not generating and not self.song.is_writing and self.generation.has_model)
        self.cancel_action.setEnabled(generating)

    def continue_song(self) -> bool:
        """Writes a continuation of the motif with the model (Continue); it plays as it is written."""
        return self.generation.continue_song()

    def load_model(self, path: str | Path) -> None:
        """Loads another model file in the background; on failure the current model stays, with a message."""
        self._user_model_load = str(path)
        self.generation.load_model(str(path))

    def _load_model_dialog(self) -> None:
        path = self.generation_panel.choose_checkpoint(str(self._dialog_folder()))
        if path:
            self.load_model(path)

    def _model_loaded(self, source: str, description: str) -> None:
        self._update_generation_actions()
        if self._user_model_load == source:
            self._user_model_load = None
            self.show_message(f"Model loaded: {description}")
            if self.song.model != source:
                try:
                    self.song.set_model(source)
                except SongLockedError:
                    pass

    def _model_failed(self, source: str, text: str) -> None:
        self._update_generation_actions()
        if self._user_model_load == source:
            self._user_model_load = None
            self.show_error("Cannot load the model", text)
        else:
            self.show_message(text, 15000)

    # --- sound --------------------------------------------------------------------------------

    def _output_changed(self, name: str) -> None:
        self._output_label.setText(f"♪ {name}" if name else "No sound output")
        self._output_label.setToolTip(self.player.output_error or "")

    def _fill_output_menu(self) -> None:
        menu = self.output_menu
        menu.clear()
        group = QActionGroup(menu)
        choice = self.player.choice
        entries = [
            (AUTO, "Automatic (built-in synth, else the Continuo port)"),
            (SYNTH, "Built-in Synth (FluidSynth)"),
            (VIRTUAL, "Continuo Virtual MIDI Port"),
        ]
        ports = self.player.port_names  # scanned on a helper thread: opening a MIDI client takes ~80 ms
        self.player.refresh_ports()  # for the next time the menu opens
        entries += [(PORT_PREFIX + name, f"MIDI: {name}") for name in ports]
        entries.append((NONE, "No Sound"))
        for value, text in entries:
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(value == choice)
            action.setActionGroup(group)
            action.triggered.connect(lambda checked=False, value=value: self.player.open_output(value))
        if not ports:
            menu.addSeparator()
            menu.addAction("No MIDI ports found (connect a device, start JACK or load snd-seq)").setEnabled(False)

    def _soundfont_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a SoundFont", str(self._dialog_folder()), "SoundFonts (*.sf2 *.sf3);;All files (*)"
        )
        if path:
            self.player.set_soundfont(path)

    def export_audio(self, path: str | Path, what: str = "everything") -> bool:
        """Renders the song (or a part) through FluidSynth to a WAV file in the background, with progress.

        Returns False if it could not start; `audio_exported(path, ok)` tells when it is done.
        """
        path = Path(path)
        if path.suffix.lower() != ".wav":
            path = path.with_name(path.name + ".wav")
        if self._audio_export is not None:
            self.show_message("An audio export is already running")
            return False
        part = None if what == "everything" else what
        notes = self.song.performance_notes(part)
        if not notes:
            self.show_error("Cannot export", f"{path.name}: there are no notes to export")
            return False
        progress = QProgressDialog(f"Rendering {path.name}…", "Cancel", 0, 1000, self)
        progress.setObjectName("audio_export_progress")
        progress.setWindowModality(Qt.WindowModal)
        progress.setMinimumDuration(300)
        export = AudioExport(
            notes, path, self.preferences.get("soundfont"), int(self.preferences.get("program", 0)), self
        )
        self._audio_export = export
        export.progress.connect(lambda fraction: progress.setValue(int(fraction * 1000)))
        progress.canceled.connect(export.cancel)

        def done(ok: bool, text: str) -> None:
            self._audio_export = None
            progress.reset()
            progress.deleteLater()
            if ok:
                self.show_message(text)
            elif text:
                self.show_error("Cannot export audio", text)
            self.audio_exported.emit(str(path), ok)

        export.finished.connect(done)
        export.start()
        return True

    def _export_audio_dialog(self) -> None:
        stem = self.document_path.stem if self.document_path else self._untitled_name
        path, _ = QFileDialog.getSaveFileName(
            self, "Export audio", str(self._dialog_folder() / f"{stem}.wav"), "WAV audio (*.wav)"
        )
        if path:
            self.export_audio(path)

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
            self.show_error("Cannot import now", str(error))
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
        box = QMessageBox(
            QMessageBox.Warning,
            "Unsaved changes",
            f"Save the changes to {name}?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
            self,
        )
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
        path, _ = QFileDialog.getOpenFileName(
            self, "Open", str(self._dialog_folder()), f"{OPEN_FILTER};;{SESSION_FILTER};;{MIDI_FILTER}"
        )
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

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accepts MIDI and session files."""
        urls = event.mimeData().urls()
        if (
            urls
            and urls[0].isLocalFile()
            and (is_midi_path(urls[0].toLocalFile()) or urls[0].toLocalFile().endswith(SUFFIX))
        ):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
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
            self.autosave = autosave_module.Autosave(
                self.song, self.home / "autosave", interval_ms, view_state=self.view_state, parent=self
            )
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
        box = QMessageBox(
            QMessageBox.Question,
            "Restore unsaved work?",
            f"Continuo closed unexpectedly while you were editing {name}.\nRestore the work autosaved at {when}?",
            QMessageBox.NoButton,
            self,
        )
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

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stops the model and the sound, asks about unsaved changes; a clean exit removes the autosave."""
        if self.generation.generating:
            self.generation.close()  # cancels, waits for the worker, keeps what was written (one undo step)
        self.duet.stop()
        self.midi.stop_recording()  # the take so far becomes part of the song before the save question
        self.song.commit()  # anything else still streaming in is kept too
        if not self.maybe_save():
            event.ignore()
            return
        self.generation.close()
        self.duet.close()
        self.midi.close()
        self.transport.set_playing(False)
        self.player.close()
        if self._audio_export is not None:
            self._audio_export.cancel()
            self._audio_export.wait()
        if self.autosave is not None:
            self.autosave.close()
            self.autosave = None
        event.accept()
