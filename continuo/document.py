"""The song's life as a file: new, open, import, save, the recent files, drag and drop, and the exports (MIDI and
audio), with the names the dialogs suggest decided in one place (`Document.suggestion`).

A session file (.continuo) is the document; a MIDI file opened becomes a new, unsaved document named after it
(its name is what Save and every export suggest). Problems are said in a dialog, and the song is left as it
was. The autosave (autosave.py) follows the document; crash restore is in restore.py.

Files are read on a helper thread (`read_file`: the bytes, the checks, the notes placed on the grid), with a
progress indicator and Cancel, so a big file never freezes the window; the song changes on the GUI thread, at
once, when the reading is done. Scripts and tests may read while they wait (`wait=True`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QMessageBox,
    QProgressDialog,
    QWidget,
)

from music_transformer import MidiFileError

from . import autosave as autosave_module
from .background import run_in_background
from .midi_files import MIDI_SUFFIXES, export_midi, is_midi_path, read_midi_file
from .notes import CONTINUATION, MOTIF, SongNote
from .piano_roll import PianoRoll
from .playback.audio_export import AudioExport
from .playback.render import MAX_GAIN_DB, MIN_GAIN_DB, PEAK_DB
from .session import SUFFIX, SessionError, read_session, write_session
from .settings import Preferences
from .song import Song, SongLimitError, SongLockedError, tempo_map_meta
from .transport import Transport

UNTITLED = "Untitled"
SESSION_FILTER = f"Continuo sessions (*{SUFFIX})"
MIDI_FILTER = "MIDI files (" + " ".join(f"*{suffix}" for suffix in MIDI_SUFFIXES) + ")"
OPEN_FILTER = f"Sessions and MIDI files (*{SUFFIX} " + " ".join(f"*{suffix}" for suffix in MIDI_SUFFIXES) + ")"
WAV_FILTER = "WAV audio (*.wav)"
EVERYTHING = "everything"  # export the whole song, not one part
PROGRESS_AFTER_MS = 300  # a file read faster than this shows no progress window


@dataclass
class FileRead:
    """A file read for the document on a helper thread: its notes on the grid and metadata, or why not."""

    path: Path
    midi: bool
    notes: list[SongNote] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # tempo and time signature (and more for a session)
    view: dict[str, Any] = field(default_factory=dict)
    remarks: list[str] = field(default_factory=list)  # what the song could not keep of the file
    grid_note: str = ""  # what the ruler says of a MIDI file's grid (a free performance's bars are the file's)
    error: str = ""
    first_id: int = 1  # the ids of the notes count up from here
    cancelled: bool = False


def read_file(path: str | Path, first_id: int = 1) -> FileRead:
    """Reads a session or MIDI file for the document, on any thread (no widget is touched); MIDI notes are placed
    on the grid through the file's own tempo map (its beats are the song's), with ids from `first_id`."""
    path = Path(path)
    midi = is_midi_path(path)
    try:
        if not midi:
            session = read_session(path)
            return FileRead(path, False, session.notes, session.meta, session.view)
        read = read_midi_file(path)
        scratch = Song()  # converts seconds to beats the song's way, with ids from first_id; no signals reach Qt
        if first_id > 1:
            scratch.load([SongNote(first_id - 1, 60, 1, 0.0, 1.0)])
        notes = scratch.notes_from_performance(read.notes, MOTIF, tempo_map=read.timing.tempo_map(exact=True))
        meta = tempo_map_meta(read.timing.tempo_map())
        return FileRead(
            path, True, notes, meta, remarks=read.timing.remarks(), first_id=first_id, grid_note=read.timing.grid_note()
        )
    except (MidiFileError, SessionError) as error:
        return FileRead(path, midi, error=str(error))
    except MemoryError:
        return FileRead(path, midi, error=f"{path.name}: too large to read in the memory left")
    except Exception as error:  # noqa: BLE001 - a reader's own failure is said, never a crash of the window
        return FileRead(path, midi, error=f"{path.name}: cannot be read ({type(error).__name__}: {error})")


class Document(QObject):
    """The file behind one window's song; `parent` is the window its dialogs belong to."""

    name_changed = Signal(str)  # the name the title shows ("Untitled", "motif.mid", "song.continuo")
    message = Signal(str, int)  # for the status bar: text, milliseconds
    error = Signal(str, str)  # for a dialog: title, text
    audio_exported = Signal(str, bool)  # path, whether it was written

    def __init__(
        self, song: Song, roll: PianoRoll, transport: Transport, preferences: Preferences, parent: QWidget
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.roll = roll
        self.transport = transport
        self.preferences = preferences
        self.path: Path | None = None  # the session file; None until the song is saved
        self._source = UNTITLED  # what an unsaved song is called: "Untitled", or the MIDI file it came from
        self.autosave: autosave_module.Autosave | None = None
        self._audio_export: AudioExport | None = None
        self._reading: FileRead | None = None  # the file being read in the background

    # --- names ---------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name the window's title shows."""
        return self.path.name if self.path is not None else self._source

    @property
    def stem(self) -> str:
        """The name without its suffix: what Save As and every export suggest."""
        return self.path.stem if self.path is not None else Path(self._source).stem

    def suggestion(self, suffix: str, part: str = EVERYTHING) -> Path:
        """Where a dialog proposes to write: the document's folder and name (name-motif.mid for one part)."""
        stem = self.stem if part == EVERYTHING else f"{self.stem}-{part}"
        return self.dialog_folder() / f"{stem}{suffix}"

    def dialog_folder(self) -> Path:
        """The folder dialogs start in: the document's, else the last file's, else home."""
        if self.path is not None:
            return self.path.parent
        recent = self.preferences.recent_files()
        return Path(recent[0]).parent if recent else Path.home()

    def set_path(self, path: Path | None, source: str = UNTITLED, remember: bool = True) -> None:
        """The document is now this session file (None: unsaved, called `source`), among the recent files."""
        self.path = path
        self._source = source
        if self.autosave is not None:
            self.autosave.set_document(str(path) if path else None)
        if path is not None and remember:
            self.preferences.add_recent_file(path)
        self.name_changed.emit(self.name)

    # --- the view kept with the song ----------------------------------------------------------------------

    def view_state(self) -> dict:
        """The view worth keeping with a session."""
        return {"roll": self.roll.state.to_dict(), "transport": self.transport.to_dict()}

    def apply_view_state(self, view: dict) -> None:
        """Shows the song as a session (or an autosave) left it."""
        if isinstance(view.get("roll"), dict):
            self.roll.state.load_dict(view["roll"])
        if isinstance(view.get("transport"), dict):
            self.transport.load_dict(view["transport"])

    # --- opening -------------------------------------------------------------------------------------------

    @property
    def reading(self) -> bool:
        """Whether a file is being read in the background."""
        return self._reading is not None

    def open_path(self, path: str | Path, ask_to_save: bool = True, wait: bool = True) -> bool:
        """Opens a session or a MIDI file as the song; on any problem, a dialog and the song untouched.

        With `wait=False` the file is read in the background (a progress window with Cancel after a moment)
        and True means the reading started; the song changes when it is done.
        """
        path = Path(path)
        if not self._may_read("open the file"):
            return False
        if wait:
            return self._opened(read_file(path), ask_to_save)
        # edits made while the file is read (it may take a moment) are the musician's: then ask before replacing
        edits = self.song.undo_stack.index()
        self._read_in_background(
            path,
            1,
            lambda read: self._opened(read, ask_to_save or self.song.undo_stack.index() != edits),
            f"Opening {path.name}…",
        )
        return True

    def import_motif(self, path: str | Path, wait: bool = True) -> bool:
        """Replaces the motif with a MIDI file's notes, tempo and time signature, as one undoable step (read in
        the background with `wait=False`, as `open_path`)."""
        path = Path(path)
        if not self._may_read("import the file"):
            return False
        first_id = self.song.next_id()
        if wait:
            return self._imported(read_file(path, first_id))
        self._read_in_background(path, first_id, self._imported, f"Importing {path.name}…")
        return True

    def _may_read(self, what: str) -> bool:
        if self._reading is not None:
            self.message.emit(f"Still reading {self._reading.path.name}; wait or cancel it first", 6000)
            return False
        if self.song.is_writing:
            what_streams = (
                "the continuation is written" if self.song.stream_part == CONTINUATION else "the take is recorded"
            )
            self.error.emit("Cannot open now", f"Wait until {what_streams}, then {what}.")
            return False
        return True

    def _read_in_background(self, path: Path, first_id: int, done, text: str) -> None:
        """Reads a file on a helper thread with a progress window (after a moment) whose Cancel drops the result."""
        reading = FileRead(path, is_midi_path(path))
        self._reading = reading
        progress = QProgressDialog(text, "Cancel", 0, 0, self.parent())  # 0..0: busy, no percentage
        progress.setObjectName("reading_progress")
        progress.setWindowModality(Qt.WindowModal)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.hide()
        QTimer.singleShot(PROGRESS_AFTER_MS, lambda: reading is self._reading and progress.show())

        def cancel() -> None:
            reading.cancelled = True
            self._reading = None
            progress.deleteLater()
            self.message.emit(f"Stopped reading {path.name}; the song is as it was", 6000)

        def finished(read: FileRead) -> None:
            if reading.cancelled:
                return  # the musician cancelled: the song stays as it was
            self._reading = None
            progress.canceled.disconnect(cancel)
            progress.reset()
            progress.deleteLater()
            done(read)

        progress.canceled.connect(cancel)
        run_in_background(self, "continuo-read-file", lambda: read_file(path, first_id), finished)

    def _opened(self, read: FileRead, ask_to_save: bool) -> bool:
        """Makes a file read the document (GUI thread)."""
        path = read.path
        if read.error:
            kind = "MIDI file" if read.midi else "session"
            self.error.emit(f"Cannot open the {kind}", read.error)
            return False
        if self.song.is_writing:
            return self._may_read("open the file")
        if ask_to_save and not self.maybe_save():
            return False
        if read.midi:
            # A new document from the file; the model and generation settings carry over from the last one.
            self.song.load(read.notes, {**read.meta, "settings": self.song.settings, "model": self.song.model})
            self.set_path(None, source=path.name)  # Save suggests the MIDI file's name, never its path
            self.roll.ruler.set_note(read.grid_note)
            self.roll.zoom_to_fit()
            self.transport.set_playhead(0.0)
            text = f"Opened {path.name}: {len(read.notes)} notes at {self.song.tempo:g} BPM in " + "{}/{}".format(
                *self.song.time_signature
            )
            self.message.emit("; ".join([text, *read.remarks]), 15000 if read.remarks else 6000)
            self.preferences.add_recent_file(path)
            return True
        self.song.load(read.notes, read.meta)
        self.apply_view_state(read.view)
        self.set_path(path)
        self.message.emit(f"Opened {path.name}", 6000)
        return True

    def _imported(self, read: FileRead) -> bool:
        """Makes a MIDI file read the motif, one undoable step (GUI thread)."""
        path = read.path
        if read.error:
            self.error.emit("Cannot import the MIDI file", read.error)
            return False
        notes = read.notes
        if self.song.next_id() > read.first_id:  # notes were made meanwhile: fresh ids for these
            notes = [self.song.new_note(n.pitch, n.velocity, n.start, n.length, MOTIF) for n in notes]
        try:
            self.song.edit(
                removed_ids=[note.id for note in self.song.notes(MOTIF)],
                added=notes,
                meta=read.meta,
                text=f"Import {path.name}",
            )
        except SongLockedError as error:
            self.error.emit("Cannot import now", str(error))
            return False
        except SongLimitError as error:  # the motif and the continuation together past the song's limits
            self.error.emit("Cannot import the MIDI file", f"{path.name}: {error}")
            return False
        self.roll.ruler.set_note(read.grid_note)
        self.roll.zoom_to_fit()
        text = f"Imported {len(notes)} notes from {path.name} as the motif (Undo takes it back)"
        self.message.emit("; ".join([text, *read.remarks]), 15000 if read.remarks else 6000)
        return True

    def new_song(self) -> bool:
        """Starts an empty song (asking to save the current one)."""
        if not self.maybe_save():
            return False
        self.song.load([])
        self.set_path(None)
        self.transport.set_playhead(0.0)
        return True

    def accepts_drop(self, urls: list[QUrl]) -> bool:
        """Whether dropped files are something to open: a MIDI file or a session."""
        return bool(urls) and urls[0].isLocalFile() and self._openable(urls[0].toLocalFile())

    def drop(self, urls: list[QUrl]) -> None:
        """A dropped MIDI file becomes the motif (undoable); a dropped session opens."""
        path = urls[0].toLocalFile()
        # Opening may ask a question in a dialog: it happens after the drop has finished.
        if is_midi_path(path):
            QTimer.singleShot(0, lambda: self.import_motif(path, wait=False))
        else:
            QTimer.singleShot(0, lambda: self.open_path(path, wait=False))

    @staticmethod
    def _openable(path: str) -> bool:
        return is_midi_path(path) or path.endswith(SUFFIX)

    # --- saving --------------------------------------------------------------------------------------------

    def save(self) -> bool:
        """Saves to the session file, asking for a name the first time."""
        if self.path is None:
            return self.save_as()
        return self.save_to(self.path)

    def save_as(self, path: str | Path | None = None) -> bool:
        """Saves under a new name (asked for when not given)."""
        if path is None:
            path = self._ask_where("Save session", self.suggestion(SUFFIX), SESSION_FILTER)
            if path is None:
                return False
        path = Path(path)
        if path.suffix.lower() != SUFFIX:
            path = path.with_name(path.name + SUFFIX)
        return self.save_to(path)

    def save_to(self, path: Path) -> bool:
        """Writes the session file atomically; on failure, a dialog and nothing lost."""
        try:
            write_session(self.song, path, self.view_state())
        except OSError as error:
            self.error.emit("Cannot save", f"{path.name}: cannot be written ({error.strerror or error})")
            return False
        self.song.undo_stack.setClean()
        self.set_path(path)
        self.message.emit(f"Saved {path.name}", 6000)
        return True

    def maybe_save(self) -> bool:
        """If there are unsaved changes, asks whether to save them; False means the musician cancelled."""
        if not self.song.is_modified:
            return True
        name = self.path.name if self.path else "this song"
        box = QMessageBox(
            QMessageBox.Warning,
            "Unsaved changes",
            f"Save the changes to {name}?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
            self.parent(),
        )
        box.setObjectName("unsaved_changes")
        box.setDefaultButton(QMessageBox.Save)
        answer = box.exec()
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def start_autosave(self, home: Path, interval_ms: int = autosave_module.DEFAULT_INTERVAL_MS) -> None:
        """Keeps the song safe on disk while the studio runs (the journal under `home`)."""
        try:
            self.autosave = autosave_module.Autosave(
                self.song, home / "autosave", interval_ms, view_state=self.view_state, parent=self
            )
        except OSError as error:
            self.message.emit(f"Autosave is off: {error.strerror or error}", 15000)
            return
        self.autosave.failed.connect(lambda text: self.message.emit(text, 15000))

    # --- exports -------------------------------------------------------------------------------------------

    def export_midi(self, path: str | Path, part: str = EVERYTHING) -> bool:
        """Exports everything, the motif or the continuation as a MIDI file."""
        path = Path(path)
        if path.suffix.lower() not in MIDI_SUFFIXES:
            path = path.with_name(path.name + ".mid")
        try:
            count = export_midi(self.song, path, part)
        except MidiFileError as error:
            self.error.emit("Cannot export", str(error))
            return False
        self.message.emit(f"Exported {count} notes to {path.name}", 6000)
        return True

    def export_audio(
        self, path: str | Path, part: str = EVERYTHING, normalize: bool | None = None, gain_db: float | None = None
    ) -> bool:
        """Renders the song (or a part) through FluidSynth to a WAV file in the background, with progress: by
        default its loudest peak at -1 dBFS (`normalize`), `gain_db` added; None takes the last export's choice.

        Returns False if it could not start; `audio_exported(path, ok)` tells when it is done.
        """
        normalize, gain_db = self.audio_level(normalize, gain_db)
        path = Path(path)
        if path.suffix.lower() != ".wav":
            path = path.with_name(path.name + ".wav")
        if self._audio_export is not None:
            self.message.emit("An audio export is already running", 6000)
            return False
        notes = self.song.performance_notes(None if part == EVERYTHING else part)
        if not notes:
            self.error.emit("Cannot export", f"{path.name}: there are no notes to export")
            return False
        progress = QProgressDialog(f"Rendering {path.name}…", "Cancel", 0, 1000, self.parent())
        progress.setObjectName("audio_export_progress")
        progress.setWindowModality(Qt.WindowModal)
        progress.setMinimumDuration(300)
        soundfont, program = self.preferences.get("soundfont"), int(self.preferences.get("program", 0))
        export = AudioExport(notes, path, soundfont, program, self, normalize, gain_db)
        self._audio_export = export
        export.progress.connect(lambda fraction: progress.setValue(int(fraction * 1000)))
        progress.canceled.connect(export.cancel)

        def done(ok: bool, text: str) -> None:
            self._audio_export = None
            progress.reset()
            progress.deleteLater()
            if ok:
                self.message.emit(text, 6000)
            elif text:
                self.error.emit("Cannot export audio", text)
            self.audio_exported.emit(str(path), ok)

        export.finished.connect(done)
        export.start()
        return True

    # --- the dialogs that ask for a file -------------------------------------------------------------------

    def open_dialog(self) -> None:
        """Asks for a session or MIDI file and opens it."""
        path = self._ask_which("Open", f"{OPEN_FILTER};;{SESSION_FILTER};;{MIDI_FILTER}")
        if path:
            self.open_path(path, wait=False)

    def import_dialog(self) -> None:
        """Asks for a MIDI file and makes it the motif."""
        path = self._ask_which("Import MIDI as motif", MIDI_FILTER)
        if path:
            self.import_motif(path, wait=False)

    def export_midi_dialog(self, part: str = EVERYTHING) -> None:
        """Asks where to export the song (or a part) as MIDI."""
        path = self._ask_where(f"Export MIDI ({part})", self.suggestion(".mid", part), MIDI_FILTER)
        if path:
            self.export_midi(path, part)

    def audio_level(self, normalize: bool | None = None, gain_db: float | None = None) -> tuple[bool, float]:
        """How loud an audio export is: normalised (default) or not, and a gain in dB (the last choice kept)."""
        if normalize is None:
            normalize = self.preferences.get("audio_normalize", True) is not False
        if gain_db is None:
            saved = self.preferences.get("audio_gain_db", 0.0)
            valid = isinstance(saved, (int, float)) and not isinstance(saved, bool) and abs(saved) <= MAX_GAIN_DB
            gain_db = float(saved) if valid else 0.0
        return bool(normalize), float(gain_db)

    def export_audio_dialog(self) -> None:
        """Asks where to render the song as a WAV file, and how loud: normalised to -1 dBFS, and a gain."""
        normalize, gain_db = self.audio_level()
        suggestion = self.suggestion(".wav")
        dialog = QFileDialog(self.parent(), "Export audio", str(suggestion.parent), WAV_FILTER)
        dialog.setObjectName("export_audio_dialog")
        dialog.setAcceptMode(QFileDialog.AcceptSave)
        dialog.setOption(QFileDialog.DontUseNativeDialog)  # Qt's own dialog takes the level choices below
        dialog.selectFile(suggestion.name)
        normalize_box = QCheckBox(f"Normalise: the loudest peak at {PEAK_DB:g} dBFS", dialog)
        normalize_box.setObjectName("normalize")
        normalize_box.setChecked(normalize)
        gain_box = QDoubleSpinBox(dialog)
        gain_box.setObjectName("gain_db")
        gain_box.setRange(MIN_GAIN_DB, MAX_GAIN_DB)
        gain_box.setDecimals(1)
        gain_box.setSuffix(" dB")
        gain_box.setValue(gain_db)
        gain_box.setToolTip("Louder or softer than the level above (past 0 dBFS the loudest moments are clipped)")
        layout = dialog.layout()
        if isinstance(layout, QGridLayout):
            row = layout.rowCount()
            layout.addWidget(QLabel("Level:", dialog), row, 0)
            layout.addWidget(normalize_box, row, 1)
            layout.addWidget(QLabel("Gain:", dialog), row + 1, 0)
            layout.addWidget(gain_box, row + 1, 1)
        if dialog.exec() != QFileDialog.Accepted or not dialog.selectedFiles():
            return
        normalize, gain_db = normalize_box.isChecked(), gain_box.value()
        self.preferences.set("audio_normalize", normalize)
        self.preferences.set("audio_gain_db", gain_db)
        self.export_audio(dialog.selectedFiles()[0], normalize=normalize, gain_db=gain_db)

    def _ask_which(self, title: str, filters: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent(), title, str(self.dialog_folder()), filters)
        return path or None

    def _ask_where(self, title: str, suggestion: Path, filters: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self.parent(), title, str(suggestion), filters)
        return path or None

    def close(self) -> None:
        """Stops an audio export and ends the autosave (a clean exit removes it)."""
        if self._audio_export is not None:
            self._audio_export.cancel()
            self._audio_export.wait()
        if self.autosave is not None:
            self.autosave.close()
            self.autosave = None
