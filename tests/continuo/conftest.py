"""Fixtures for the studio tests: a real window in a temporary home, a model, a studio that plays into a
recorder, and a keyboard plugged into the studio on a real JACK graph. Helpers are in helpers.py."""

from __future__ import annotations

import pytest

from continuo.background import collect_garbage_on_gui_thread
from continuo.main_window import MainWindow
from continuo.playback import RecorderSink
from music_transformer.checkpoint import DEFAULT_CHECKPOINT
from tests.continuo.helpers import Keyboard, studio_port_with_listener, unique


@pytest.fixture(scope="package", autouse=True)
def garbage_collected_on_the_gui_thread(qapp):
    """As in the studio (continuo/main.py): Python's cyclic garbage is collected on the GUI thread only; the tests
    outside this package get CPython's own collection back."""
    collect_garbage_on_gui_thread(qapp)
    yield
    collect_garbage_on_gui_thread(qapp).stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A per-test data home, so autosaves and recent files never touch the real one."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("CONTINUO_HOME", str(folder))
    return folder


@pytest.fixture
def window(qtbot, home):
    """A shown studio window with autosave on (a long interval: tests snapshot explicitly)."""
    win = MainWindow(home=home, autosave_interval_ms=60_000)
    win.resize(1100, 720)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    win.roll.canvas.setFocus()
    win.roll.state.set_view(left_beat=0.0, top_key=127 - 72, pixels_per_beat=80, key_height=14)
    yield win
    win.song.undo_stack.setClean()  # no "save changes?" question while tearing down
    win.close()
    win.deleteLater()


@pytest.fixture
def roll(window):
    """The window's piano roll."""
    return window.roll


@pytest.fixture(scope="module")
def model_path():
    """The bundled model: some studio tests listen for what a trained model writes (two hands, a key). A module
    that needs another (a small random one, quick to write with, that can fill gaps) overrides this fixture,
    and `studio` loads that one."""
    assert DEFAULT_CHECKPOINT.exists(), f"the bundled model is missing: {DEFAULT_CHECKPOINT}"
    return DEFAULT_CHECKPOINT


@pytest.fixture
def studio(qtbot, window, model_path):
    """The window with the model loaded (`model_path`: the module's own where it has one) and a recorder as its
    sound output."""
    recorder = RecorderSink()
    window.player.use_sinks([recorder])
    window.generation.choose_model(model_path)
    qtbot.waitUntil(lambda: window.generation.model_source == str(model_path), timeout=20000)
    window.recorder = recorder
    return window


@pytest.fixture
def graph(qtbot, window):
    """The studio with its thru going to its own JACK port, a listener on it, and a keyboard plugged in."""
    with studio_port_with_listener(window, "thru") as probe:
        keyboard = Keyboard(unique("keys"))
        midi = window.midi
        qtbot.waitUntil(lambda: keyboard.port_name in midi.available, timeout=10000)  # hot-plug: it shows up
        midi.open_input(keyboard.port_name, wait=True)
        qtbot.waitUntil(lambda: midi.input is not None, timeout=5000)
        try:
            yield window, keyboard, probe
        finally:
            window.duet.stop()
            midi.stop_recording()
            keyboard.close()
