"""Work that would stall the window (opening a MIDI port or a synth, loading a model) runs on a helper thread;
its result comes back to the GUI thread through a queued Qt signal. Python's cyclic garbage is collected on
the GUI thread only (`collect_garbage_on_gui_thread`), so that no helper thread ever destroys a Qt object."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal, Slot

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


GC_INTERVAL_MS = 250  # how often the GUI thread looks whether Python's garbage wants collecting


class GuiThreadCollector(QObject):
    """Python's cyclic garbage collector, run by a timer on the GUI thread instead of wherever it falls due.

    CPython collects when enough objects have been allocated, on whichever thread allocates the one too many:
    in the studio that is usually the model's thread (loading a checkpoint, writing a continuation). A Qt
    object owned by Python and caught in a reference cycle is then destroyed on that thread, and Qt objects
    must die on their own thread: a timer of one is left registered with nothing behind it, and the next event
    loop crashes. So automatic collection is off, and this collector follows CPython's own rule (a generation
    is collected once its count passes its threshold) every `GC_INTERVAL_MS` on the GUI thread. Reference
    counting still frees everything that is not in a cycle at once, on any thread."""

    def __init__(self, application: QCoreApplication) -> None:
        super().__init__(application)
        self.setObjectName("continuo-gc")
        self.thresholds = gc.get_threshold()
        self.collections = 0
        self._timer = QTimer(self)
        self._timer.setInterval(GC_INTERVAL_MS)
        self._timer.timeout.connect(self.collect)
        self._timer.start()
        gc.disable()

    @Slot()
    def collect(self) -> None:
        """Collects the oldest generation whose count has passed its threshold, if any."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                self.collections += 1
                return

    def stop(self) -> None:
        """Hands collection back to CPython (automatic again, on any thread) and collects once here."""
        self._timer.stop()
        self.setObjectName("")  # the application may start another one
        gc.enable()
        gc.collect()
        self.deleteLater()


def collect_garbage_on_gui_thread(application: QCoreApplication) -> GuiThreadCollector:
    """Turns CPython's automatic collection off and collects on `application`'s thread instead; once per
    application (a second call returns the collector already running)."""
    running = application.findChild(GuiThreadCollector, "continuo-gc")
    if running is not None:
        return running
    return GuiThreadCollector(application)
