"""The studio's MIDI input, on the GUI thread: which keyboard is open, MIDI thru, and the hand-over of what is
played to the recorder.

    keyboard ─ reader thread ─┬─> listeners (the duet: at once, before the key sounds)
                              ├─> thru (at once: the musician hears the key)
                              └─> queue ─> MidiInputController (GUI thread, drained every 10 ms) ─> Recorder

The reader thread never touches Qt or the song: it stamps each message with the `time.perf_counter()` time it
arrived (`ports.ArrivalClock`), sends it through, and queues it. The GUI thread drains the queue on a timer, a
bounded slice at a time, so a flood of messages never freezes the window and none is dropped.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence

import mido
from PySide6.QtCore import QObject, QTimer, Signal

from ..backends.base import Sink, SinkError, TapSink
from ..background import run_in_background
from ..settings import Preferences
from ..song import Song
from ..transport import Transport
from .ports import VIRTUAL_INPUT, MidiInput, MidiInputError, PortWatcher
from .recorder import Recorder

DRAIN_INTERVAL_MS = 10
DRAIN_BUDGET_SECONDS = 0.02  # the GUI thread spends at most this per drain; the rest waits for the next tick


class MidiInputController(QObject):
    """The studio's MIDI input: the port (hot-plug aware), thru, and the recorder it plays into."""

    ports_changed = Signal(list)  # names of the inputs now available
    input_changed = Signal(str)  # the input now open ("" for none)
    message = Signal(str)  # for the status bar: a lost port, an input that cannot open, a take that cannot start
    audio_servers_changed = Signal(list)  # the sound servers running now (jack, pipewire, pulseaudio)
    _polled = Signal(list)  # the port watcher's thread -> GUI: the port list

    def __init__(
        self,
        song: Song,
        transport: Transport | None = None,
        thru: Callable[[], Sequence[Sink]] | None = None,
        preferences: Preferences | None = None,
        parent: QObject | None = None,
        poll: bool = True,
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.preferences = preferences if preferences is not None else Preferences.in_memory()
        self._outputs: Callable[[], Sequence[Sink]] = thru or (lambda: [])
        self.thru_enabled = bool(self.preferences.get("midi_thru", True))
        self.listeners: list[Callable[[float, mido.Message], None]] = []  # called on the reader thread (the duet)
        self.input: MidiInput | None = None
        self.available: list[str] = []
        self.recorder = Recorder(song, transport, self.outputs, self.preferences, self)
        self.recorder.message.connect(self.message)
        self._queue: queue.SimpleQueue[tuple[float, mido.Message]] = queue.SimpleQueue()
        self.drained = 0  # messages handed from the queue to the recorder (the benchmark counts each hop)
        self._request = 0
        self._closed = False
        self._thru_sink = TapSink(lambda: self.outputs() if self.thru_enabled else [], "MIDI thru")
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_INTERVAL_MS)
        self._drain_timer.timeout.connect(self.drain)
        self._drain_timer.start()
        self._polled.connect(self._ports_polled)
        self._watcher = PortWatcher(self._polled.emit, self.audio_servers_changed.emit) if poll else None

    def outputs(self) -> Sequence[Sink]:
        """The outputs the keyboard (with thru on), the clicks and the duet's answers are heard through."""
        return list(self._outputs())

    # --- ports ---------------------------------------------------------------------------------------------

    @property
    def choice(self) -> str:
        """The input chosen in the preferences ("" for none)."""
        return str(self.preferences.get("midi_input", "") or "")

    def open_input(self, port_name: str, wait: bool = False) -> None:
        """Opens an input (a port name, or VIRTUAL_INPUT) on a helper thread; "" closes the input."""
        self.preferences.set("midi_input", port_name)
        self._request += 1
        request = self._request
        if not port_name:
            self._input_opened((None, None, request))
            return

        def work() -> tuple[MidiInput | None, MidiInputError | None, int]:
            try:
                return MidiInput(port_name, self.receive), None, request
            except MidiInputError as failure:
                return None, failure, request
            except Exception as failure:  # noqa: BLE001 - a broken driver must not take the studio down
                return None, MidiInputError(f"Cannot open the MIDI input: {failure}"), request

        def orphaned(result: tuple[MidiInput | None, MidiInputError | None, int]) -> None:
            if result[0] is not None:
                result[0].close()

        run_in_background(self, "continuo-open-input", work, self._input_opened, orphaned, wait)

    def _input_opened(self, result: tuple[MidiInput | None, MidiInputError | None, int]) -> None:
        opened, error, request = result
        if request != self._request or self._closed:
            if opened is not None:
                opened.close()
            return
        old, self.input = self.input, opened
        if old is not None:
            old.close()
        if error is not None:
            self.message.emit(str(error))
        self.input_changed.emit(opened.port_name if opened is not None else "")

    def _ports_polled(self, names: list[str]) -> None:
        if self._closed:
            return
        if names != self.available:
            self.available = list(names)
            self.ports_changed.emit(self.available)
        current = self.input
        if current is not None and not current.present(names):
            self.port_lost(current.port_name)
        elif current is None and self.choice and self.choice in names and self.choice != VIRTUAL_INPUT:
            self.open_input(self.choice)  # the keyboard came back: reconnect, as the musician expects

    def port_lost(self, port_name: str) -> None:
        """The keyboard went away: the take so far is kept (held notes end now) and the musician is told."""
        if self.input is not None and self.input.port_name == port_name:
            self.input.close()
            self.input = None
            self.input_changed.emit("")
        kept = self.stop_recording()
        detail = f"; the {kept} notes recorded are kept" if kept else ""
        self.message.emit(
            f"MIDI input “{port_name}” went away{detail}. Plug it in again (it reconnects by "
            "itself) or choose another input in Record ▸ MIDI Input"
        )

    # --- what is played ------------------------------------------------------------------------------------

    def receive(self, at: float, message: mido.Message) -> None:
        """Takes one message as the input's reader thread does (any thread): listeners, thru, then the queue.

        Listeners come first so that a duet answer stops before the key that interrupts it sounds.
        """
        for listener in list(self.listeners):
            listener(at, message)
        if self.thru_enabled:
            try:
                self._thru_sink.send(message)
            except SinkError:
                pass
        self._queue.put((at, message))

    def drain(self, budget: float | None = DRAIN_BUDGET_SECONDS) -> None:
        """Hands the messages that arrived to the recorder (the timer calls this every 10 ms)."""
        deadline = None if budget is None else time.perf_counter() + budget
        batch: list[tuple[float, mido.Message]] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
            if deadline is not None and len(batch) % 64 == 0 and time.perf_counter() > deadline:
                break  # the rest waits for the next tick; the window stays responsive
        self.drained += len(batch)
        self.recorder.receive(batch)

    def set_thru(self, enabled: bool) -> None:
        """Plays what comes in through the output at once (MIDI thru)."""
        self.thru_enabled = bool(enabled)
        self.preferences.set("midi_thru", self.thru_enabled)
        if not enabled:
            self._thru_sink.reset()

    # --- recording -----------------------------------------------------------------------------------------

    def start_recording(self) -> bool:
        """Starts a take from the open input; False with a message if it cannot."""
        if self.recorder.recording:
            return False
        if self.input is None:
            self.message.emit("Choose a MIDI input first (Record ▸ MIDI Input)")
            return False
        self.drain(budget=None)  # what was played before pressing Record is not part of the take
        return self.recorder.start()

    def stop_recording(self) -> int:
        """Ends the take with everything played so far; returns how many notes it has."""
        self.drain(budget=None)
        return self.recorder.stop()

    def toggle_recording(self) -> bool:
        """Record if not recording, stop if recording (Ctrl+R); returns whether a take is being recorded."""
        if self.recorder.recording:
            self.stop_recording()
        else:
            self.start_recording()
        return self.recorder.recording

    def close(self) -> None:
        """Stops recording (keeping the take), closes the input and ends the threads (on quit)."""
        if self._closed:
            return
        self.stop_recording()
        self._closed = True
        self._drain_timer.stop()
        if self._watcher is not None:
            self._watcher.close()
        self.recorder.close()
        if self.input is not None:
            self.input.close()
            self.input = None
        self._thru_sink.reset()
