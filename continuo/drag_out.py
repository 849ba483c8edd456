"""Out to a DAW: the song, or the selected notes, dragged out of the studio as a MIDI file.

The handle in the roll's top-left corner starts a drag that carries a file URL (text/uri-list), which DAWs and
file managers accept. The file is written when the drag starts, through the same export as File ▸ Export MIDI
(with the song's tempo and metre), into the `dragged` folder of Continuo's data home, not a temporary folder: a
DAW may read the file after the drop, or keep pointing at it. A selection is written from the start of the bar
it begins in, so that it lands on the DAW's grid as it sat on the studio's.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDrag, QMouseEvent
from PySide6.QtWidgets import QApplication, QToolButton, QWidget

from music_transformer import MidiFileError

from .document import Document
from .midi_files import export_midi
from .piano_roll import PianoRoll
from .song import Song, tempo_map_meta

FOLDER = "dragged"  # under Continuo's data home
TIP = (
    "Drag the song, or the selected notes, into a DAW or a folder as a MIDI file "
    "(written with the song's tempo and time signature)"
)


def clip_name(stem: str, selection: bool) -> str:
    """The dragged file's name: the song's, marked when it is the selection; safe on every file system."""
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", stem).strip(" .") or "Untitled"
    return f"{name} (selection).mid" if selection else f"{name}.mid"


class DragOut(QToolButton):
    """A handle that drags the song (or the selection) out as a .mid file."""

    def __init__(self, document: Document, roll: PianoRoll, home: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("drag_out")
        self.document, self.roll, self.song = document, roll, roll.song
        self.folder = Path(home) / FOLDER
        self.setText("MIDI ⇲")
        self.setToolTip(TIP)
        self.setAutoRaise(True)
        self.setCursor(Qt.OpenHandCursor)
        self.setFocusPolicy(Qt.NoFocus)
        self._press: QPoint | None = None
        self.last_path: Path | None = None  # the file the last drag carried

    def write_clip(self) -> tuple[Path, int] | None:
        """Writes what a drag carries now: the selected notes, else the whole song; None (and says why) when
        there is nothing to write or it cannot be written."""
        song = self.song
        selected = self.roll.selected_notes()
        notes = selected or song.notes()
        if not notes:
            self.document.message.emit("Nothing to drag out: draw or play some notes first", 6000)
            return None
        # a selection starts at its first note's bar line, with the tempo map as it runs from there
        shift = song.bar_at(min(note.start for note in notes)).beat if selected else 0.0
        clip = Song()  # the notes to write, with the song's tempi and metres: written by the export the menu uses
        try:
            meta = dict(song.meta(), **tempo_map_meta(song.tempo_map.from_beat(shift)))
            clip.load([note.with_(start=note.start - shift) for note in notes], meta)
            path = self.folder / clip_name(self.document.stem, bool(selected))
            self.folder.mkdir(parents=True, exist_ok=True)
            count = export_midi(clip, path)
        except OSError as error:
            self.document.message.emit(f"Cannot drag out a MIDI file: {error.strerror or error}", 10000)
            return None
        except MidiFileError as error:
            self.document.message.emit(f"Cannot drag out a MIDI file: {error}", 10000)
            return None
        finally:
            clip.deleteLater()
        self.last_path = path
        return path, count

    def mime_data(self) -> QMimeData | None:
        """What a drag carries: the written file's URL (None when nothing could be written)."""
        written = self.write_clip()
        if written is None:
            return None
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(written[0]))])
        return mime

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """A drag may start here."""
        if event.button() == Qt.LeftButton:
            self._press = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        """Past the drag distance, the drag starts, carrying the file."""
        press = self._press
        if press is None or (event.position().toPoint() - press).manhattanLength() < QApplication.startDragDistance():
            return
        self._press = None
        self.setDown(False)
        mime = self.mime_data()
        if mime is None:
            return
        drag = QDrag(self)
        drag.setMimeData(mime)
        if drag.exec(Qt.CopyAction) != Qt.IgnoreAction and self.last_path is not None:
            self.document.message.emit(f"Dragged out {self.last_path.name}", 6000)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        """A click, not a drag: says how to use the handle."""
        if self._press is not None:
            self.document.message.emit(TIP, 8000)
        self._press = None
        super().mouseReleaseEvent(event)
