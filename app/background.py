"""Work that would stall the window (opening a MIDI port or a synth, loading a model) runs on a helper thread;
its result comes back to the GUI thread through a queued Qt signal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QObject, Signal, Slot

T = TypeVar("T")


class _Relay(QObject):
    """Lives on the GUI thread; the helper thread emits `finished`, Qt queues the call of `done` there."""

    finished = Signal(object)

    def __init__(self, done: Callable[[T], None], parent: QObject) -> None:
        super().__init__(parent)
        self._done = done
        self.finished.connect(self._deliver)

    @Slot(object)
    def _deliver(self, result: T) -> None:
        self.deleteLater()
        self._done(result)


def run_in_background(
    owner: QObject,
    name: str,
    work: Callable[[], T],
    done: Callable[[T], None],
    orphaned: Callable[[T], None] | None = None,
    wait: bool = False,
) -> threading.Thread:
    """Runs `work()` on a daemon thread called `name`, then `done(result)` on the GUI thread.

    `work` catches its own errors and returns them as part of its result. If `owner` is gone by the time
    the work is done (the window closed meanwhile), `orphaned(result)` runs on the helper thread instead,
    to release what the work opened. `wait=True` joins the thread before returning (tests, scripts).
    """
    relay = _Relay(done, owner)

    def run() -> None:
        result = work()
        try:
            relay.finished.emit(result)
        except RuntimeError:  # the owner, and the relay with it, was deleted meanwhile
            if orphaned is not None:
                orphaned(result)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if wait:
        thread.join()
    return thread
