"""The Continue panel: length, temperature, top-k, top-p, seed, variations, the model and its device, progress."""

from __future__ import annotations

import dataclasses

import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
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

from music_transformer.events import STYLES

from .generation import AUTO_DEVICE, MAX_VARIATIONS, GenerationController
from .song import ANY_STYLE, GenerationSettings, Song, SongLockedError

STYLE_NAMES = {ANY_STYLE: "Auto", "pop-piano": "Pop piano"}  # the rest read well capitalised
STYLE_TIP = "The idiom to continue in; Auto lets the model tell from the motif"
NO_STYLES_TIP = "This model was made before styles: it continues in the idiom it hears. Load a newer model to choose"


def style_name(style: str) -> str:
    """A style as a musician reads it: "Auto" for any, "Pop piano", "Chorale"."""
    return STYLE_NAMES.get(style, style.replace("-", " ").capitalize())


MAX_SECONDS = 600  # ten minutes: far past any model's training length (generation slides its window)
MAX_BARS = 400


class GenerationPanel(QWidget):
    """Edits the song's generation settings; its Continue and Cancel buttons trigger the window's actions."""

    load_requested = Signal()

    def __init__(
        self,
        song: Song,
        controller: GenerationController,
        continue_action: QAction,
        cancel_action: QAction,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.controller = controller
        self._updating = False
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)

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

        self.decoding_box = QComboBox(self)
        self.decoding_box.addItems(["Sample", "Most likely"])
        self.decoding_box.setToolTip(
            "Sample: a new continuation each time, shaped by the settings below. Most likely: "
            "beam search for the likeliest one (slower, and it tends to repeat itself)"
        )
        form.addRow("Write", self.decoding_box)

        self.temperature_box = QDoubleSpinBox(self)
        self.temperature_box.setRange(0.05, 3.0)
        self.temperature_box.setSingleStep(0.05)
        self.temperature_box.setToolTip("Lower is safer and more repetitive, higher more adventurous")
        form.addRow("Temperature", self.temperature_box)
        self.top_k_box = QSpinBox(self)
        self.top_k_box.setRange(0, 388)
        self.top_k_box.setSpecialValueText("off")
        self.top_k_box.setToolTip("Sample only among the k most likely events (off: all)")
        form.addRow("Top-k", self.top_k_box)
        self.top_p_box = QDoubleSpinBox(self)
        self.top_p_box.setRange(0.05, 1.0)
        self.top_p_box.setSingleStep(0.01)
        self.top_p_box.setToolTip("Sample among the most likely events that make up this much probability (1: all)")
        form.addRow("Top-p", self.top_p_box)

        seed_row = QHBoxLayout()
        self.fixed_seed = QCheckBox("Fixed", self)
        self.fixed_seed.setToolTip("A fixed seed writes the same continuation again; otherwise each Continue differs")
        self.seed_box = QSpinBox(self)
        self.seed_box.setRange(0, 2**31 - 1)
        seed_row.addWidget(self.fixed_seed)
        seed_row.addWidget(self.seed_box, 1)
        form.addRow("Seed", seed_row)
        self.variations_box = QSpinBox(self)
        self.variations_box.setRange(1, MAX_VARIATIONS)
        self.variations_box.setToolTip("Write several continuations, hear the first while it is written, then pick one")
        form.addRow("Variations", self.variations_box)
        self.listen_box = QCheckBox("Play while writing", self)
        self.listen_box.setChecked(True)
        form.addRow("", self.listen_box)

        # The window's Continue and Cancel actions: one enable rule, one shortcut, wherever they are pressed.
        self.continue_button = self._action_button(continue_action, "continue_button")
        self.cancel_button = self._action_button(cancel_action, "cancel_button")
        buttons = QHBoxLayout()
        buttons.addWidget(self.continue_button, 1)
        buttons.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("")
        self.progress_bar.setTextVisible(True)
        self.variation_list = QListWidget(self)
        self.variation_list.setObjectName("variations")
        self.variation_list.setToolTip("Click a variation to put it in the continuation's place (undoable)")
        self.variation_list.setMaximumHeight(120)

        model_row = QHBoxLayout()
        self.device_box = QComboBox(self)
        self.device_box.addItem("Auto", AUTO_DEVICE)
        self.device_box.addItem("CPU", "cpu")
        self.device_box.addItem("CUDA", "cuda")
        if not torch.cuda.is_available():
            self.device_box.model().item(2).setEnabled(False)
            self.device_box.setItemData(2, "No CUDA GPU on this computer", Qt.ToolTipRole)
        self.load_button = QPushButton("Load…", self)
        self.load_button.setToolTip("Load another model (a Continuo checkpoint, .pt)")
        model_row.addWidget(self.device_box, 1)
        model_row.addWidget(self.load_button)
        self.model_label = QLabel("Loading the model…", self)
        self.model_label.setWordWrap(True)
        self.model_label.setObjectName("model_label")
        self.device_label = QLabel("", self)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(QLabel("Variations written:", self))
        layout.addWidget(self.variation_list)
        layout.addWidget(QLabel("Model", self))
        layout.addWidget(self.model_label)
        layout.addLayout(model_row)
        layout.addWidget(self.device_label)
        layout.addStretch(1)

        self._show_settings()
        for box in (
            self.length_box,
            self.temperature_box,
            self.top_k_box,
            self.top_p_box,
            self.seed_box,
            self.variations_box,
        ):
            box.valueChanged.connect(self._edited)
        self.unit_box.currentTextChanged.connect(self._unit_changed)
        self.decoding_box.currentIndexChanged.connect(self._edited)
        self.style_box.currentIndexChanged.connect(self._edited)
        self.fixed_seed.toggled.connect(self._edited)
        self.listen_box.toggled.connect(lambda on: setattr(controller, "listen", on))
        self.load_button.clicked.connect(self.load_requested)
        self.device_box.activated.connect(lambda index: controller.set_device(self.device_box.itemData(index)))
        self.variation_list.itemClicked.connect(self._variation_clicked)
        song.meta_changed.connect(self._meta_changed)
        song.writing_changed.connect(lambda writing: self._update_buttons())
        controller.busy_changed.connect(lambda busy: self._update_buttons())
        controller.progress.connect(self._progress)
        controller.variations_changed.connect(self._show_variations)
        controller.model_loaded.connect(self._model_loaded)
        controller.model_failed.connect(self._model_failed)
        controller.device_changed.connect(lambda device: self.device_label.setText(f"Running on {device.upper()}"))
        controller.finished.connect(self._finished)
        self._update_buttons()

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
            self.decoding_box.setCurrentIndex(1 if settings.most_likely else 0)
            self.style_box.setCurrentIndex(max(0, self.style_box.findData(settings.style)))
            self._enable_sampling_settings(not settings.most_likely)
        finally:
            self._updating = False

    def _show_length(self) -> None:
        settings = self.song.settings
        if settings.length_unit == "bars":
            self.length_box.setRange(1, MAX_BARS)
            self.length_box.setSuffix(" bars")
            self.length_box.setValue(settings.length_beats / self.song.beats_per_bar)
        else:
            self.length_box.setRange(1, MAX_SECONDS)
            self.length_box.setSuffix(" s")
            self.length_box.setValue(self.song.to_seconds(settings.length_beats))

    def _length_beats(self) -> float:
        value = self.length_box.value()
        if self.unit_box.currentText() == "bars":
            return value * self.song.beats_per_bar
        return self.song.to_beats(value)

    def settings_from_widgets(self) -> GenerationSettings:
        """The settings the widgets show."""
        return dataclasses.replace(
            self.song.settings,
            temperature=round(self.temperature_box.value(), 4),
            top_k=self.top_k_box.value(),
            top_p=round(self.top_p_box.value(), 4),
            length_beats=round(self._length_beats(), 6),
            seed=self.seed_box.value() if self.fixed_seed.isChecked() else None,
            variations=self.variations_box.value(),
            length_unit=self.unit_box.currentText(),
            most_likely=self.decoding_box.currentIndex() == 1,
            style=self.style_box.currentData(),
        )

    def _enable_sampling_settings(self, on: bool) -> None:
        """Temperature, top-k, top-p, seed and variations only shape sampling."""
        for widget in (self.temperature_box, self.top_k_box, self.top_p_box, self.fixed_seed, self.variations_box):
            widget.setEnabled(on)

    def _edited(self, *args) -> None:
        if self._updating:
            return
        self._enable_sampling_settings(self.decoding_box.currentIndex() == 0)
        self.seed_box.setEnabled(self.fixed_seed.isChecked() and self.decoding_box.currentIndex() == 0)
        try:
            self.song.set_settings(self.settings_from_widgets())
        except SongLockedError:
            self._show_settings()  # the continuation is being written: settings wait until it is done

    def _unit_changed(self, unit: str) -> None:
        if self._updating:
            return
        try:
            self.song.set_settings(dataclasses.replace(self.song.settings, length_unit=unit))
        except SongLockedError:
            pass
        self._show_settings()

    def _meta_changed(self, key: str) -> None:
        if key in ("settings", "tempo", "time_signature"):
            self._show_settings()

    # --- running ------------------------------------------------------------------------------------

    def _action_button(self, action: QAction, name: str) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName(name)
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        return button

    def _update_buttons(self) -> None:
        controller = self.controller
        writing = controller.generating or self.song.is_writing  # settings wait while music streams in
        self.load_button.setEnabled(not controller.generating)
        self.style_box.setEnabled(not writing and controller.model_has_styles)
        self.style_box.setToolTip(STYLE_TIP if controller.model_has_styles else NO_STYLES_TIP)
        self.device_box.setEnabled(not controller.generating)
        for box in (
            self.length_box,
            self.unit_box,
            self.temperature_box,
            self.top_k_box,
            self.top_p_box,
            self.fixed_seed,
            self.seed_box,
            self.variations_box,
        ):
            box.setEnabled(not writing and (box is not self.seed_box or self.fixed_seed.isChecked()))
        if controller.loading and not controller.has_model:
            self.model_label.setText("Loading the model…")

    def _progress(self, number: int, count: int, fraction: float) -> None:
        self.progress_bar.setValue(int(fraction * 1000))
        label = f"Variation {number + 1} of {count}: " if count > 1 else ""
        self.progress_bar.setFormat(f"{label}{fraction * 100:.0f}%")

    def _finished(self, cancelled: bool) -> None:
        if not cancelled:
            self.progress_bar.setValue(1000)
            self.progress_bar.setFormat("Done")
        else:
            self.progress_bar.setFormat("Stopped")
        self._update_buttons()

    def _show_variations(self) -> None:
        self.variation_list.clear()
        for variation in self.controller.variations:
            mark = "▶ " if variation.number == self.controller.chosen_variation else "   "
            state = "" if variation.complete else " (cut short)"
            item = QListWidgetItem(
                f"{mark}Variation {variation.number + 1}: {len(variation.notes)} notes, seed {variation.seed}{state}"
            )
            item.setData(Qt.UserRole, variation.number)
            self.variation_list.addItem(item)

    def _variation_clicked(self, item: QListWidgetItem) -> None:
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
        path, _ = QFileDialog.getOpenFileName(self, "Load a model", folder, "Continuo models (*.pt);;All files (*)")
        return path or None
