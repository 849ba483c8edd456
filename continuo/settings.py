"""Where the studio keeps its per-user files, and the small preferences it remembers (recent files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from music_transformer.files import atomic_write, read_regular

from .limits import MAX_SETTINGS_BYTES

MAX_RECENT = 10
PRIVATE = 0o600  # the settings list the files recently opened: the owner's alone


def data_home() -> Path:
    """The per-user folder: $CONTINUO_HOME, else $XDG_DATA_HOME/continuo, else ~/.local/share/continuo."""
    if os.environ.get("CONTINUO_HOME"):
        return Path(os.environ["CONTINUO_HOME"])
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "continuo"


class Preferences:
    """Preferences in a JSON file under the data home; a damaged file is ignored, never fatal."""

    def __init__(self, home: Path | None = None) -> None:
        self.path: Path | None = (home or data_home()) / "settings.json"
        self._values: dict = {}
        try:  # a device or a FIFO named settings.json is refused, never read or waited on
            loaded = json.loads(read_regular(self.path, MAX_SETTINGS_BYTES).decode("utf-8"))
            if isinstance(loaded, dict):
                self._values = loaded
        except (OSError, ValueError):
            pass

    @classmethod
    def in_memory(cls) -> Preferences:
        """Preferences kept for this run only (a controller made without a window, a script)."""
        preferences = cls.__new__(cls)
        preferences.path, preferences._values = None, {}
        return preferences

    def get(self, key: str, default=None):
        """A preference (playback output, soundfont, instrument, ...), or `default` when unset."""
        return self._values.get(key, default)

    def set(self, key: str, value) -> None:
        """Sets a preference (a JSON value) and saves the preferences."""
        if self._values.get(key) != value:
            self._values[key] = value
            self.save()

    def recent_files(self) -> list[str]:
        """The recently opened or saved files, newest first, that still exist."""
        files = self._values.get("recent_files", [])
        return [path for path in files if isinstance(path, str) and Path(path).exists()][:MAX_RECENT]

    def add_recent_file(self, path: str | os.PathLike) -> None:
        """Puts a file at the top of the recent list and saves the preferences."""
        path = str(Path(path).resolve())
        files = [path] + [other for other in self.recent_files() if other != path]
        self._values["recent_files"] = files[:MAX_RECENT]
        self.save()

    def clear_recent_files(self) -> None:
        """Empties the recent list."""
        self._values["recent_files"] = []
        self.save()

    def save(self) -> None:
        """Writes the preferences atomically; a read-only home only loses the preference."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self._values, indent=1)
            atomic_write(self.path, lambda handle: handle.write(text.encode("utf-8")), mode=PRIVATE)
        except OSError:
            pass
