"""Continuo's studio: the song document, the piano roll and the main window. All the Qt code lives here."""

from __future__ import annotations

import sys


def _shield_none_from_pyside_6_12() -> None:
    """Works around a PySide6 6.12 binding bug on Python 3.11 and older.

    Shiboken 6.12 returns `None` from every Qt method that returns void without taking a new reference to
    it, which is harmless where `None` is immortal (Python 3.12+), but on Python 3.11 each such call takes
    one reference from `None`; after a few thousand calls (one repaint makes hundreds) CPython aborts with
    "deallocating None". Giving `None` a vast reference count keeps it from ever reaching zero. Pinning
    PySide6-Essentials below 6.12 makes this unnecessary; it does nothing on Python 3.12+.
    """
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    try:
        from importlib.metadata import version

        major, minor = (int(part) for part in version("shiboken6").split(".")[:2])
    except Exception:  # not installed the usual way: assume the bug may be there
        major, minor = 6, 12
    if (major, minor) < (6, 12):
        return
    import ctypes

    refcount = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt is a PyObject's first field
    if refcount.value < 1 << 40:
        refcount.value += 1 << 44


_shield_none_from_pyside_6_12()
