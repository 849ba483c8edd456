"""Crash restore: a real studio killed with SIGKILL and the next launch restoring every edit; the offer can
wait or discard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import restore
from music_transformer import Note, write_midi
from tests.app.helpers import answer_next_dialog, crash

ROOT = Path(__file__).resolve().parents[2]


def _launch(home: Path, script: list, *args: str) -> subprocess.Popen:
    script_path = home / f"script-{time.monotonic_ns()}.json"
    script_path.write_text(json.dumps(script))
    env = dict(os.environ, CONTINUO_HOME=str(home), CONTINUO_SCRIPT=str(script_path), QT_QPA_PLATFORM="offscreen")
    return subprocess.Popen(
        [sys.executable, "-m", "app.main", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = process.stdout.readline()
        if got.strip() == line:
            return
        if not got and process.poll() is not None:
            raise AssertionError(f"the studio exited ({process.returncode}): {process.stderr.read()[-2000:]}")
    raise AssertionError(f"no {line!r} from the studio within {timeout} s")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_after_edits_then_the_next_launch_restores_every_edit(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    motif = tmp_path / "motif.mid"
    write_midi([Note(60, 90, 0.0, 0.5), Note(64, 90, 0.5, 1.0), Note(67, 90, 1.0, 1.5)], motif, bpm=120)
    before_kill, after_restore = tmp_path / "before.json", tmp_path / "after.json"
    # First launch: open a MIDI file, edit it with the mouse and keys, then be killed without warning.
    edits = [
        {"draw": [72, 4, 1]},
        {"draw": [74, 5, 0.5]},
        {"key": "Ctrl+A"},
        {"key": "Shift+Up"},  # everything up an octave
        {"key": "Right"},  # and a sixteenth later
        {"draw": [50, 8, 2]},
        {"key": "Delete"},  # the note just drawn is selected: deleted
        {"draw": [55, 9, 1]},
        {"key": "Ctrl+Z"},
        {"dump": str(before_kill)},
        {"print": "edited"},
        {"wait_ms": 120_000},
    ]
    first = _launch(home, edits, str(motif))
    try:
        _wait_for_line(first, "edited")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    expected = json.loads(before_kill.read_text())
    assert len(expected["notes"]) == 5 and {n[0] for n in expected["notes"]} == {72, 76, 79, 84, 86}
    # Second launch: the studio offers the restore; accepting it brings back every edit.
    steps = [
        {"answer": "Restore"},
        {"dump": str(after_restore)},
        {"print": "restored"},
        {"quit": True},
        {"answer": "Discard"},
    ]
    second = _launch(home, steps)
    try:
        _wait_for_line(second, "restored")
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert json.loads(after_restore.read_text()) == expected
    # The restored work was handed over; a third launch finds nothing to restore.
    assert not list((home / "autosave").glob("*.json"))


def test_the_restore_offer_can_wait_or_discard(qtbot, home):
    from app.main_window import MainWindow

    crashed = MainWindow(home=home, autosave_interval_ms=60_000)
    crashed.song.add_notes([crashed.song.new_note(60, 100, 0, 1)])
    crash(crashed.document.autosave)
    crashed.document.autosave = None
    crashed.song.undo_stack.setClean()
    crashed.close()

    later = MainWindow(home=home, use_autosave=False)
    asked = []
    answer_next_dialog("Not Now", asked)
    assert not later.offer_restore()
    assert "closed unexpectedly" in asked[0] and len(later.song) == 0
    answer_next_dialog("Discard")
    assert not later.offer_restore()
    assert restore.find_orphans(home / "autosave") == []
    later.close()
