"""The recording sink: every message kept with the time it was sent, for tests and benchmarks to listen to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import mido

from .base import Sink


class RecorderSink(Sink):
    """Keeps every message with the `time.perf_counter()` it was sent at: tests and benchmarks listen here."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[float, mido.Message]] = []
        self._arrived = threading.Condition(self._lock)

    def _send(self, message: mido.Message) -> None:
        self.messages.append((time.perf_counter(), message))
        self._arrived.notify_all()

    def notes(self) -> list[tuple[float, str, int, int]]:
        """(time, 'on' or 'off', pitch, velocity) of every note message so far."""
        with self._lock:
            return [
                (at, "on" if m.type == "note_on" and m.velocity > 0 else "off", m.note, m.velocity)
                for at, m in self.messages
                if m.type in ("note_on", "note_off")
            ]

    def wait_for(self, condition: Callable[[list[tuple[float, mido.Message]]], bool], timeout: float) -> bool:
        """Waits until `condition(messages)` holds (True) or the timeout passes (False)."""
        with self._lock:
            return self._arrived.wait_for(lambda: condition(self.messages), timeout)

    def clear(self) -> None:
        """Forgets the messages recorded so far."""
        with self._lock:
            self.messages.clear()
