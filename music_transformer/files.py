"""Files in and out, in one place.

Writing: checkpoints, sessions, settings, exports and the crash journal all go through `atomic_write`, so that
a crash or a full disk never leaves half a file where the user's was, a link is written through to its target,
and a file written over keeps its permissions.

Reading: every reader (sessions, the autosave journal, MIDI files, models and their configs, settings, model
cards) goes through `read_regular` or `open_regular`, so that only regular files are read: a device (/dev/zero,
/dev/urandom), a FIFO or a socket is refused without blocking, and a file past its reader's cap is refused
before a byte of it is parsed.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX: opening a FIFO does not wait for its writer (Windows has none)


class NotRegularFileError(OSError):
    """A path that names a device, a FIFO or a socket, not a file: refused without being read or written."""

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        super().__init__(errno.EINVAL, f"is {what}, not a file", str(path))


class FileTooLargeError(OSError):
    """A file past the cap its reader sets: refused before it is read. `size` is what it holds (at least)."""

    def __init__(self, path: str | os.PathLike, size: int, cap: int) -> None:
        super().__init__(errno.EFBIG, f"the file is over {_amount(cap)}, the most it may be", str(path))
        self.size, self.cap = size, cap


def _amount(size: int) -> str:
    """A byte count in words (1 MB, 200 kB)."""
    if size >= 2**20:
        return f"{size / 2**20:g} MB"
    return f"{size / 2**10:g} kB" if size >= 2**10 else f"{size} bytes"


def _kind(mode: int) -> str:
    """What a file of this mode is, in words, for a refusal."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: str | os.PathLike, cap: int, follow_links: bool = True) -> BinaryIO:
    """Opens a regular file for reading (links followed unless `follow_links` is false: then a link is an
    OSError), refusing anything else without blocking.

    A FIFO is opened non-blocking (so that no writer is waited for) and refused on its fstat; a folder raises
    IsADirectoryError, a device, FIFO or socket `NotRegularFileError`, a file over `cap` bytes
    `FileTooLargeError`; FileNotFoundError and the other OSErrors as open() raises them. The checks are made on
    the descriptor that is read, so a path swapped after them changes nothing.
    """
    flags = os.O_RDONLY | NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags)
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFileError(path, _kind(status.st_mode))
        if status.st_size > cap:
            raise FileTooLargeError(path, status.st_size, cap)
        if NONBLOCK:
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular(path: str | os.PathLike, cap: int) -> bytes:
    """The bytes of a regular file of at most `cap` bytes (`open_regular`'s refusals), never more than cap + 1
    read even when the file grows while it is read."""
    with open_regular(path, cap) as handle:
        data = handle.read(cap + 1)
    if len(data) > cap:
        raise FileTooLargeError(path, len(data), cap)
    return data


def write_target(path: str | os.PathLike) -> tuple[Path, os.stat_result | None]:
    """Where writing `path` puts the bytes: a link's final target (the link stays), and what is there now
    (None for nothing). Raises IsADirectoryError or `NotRegularFileError` for a folder, a device, a FIFO or a
    socket, which are never written over."""
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        status = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (the folder's own checks come when writing)
        return target, None
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if not stat.S_ISREG(status.st_mode):
        raise NotRegularFileError(path, _kind(status.st_mode))
    return target, status


def atomic_write(path: str | os.PathLike, write, mode: int = 0o666) -> None:
    """Calls write(binary file) on a temporary file beside the file `path` names, then renames it over that file.

    A link is written through: its target (the last one of a chain) gets the new bytes, atomically, and the link
    stays a link. A folder, a device, a FIFO or a socket at the path (or the link's end) is refused with
    IsADirectoryError or `NotRegularFileError` before anything is written.

    A new file gets `mode` less the user's umask: by default that of any file a program creates (0644
    usually), so that a DAW or an upload running as another user can read what was exported; 0o600 keeps
    a private file (a crash journal) to its owner. A file written over keeps its own permissions, never more
    than `mode` allows (a 0600 session stays 0600; settings written 0644 by an older version become 0600).
    """
    target, existing = write_target(path)
    while True:
        temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:  # the kernel applies the umask, as for open(path, "w"); a file written over: its owner's alone first
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                                 mode if existing is None else 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if existing is not None and hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), stat.S_IMODE(existing.st_mode) & mode & 0o777)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
