"""files.py: what every reader and writer goes through. Only regular files are read (a device or a FIFO is refused
at once, never read or waited on), reads are capped before a byte is parsed, a save through a link writes its
target, a device or a FIFO is never written over, and a file written over keeps its permissions."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from music_transformer import Note, read_midi, write_midi
from music_transformer.checkpoint import read_checkpoint
from music_transformer.errors import CheckpointError, MidiFileError
from music_transformer.files import FileTooLargeError, NotRegularFileError, atomic_write, open_regular, read_regular

ROOT = Path(__file__).resolve().parents[2]


def _returns_within(seconds: float, call):
    """call() on a thread; its result or exception, or a failure if it is still running after `seconds` (a FIFO
    read blocks forever waiting for a writer)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    yield path
    try:  # a reader that did block: let it go, so no thread outlives the test stuck
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(descriptor)
    except OSError:
        pass


def test_only_regular_files_are_read_and_a_fifo_never_blocks(tmp_path, fifo):
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    with pytest.raises(NotRegularFileError, match="is a device, not a file"):
        _returns_within(5, lambda: read_regular(zero, 1 << 20))
    with pytest.raises(NotRegularFileError, match="is a pipe"):
        _returns_within(5, lambda: read_regular(fifo, 1 << 20))
    with pytest.raises(IsADirectoryError):
        read_regular(tmp_path, 1 << 20)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing", 1 << 20)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(FileTooLargeError, match="over 1000 bytes") as refused:
        read_regular(big, 1000)
    assert refused.value.size == 1001
    assert read_regular(big, 1001) == b"x" * 1001
    link = tmp_path / "link"
    link.symlink_to(big)  # a link to a regular file is read
    with open_regular(link, 2000) as handle:
        assert handle.read() == b"x" * 1001


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_every_library_reader_refuses_a_device_or_a_fifo_in_words(tmp_path, fifo, kind):
    """`continuo /dev/zero` read until memory ran out; a FIFO as a model blocked the loader forever."""
    for suffix, read, error in ((".mid", read_midi, MidiFileError), (".pt", read_checkpoint, CheckpointError),
                                (".safetensors", read_checkpoint, CheckpointError)):
        path = tmp_path / f"file{suffix}"
        path.symlink_to("/dev/urandom" if kind == "device" else fifo)
        with pytest.raises(error, match=f"file{suffix}: is a {'device' if kind == 'device' else 'pipe'}"):
            _returns_within(5, lambda read=read, path=path: read(path))


def test_a_save_through_a_link_writes_its_target_and_the_link_stays(tmp_path):
    target = tmp_path / "kept" / "song.mid"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "song.mid"
    link.symlink_to(target)
    chain = tmp_path / "again.mid"
    chain.symlink_to(link)
    write_midi([Note(60, 100, 0.0, 0.5)], chain)
    assert chain.is_symlink() and link.is_symlink()  # the links are links still
    assert [note.pitch for note in read_midi(target)] == [60]  # the target has the new bytes
    assert sorted(path.name for path in target.parent.iterdir()) == ["song.mid"]  # nothing left beside it
    dangling = tmp_path / "new.mid"
    dangling.symlink_to(tmp_path / "kept" / "new.mid")
    atomic_write(dangling, lambda handle: handle.write(b"made"))
    assert dangling.is_symlink() and (tmp_path / "kept" / "new.mid").read_bytes() == b"made"


def test_a_device_a_fifo_or_a_folder_is_never_written_over(tmp_path, fifo):
    null = tmp_path / "null.mid"
    null.symlink_to("/dev/null")
    for path, words in ((null, "is a device"), (fifo, "is a pipe"), (tmp_path, "is a folder")):
        with pytest.raises(OSError, match=words):
            _returns_within(5, lambda path=path: write_midi([Note(60, 100, 0.0, 0.5)], path))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and null.is_symlink()
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


def test_the_command_line_refuses_to_write_over_a_device_in_one_line(tmp_path):
    """As root, `--out /dev/full` replaced the device node; now nothing is written and it says why."""
    out = tmp_path / "out.mid"
    out.symlink_to("/dev/full")
    result = subprocess.run(
        [sys.executable, "-m", "music_transformer.cli", "generate", "--seconds", "0.5", "--out", str(out),
         "--seed", "1", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode != 0
    assert result.returncode == 2 and "is a device, not a file" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert out.is_symlink() and os.readlink(out) == "/dev/full"


def test_a_file_written_over_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        private = tmp_path / "private.mid"
        private.write_bytes(b"old")
        os.chmod(private, 0o600)
        write_midi([Note(60, 100, 0.0, 0.5)], private)
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600  # re-exported over: still the owner's alone
        shared = tmp_path / "shared.mid"
        shared.write_bytes(b"old")
        os.chmod(shared, 0o664)
        write_midi([Note(60, 100, 0.0, 0.5)], shared)
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o664
        new = tmp_path / "new.mid"
        write_midi([Note(60, 100, 0.0, 0.5)], new)
        assert stat.S_IMODE(os.stat(new).st_mode) == 0o644
        # A private file asked for (mode 0o600) never keeps more than that: settings an older version wrote 0644.
        atomic_write(shared, lambda handle: handle.write(b"{}"), mode=0o600)
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o600
        target = tmp_path / "target.mid"  # through a link: the target's mode
        target.write_bytes(b"old")
        os.chmod(target, 0o640)
        (tmp_path / "link.mid").symlink_to(target)
        write_midi([Note(60, 100, 0.0, 0.5)], tmp_path / "link.mid")
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    finally:
        os.umask(previous)
