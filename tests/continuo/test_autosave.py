"""Autosave: every edit journalled the moment it happens, snapshots, and the files a clean exit or a kill
leaves; read back as crash restore reads them."""

from __future__ import annotations

import os
import stat
import time

from continuo import autosave, restore
from continuo.journal import find_orphans
from continuo.song import CONTINUATION, Song
from tests.continuo.helpers import crash, draw_note, key, summary


def test_the_journal_restores_every_edit_since_the_last_snapshot(qtbot, home, window, roll):
    draw_note(qtbot, roll, 60, 0, 1)
    window.document.autosave.snapshot_now()
    draw_note(qtbot, roll, 64, 1, 1)
    key(qtbot, roll, "Up")
    window.song.set_tempo(87)
    window.song.add_notes([window.song.new_note(70, 40, 3, 1, CONTINUATION)])
    draw_note(qtbot, roll, 72, 4, 1)
    key(qtbot, roll, "Ctrl+Z")  # undo is an edit too
    expected, meta = summary(window.song), window.song.meta()
    crash(window.document.autosave)
    orphans = find_orphans(home / "autosave")
    assert len(orphans) == 1 and orphans[0].has_changes
    restored = Song()
    restore.restore(orphans[0], restored)
    assert summary(restored) == expected and restored.meta() == meta
    assert [n.part for n in restored.notes()] == [n.part for n in window.song.notes()]
    assert restored.is_modified
    assert restored.new_note(1, 1, 0, 1).id > max(n.id for n in window.song.notes())
    orphans[0].discard()
    assert find_orphans(home / "autosave") == []
    window.document.autosave = None  # already "crashed"


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
    restore.restore(find_orphans(tmp_path)[0], restored)
    assert summary(restored) == summary(song)


def test_a_running_studio_is_not_an_orphan_and_a_clean_exit_leaves_nothing(qapp, tmp_path):
    song = Song()
    saver = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    song.add_notes([song.new_note(60, 100, 0, 1)])
    assert find_orphans(tmp_path) == []
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
    restore.restore(find_orphans(tmp_path)[0], restored)
    assert summary(restored) == summary(song)


def test_leftovers_of_killed_studios_are_swept(qapp, tmp_path):
    stale = tmp_path / ".abc.json.123.tmp"
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / ".def.json.456.tmp"
    fresh.write_text("{")  # maybe a running studio's write in progress: left alone
    (tmp_path / "early.lock").write_text("12345")  # killed before its first snapshot
    song = Song()
    running = autosave.Autosave(song, tmp_path, interval_ms=60_000)
    assert find_orphans(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, running.snapshot_path.name, running.journal_path.name, f"{running.id}.lock"]
    )
    running.close()


def test_the_autosave_folder_its_locks_and_the_settings_are_the_owners_alone(qapp, tmp_path):
    """The autosave folder was 0755, its locks 0644 and settings.json (the recent files) 0644."""
    from continuo.settings import Preferences

    previous = os.umask(0o022)
    try:
        older = tmp_path / "older"
        older.mkdir(mode=0o755)  # made by an older version
        for folder in (tmp_path / "new" / "autosave", older):
            song = Song()
            saver = autosave.Autosave(song, folder, interval_ms=60_000)
            song.add_notes([song.new_note(60, 100, 0, 1)])
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            for path in (saver.snapshot_path, saver.journal_path, folder / f"{saver.id}.lock"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
            saver.close()
        (tmp_path / "settings.json").write_text("{}")  # an older version's, 0644
        preferences = Preferences(tmp_path)
        preferences.add_recent_file(tmp_path / "song.continuo")
        assert stat.S_IMODE((tmp_path / "settings.json").stat().st_mode) == 0o600
        fresh = tmp_path / "fresh"
        Preferences(fresh).set("midi_thru", False)
        assert stat.S_IMODE((fresh / "settings.json").stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_settings_that_are_a_fifo_or_a_device_never_block_and_read_as_none(qapp, tmp_path):
    from continuo.settings import Preferences

    os.mkfifo(tmp_path / "settings.json")
    assert Preferences(tmp_path).get("midi_thru", "unset") == "unset"  # blocked forever before
    other = tmp_path / "other"
    other.mkdir()
    (other / "settings.json").symlink_to("/dev/zero")
    assert Preferences(other).get("midi_thru", "unset") == "unset"
