"""Autosave and crash restore: the journal in-process, and a real studio killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import autosave
from app.song import CONTINUATION, Song
from music_transformer import Note, write_midi
from tests.app.helpers import draw_note, key, summary

ROOT = Path(__file__).resolve().parents[2]


def crash(saver: autosave.Autosave) -> None:
    """What a kill leaves behind: the files, with the lock let go (the kernel does that for a dead process)."""
    saver._timer.stop()
    saver._lock.release()


def test_the_journal_restores_every_edit_since_the_last_snapshot(qtbot, home, window, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    window.autosave.snapshot_now()
    draw_note(qtbot, roll, 64, 1, 1)
    key(qtbot, roll, "Up")
    window.song.set_tempo(87)
    window.song.add_notes([window.song.new_note(70, 40, 3, 1, CONTINUATION)])
    draw_note(qtbot, roll, 72, 4, 1)
    key(qtbot, roll, "Ctrl+Z")  # undo is an edit too
    expected, meta = summary(window.song), window.song.meta()
    crash(window.autosave)
    orphans = autosave.find_orphans(home / "autosave")
    assert len(orphans) == 1 and orphans[0].has_changes
    restored = Song()
    autosave.restore(orphans[0], restored)
    assert summary(restored) == expected and restored.meta() == meta
    assert [n.part for n in restored.notes()] == [n.part for n in window.song.notes()]
    assert restored.is_modified
    assert restored.new_note(1, 1, 0, 1).id > max(n.id for n in window.song.notes())
    orphans[0].discard()
    assert autosave.find_orphans(home / "autosave") == []
    window.autosave = None  # already "crashed"


def test_a_kill_between_snapshot_and_journal_reset_restores_once(qapp, tmp_path):
    song = Song()
    saver = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    song.add_notes([song.new_note(60, 100, 0, 1)])
    song.add_notes([song.new_note(62, 100, 1, 1)])
    song.remove_notes([song.notes()[0].id])
    journal = saver.journal_path.read_text()
    saver.snapshot_now()
    saver.journal_path.write_text(journal)  # as if killed after the snapshot, before the journal restarted
    crash(saver)
    restored = Song()
    autosave.restore(autosave.find_orphans(tmp_path)[0], restored)
    assert summary(restored) == summary(song)


def test_a_running_studio_is_not_an_orphan_and_a_clean_exit_leaves_nothing(qapp, tmp_path):
    song = Song()
    saver = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    song.add_notes([song.new_note(60, 100, 0, 1)])
    assert autosave.find_orphans(tmp_path) == []
    saver.close()
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_journal_line_costs_only_itself(qapp, tmp_path):
    song = Song()
    saver = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    song.add_notes([song.new_note(60, 100, 0, 1)])
    song.add_notes([song.new_note(62, 100, 1, 1)])
    with open(saver.journal_path, "a") as handle:
        handle.write('{"seq": 99, "added": [[1, 2')  # the kill came mid-line
    crash(saver)
    restored = Song()
    autosave.restore(autosave.find_orphans(tmp_path)[0], restored)
    assert summary(restored) == summary(song)


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
    from tests.app.helpers import answer_next_dialog

    crashed = MainWindow(home=home, autosave_interval_ms=60_000)
    crashed.song.add_notes([crashed.song.new_note(60, 100, 0, 1)])
    crash(crashed.autosave)
    crashed.autosave = None
    crashed.song.undo_stack.setClean()
    crashed.close()

    later = MainWindow(home=home, use_autosave=False)
    asked = []
    answer_next_dialog("Not Now", asked)
    assert not later.offer_restore()
    assert "closed unexpectedly" in asked[0] and len(later.song) == 0
    answer_next_dialog("Discard")
    assert not later.offer_restore()
    assert autosave.find_orphans(home / "autosave") == []
    later.close()


def test_leftovers_of_killed_studios_are_swept(qapp, tmp_path):
    stale = tmp_path / ".abc.json.123.tmp"
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / ".def.json.456.tmp"
    fresh.write_text("{")  # maybe a running studio's write in progress: left alone
    (tmp_path / "early.lock").write_text("12345")  # killed before its first snapshot
    song = Song()
    running = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    assert autosave.find_orphans(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, running.snapshot_path.name, running.journal_path.name, f"{running.id}.lock"]
    )
    running.close()
