"""What the studio's tests share: gestures on the roll, waiting on conditions, the components a test needs, a
small model, and clients on the JACK graph that play into the studio or listen to it.

Under CI=true a missing JACK server, FluidSynth library or soundfont fails the test that needs it (see
`require`); elsewhere that test skips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox

from music_transformer import ModelConfig, MusicTransformer, Note, save_checkpoint

# --- gestures --------------------------------------------------------------------------------------------


def drag(qtbot, widget, start: QPoint, end: QPoint, modifiers=Qt.NoModifier, button=Qt.LeftButton) -> None:
    """Presses, moves in a few steps and releases, as a hand would."""
    qtbot.mousePress(widget, button, modifiers, start)
    for fraction in (0.25, 0.5, 0.75, 1.0):
        point = start + (end - start) * fraction
        qtbot.mouseMove(widget, point)
    qtbot.mouseRelease(widget, button, modifiers, end)


def draw_note(qtbot, roll, pitch: int, beat: float, length: float) -> None:
    """Draws a note with the draw tool: press at its start, drag to its end."""
    roll.state.set_tool("draw")
    start = roll.point_for(beat, pitch) + QPoint(1, 0)
    drag(qtbot, roll.canvas, start, roll.point_for(beat + length, pitch))


def key(qtbot, roll, sequence: str) -> None:
    """Presses a key combination with the roll focused."""
    roll.canvas.setFocus()
    combination = QKeySequence(sequence)[0]
    qtbot.keyClick(roll.canvas, combination.key(), combination.keyboardModifiers())


def summary(song, part=None):
    """(pitch, start, length, velocity) of each note, rounded, in time order."""
    return [(n.pitch, round(n.start, 4), round(n.length, 4), n.velocity) for n in song.notes(part)]


def settings(window, **changes) -> None:
    """Changes the song's generation settings (one undo step), as the Continue panel does."""
    song = window.song
    song.set_settings(dataclasses.replace(song.settings, **changes))


def wait_done(qtbot, window, timeout: int = 60000) -> None:
    """Waits until the studio has finished writing (the worker idle, the song's stream closed)."""
    qtbot.waitUntil(lambda: not window.generation.generating and not window.song.is_writing, timeout=timeout)


def answer_next_dialog(button_text: str, seen: list | None = None) -> None:
    """Clicks a button of the next modal dialog once it opens (it blocks in its own event loop)."""

    def attempt() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            if seen is not None:
                seen.append(box.text())
            for button in box.buttons():
                if button.text().replace("&", "") == button_text:
                    button.click()
                    return
        QTimer.singleShot(20, attempt)

    QTimer.singleShot(20, attempt)


def crash(saver) -> None:
    """What a kill leaves of an autosave: the files, with the lock let go (the kernel does that for a dead process)."""
    saver._timer.stop()
    saver._lock.release()


# --- waiting ---------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Polls `condition` until it holds (True) or `timeout` seconds pass (False): for threads without Qt."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@contextlib.contextmanager
def event_loop_ticks(interval_ms: int):
    """The times a GUI timer fired every `interval_ms` during the block: how well the event loop kept running.

    The timer is stopped and deleted on the GUI thread when the block ends, also when its test fails. Left
    running to Python's garbage collector (a failed test's traceback keeps it alive), it could be destroyed on
    another thread, a model loader's: Qt then keeps a dangling timer and the next event loop crashes."""
    import shiboken6

    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(interval_ms)
    try:
        yield ticks
    finally:
        timer.stop()
        shiboken6.delete(timer)


# --- components ------------------------------------------------------------------------------------------


def require(available: bool, what: str) -> None:
    """Fails loudly under CI=true when a component the tests need is missing; skips elsewhere."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing; `make test` installs and starts it (scripts/run-tests.sh)")
    pytest.skip(f"{what} is not available here")


def require_jack() -> None:
    """A JACK server must be running (scripts/run-tests.sh starts one on the dummy driver)."""
    from continuo.backends.servers import jack_server_running

    try:
        import rtmidi

        compiled = rtmidi.API_UNIX_JACK in rtmidi.get_compiled_api()
    except ImportError:
        compiled = False
    require(compiled and jack_server_running(), "a JACK server (jackd -d dummy) and python-rtmidi's JACK API")


def require_fluidsynth() -> Path:
    """FluidSynth and a General MIDI soundfont must be installed; returns the soundfont."""
    from continuo.backends.base import SinkError
    from continuo.backends.fluidsynth import find_soundfont, load_fluidsynth

    try:
        load_fluidsynth()
        library = True
    except SinkError:
        library = False
    require(library, "the FluidSynth library (libfluidsynth3)")
    soundfont = find_soundfont()
    require(soundfont is not None, "a General MIDI soundfont (timgm6mb-soundfont)")
    return soundfont


def small_checkpoint(path: Path, seed: int = 0, styles: bool = True, vocab_size: int | None = None) -> Path:
    """A small random model saved as a checkpoint (the bundled default may not be there yet); `styles=False`
    makes one with the vocabulary of the models made before styles, `vocab_size` one of another vocabulary."""
    import torch

    from music_transformer.events import LEGACY_VOCAB_SIZE, VOCAB_SIZE

    torch.manual_seed(seed)
    config = ModelConfig(
        n_layers=2,
        d_model=64,
        n_heads=4,
        d_ff=128,
        train_length=256,
        max_relative_distance=256,
        vocab_size=vocab_size or (VOCAB_SIZE if styles else LEGACY_VOCAB_SIZE),
    )
    model = MusicTransformer(config)
    save_checkpoint(model, path, name="test model")
    return path


# --- playback ------------------------------------------------------------------------------------------

MELODY = [Note(60, 90, 0.0, 0.2), Note(64, 80, 0.2, 0.4), Note(67, 70, 0.4, 0.6), Note(72, 100, 0.6, 0.9)]


def onsets(notes):
    """(relative time from the first onset, pitch) of the note-ons."""
    ons = [(at, pitch) for at, kind, pitch, _ in notes if kind == "on"]
    return [(at - ons[0][0], pitch) for at, pitch in ons]


# --- the model -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def opening_tokens(model, count: int = 2):
    """The first `count` tokens of every context the model is primed with (a forward hook, watching only)."""
    seen: list[list[int]] = []

    def watch(module, inputs):
        if inputs[0].shape[1] > 1:  # a context being primed; the steps after it feed one token each
            seen.append(inputs[0][0, :count].tolist())

    handle = model.register_forward_pre_hook(watch)
    try:
        yield seen
    finally:
        handle.remove()


# --- audio -----------------------------------------------------------------------------------------------


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(mono float samples in -1..1, sample rate) of a 16-bit WAV file."""
    with wave.open(str(path), "rb") as audio:
        rate = audio.getframerate()
        frames = audio.readframes(audio.getnframes())
        channels = audio.getnchannels()
    samples = np.frombuffer(frames, "<i2").astype(np.float64).reshape(-1, channels).mean(axis=1) / 32768.0
    return samples, rate


def rms(samples: np.ndarray, rate: int, start: float, end: float) -> float:
    """Root-mean-square level between two times in seconds."""
    window = samples[int(start * rate) : int(end * rate)]
    return float(np.sqrt(np.mean(window**2))) if len(window) else 0.0


# --- the JACK graph --------------------------------------------------------------------------------------


def unique(name: str) -> str:
    """A client name no other test (or test run sharing the JACK server) uses."""
    return f"{name} {os.getpid()}-{time.monotonic_ns() % 10**6}"


def jack_connected(source: str, destination: str) -> bool:
    """Whether JACK lists a connection from one port (full name) to another (a part of its name)."""
    listing = subprocess.run(["jack_lsp", "-c"], capture_output=True, text=True, timeout=5).stdout.splitlines()
    for index, line in enumerate(listing):
        if line == source:
            for connection in listing[index + 1 :]:
                if not connection.startswith(" "):
                    break
                if destination in connection:
                    return True
    return False


class JackProbe:
    """Another JACK client that listens: a virtual MIDI input port, or a connection to the studio's port."""

    def __init__(self, name: str = "probe") -> None:
        import rtmidi

        name = f"{name}-{os.getpid()}"  # unique: other test runs may share the JACK server
        self.name = name
        self.received: list[tuple[float, list[int]]] = []
        self._lock = threading.RLock()  # `wait_for` holds it while its condition reads `notes()`
        self._arrived = threading.Condition(self._lock)
        self.port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name)
        self.port.ignore_types(sysex=True, timing=True, active_sense=True)
        # Polled, not a callback: a callback runs on JACK's thread and needs the GIL, and closing the port
        # waits for that thread while holding the GIL, a deadlock. rtmidi queues messages until polled.
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"{name}-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            event = self.port.get_message()
            if event is None:
                time.sleep(0.0005)
                continue
            message, _delta = event
            with self._lock:
                self.received.append((time.perf_counter(), list(message)))
                self._arrived.notify_all()

    def open_virtual(self, port_name: str = "in") -> str:
        """Opens an input port other clients can play into; returns its full JACK name."""
        self.port.open_virtual_port(port_name)
        return f"{self.name}:{port_name}"

    def connect_to(self, source: str, timeout: float = 5.0) -> None:
        """Connects to another client's output port (waits until it exists and JACK has made the connection)."""
        deadline = time.monotonic() + timeout
        matches: list[int] = []
        while not matches and time.monotonic() < deadline:
            matches = [index for index, name in enumerate(self.port.get_ports()) if source in name]
            if not matches:
                time.sleep(0.02)
        if not matches:
            raise AssertionError(f"no JACK port {source!r} among {self.port.get_ports()}")
        port = self.port.get_ports()[matches[0]]
        self.port.open_port(matches[0], "in")
        if not wait_until(lambda: jack_connected(port, self.name), max(0.1, deadline - time.monotonic())):
            raise AssertionError(f"JACK did not connect {port} to {self.name}")

    def notes(self) -> list[tuple[float, str, int, int]]:
        """(time, 'on'/'off', pitch, velocity) of the note messages received, in order."""
        with self._lock:
            result = []
            for at, message in self.received:
                status = message[0] & 0xF0
                if status in (0x80, 0x90):
                    on = status == 0x90 and message[2] > 0
                    result.append((at, "on" if on else "off", message[1], message[2]))
            return result

    def wait_for(self, condition, timeout: float = 10.0) -> bool:
        """Waits until condition(self) holds, woken by each message that arrives."""
        with self._lock:
            return self._arrived.wait_for(lambda: condition(self), timeout)

    def close(self) -> None:
        """Closes the port and the client."""
        self._stop.set()
        self._reader.join(timeout=5)
        self.port.close_port()
        self.port.delete()


class Keyboard:
    """A test client playing the keyboard: a JACK MIDI output port, each message stamped when it was sent."""

    def __init__(self, name: str = "test keys") -> None:
        import rtmidi

        self.name = name
        self.port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=name)
        self.port.open_virtual_port("out")
        self.port_name = f"{name}:out"
        self.sent: list[tuple[float, mido.Message]] = []

    def send(self, message: mido.Message) -> None:
        """Sends one message now, remembering the perf_counter time it left."""
        self.port.send_message(message.bytes())
        self.sent.append((time.perf_counter(), message))

    def play(self, steps: list[tuple[float, mido.Message]]) -> None:
        """Sends messages at offsets (seconds) from now, each on time (sleep, then spin the last stretch)."""
        origin = time.perf_counter()
        for offset, message in steps:
            deadline = origin + offset
            while (left := deadline - time.perf_counter()) > 0.002:
                time.sleep(left - 0.002)
            while time.perf_counter() < deadline:
                pass
            self.send(message)

    def close(self) -> None:
        """Unplugs the keyboard (its port leaves the graph); twice is harmless."""
        if self.port is not None:
            self.port.close_port()
            self.port.delete()
            self.port = None


def on(pitch: int, velocity: int) -> mido.Message:
    return mido.Message("note_on", note=pitch, velocity=velocity)


def off(pitch: int) -> mido.Message:
    return mido.Message("note_off", note=pitch, velocity=0)


def pedal(down: bool) -> mido.Message:
    return mido.Message("control_change", control=64, value=127 if down else 0)


PHRASE = [
    (0.00, on(60, 90)),
    (0.15, off(60)),
    (0.20, on(64, 70)),
    (0.35, off(64)),
    (0.40, on(67, 110)),
    (0.55, off(67)),
    (0.60, on(72, 50)),
    (0.80, off(72)),
]


def jack_period_seconds() -> float | None:
    """The JACK server's period (buffer size / rate): the graph delivers MIDI once per period."""
    try:
        size = subprocess.run(["jack_bufsize"], capture_output=True, text=True, timeout=5).stdout
        frames = int(size.split()[0])
        rate = subprocess.run(["jack_samplerate"], capture_output=True, text=True, timeout=5).stdout
        return frames / int(rate.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


@contextlib.contextmanager
def studio_port_with_listener(window, name: str):
    """The studio playing to its own virtual JACK port (client `Continuo <name> ...`), a probe listening
    on it; yields the probe, and unplugs both afterwards."""
    from continuo.playback import MidiPortSink

    require_jack()
    client = unique(f"Continuo {name}")
    sink = MidiPortSink(virtual=True, client_name=client)
    window.player.use_sinks([sink])
    probe = JackProbe(f"{name} probe {os.getpid()}")
    try:
        probe.connect_to(f"{client}:")
        yield probe
    finally:
        probe.close()
        window.player.use_sinks([])
        sink.close()
