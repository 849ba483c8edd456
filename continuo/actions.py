"""Every action of the studio window, with the rule that enables it, and the menus they make.

One `QAction` per command: the menus, the toolbar, the Continue panel's buttons and the shortcuts all
trigger the same action, so each is enabled in one place (`StudioActions._update`). The menus whose
entries change (recent files, MIDI outputs, MIDI inputs) are filled each time they open.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDoubleSpinBox, QFileDialog, QInputDialog, QMenu, QMenuBar

from music_transformer.keys import PITCH_CLASS_NAMES as PITCH_NAMES

from . import help as studio_help
from .backends.general_midi import GM_FAMILIES, GM_INSTRUMENTS
from .document import EVERYTHING
from .generation import NO_FILL_TIP
from .midi_input import VIRTUAL_INPUT
from .playback.player import AUTO, NONE, PORT_PREFIX, SYNTH, VIRTUAL
from .song import CONTINUATION, MOTIF, EditRefusedError, SongLockedError

if TYPE_CHECKING:
    from .studio import Studio

EDIT_ACTIONS = ("cut", "copy", "paste", "duplicate", "delete", None, "select_all", "deselect", None, "quantize",
                "quantize_ends", "transpose_up", "transpose_down", "octave_up", "octave_down", "nudge_left",
                "nudge_right")  # fmt: skip
TOOLS = ("tool_draw", "tool_select", "tool_erase")
ZOOMS = ("zoom_in", "zoom_out", "zoom_keys_in", "zoom_keys_out", "zoom_fit")
RECORD_QUANTIZE = (("Off", None), ("1/4", 1.0), ("1/8", 0.5), ("1/16", 0.25), ("1/32", 0.125))


class StudioActions(QObject):
    """The window's actions; the roll's own editing actions are in `PianoRoll.actions_by_name`."""

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio.window)
        self.studio = studio
        song, transport, generation, document = studio.song, studio.transport, studio.generation, studio.document
        recorder = studio.midi.recorder
        self.roll_actions = studio.roll.actions_by_name
        # File
        self.new_action = self._action("&New", QKeySequence.New, document.new_song)
        self.open_action = self._action("&Open…", QKeySequence.Open, document.open_dialog)
        self.import_action = self._action("&Import MIDI as Motif…", "Ctrl+I", document.import_dialog)
        self.save_action = self._action("&Save", QKeySequence.Save, document.save)
        self.save_as_action = self._action("Save &As…", QKeySequence.SaveAs, document.save_as)
        self.export_actions = [
            self._action("&Everything…", "Ctrl+E", lambda: document.export_midi_dialog(EVERYTHING)),
            self._action("&Motif Only…", None, lambda: document.export_midi_dialog(MOTIF)),
            self._action("&Continuation Only…", None, lambda: document.export_midi_dialog(CONTINUATION)),
        ]
        self.export_audio_action = self._action("Export &Audio (WAV)…", "Ctrl+Shift+E", document.export_audio_dialog)
        self.quit_action = self._action("&Quit", QKeySequence.Quit, studio.window.close)
        # Edit
        self.undo_action = song.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.Undo)
        self.redo_action = song.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        # Transport
        self.play_action = self._action("Play", "Space", transport.set_playing, checkable=True)
        self.play_action.setShortcutContext(Qt.WindowShortcut)
        roll = studio.roll
        self.go_to_start_action = self._action("Go to &Start", "Home", roll.go_to_start)
        self.go_to_end_action = self._action("Go to &End", "End", roll.go_to_end)
        roll.follow_playhead = bool(studio.preferences.get("follow_playhead", True))
        self.follow_playhead_action = self._option("&Follow Playhead", roll.follow_playhead, self._set_follow)
        self.loop_action = self.roll_actions["loop_toggle"]
        self.loop_action.setCheckable(True)
        self.loop_action.setIconText("Loop")  # the toolbar's short name
        # Playback
        self.soundfont_action = self._action("Choose &SoundFont…", None, self.soundfont_dialog)
        self.all_notes_off_action = self._action("All Notes &Off", "Ctrl+Shift+.", studio.player.all_notes_off)
        self.daw_port_action = self._option(
            "MIDI Port “Continuo” for a &DAW", studio.player.daw_port_wanted, studio.player.set_daw_port
        )
        if sys.platform == "win32":  # Windows' MIDI has no ports a program makes for itself
            self.daw_port_action.setEnabled(False)
            self.daw_port_action.setToolTip("Windows has no virtual MIDI ports: play into a loopMIDI port instead")
        else:
            self.daw_port_action.setToolTip(
                "Plays everything the studio plays into its own MIDI port “Continuo” too, besides the output: "
                "record it in your DAW"
            )
        studio.player.daw_port_changed.connect(self._daw_port_changed)
        # Record
        self.record_action = self._action("&Record", "Ctrl+R", self._toggle_recording, checkable=True)
        self.record_options = [
            self._option("Count-&in (1 Bar)", recorder.count_in_bars > 0, lambda on: recorder.set_count_in(int(on))),
            self._option("&Metronome", recorder.metronome, recorder.set_metronome),
            self._option("&Overdub (Play While Recording)", recorder.overdub, recorder.set_overdub),
            self._option("MIDI &Thru", studio.midi.thru_enabled, studio.midi.set_thru),
        ]
        self.quantize_last_take_action = self._action("Quantize &Last Take", None, self._quantize_last_take)
        self.duet_action = self._option("&Duet Mode (Call and Response)", False, self._toggle_duet)
        self.duet_pause_action = self._action("Duet &Pause…", None, self.duet_pause_dialog)
        # Continuation
        self.continue_action = self._action("Continue", ["Ctrl+Return", "Ctrl+Enter"], generation.continue_song)
        self.continue_action.setToolTip("Write a continuation of the motif (Ctrl+Enter)")  # either Enter key
        self.fill_action = self._action("Fill", "Ctrl+F", self.fill)
        self.accompany_action = self._action("Accompany", "Ctrl+Shift+A", self.accompany)
        self.from_playhead_action = self._action(
            "Continue from Playhead", ["Ctrl+Alt+Return", "Ctrl+Alt+Enter"], self.continue_from_playhead
        )
        self.from_playhead_action.setIconText("From Playhead")
        self.cancel_action = self._action("Cancel", "Ctrl+.", generation.cancel)
        self.cancel_action.setToolTip("Stop writing; keep what was written (Ctrl+.)")
        self.load_model_action = self._action("&Load Model…", None, self.load_model_dialog)
        self.accept_action = self._action("Accept", "Ctrl+Shift+Return", self._accept)
        self.accept_action.setToolTip("Make the continuation part of the motif (Ctrl+Shift+Enter)")
        self.discard_action = self._action("Discard", "Ctrl+Backspace", self._discard)
        self.discard_action.setToolTip("Remove the continuation (Ctrl+Backspace)")
        # Help
        self.shortcuts_action = self._action("&Keyboard Shortcuts", "F1", self.show_shortcuts)
        self.getting_started_action = self._action("&Getting Started", None, self.show_getting_started)
        self.about_action = self._action("&About Continuo", None, self.show_about)
        self._musicians_tips()
        # The states they follow
        transport.playing_changed.connect(self._playing_changed)
        transport.loop_changed.connect(lambda: self.loop_action.setChecked(transport.loop_enabled))
        recorder.recording_changed.connect(self.record_action.setChecked)
        studio.duet.enabled_changed.connect(self.duet_action.setChecked)
        for signal in (song.notes_changed, song.writing_changed, generation.busy_changed, generation.finished,
                       generation.model_loaded, generation.model_failed, studio.roll.state.selection_changed,
                       studio.roll.state.time_range_changed):  # fmt: skip
            signal.connect(self._update)
        self._update()

    def _action(self, text: str, keys, slot: Callable, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if keys is not None:
            action.setShortcuts([QKeySequence(key) for key in (keys if isinstance(keys, list) else [keys])])
        action.setCheckable(checkable)
        if checkable:
            action.triggered.connect(slot)
        else:
            action.triggered.connect(lambda checked=False: slot())
        return action

    @staticmethod
    def tip(action: QAction, words: str) -> None:
        """A tooltip in a musician's words, ending with the action's own keys (so it cannot drift from them)."""
        keys = [key.toString(QKeySequence.NativeText) for key in action.shortcuts()]
        action.setToolTip(f"{words} ({keys[0]})" if keys else words)

    def _musicians_tips(self) -> None:
        roll = self.roll_actions
        for action, words in (
            (roll["tool_draw"], "Draw notes: click or drag in the grid; right-click erases"),
            (roll["tool_select"], "Select notes: click them or drag a box around them, then move or stretch them"),
            (roll["tool_erase"], "Erase notes: click them or drag across them"),
            (self.play_action, "Play from the playhead, or stop"),
            (self.loop_action, "Play the marked bars over and over (drag in the ruler's top strip to mark them)"),
            (self.continue_action, "Let the model write what comes next after your notes"),
            (
                self.accompany_action,
                "Keep the selected notes (Ctrl-drag on the keyboard selects a range of pitches) and let the model "
                "write another part around them, in the panel's pitch range",
            ),
            (self.cancel_action, "Stop writing; what was written stays"),
            (self.accept_action, "Keep the continuation: it becomes part of your music, to continue again"),
            (self.discard_action, "Throw the continuation away (Undo brings it back)"),
            (self.go_to_start_action, "Back to the start of the song"),
            (self.go_to_end_action, "To the end of the song"),
        ):
            self.tip(action, words)

    def _option(self, text: str, on: bool, setter: Callable[[bool], None]) -> QAction:
        """A checkable menu entry for an on/off setting."""
        action = QAction(text, self)
        action.setCheckable(True)
        action.setChecked(on)
        action.toggled.connect(setter)
        return action

    # --- what enables what ---------------------------------------------------------------------------------

    def _update(self, *args) -> None:
        song, generation = self.studio.song, self.studio.generation
        writing = song.is_writing
        free = not generation.generating and not writing
        self.continue_action.setEnabled(free and generation.has_model)
        self.cancel_action.setEnabled(generation.generating)
        span = self.studio.roll.fill_range()
        if generation.has_model and not generation.model_has_styles:
            fill_tip = NO_FILL_TIP
        elif span is None:
            fill_tip = "Fill: first choose a time range (drag in the ruler) or select notes"
        else:
            fill_tip = "Write new notes into the time range that join the music before and after it (Ctrl+F)"
        self.fill_action.setEnabled(free and generation.can_fill and span is not None)
        self.fill_action.setToolTip(fill_tip)
        if self.studio.roll.state.time_range is not None:
            self.from_playhead_action.setEnabled(free and generation.can_fill)
            self.from_playhead_action.setToolTip(
                fill_tip if not generation.can_fill else "A time range is chosen: fill it (Ctrl+Alt+Enter)"
            )
        else:
            self.from_playhead_action.setEnabled(free and generation.has_model)
            self.from_playhead_action.setToolTip(
                "Continue the music before the playhead from there; later notes are replaced unless the panel keeps "
                "them (Ctrl+Alt+Enter)"
            )
        self.accompany_action.setEnabled(free and generation.has_model and len(song) > 0)
        has_continuation = not writing and bool(song.note_arrays().continuation.any())
        self.accept_action.setEnabled(has_continuation)
        self.discard_action.setEnabled(has_continuation)
        self.undo_action.setEnabled(not writing and song.undo_stack.canUndo())
        self.redo_action.setEnabled(not writing and song.undo_stack.canRedo())

    def _playing_changed(self, playing: bool) -> None:
        self.play_action.setChecked(playing)
        self.play_action.setText("Stop" if playing else "Play")

    # --- the commands that are more than one call ----------------------------------------------------------

    def fill(self) -> None:
        """Fill: the time range chosen in the ruler, or the span of the selected notes."""
        span = self.studio.roll.fill_range()
        if span is None:
            self.studio.show_message("Fill: first choose a time range (drag in the ruler) or select notes")
            return
        self.studio.generation.fill(*span)

    def accompany(self) -> None:
        """Accompany: keeps the selected notes (or, with none selected, those outside the panel's pitch range) and
        writes another part around them."""
        self.studio.generation.accompany(self.studio.roll.state.selection)

    def continue_from_playhead(self) -> None:
        """Continue from Playhead; with a time range chosen in the ruler, fills it instead. Either says how many
        notes it set aside, and that Undo brings them back."""
        song = self.studio.song
        span = self.studio.roll.state.time_range
        before = len(song)
        if span is not None:
            started = self.studio.generation.fill(*span)
        else:
            started = self.studio.generation.continue_from(self.studio.transport.playhead)
        set_aside = before - len(song)  # a stream takes out the notes it replaces as it opens
        if started and set_aside > 0:
            where = "in the time range" if span is not None else "from the playhead on"
            notes = f"{set_aside:,} note{'s' * (set_aside != 1)}"
            self.studio.show_message(f"Set aside the {notes} {where} for the new music (Undo brings them back)")

    def _accept(self) -> None:
        if not self.studio.song.is_writing and self.studio.song.accept_continuation():
            self.studio.show_message("The continuation is now part of the motif")

    def _discard(self) -> None:
        if not self.studio.song.is_writing and self.studio.song.discard_continuation():
            self.studio.show_message("Continuation discarded (Undo brings it back)")

    def show_shortcuts(self) -> None:
        """Help ▸ Keyboard Shortcuts (F1): every key, searchable."""
        studio_help.show_once(self.studio.window, "shortcuts_dialog", lambda: studio_help.ShortcutsDialog(self.studio))

    def show_getting_started(self) -> None:
        """Help ▸ Getting Started."""
        studio_help.show_once(
            self.studio.window, "getting_started", lambda: studio_help.getting_started(self.studio.window)
        )

    def show_about(self) -> None:
        """Help ▸ About Continuo: the version, the model's card, the licences."""
        about = self.studio.window.findChild(studio_help.AboutDialog)
        if about is not None:  # a new one reads the card of the model in use now
            about.setObjectName("")
            about.close()
            about.deleteLater()
        studio_help.show_once(self.studio.window, "about_dialog", lambda: studio_help.AboutDialog(self.studio))

    def _daw_port_changed(self, on: bool) -> None:
        """The option shows whether the port is open (it unticks itself when the port cannot open)."""
        self.daw_port_action.blockSignals(True)
        self.daw_port_action.setChecked(on)
        self.daw_port_action.blockSignals(False)

    def _set_follow(self, on: bool) -> None:
        self.studio.roll.follow_playhead = on
        self.studio.preferences.set("follow_playhead", on)

    def _toggle_recording(self, checked: bool = False) -> None:
        self.record_action.setChecked(self.studio.midi.toggle_recording())  # stays up if a take cannot start

    def _quantize_last_take(self) -> None:
        try:
            quantized = self.studio.midi.recorder.quantize_last_take()
        except EditRefusedError as error:
            self.studio.show_message(str(error))
            return
        if not quantized:
            self.studio.show_message("Nothing to quantize")

    def _toggle_duet(self, on: bool) -> None:
        duet = self.studio.duet
        if on and not duet.enabled:
            if self.studio.midi.input is None:
                self.studio.show_message("Choose a MIDI input first (Record ▸ MIDI Input)")
                self.duet_action.setChecked(False)
                return
            duet.start()
        elif not on:
            duet.stop()

    def duet_pause_dialog(self) -> None:
        """Asks how long a pause ends the musician's phrase."""
        duet = self.studio.duet
        dialog = QInputDialog(self.studio.window)
        dialog.setObjectName("duet_pause_dialog")
        dialog.setWindowTitle("Duet Pause")
        dialog.setLabelText("The model answers after a pause of (seconds):")
        dialog.setInputMode(QInputDialog.DoubleInput)
        dialog.setDoubleRange(0.1, 10.0)
        dialog.setDoubleDecimals(2)
        dialog.setDoubleValue(duet.pause)
        for box in dialog.findChildren(QDoubleSpinBox):
            box.setKeyboardTracking(False)  # the value typed counts when it is complete, as in every box
        if dialog.exec():
            duet.set_pause(dialog.doubleValue())

    def soundfont_dialog(self) -> None:
        """Asks for a soundfont for the built-in synth."""
        folder = str(self.studio.document.dialog_folder())
        path, _ = QFileDialog.getOpenFileName(
            self.studio.window, "Choose a SoundFont", folder, "SoundFonts (*.sf2 *.sf3);;All files (*)"
        )
        if path:
            self.studio.player.set_soundfont(path)

    def load_model_dialog(self) -> None:
        """Asks for a model file and loads it in the background."""
        panel = self.studio.panel  # the panel's own file dialog, which knows the models' files
        path = panel.choose_checkpoint(str(self.studio.document.dialog_folder())) if panel is not None else None
        if path:
            self.studio.generation.choose_model(path)

    # --- menus ---------------------------------------------------------------------------------------------

    def build_menus(self, menus: QMenuBar) -> None:
        """The window's menu bar."""
        file_menu = menus.addMenu("&File")
        file_menu.addActions([self.new_action, self.open_action])
        self.recent_menu = self._filled_when_opened(file_menu.addMenu("Open &Recent"), self.fill_recent_menu)
        file_menu.addAction(self.import_action)
        file_menu.addSeparator()
        file_menu.addActions([self.save_action, self.save_as_action])
        file_menu.addMenu("&Export MIDI").addActions(self.export_actions)
        file_menu.addAction(self.export_audio_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)

        roll = self.roll_actions
        edit_menu = menus.addMenu("&Edit")
        edit_menu.addActions([self.undo_action, self.redo_action])
        edit_menu.addSeparator()
        for name in EDIT_ACTIONS:
            edit_menu.addSeparator() if name is None else edit_menu.addAction(roll[name])
        edit_menu.addMenu("&Tool").addActions([roll[name] for name in TOOLS])
        view_menu = menus.addMenu("&View")
        view_menu.addActions([roll[name] for name in ZOOMS])
        view_menu.addSeparator()
        view_menu.addAction(self.follow_playhead_action)
        menus.addMenu("&Transport").addActions(
            [self.play_action, self.go_to_start_action, self.go_to_end_action, self.loop_action, roll["loop_selection"]]
        )

        playback_menu = menus.addMenu("&Playback")
        self.output_menu = self._filled_when_opened(playback_menu.addMenu("&Output"), self.fill_output_menu)
        self._fill_instrument_menu(playback_menu.addMenu("&Instrument"))
        playback_menu.addActions([self.soundfont_action, self.all_notes_off_action])
        playback_menu.addSeparator()
        playback_menu.addAction(self.daw_port_action)
        playback_menu.setToolTipsVisible(True)

        record_menu = menus.addMenu("&Record")
        self.midi_input_menu = self._filled_when_opened(record_menu.addMenu("MIDI &Input"), self.fill_midi_input_menu)
        record_menu.addAction(self.record_action)
        record_menu.addSeparator()
        record_menu.addActions(self.record_options)
        self._fill_quantize_menu(record_menu.addMenu("&Quantize While Recording"))
        record_menu.addAction(self.quantize_last_take_action)
        record_menu.addSeparator()
        record_menu.addActions([self.duet_action, self.duet_pause_action])

        continuation_menu = menus.addMenu("&Continuation")
        continuation_menu.addActions(
            [
                self.continue_action,
                self.from_playhead_action,
                self.fill_action,
                self.accompany_action,
                self.cancel_action,
            ]
        )
        self.key_menu = self._filled_when_opened(continuation_menu.addMenu("&Key Lock"), self.fill_key_menu)
        continuation_menu.addAction(self.load_model_action)
        continuation_menu.addSeparator()
        continuation_menu.addActions([self.accept_action, self.discard_action])

        help_menu = menus.addMenu("&Help")
        help_menu.addActions([self.shortcuts_action, self.getting_started_action])
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    @staticmethod
    def _filled_when_opened(menu: QMenu, fill: Callable[[], None]) -> QMenu:
        """A menu whose entries change (files, ports): `fill` makes them each time it opens."""
        menu.aboutToShow.connect(fill)
        return menu

    @staticmethod
    def _choices(menu: QMenu, entries: list[tuple[object, str]], chosen: object, choose: Callable) -> None:
        """Checkable entries of which one is chosen: `choose(value)` when one is picked."""
        group = QActionGroup(menu)
        for value, text in entries:
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(value == chosen)
            action.setActionGroup(group)
            action.triggered.connect(lambda checked=False, value=value: choose(value))

    def _fill_instrument_menu(self, menu: QMenu) -> None:
        current = int(self.studio.preferences.get("program", 0))
        group = QActionGroup(self)
        for family_index, family in enumerate(GM_FAMILIES):
            family_menu = menu.addMenu(family)
            for program in range(family_index * 8, family_index * 8 + 8):
                action = family_menu.addAction(GM_INSTRUMENTS[program])
                action.setCheckable(True)
                action.setChecked(program == current)
                action.setActionGroup(group)
                action.triggered.connect(lambda checked=False, p=program: self.studio.player.set_program(p))

    def _fill_quantize_menu(self, menu: QMenu) -> None:
        recorder = self.studio.midi.recorder
        entries = [(step, text) for text, step in RECORD_QUANTIZE]
        self._choices(menu, entries, recorder.quantize_step, recorder.set_quantize)

    def fill_key_menu(self) -> None:
        """Continuation ▸ Key Lock: off, the key detected in the motif, or the key chosen in the panel."""
        menu, song = self.key_menu, self.studio.song
        menu.clear()
        settings = song.settings
        detected = self.studio.panel.detected_key if self.studio.panel is not None else None
        chosen = f"{PITCH_NAMES[settings.key_tonic]} {settings.key_scale}"
        entries = [
            ("off", "&Off"),
            ("motif", f"From &Motif ({detected.name if detected else 'no notes yet'})"),
            ("chosen", f"&Chosen Key ({chosen})"),
        ]
        self._choices(menu, entries, settings.key_mode, self._set_key_mode)

    def _set_key_mode(self, mode: str) -> None:
        song = self.studio.song
        try:
            song.set_settings(dataclasses.replace(song.settings, key_mode=mode))
        except SongLockedError as error:
            self.studio.show_message(str(error))

    def fill_recent_menu(self) -> None:
        """Open Recent: the files opened or saved lately, newest first."""
        menu, preferences = self.recent_menu, self.studio.preferences
        menu.clear()
        recent = preferences.recent_files()
        for path in recent:
            action = menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda checked=False, path=path: self.studio.document.open_path(path, wait=False))
        if not recent:
            menu.addAction("No recent files").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear", preferences.clear_recent_files)

    def fill_output_menu(self) -> None:
        """Playback ▸ Output: the built-in synth, the studio's own port, other programs' MIDI inputs, none."""
        menu, player = self.output_menu, self.studio.player
        menu.clear()
        entries = [
            (AUTO, "Automatic (built-in synth, else the Continuo port)"),
            (SYNTH, "Built-in Synth (FluidSynth)"),
            (VIRTUAL, "Continuo Virtual MIDI Port"),
        ]
        ports = player.port_names  # scanned on a helper thread: opening a MIDI client takes ~80 ms
        player.refresh_ports()  # for the next time the menu opens
        entries += [(PORT_PREFIX + name, f"MIDI: {name}") for name in ports] + [(NONE, "No Sound")]
        self._choices(menu, entries, player.choice, player.open_output)
        if not ports:
            menu.addSeparator()
            menu.addAction("No MIDI ports found (connect a device, start JACK or load snd-seq)").setEnabled(False)

    def fill_midi_input_menu(self) -> None:
        """Record ▸ MIDI Input: none, the keyboards plugged in now, the studio's own input port."""
        menu, midi = self.midi_input_menu, self.studio.midi
        menu.clear()
        if midi.input is None:
            current = ""
        else:
            current = VIRTUAL_INPUT if midi.input.virtual else midi.input.port_name
        entries = [("", "None")] + [(name, name) for name in midi.available]
        self._choices(menu, entries + [(VIRTUAL_INPUT, "The Studio's Own Input Port")], current, midi.open_input)
        if not midi.available:
            menu.addSeparator()
            menu.addAction("No keyboard found (plug one in; this list updates by itself)").setEnabled(False)
