"""Writing a file whole or not at all: checkpoints, sessions, settings, exports and the crash journal all
go through `atomic_write`, so that a crash or a full disk never leaves half a file where the user's was."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: str | os.PathLike, write, mode: int = 0o666) -> None:
    """Calls write(binary file) on a temporary file beside `path`, then renames it over `path`.

    The file gets `mode` less the user's umask: by default that of any file a program creates (0644
    usually), so that a DAW or an upload running as another user can read what was exported; 0o600 keeps
    a private file (a crash journal) to its owner.
    """
    path = Path(path)
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:  # the kernel applies the umask, as for open(path, "w")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
