"""Python's cyclic garbage is collected on the GUI thread only, so a helper thread (the model's) never destroys a
Qt object; and what the collector does when the application hands collection back."""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject

from continuo.background import GC_INTERVAL_MS, GuiThreadCollector, collect_garbage_on_gui_thread


class _Cycle:
    """A Qt object owned by Python and kept only by a reference cycle (as a closure or a signal connection can
    make one); `died_on` says which thread destroyed it. (It has no timer: one destroyed on a helper thread stays
    registered with the GUI thread's event loop, which is the crash the collector prevents.)"""

    def __init__(self, died_on: list[str]) -> None:
        self.me = self
        self.died_on = died_on
        self.owner = QObject()  # no parent: Python owns it, and it dies with this object

    def __del__(self) -> None:
        self.died_on.append(threading.current_thread().name)


def _allocate_on_a_helper_thread() -> list:
    """What the model's thread does when it loads a checkpoint: allocate, and keep, far more objects than the
    collector's first threshold."""
    kept: list = []
    helper = threading.Thread(
        target=lambda: kept.extend([index] for index in range(20 * gc.get_threshold()[0])), name="helper"
    )
    helper.start()
    helper.join()
    return kept


def test_garbage_in_a_cycle_dies_on_the_gui_thread_even_when_a_helper_thread_allocates(qtbot, qapp):
    collector = collect_garbage_on_gui_thread(qapp)
    assert collect_garbage_on_gui_thread(qapp) is collector  # one per application
    assert not gc.isenabled()
    gc.collect()
    died_on: list[str] = []
    _Cycle(died_on)
    kept = _allocate_on_a_helper_thread()
    assert died_on == []  # the helper thread's allocations did not collect it there
    qtbot.waitUntil(lambda: died_on != [], timeout=20 * GC_INTERVAL_MS)
    assert died_on == [threading.main_thread().name]
    assert collector.collections > 0
    del kept


def test_without_the_collector_a_helper_thread_would_destroy_it(qtbot, qapp):
    """What the collector prevents, shown with CPython's automatic collection back on."""
    collector = collect_garbage_on_gui_thread(qapp)
    collector.stop()
    try:
        assert gc.isenabled()
        died_on: list[str] = []
        _Cycle(died_on)
        kept = _allocate_on_a_helper_thread()
        assert died_on == ["helper"]
        del kept
    finally:
        collector = collect_garbage_on_gui_thread(qapp)  # the package's fixture expects one running
    assert isinstance(collector, GuiThreadCollector) and not gc.isenabled()
