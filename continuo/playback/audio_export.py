"""Audio export in the studio: `render_wav` on a helper thread, progress and the result as Qt signals."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from music_transformer import Note

from ..backends.base import SinkError
from .render import RenderCancelled, render_wav


class AudioExport(QObject):
    """Renders notes to a WAV file without blocking the window; `finished(ok, message)` when done."""

    progress = Signal(float)
    finished = Signal(bool, str)

    def __init__(
        self,
        notes: Sequence[Note],
        path: Path,
        soundfont: str | None = None,
        program: int = 0,
        parent: QObject | None = None,
        normalize: bool = True,
        gain_db: float = 0.0,
    ) -> None:
        super().__init__(parent)
        self.notes = list(notes)
        self.path = Path(path)
        self.soundfont = soundfont
        self.program = program
        self.normalize, self.gain_db = bool(normalize), float(gain_db)
        self._cancel = threading.Event()
        self._last = -1.0
        self._thread = threading.Thread(target=self._run, name="continuo-audio-export", daemon=True)

    def start(self) -> None:
        """Starts rendering."""
        self._thread.start()

    def cancel(self) -> None:
        """Stops rendering; nothing is written."""
        self._cancel.set()

    def wait(self, timeout: float = 10.0) -> None:
        """Waits for the render thread to end."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _report(self, fraction: float) -> None:
        if fraction - self._last >= 0.01 or fraction >= 1.0:  # a hundred updates at most
            self._last = fraction
            self.progress.emit(fraction)

    def _run(self) -> None:
        try:
            rendered = render_wav(
                self.notes,
                self.path,
                self.soundfont,
                self.program,
                self._report,
                self._cancel,
                normalize=self.normalize,
                gain_db=self.gain_db,
            )
        except RenderCancelled:
            self.finished.emit(False, "")
        except (SinkError, ValueError) as error:
            self.finished.emit(False, str(error))
        except OSError as error:
            self.finished.emit(False, f"{self.path.name}: cannot be written ({error.strerror or error})")
        else:
            name, peak = self.path.name, rendered.peak_db
            text = f"Exported {rendered.seconds:.1f} s of audio to {name}, its loudest peak at {peak:.1f} dBFS"
            if rendered.clipped:
                text += f" ({rendered.clipped:,} samples clipped: lower the gain, or normalise)"
            self.finished.emit(True, text)
