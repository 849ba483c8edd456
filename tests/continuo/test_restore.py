"""Crash restore: a real studio killed with SIGKILL and the next launch restoring every edit; the offer can
wait or discard."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from continuo.journal import find_orphans
from music_transformer import Note, write_midi
from tests.continuo.helpers import answer_next_dialog, crash, summary

ROOT = Path(__file__).resolve().parents[2]


def _launch(home: Path, script: list, *args: str) -> subprocess.Popen:
    script_path = home / f"script-{time.monotonic_ns()}.json"
    script_path.write_text(json.dumps(script))
    env = dict(os.environ, CONTINUO_HOME=str(home), CONTINUO_SCRIPT=str(script_path), QT_QPA_PLATFORM="offscreen")
    return subprocess.Popen(
        [sys.executable, "-m", "continuo.main", *args],
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
        {"select": [50, 8.5]},
        {"key": "Delete"},  # the note just drawn, clicked: deleted
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
    from continuo.main_window import MainWindow

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
    assert find_orphans(home / "autosave") == []
    later.close()


# --- damaged autosaves (issue 25): kept aside, never blocking a start; only checked edits replayed ----------


def _crashed_studio(home: Path, pitches: list[int], saved_at: float | None = None):
    """A studio with some notes that was killed: its autosave (snapshot plus journal) stays behind."""
    from continuo.main_window import MainWindow

    crashed = MainWindow(home=home, autosave_interval_ms=60_000)
    song = crashed.song
    song.add_notes([song.new_note(pitch, 100, index, 1) for index, pitch in enumerate(pitches)])
    saver = crashed.document.autosave
    saver.snapshot_now()
    if saved_at is not None:  # an older crash
        data = json.loads(saver.snapshot_path.read_text())
        data["autosave"]["saved_at"] = saved_at
        saver.snapshot_path.write_text(json.dumps(data))
    crash(saver)
    crashed.document.autosave = None
    song.undo_stack.setClean()
    crashed.close()
    return saver


def _status(window) -> str:
    return window.statusBar().currentMessage()


def test_restore_replays_only_the_journal_lines_that_pass_the_session_checks(qtbot, home, tmp_path):
    from continuo.main_window import MainWindow
    from continuo.session import read_session

    saver = _crashed_studio(home, [60, 62])
    good = {"seq": 101, "removed": [], "added": [[50, 64, 90, 2.0, 1.0, "motif"]], "meta": {"tempo": 90}}
    bad = [
        {"seq": 102, "removed": [], "added": [[51, 300, 100, 1, 1, "motif"]], "meta": {}},  # pitch 300
        {"seq": 103, "removed": [], "added": [[52, 60, 100, float("nan"), 1, "motif"]], "meta": {}},
        {"seq": 104, "removed": [], "added": [], "meta": {"tempo": -5}},
        {"seq": 105, "removed": [], "added": [], "meta": {"tempo": float("inf")}},
        {"seq": 106, "removed": [], "added": [[53, 60, 100, 1, 1, "drums"]], "meta": {}},
        {"seq": 107, "removed": [], "added": [[54, 60, 100, 1e300, 1, "motif"]], "meta": {}},
        {"seq": 108, "removed": [1], "added": [], "meta": {"settings": {"top_k": 1e999}}},
        {"seq": "109", "removed": [1], "added": [], "meta": {}},
        {"seq": 110, "removed": [], "added": [], "meta": {"key": "unknown property"}},
    ]
    lines = [json.dumps(good).encode()] + [json.dumps(line).replace("1e+999", "1e999").encode() for line in bad]
    lines.append(b'{"seq": 111, "removed": [2], "added": [], "meta": {}, "x": "\xff\xfe"}')  # not UTF-8
    saver.journal_path.write_bytes(b"\n".join(lines) + b"\n")
    window = MainWindow(home=home, use_autosave=False)
    try:
        asked = []
        answer_next_dialog("Restore", asked)
        assert window.offer_restore()
        assert "closed unexpectedly" in asked[0]
        assert summary(window.song) == [(60, 0.0, 1.0, 100), (62, 1.0, 1.0, 100), (64, 2.0, 1.0, 90)]
        assert window.song.tempo == 90 and window.song.settings.top_k == 0
        assert "Restored 3 notes" in _status(window) and "10 damaged edits left out" in _status(window)
        # What was restored is a song like any other: it saves, opens again and exports.
        assert window.document.save_as(tmp_path / "restored.continuo")
        assert len(read_session(tmp_path / "restored.continuo").notes) == 3
        assert window.document.export_midi(tmp_path / "restored.mid")
    finally:
        window.song.undo_stack.setClean()
        window.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data.update(autosave=[1, 2]), id="autosave-record-a-list"),
        pytest.param(lambda data: data["autosave"].update(seq=[1]), id="seq-not-a-number"),
        pytest.param(lambda data: data["autosave"].update(saved_at="yesterday"), id="saved_at-a-string"),
        pytest.param(lambda data: data["autosave"].update(saved_at=1e18), id="saved_at-1e18"),
        pytest.param(lambda data: data["autosave"].update(document=[1, 2]), id="document-not-a-string"),
    ],
)
def test_a_damaged_autosave_record_still_offers_the_song(qtbot, home, damage):
    from continuo.main_window import MainWindow

    saver = _crashed_studio(home, [60, 64, 67])
    data = json.loads(saver.snapshot_path.read_text())
    damage(data)
    saver.snapshot_path.write_text(json.dumps(data))
    window = MainWindow(home=home, use_autosave=False)
    try:
        asked = []
        answer_next_dialog("Restore", asked)
        assert window.offer_restore()
        assert "Restore the work autosaved at" in asked[0]
        assert [pitch for pitch, *_ in summary(window.song)] == [60, 64, 67]
    finally:
        window.song.undo_stack.setClean()
        window.close()


def test_every_autosave_that_can_be_restored_is_offered_and_damaged_ones_are_kept(qtbot, home):
    from continuo.main_window import MainWindow

    now = time.time()
    _crashed_studio(home, [48], saved_at=now - 900)
    older = _crashed_studio(home, [50, 52], saved_at=now - 600)
    newest = _crashed_studio(home, [60])  # the newest, damaged: a note past the checks, and bad JSON
    data = json.loads(newest.snapshot_path.read_text())
    data["notes"][0][1] = 300
    newest.snapshot_path.write_text(json.dumps(data))
    broken = home / "autosave" / "cut-short.json"
    broken.write_text('{"format": "continuo-session", "ver')  # bad JSON and no journal
    damaged_bytes = {path.name: path.read_bytes() for path in (newest.snapshot_path, newest.journal_path, broken)}
    window = MainWindow(home=home, use_autosave=False)
    try:
        asked = []
        answer_next_dialog("Not Now", asked)  # the newest that can be restored: left for later
        QTimer.singleShot(300, lambda: answer_next_dialog("Restore", asked))
        assert window.offer_restore()
        assert len(asked) == 2 and "1 of 2" in asked[0] and "2 of 2" in asked[1]
        assert [pitch for pitch, *_ in summary(window.song)] == [48]  # the second offer was the oldest
        folder = home / "autosave" / "damaged"
        assert {path.name: path.read_bytes() for path in folder.iterdir()} == damaged_bytes  # kept, unchanged
        # The one left for later is offered at the next launch; the damaged ones are not offered again.
        assert [orphan.id for orphan in find_orphans(home / "autosave")] == [older.id]
    finally:
        window.song.undo_stack.setClean()
        window.close()


def test_a_damaged_autosave_is_said_in_one_line_naming_where_it_is_kept(qtbot, home):
    from continuo.main_window import MainWindow

    (home / "autosave").mkdir()
    (home / "autosave" / "x.json").write_bytes(b"\xff\xfe not text")
    window = MainWindow(home=home, use_autosave=False)
    try:
        assert not window.offer_restore()
        message = _status(window)
        assert "could not be restored" in message and str(home / "autosave" / "damaged") in message
        assert "\n" not in message
        assert (home / "autosave" / "damaged" / "x.json").read_bytes() == b"\xff\xfe not text"
        # A number that is not finite (a saved_at of inf is written as Infinity) is damage too.
        saver = _crashed_studio(home, [60])
        data = json.loads(saver.snapshot_path.read_text())
        data["autosave"]["saved_at"] = float("inf")
        saver.snapshot_path.write_text(json.dumps(data))
        assert not window.offer_restore()
        assert "Infinity is not a number Continuo keeps" in _status(window)
        assert (home / "autosave" / "damaged" / saver.snapshot_path.name).exists()
    finally:
        window.close()


def test_a_journal_that_is_a_folder_is_set_aside_and_the_snapshot_restored(qtbot, home):
    from continuo.main_window import MainWindow

    saver = _crashed_studio(home, [60, 62])
    saver.journal_path.unlink()
    saver.journal_path.mkdir()
    window = MainWindow(home=home, use_autosave=False)
    try:
        answer_next_dialog("Restore")
        assert window.offer_restore()
        assert len(window.song) == 2 and "could not be read" in _status(window)
        assert (home / "autosave" / "damaged" / saver.journal_path.name).is_dir()
    finally:
        window.song.undo_stack.setClean()
        window.close()


def test_a_fifo_in_the_autosave_folder_never_blocks_a_start_and_is_kept_aside(qtbot, home):
    """A FIFO as a snapshot or a journal blocked the scan, and the studio's start, forever."""
    from continuo.main_window import MainWindow

    saver = _crashed_studio(home, [60, 62])
    saver.journal_path.unlink()
    os.mkfifo(saver.journal_path)  # the journal: the snapshot alone is restored, the FIFO kept aside
    os.mkfifo(home / "autosave" / "planted.json")  # a snapshot: kept aside, said in one line
    window = MainWindow(home=home, use_autosave=False)
    try:
        answer_next_dialog("Restore")
        done = []
        window.offer_restore_later(done.append)
        qtbot.waitUntil(lambda: done == [True], timeout=10000)
        assert len(window.song) == 2
        assert stat.S_ISFIFO(os.stat(home / "autosave" / "damaged" / "planted.json").st_mode)
        assert stat.S_ISFIFO(os.stat(home / "autosave" / "damaged" / saver.journal_path.name).st_mode)
    finally:
        window.song.undo_stack.setClean()
        window.close()


def test_a_long_journal_is_read_in_the_background_and_only_its_first_lines_restored(qtbot, home, monkeypatch):
    """A journal of a million lines blocked the start for 100 s: it is read on a helper thread while the window
    answers, at most MAX_JOURNAL_LINES of it, and the whole journal is kept aside for the rest."""
    from continuo import limits
    from continuo.main_window import MainWindow

    monkeypatch.setattr(limits, "MAX_JOURNAL_LINES", 20_000)
    saver = _crashed_studio(home, [60])
    with open(saver.journal_path, "w") as journal:
        for seq in range(2, 40_002):  # 40,000 edits after the snapshot (its own is 1), each adding a note
            start = (seq % 4000) * 0.25
            journal.write(json.dumps({"seq": seq, "removed": [], "added": [[seq + 10, 40 + seq // 4000, 90, start,
                                      0.25, "motif"]], "meta": {}}) + "\n")  # fmt: skip
    kept = saver.journal_path.read_bytes()
    window = MainWindow(home=home, use_autosave=False)
    try:
        answer_next_dialog("Restore")
        done, ticks = [], []
        started = time.perf_counter()
        window.offer_restore_later(done.append)
        assert time.perf_counter() - started < 0.2  # the start goes on at once
        timer = QTimer(window)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(10)
        qtbot.waitUntil(lambda: bool(done), timeout=30000)
        timer.stop()
        assert done == [True] and len(window.song) == 1 + 20_000
        assert "the last 20,000 edits, past the first 20,000, are kept in the damaged folder" in _status(window)
        assert (home / "autosave" / "damaged" / saver.journal_path.name).read_bytes() == kept
        assert len(ticks) > 5  # the event loop ran while the journal was read
    finally:
        window.song.undo_stack.setClean()
        window.close()
