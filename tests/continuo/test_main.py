"""The `continuo` command: a screenshot of a file rendered offscreen, and a bad file refused with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from music_transformer import Note, write_midi

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_screenshot_from_the_command_line(tmp_path, home):
    path = tmp_path / "motif.mid"
    write_midi([Note(60 + i % 12, 100, i * 0.25, i * 0.25 + 0.2) for i in range(32)], path)
    out = tmp_path / "out.png"
    env = dict(os.environ, CONTINUO_HOME=str(home))
    env.pop("QT_QPA_PLATFORM", None)  # the command picks offscreen by itself
    result = subprocess.run(
        [sys.executable, "-m", "continuo.main", str(path), "--screenshot", str(out), "--size", "800x500"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert (image.width(), image.height()) == (800, 500)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"nope")
    result = subprocess.run(
        [sys.executable, "-m", "continuo.main", str(bad), "--screenshot", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not a MIDI file" in result.stderr
