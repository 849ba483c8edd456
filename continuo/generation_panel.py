"""The Continue panel: length, style, sampling, seed, variations, the key lock and pitch range, how the notes
are written (grid, dynamics, notes in the way), the model and its device, progress, and the variations."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from music_transformer import Note
from music_transformer.events import STYLES
from music_transformer.keys import PITCH_CLASS_NAMES, SCALES, Key, detect_key
from music_transformer.limits import (
    MAX_REPETITION_PENALTY,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    MAX_TOP_P,
    MAX_VARIATIONS,
    MIN_REPETITION_PENALTY,
    MIN_SEED,
    MIN_TEMPERATURE,
    MIN_TOP_K,
    MIN_TOP_P,
)

from .generation import AUTO_DEVICE, GenerationController
from .pitch_box import PitchSpinBox
from .song import ANY_STYLE, GenerationSettings, Song, SongLockedError

STYLE_NAMES = {ANY_STYLE: "Auto", "pop-piano": "Pop piano"}  # the rest read well capitalised
STYLE_TIP = "The idiom to continue in; Auto lets the model tell from the motif"
NEWER_STYLE_TIP = "This model was made before this style: load a newer model to choose it"
NO_STYLES_TIP = "This model was made before styles: it continues in the idiom it hears. Load a newer model to choose"


def style_name(style: str) -> str:
    """A style as a musician reads it: "Auto" for any, "Pop piano", "Chorale"."""
    return STYLE_NAMES.get(style, style.replace("-", " ").capitalize())


# The sampling boxes take the library's bounds (music_transformer.limits), which generate() enforces and session
# files are read against. Temperature and top-p must be more than their lower bound (a session refuses 0), so those
# boxes start one step above it. (A "Most likely" choice, beam search, left the panel: on the bundled model it sat
# on a pitch or two and looped, with or without the repetition penalty; bench/repetition.py.)
TEMPERATURE_STEP = 0.05
TOP_P_STEP = 0.01
MAX_SECONDS = 600  # ten minutes: far past any model's training length (generation slides its window)
MAX_BARS = 400
KEY_MODES = (("off", "Off"), ("motif", "From motif"), ("chosen", "Chosen"))
KEY_TIP = (
    "Keep to a key: no note outside its scale is written (the model chooses among the notes in it). "
    "From motif detects the key of the music before (Krumhansl-Schmuckler)"
)
DYNAMICS_CHOICES = (("model", "As written"), ("motif", "The motif's range"))
KEY_DETECT_DELAY_MS = 150  # a burst of edits costs one key detection


class SeedBox(QAbstractSpinBox):
    """The seed's box: a whole number from MIN_SEED to MAX_SEED, the library's bounds (a QSpinBox holds 32 bits
    only, and a seed it cannot show raised OverflowError in the panel's slots). Its API is QSpinBox's."""

    valueChanged = Signal(object)  # noqa: N815 - Qt's name. A Python int: a Qt int overflows past 32 bits

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._value = MIN_SEED
        self.lineEdit().setText(str(MIN_SEED))
        self.editingFinished.connect(self.interpretText)

    def value(self) -> int:
        """The seed shown."""
        return self._value

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt's name (QSpinBox's API)
        """Shows a seed (clamped to the bounds); valueChanged when it differs."""
        value = min(max(int(value), MIN_SEED), MAX_SEED)
        self.lineEdit().setText(str(value))
        if value != self._value:
            self._value = value
            self.valueChanged.emit(value)

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt's name (QSpinBox's API)
        """The seed a text names (the shown one when it names none)."""
        text = text.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_SEED)) else self._value

    def textFromValue(self, value: int) -> str:  # noqa: N802 - Qt's name (QSpinBox's API)
        return str(value)

    def interpretText(self) -> None:  # noqa: N802 - Qt's name (QSpinBox's API)
        """Takes what was typed: a seed within the bounds, else the box shows its seed again."""
        self.setValue(self.valueFromText(self.lineEdit().text()))
        self.lineEdit().setText(str(self._value))

    def validate(self, text: str, position: int):
        if not text:
            return QValidator.Intermediate, text, position
        if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_SEED)):
            return (QValidator.Acceptable if int(text) <= MAX_SEED else QValidator.Intermediate), text, position
        return QValidator.Invalid, text, position

    def fixup(self, text: str) -> str:
        return str(self._value)

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt's name (QSpinBox's API)
        self.setValue(self._value + steps)
        self.selectAll()

    def stepEnabled(self) -> QAbstractSpinBox.StepEnabledFlag:  # noqa: N802 - Qt's name (QSpinBox's API)
        flags = QAbstractSpinBox.StepNone
        if self._value > MIN_SEED:
            flags |= QAbstractSpinBox.StepDownEnabled
        if self._value < MAX_SEED:
            flags |= QAbstractSpinBox.StepUpEnabled
        return flags


class GenerationPanel(QWidget):
    """Edits the song's generation settings; its Continue and Cancel buttons trigger the window's actions."""

    load_requested = Signal()
    key_changed = Signal(object)  # the key a continuation keeps to now (a Key), or None: the roll shades its scale

    def __init__(
        self,
        song: Song,
        controller: GenerationController,
        continue_action: QAction,
        cancel_action: QAction,
        parent: QWidget | None = None,
        fill_action: QAction | None = None,
        from_playhead_action: QAction | None = None,
        accompany_action: QAction | None = None,
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.controller = controller
        self._updating = False
        self._grid_name = "1/16"
        self._detected: Key | None = None
        self._locked: Key | None = None
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a narrow panel puts the field under its label

        length_row = QHBoxLayout()
        self.length_box = QDoubleSpinBox(self)
        self.length_box.setDecimals(1)
        self.length_box.setKeyboardTracking(False)
        self.unit_box = QComboBox(self)
        self.unit_box.addItems(["bars", "seconds"])
        length_row.addWidget(self.length_box, 1)
        length_row.addWidget(self.unit_box)
        form.addRow("Length", length_row)

        self.style_box = QComboBox(self)
        self.style_box.setObjectName("style_box")
        for style in STYLES:
            self.style_box.addItem(style_name(style), style)
        form.addRow("Style", self.style_box)

        self.temperature_box = QDoubleSpinBox(self)
        self.temperature_box.setRange(MIN_TEMPERATURE, MAX_TEMPERATURE)
        self.temperature_box.setSpecialValueText("0 (likeliest)")  # the library picks the likeliest event at 0
        self.temperature_box.setSingleStep(TEMPERATURE_STEP)
        self.temperature_box.setToolTip("Lower is safer and more repetitive, higher more adventurous")
        form.addRow("Temperature", self.temperature_box)
        self.top_k_box = QSpinBox(self)
        self.top_k_box.setRange(MIN_TOP_K, MAX_TOP_K)
        self.top_k_box.setSpecialValueText("off")
        self.top_k_box.setToolTip("Each next step is chosen only among the k likeliest (off: any)")
        form.addRow("Top-k", self.top_k_box)
        self.top_p_box = QDoubleSpinBox(self)
        self.top_p_box.setRange(MIN_TOP_P + TOP_P_STEP, MAX_TOP_P)
        self.top_p_box.setSingleStep(TOP_P_STEP)
        self.top_p_box.setToolTip(
            "Each pitch and loudness is chosen among the likeliest that together make up this share of the "
            "chances; when to play and how long to wait stay the model's (1: any)"
        )
        form.addRow("Top-p", self.top_p_box)
        self.repetition_box = QDoubleSpinBox(self)
        self.repetition_box.setRange(MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY)
        self.repetition_box.setSingleStep(0.25)
        self.repetition_box.setSpecialValueText("off")
        self.repetition_box.setToolTip(
            "Keeps the music from going round in circles: a note struck again and again, or the same few beats "
            "played over and over, grows less likely the longer it goes on (off: as the model would)"
        )
        form.addRow("Avoid loops", self.repetition_box)

        seed_row = QHBoxLayout()
        self.fixed_seed = QCheckBox("Fixed", self)
        self.fixed_seed.setToolTip("A fixed seed writes the same continuation again; otherwise each Continue differs")
        self.seed_box = SeedBox(self)
        seed_row.addWidget(self.fixed_seed)
        seed_row.addWidget(self.seed_box, 1)
        form.addRow("Seed", seed_row)
        self.variations_box = QSpinBox(self)
        self.variations_box.setRange(1, MAX_VARIATIONS)
        self.variations_box.setToolTip("Write several continuations, hear the first while it is written, then pick one")
        form.addRow("Variations", self.variations_box)

        key_row = QHBoxLayout()
        self.key_mode_box = QComboBox(self)
        self.key_mode_box.setObjectName("key_mode_box")
        for mode, text in KEY_MODES:
            self.key_mode_box.addItem(text, mode)
        self.key_mode_box.setToolTip(KEY_TIP)
        self.tonic_box = QComboBox(self)
        self.tonic_box.addItems(list(PITCH_CLASS_NAMES))
        self.scale_box = QComboBox(self)
        self.scale_box.addItems(list(SCALES))
        key_row.addWidget(self.tonic_box)
        key_row.addWidget(self.scale_box, 1)
        form.addRow("Key", self.key_mode_box)
        form.addRow("", key_row)
        range_row = QHBoxLayout()
        self.lowest_box = PitchSpinBox(self)
        self.highest_box = PitchSpinBox(self)
        for box, tip in ((self.lowest_box, "The lowest note written"), (self.highest_box, "The highest note written")):
            box.setRange(0, 127)
            box.setToolTip(f"{tip}: a note name (C4 is middle C) or a MIDI number. The piano: A0 to C8")
        range_row.addWidget(self.lowest_box, 1)
        range_row.addWidget(QLabel("to", self))
        range_row.addWidget(self.highest_box, 1)
        form.addRow("Range", range_row)

        self.snap_box = QCheckBox("", self)
        self.snap_box.setObjectName("snap_box")
        form.addRow(self.snap_box)
        self.end_at_bar_box = QCheckBox("End at a bar line", self)
        self.end_at_bar_box.setObjectName("end_at_bar_box")
        self.end_at_bar_box.setToolTip(
            "Continue writes on to the bar line after the length and ends the phrase there: its last beat starts "
            "no note, and what still sounds is released on the bar line"
        )
        form.addRow(self.end_at_bar_box)
        self.dynamics_box = QComboBox(self)
        for dynamics, text in DYNAMICS_CHOICES:
            self.dynamics_box.addItem(text, dynamics)
        self.dynamics_box.setToolTip(
            "Velocities as the model writes them, or kept within the motif's lowest and highest"
        )
        form.addRow("Dynamics", self.dynamics_box)
        self.keep_box = QCheckBox("Keep notes in the way", self)
        self.keep_box.setToolTip(
            "Fill and Continue from Playhead only add notes; otherwise they replace the notes in their range "
            "(one undo step)"
        )
        form.addRow(self.keep_box)
        self.listen_box = QCheckBox("Play while writing", self)
        self.listen_box.setChecked(True)
        form.addRow(self.listen_box)

        # The window's actions: one enable rule, one shortcut, wherever they are pressed.
        self.continue_button = self._action_button(continue_action, "continue_button")
        self.cancel_button = self._action_button(cancel_action, "cancel_button")
        self.fill_button = self._action_button(fill_action, "fill_button") if fill_action else None
        self.accompany_button = self._action_button(accompany_action, "accompany_button") if accompany_action else None
        self.from_playhead_button = (
            self._action_button(from_playhead_action, "from_playhead_button") if from_playhead_action else None
        )
        buttons = QVBoxLayout()
        first_row, second_row = QHBoxLayout(), QHBoxLayout()
        first_row.addWidget(self.continue_button, 1)
        if self.fill_button is not None:
            first_row.addWidget(self.fill_button, 1)
        if self.from_playhead_button is not None:
            second_row.addWidget(self.from_playhead_button, 1)
        if self.accompany_button is not None:
            second_row.addWidget(self.accompany_button, 1)
        second_row.addWidget(self.cancel_button, 1)
        buttons.addLayout(first_row)
        buttons.addLayout(second_row)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setVisible(False)  # shown while music is written (idle, it looked like a text field)
        self.outcome_label = QLabel("", self)  # how the last writing ended: Done, Stopped
        self.outcome_label.setObjectName("outcome_label")
        self.variation_list = QListWidget(self)
        self.variation_list.setObjectName("variations")
        self.variation_list.setToolTip("Click a variation to put it in the continuation's place (undoable)")
        self.variation_list.setMaximumHeight(120)
        self.variation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.variation_list.setWordWrap(True)

        model_row = QHBoxLayout()
        self.device_box = QComboBox(self)
        self.device_box.addItem("Auto", AUTO_DEVICE)
        self.device_box.addItem("CPU", "cpu")
        self.device_box.addItem("CUDA", "cuda")
        if not torch.cuda.is_available():
            self.device_box.model().item(2).setEnabled(False)
            self.device_box.setItemData(2, "No CUDA GPU on this computer", Qt.ToolTipRole)
        self.load_button = QPushButton("Load…", self)
        self.load_button.setToolTip("Load another model (.safetensors with its .json, or a .pt checkpoint)")
        model_row.addWidget(self.device_box, 1)
        model_row.addWidget(self.load_button)
        self.model_label = QLabel("Loading the model…", self)
        self.model_label.setWordWrap(True)
        self.model_label.setObjectName("model_label")
        self.device_label = QLabel("", self)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.outcome_label)
        layout.addWidget(QLabel("Variations written:", self))
        layout.addWidget(self.variation_list)
        layout.addWidget(QLabel("Model", self))
        layout.addWidget(self.model_label)
        layout.addLayout(model_row)
        layout.addWidget(self.device_label)
        layout.addStretch(1)

        for box in self.numeric_boxes():
            # A typed value counts when it is complete (Enter, leaving the box, Continue), never per keystroke:
            # "1.3" typed over 0.70 would otherwise be taken as 1 and written back over the typing.
            box.setKeyboardTracking(False)
            box.setCorrectionMode(QAbstractSpinBox.CorrectToNearestValue)
        for combo in (self.style_box, self.key_mode_box, self.dynamics_box):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
        for combo in (self.unit_box, self.tonic_box, self.scale_box):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(3)
        self._key_timer = QTimer(self)
        self._key_timer.setSingleShot(True)
        self._key_timer.setInterval(KEY_DETECT_DELAY_MS)
        self._key_timer.timeout.connect(self._detect_key)
        self._show_settings()
        self._detect_key()
        for box in self.numeric_boxes():
            box.valueChanged.connect(self._edited)
        self.unit_box.currentTextChanged.connect(self._unit_changed)
        for combo in (self.style_box, self.key_mode_box, self.tonic_box, self.scale_box, self.dynamics_box):
            combo.currentIndexChanged.connect(self._edited)
        for check in (self.fixed_seed, self.snap_box, self.keep_box, self.end_at_bar_box):
            check.toggled.connect(self._edited)
        self.listen_box.toggled.connect(lambda on: setattr(controller, "listen", on))
        self.load_button.clicked.connect(self.load_requested)
        self.device_box.activated.connect(lambda index: controller.set_device(self.device_box.itemData(index)))
        self.variation_list.itemClicked.connect(self._variation_clicked)
        song.meta_changed.connect(self._meta_changed)
        song.notes_changed.connect(self._key_timer.start)
        song.reset.connect(self.variation_list.clear)
        song.writing_changed.connect(lambda writing: self._update_buttons())
        controller.busy_changed.connect(lambda busy: self._update_buttons())
        controller.about_to_start.connect(self.commit_typing)
        controller.progress.connect(self._progress)
        controller.variations_changed.connect(self._show_variations)
        controller.model_loaded.connect(self._model_loaded)
        controller.model_failed.connect(self._model_failed)
        controller.device_changed.connect(lambda device: self.device_label.setText(f"Running on {device.upper()}"))
        controller.finished.connect(self._finished)
        self.set_grid_name(self._grid_name)
        self._update_buttons()

    def numeric_boxes(self) -> list[QAbstractSpinBox]:
        """Every box a number is typed into."""
        return [
            self.length_box,
            self.temperature_box,
            self.top_k_box,
            self.top_p_box,
            self.repetition_box,
            self.seed_box,
            self.variations_box,
            self.lowest_box,
            self.highest_box,
        ]

    def commit_typing(self) -> None:
        """Takes a value still being typed (Continue pressed with the cursor still in a box)."""
        for box in self.numeric_boxes():
            if box.hasFocus():
                box.interpretText()

    def set_grid_name(self, name: str) -> None:
        """The roll's grid, which written notes are snapped to (the Grid option says which)."""
        self._grid_name = name
        off = name == "Off"
        self.snap_box.setText(f"Snap to grid ({'off' if off else name})")
        self.snap_box.setToolTip(
            "Written notes start and end on the roll's grid, as they are written"
            + (": the roll's grid is off now (choose one in the toolbar)" if off else "")
        )

    # --- settings ⇄ widgets -------------------------------------------------------------------------

    def _show_settings(self) -> None:
        settings = self.song.settings
        self._updating = True
        try:
            self.unit_box.setCurrentText(settings.length_unit)
            self._show_length()
            self.temperature_box.setValue(settings.temperature)
            self.top_k_box.setValue(int(settings.top_k))
            self.top_p_box.setValue(settings.top_p)
            self.fixed_seed.setChecked(settings.seed is not None)
            self.seed_box.setEnabled(settings.seed is not None)
            if settings.seed is not None:
                self.seed_box.setValue(int(settings.seed))
            self.variations_box.setValue(int(settings.variations))
            self.repetition_box.setValue(float(settings.repetition_penalty))
            self.style_box.setCurrentIndex(max(0, self.style_box.findData(settings.style)))
            self.key_mode_box.setCurrentIndex(max(0, self.key_mode_box.findData(settings.key_mode)))
            self._show_key()
            self.lowest_box.setValue(settings.lowest)
            self.highest_box.setValue(settings.highest)
            self.snap_box.setChecked(settings.snap)
            self.end_at_bar_box.setChecked(settings.end_at_bar)
            self.dynamics_box.setCurrentIndex(max(0, self.dynamics_box.findData(settings.dynamics)))
            self.keep_box.setChecked(settings.keep_existing)
        finally:
            self._updating = False

    def _show_key(self) -> None:
        """The key boxes show the chosen key, or (greyed out) the one detected in the motif."""
        settings = self.song.settings
        key = self._detected if settings.key_mode == "motif" else Key(settings.key_tonic, settings.key_scale)
        updating, self._updating = self._updating, True
        try:
            if key is not None:
                self.tonic_box.setCurrentIndex(key.tonic)
                self.scale_box.setCurrentText(key.scale)
            detected = self._detected.name if self._detected is not None else "no notes yet"
            self.key_mode_box.setItemText(1, f"From motif: {detected}")
        finally:
            self._updating = updating
        chosen = settings.key_mode == "chosen"
        for box in (self.tonic_box, self.scale_box):
            box.setEnabled(chosen and not self.song.is_writing)
        locked = key if settings.key_mode != "off" else None
        if locked != self._locked:
            self._locked = locked
            self.key_changed.emit(locked)

    @property
    def locked_key(self) -> Key | None:
        """The key a continuation keeps to now: the chosen one, the motif's, or None (no key lock)."""
        return self._locked

    @property
    def detected_key(self) -> Key | None:
        """The key of the motif, as the Key box shows it (None without notes)."""
        return self._detected

    def _detect_key(self) -> None:
        """The key of the motif (Krumhansl-Schmuckler), shown in the Key box. The finder reads how long each
        pitch class sounds: summed with numpy, so a 40,000-note song costs a millisecond of the GUI thread."""
        arrays = self.song.note_arrays()
        motif = ~arrays.continuation
        durations = np.bincount(arrays.pitches[motif] % 12, weights=(arrays.ends - arrays.starts)[motif], minlength=12)
        self._detected = detect_key([Note(pc, 1, 0.0, float(beats)) for pc, beats in enumerate(durations) if beats > 0])
        self._show_key()

    def _show_length(self) -> None:
        settings = self.song.settings
        if settings.length_unit == "bars":
            self.length_box.setRange(1, MAX_BARS)
            self.length_box.setSuffix(" bars")
        else:
            self.length_box.setRange(1, MAX_SECONDS)
            self.length_box.setSuffix(" s")
        self.length_box.setValue(settings.length)

    def settings_from_widgets(self) -> GenerationSettings:
        """The settings the widgets show."""
        return dataclasses.replace(
            self.song.settings,
            temperature=round(self.temperature_box.value(), 4),
            top_k=self.top_k_box.value(),
            top_p=round(self.top_p_box.value(), 4),
            length=round(self.length_box.value(), 6),
            seed=self.seed_box.value() if self.fixed_seed.isChecked() else None,
            variations=self.variations_box.value(),
            length_unit=self.unit_box.currentText(),
            repetition_penalty=round(self.repetition_box.value(), 4),
            style=self.style_box.currentData(),
            key_mode=self.key_mode_box.currentData(),
            key_tonic=self.tonic_box.currentIndex(),
            key_scale=self.scale_box.currentText(),
            lowest=min(self.lowest_box.value(), self.highest_box.value()),
            highest=max(self.lowest_box.value(), self.highest_box.value()),
            snap=self.snap_box.isChecked(),
            end_at_bar=self.end_at_bar_box.isChecked(),
            dynamics=self.dynamics_box.currentData(),
            keep_existing=self.keep_box.isChecked(),
        )

    def _edited(self, *args) -> None:
        if self._updating:
            return
        if self.key_mode_box.currentData() == "motif" and self.sender() in (self.tonic_box, self.scale_box):
            return  # they show the detected key, not a choice
        self.seed_box.setEnabled(self.fixed_seed.isChecked())
        settings = self.settings_from_widgets()
        if self.key_mode_box.currentData() != "chosen":  # keep the chosen key for when it is chosen again
            settings = dataclasses.replace(
                settings, key_tonic=self.song.settings.key_tonic, key_scale=self.song.settings.key_scale
            )
        try:
            self.song.set_settings(settings)
        except SongLockedError:
            pass  # the continuation is being written: settings wait until it is done
        self._show_settings()  # a range typed upside down is shown in order

    def _unit_changed(self, unit: str) -> None:
        if self._updating:
            return
        song, settings = self.song, self.song.settings
        start = song.motif_end()  # the length converted where a continuation starts: its bars, its tempo
        if unit == "seconds" and settings.length_unit == "bars":
            length = song.seconds_between(start, song.add_bars(start, settings.length))
            length = min(max(length, 1.0), MAX_SECONDS)
        elif unit == "bars" and settings.length_unit == "seconds":
            end = song.to_beats(song.to_seconds(start) + settings.length)
            length = min(max(song.tempo_map.bar_position(end) - song.tempo_map.bar_position(start), 1.0), MAX_BARS)
        else:
            length = settings.length
        try:
            song.set_settings(dataclasses.replace(settings, length_unit=unit, length=round(length, 1)))
        except SongLockedError:
            pass
        self._show_settings()

    def _meta_changed(self, key: str) -> None:
        if key in ("settings", "tempo", "time_signature"):
            self._show_settings()
        elif key == "variations":
            self._show_variations()

    # --- running ------------------------------------------------------------------------------------

    def _action_button(self, action: QAction, name: str) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName(name)
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        button.setMinimumWidth(40)  # the text may be cut in a very narrow panel, the button stays
        return button

    def _update_buttons(self) -> None:
        controller = self.controller
        writing = controller.generating or self.song.is_writing  # settings wait while music streams in
        self.load_button.setEnabled(not controller.generating)
        self.style_box.setEnabled(not writing and controller.model_has_styles)
        self.style_box.setToolTip(STYLE_TIP if controller.model_has_styles else NO_STYLES_TIP)
        items = self.style_box.model()
        for index in range(self.style_box.count()):  # a style the model was made before: shown, not chosen
            known = self.style_box.itemData(index) in controller.model_styles or not controller.model_has_styles
            items.item(index).setEnabled(known)
            items.item(index).setToolTip("" if known else NEWER_STYLE_TIP)
        self.device_box.setEnabled(not controller.generating)
        for box in (
            self.length_box,
            self.unit_box,
            self.temperature_box,
            self.top_k_box,
            self.top_p_box,
            self.repetition_box,
            self.fixed_seed,
            self.seed_box,
            self.variations_box,
            self.snap_box,
            self.end_at_bar_box,
            self.dynamics_box,
            self.keep_box,
        ):
            box.setEnabled(not writing and (box is not self.seed_box or self.fixed_seed.isChecked()))
        for box in (self.key_mode_box, self.lowest_box, self.highest_box):
            box.setEnabled(not writing)
        self._show_key()
        if self.fill_button is not None:
            self.fill_button.setToolTip(self.fill_button.defaultAction().toolTip())
        if controller.loading and not controller.has_model:
            self.model_label.setText("Loading the model…")

    def _progress(self, number: int, count: int, fraction: float) -> None:
        self.progress_bar.setVisible(True)
        self.outcome_label.setText("")
        self.progress_bar.setValue(int(fraction * 1000))
        if count > 1:  # the heard one first (0), then the others behind it (-1)
            behind = f"Variations 2–{count}: " if count > 2 else "Variation 2 of 2: "
            label = behind if number < 0 else f"Variation {number + 1} of {count}: "
        else:
            label = ""
        left = self.controller.seconds_left
        estimate = (
            "" if left is None else f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left"
        )
        self.progress_bar.setFormat(f"{label}{fraction * 100:.0f}%{estimate}")
        if fraction == 0.0 and number == 0:
            self.variation_list.clear()  # a new set is being written (the heard variation comes first)

    def _finished(self, cancelled: bool) -> None:
        self.progress_bar.setVisible(False)
        self.outcome_label.setText("Stopped" if cancelled else "Done")
        self._update_buttons()

    def _show_variations(self) -> None:
        """The set of the continuation in the song; once it is accepted or discarded the list stays, greyed
        out, and takes no clicks (a new Continue or Fill clears it)."""
        current = self.song.variations
        if current is None:
            self.variation_list.setEnabled(False)
            self.variation_list.setToolTip("These variations ended when their continuation was accepted or discarded")
            return
        self.variation_list.clear()
        self.variation_list.setEnabled(True)
        self.variation_list.setToolTip("Click a variation to put it in the continuation's place (undoable)")
        for variation in current.variations:
            mark = "▶ " if variation.number == current.chosen else "   "
            state = "" if variation.complete else " (cut short)"
            item = QListWidgetItem(
                f"{mark}Variation {variation.number + 1}: {len(variation.notes)} notes, seed {variation.seed}{state}"
            )
            item.setData(Qt.UserRole, variation.number)
            self.variation_list.addItem(item)

    def _variation_clicked(self, item: QListWidgetItem) -> None:
        if self.song.variations is not None:
            self.controller.choose_variation(int(item.data(Qt.UserRole)))

    def _model_loaded(self, source: str, description: str) -> None:
        self.model_label.setText(description)
        self.model_label.setToolTip(source)
        self._update_buttons()

    def _model_failed(self, source: str, text: str) -> None:
        if not self.controller.has_model:
            self.model_label.setText(f"No model: {text}. Load a model file to continue.")
        self._update_buttons()

    def choose_checkpoint(self, folder: str = "") -> str | None:
        """Asks for a model file; None when the musician cancels."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a model", folder, "Continuo models (*.safetensors *.pt);;All files (*)"
        )
        return path or None
