"""Help: the keyboard shortcuts (a searchable sheet made from the window's own actions, so it cannot drift from
them), getting started, and About (the version, the model's card as its metadata and assets/README.md say,
the licences, the training data's included)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import metadata as package_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMenuBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from music_transformer.files import open_regular

from .background import run_in_background

if TYPE_CHECKING:
    from .studio import Studio

DENSE_STEPS_PER_SECOND = 60  # dense piano in the model's encoding (music_transformer/bench.py's figure)
MAX_CARD_BYTES = 200_000  # a model card is a page of text
ROLL = "Piano roll"  # where the roll's own keys are listed (they work while the roll has the focus)

GETTING_STARTED = """
<h3>Getting started</h3>
<ol>
<li><b>Sketch a motif.</b> Draw a few notes in the grid with the mouse (the Draw tool, <i>D</i>), play them on a
MIDI keyboard (<i>Record ▸ MIDI Input</i>, then <i>Record</i>), or open a MIDI file (<i>File ▸ Open</i>).</li>
<li><b>Continue.</b> Press <i>Continue</i> (Ctrl+Enter). The model writes what could come next; the notes appear in
orange as they are written, and you hear them from where your motif ends.</li>
<li><b>Shape it.</b> In the <i>Continue</i> panel choose how long, how adventurous (<i>Temperature</i>) and in which
style; ask for several versions (<i>Variations</i>) and click one to hear it in place.</li>
<li><b>Keep or try again.</b> <i>Accept</i> makes the continuation part of your music, to continue again;
<i>Discard</i> throws it away. Every step can be undone (Ctrl+Z).</li>
<li><b>Take it with you.</b> <i>File ▸ Save</i> keeps everything in a session; <i>File ▸ Export MIDI</i> and
<i>Export Audio</i> make files for a DAW or a friend.</li>
</ol>
<p>Space plays and stops, Home and End go to the start and the end. Every key is in
<i>Help ▸ Keyboard Shortcuts</i> (F1).</p>
"""

LICENCES = """
<h3>Licences</h3>
<p><b>Continuo</b> is free software under the MIT licence.</p>
<p><b>Its parts:</b> Qt for Python (PySide6) under the LGPL 3; PyTorch under the BSD licence; pretty_midi, mido and
python-rtmidi under the MIT licence; FluidSynth and pyfluidsynth under the LGPL 2.1; NumPy under the BSD licence. The
built-in synth plays a General MIDI soundfont installed on this computer, under that soundfont's own licence.</p>
<p><b>The training data of the bundled model:</b></p>
<ul>
<li><b>POP909</b> (MIT licence): Ziyu Wang, Ke Chen, Junyan Jiang, Yiyi Zhang, Maoran Xu, Shuqi Dai, Guxian Bin and
Gus Xia. <i>POP909: A Pop-song Dataset for Music Arrangement Generation.</i> ISMIR 2020.</li>
<li><b>The music21 corpus</b> (public domain): Bach chorales, Palestrina, and fiddle tunes from Ryan's Mammoth
Collection and O'Neill's Music of Ireland.</li>
</ul>
<p>Which data a model was trained on is on its card (the <i>Model</i> tab): a model you load may differ.</p>
<p>The model is a Music Transformer with relative self-attention (Huang et al., <i>Music Transformer</i>, ICLR
2019) over the performance events of Oore et al. (2018).</p>
"""


# --- the keyboard shortcuts --------------------------------------------------------------------------------


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").removesuffix("…").strip()


def _keys(action: QAction) -> str:
    return ", ".join(key.toString(QKeySequence.NativeText) for key in action.shortcuts() if not key.isEmpty())


def _menu_rows(menu: QMenu, path: str, seen: set[int], rows: list[tuple[str, str, str]]) -> None:
    for action in menu.actions():
        if action.menu() is not None:
            _menu_rows(action.menu(), f"{path} ▸ {_plain(action.text())}", seen, rows)
        elif not action.isSeparator() and id(action) not in seen:
            seen.add(id(action))
            if _keys(action):
                rows.append((_plain(action.text()), _keys(action), path))


def shortcut_rows(menu_bar: QMenuBar, roll_actions: dict[str, QAction]) -> list[tuple[str, str, str]]:
    """(command, keys, where) for every action that has keys: the menu bar's in menu order, then the roll's own
    (moving and transposing notes, ...)."""
    rows: list[tuple[str, str, str]] = []
    seen: set[int] = set()
    for top in menu_bar.actions():
        if top.menu() is not None:
            _menu_rows(top.menu(), _plain(top.text()), seen, rows)
    for action in roll_actions.values():
        if id(action) not in seen and _keys(action):
            seen.add(id(action))
            rows.append((_plain(action.text()), _keys(action), ROLL))
    return rows


class ShortcutsDialog(QDialog):
    """Every key of the studio, searchable by command, key or menu."""

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio.window)
        self.setObjectName("shortcuts_dialog")
        self.setWindowTitle("Keyboard Shortcuts")
        self.resize(620, 560)
        self.search = QLineEdit(self)
        self.search.setObjectName("shortcuts_search")
        self.search.setPlaceholderText("Search: a command, a key or a menu (for example “undo”, “Ctrl+L”, “View”)")
        self.search.setClearButtonEnabled(True)
        self.table = QTableWidget(0, 3, self)
        self.table.setObjectName("shortcuts_table")
        self.table.setHorizontalHeaderLabels(["Command", "Keys", "Where"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.table)
        note = QLabel("With the mouse: drag to draw, move or stretch notes; right-click erases; Ctrl+wheel zooms.")
        note.setWordWrap(True)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.rows = shortcut_rows(studio.window.menuBar(), studio.roll.actions_by_name)
        self.search.textChanged.connect(self.show_matching)
        self.show_matching("")
        self.search.setFocus()

    def show_matching(self, text: str) -> None:
        """Shows the rows whose command, keys or menu contain every word typed."""
        words = text.lower().split()
        shown = [row for row in self.rows if all(word in " ".join(row).lower() for word in words)]
        self.table.setRowCount(len(shown))
        for index, row in enumerate(shown):
            for column, value in enumerate(row):
                self.table.setItem(index, column, QTableWidgetItem(value))

    def shown(self) -> list[tuple[str, str, str]]:
        """The rows on show now."""
        return [
            tuple(self.table.item(row, column).text() for column in range(3)) for row in range(self.table.rowCount())
        ]


# --- About ---------------------------------------------------------------------------------------------------


def version() -> str:
    """Continuo's version, as installed."""
    try:
        return package_metadata.version("continuo")
    except package_metadata.PackageNotFoundError:
        return "(not installed)"


def model_file(source: str | None) -> Path | None:
    """The file of the model in use ("default" or None: the bundled one)."""
    from music_transformer.checkpoint import DEFAULT_CHECKPOINT

    if not source or source == "default":
        return DEFAULT_CHECKPOINT
    return Path(source)


def model_card(path: Path | None) -> tuple[dict[str, Any], str]:
    """A model file's metadata and its card's text (the file its metadata names, else a README.md beside it);
    any thread. An unreadable model gives its error as the metadata."""
    meta, card, _ = read_model_card(path)
    return meta, card


def read_model_card(path: Path | None) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A model file's metadata, its card's text and its config (its shape: window, vocabulary); any thread."""
    from music_transformer import CheckpointError
    from music_transformer.checkpoint import read_checkpoint

    if path is None:
        return {}, "", {}
    try:
        checkpoint = read_checkpoint(path)
        meta = dict(checkpoint.get("metadata") or {})
        config = checkpoint.get("config") or {}
        config = dict(config) if isinstance(config, dict) else dict(getattr(config, "__dict__", {}))
    except CheckpointError as error:
        return {"error": str(error)}, "", {}
    named = meta.get("card")
    names = ["README.md"]
    if isinstance(named, str):  # only its file name counts: "assets/README.md" is read beside the model
        names.insert(0, named.replace("\\", "/").rsplit("/", 1)[-1])
    for name in names:
        card = read_card(path.parent, name)
        if card is not None:
            return meta, card, config
    return meta, "", config


def read_card(folder: Path, name: str) -> str | None:
    """The text of the card `name` in `folder` (the model's own): a plain file name, a regular file, its first
    MAX_CARD_BYTES; None for anything else (a path, a link, a device, a FIFO, a folder)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        return None
    try:  # not through a link; a FIFO or a device is refused without waiting for a writer; its first part only
        with open_regular(folder / name, sys.maxsize, follow_links=False) as file:
            return file.read(MAX_CARD_BYTES).decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def model_summary(meta: dict[str, Any], config: dict[str, Any], path: Path | None = None) -> str:
    """What a musician wants to know of a model, as HTML: what it learned from, the styles it knows, how much
    music it keeps in mind and for how long it trained; no loss figures, commands or commits (Details has them)."""
    from music_transformer.events import has_styles, known_styles

    from .generation.worker import STEPS_PER_SECOND

    if "error" in meta:
        return f"<p>{_value(meta['error'])}</p>"
    name = meta.get("name") or (path.stem if path is not None else "This model")
    rows = [f"<h3>{_value(name)}</h3>"]
    learned = meta.get("data_subset") or meta.get("data")
    rows.append(
        f"<p><b>What it learned from:</b> {_value(learned)}.</p>"
        if learned
        else "<p><b>What it learned from:</b> its file does not say.</p>"
    )
    vocabulary = _number(config.get("vocab_size"))
    if vocabulary is not None and has_styles(int(vocabulary)):
        styles = ", ".join(style.replace("-", " ").capitalize() for style in known_styles(int(vocabulary))[1:])
        rows.append(f"<p><b>Styles it knows:</b> {styles}; Auto lets it tell from your motif. It fills gaps too.</p>")
    elif vocabulary is not None:
        rows.append("<p><b>Styles:</b> none by name (made before styles); it continues in the idiom it hears.</p>")
    window = _number(meta.get("decode_window")) or _number(config.get("train_length"))
    if window:
        pop, dense = window / STEPS_PER_SECOND, window / DENSE_STEPS_PER_SECOND
        rows.append(
            f"<p><b>How much it keeps in mind:</b> the last {window:,.0f} steps of music (each note's start and "
            f"end, each wait, each change of loudness): about {pop:.0f} seconds of pop piano, {dense:.0f} seconds "
            "of dense piano, more of a sparse melody. Of a longer motif it hears the end; as it writes on, it "
            "forgets the earliest music, so a long continuation keeps going but cannot come back to a theme from "
            "long before.</p>"
        )
    hours = _number(meta.get("elapsed_seconds"))
    if hours:
        rows.append(f"<p><b>Training:</b> about {hours / 3600:.0f} hours.</p>")
    if meta.get("license"):
        rows.append(f"<p><b>Licence:</b> {_value(meta['license'])}.</p>")
    rows.append("<p><i>Details</i> shows the developers' figures: its training commands, losses and card.</p>")
    return "".join(rows)


def _meta_html(meta: dict[str, Any]) -> str:
    if "error" in meta:
        return f"<p>{meta['error']}</p>"
    if not meta:
        return "<p>This model carries no description.</p>"
    rows = "".join(
        f"<tr><td><b>{key.replace('_', ' ')}</b></td><td>{_value(value)}</td></tr>" for key, value in meta.items()
    )
    return f"<table cellspacing=4>{rows}</table>"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_value(item)}" for key, item in value.items())
    text = str(value)
    return (text[:400] + "…" if len(text) > 400 else text).replace("<", "&lt;")


class AboutDialog(QDialog):
    """The version, the model's card (read from the model file in the background) and the licences."""

    def __init__(self, studio: Studio) -> None:
        super().__init__(studio.window)
        self.setObjectName("about_dialog")
        self.setWindowTitle("About Continuo")
        self.resize(680, 600)
        tabs = QTabWidget(self)
        self.tabs = tabs
        about = QLabel(
            f"<h2>Continuo {version()}</h2><p>Sketch a motif, press Continue, and a Music Transformer writes what "
            f"comes next while you listen.</p><p>Python {sys.version.split()[0]}, Qt for Python {pyside_version}.</p>"
        )
        about.setWordWrap(True)
        about.setAlignment(Qt.AlignTop)
        tabs.addTab(about, "Continuo")
        model_tab = QWidget(self)
        self.model_summary = QTextBrowser(model_tab)  # a musician's words
        self.model_summary.setObjectName("model_summary")
        self.details_button = QPushButton("Details", model_tab)  # the developers' figures, on request
        self.details_button.setObjectName("model_details")
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("The training commands, loss figures and the whole card")
        self.model_text = QTextBrowser(model_tab)
        self.model_text.setObjectName("model_card")
        self.model_text.setOpenExternalLinks(True)
        self.model_text.setVisible(False)
        self.details_button.toggled.connect(self._show_details)
        model_layout = QVBoxLayout(model_tab)
        model_layout.addWidget(self.model_summary, 1)
        model_layout.addWidget(self.details_button, 0, Qt.AlignLeft)
        model_layout.addWidget(self.model_text, 2)
        source = studio.generation.model_source
        reading = f"<p>Reading the card of {model_file(source).name if source else 'the model'}…</p>"
        self.model_summary.setHtml(reading)
        self.model_text.setHtml(reading)
        tabs.addTab(model_tab, "Model")
        self.licences = QTextBrowser(self)
        self.licences.setObjectName("licences")
        self.licences.setHtml(LICENCES)
        tabs.addTab(self.licences, "Licences")
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        self.card_read = False
        path = model_file(source)
        self._path = path
        run_in_background(self, "continuo-model-card", lambda: read_model_card(path), self._show_card)

    def _show_details(self, shown: bool) -> None:
        self.model_text.setVisible(shown)
        self.details_button.setText("Hide Details" if shown else "Details")

    def _show_card(self, card: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
        meta, text, config = card
        self.model_summary.setHtml(model_summary(meta, config, self._path))
        self.model_text.setHtml(_meta_html(meta))
        if text:
            self.model_text.append("<hr>")
            cursor = self.model_text.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            cursor.insertMarkdown(text)
        self.model_text.moveCursor(self.model_text.textCursor().MoveOperation.Start)
        self.card_read = True


def getting_started(parent: QWidget) -> QDialog:
    """The first steps, in a window that stays open beside the studio."""
    dialog = QDialog(parent)
    dialog.setObjectName("getting_started")
    dialog.setWindowTitle("Getting Started")
    text = QTextBrowser(dialog)
    text.setHtml(GETTING_STARTED)
    buttons = QDialogButtonBox(QDialogButtonBox.Close, dialog)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.resize(560, 460)
    return dialog


def show_once(parent: QWidget, name: str, make: Callable[[], QDialog]) -> QDialog:
    """Shows the parent's dialog called `name`, made by `make()` the first time; raises it after."""
    dialog = parent.findChild(QDialog, name)
    if dialog is None:
        dialog = make()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
