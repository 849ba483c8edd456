"""The music-transformer command, run as a user would."""

import subprocess
import sys

from music_transformer import Note, read_midi, save_checkpoint, write_midi

from .test_model import small_model


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "music_transformer.cli", *args], capture_output=True,
                          text=True, timeout=240, cwd=cwd)


def test_generate_continues_a_primer_file(tmp_path):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    motif = [Note(60, 90, 0.0, 0.5), Note(62, 90, 0.5, 1.0), Note(64, 90, 1.0, 2.0)]
    write_midi(motif, tmp_path / "motif.mid")
    result = run("generate", "--primer", str(tmp_path / "motif.mid"), "--seconds", "5", "--out",
                 str(tmp_path / "out.mid"), "--checkpoint", str(tmp_path / "model.pt"), "--seed", "3",
                 "--top-k", "40", "--temperature", "0.9", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    notes = read_midi(tmp_path / "out.mid")
    assert [(n.pitch, round(n.start, 2)) for n in notes[:3]] == [(60, 0.0), (62, 0.5), (64, 1.0)]
    assert len(notes) > 3
    assert all(n.start >= 2.0 - 1e-3 for n in notes[3:])  # the continuation starts where the motif ends
    assert max(n.end for n in notes) <= 2.0 + 5.0 + 0.02
    assert "new notes" in result.stdout


def test_generate_with_beam_search(tmp_path):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    result = run("generate", "--seconds", "2", "--out", str(tmp_path / "out.mid"), "--checkpoint",
                 str(tmp_path / "model.pt"), "--beam-size", "3", "--length-penalty", "1.0")
    assert result.returncode == 0, result.stderr
    assert max(n.end for n in read_midi(tmp_path / "out.mid")) <= 2.0 + 0.02


def test_errors_are_one_clear_line(tmp_path):
    (tmp_path / "motif.mid").write_bytes(b"garbage")
    save_checkpoint(small_model(), tmp_path / "model.pt")
    result = run("generate", "--primer", str(tmp_path / "motif.mid"), "--out", str(tmp_path / "o.mid"),
                 "--checkpoint", str(tmp_path / "model.pt"))
    assert result.returncode == 1
    assert "motif.mid" in result.stderr and "Traceback" not in result.stderr
    result = run("generate", "--out", str(tmp_path / "o.mid"), "--checkpoint", str(tmp_path / "none.pt"))
    assert result.returncode == 1 and "no such model file" in result.stderr
    assert not (tmp_path / "o.mid").exists()


def test_help_and_unknown_commands():
    assert "generate" in run("--help").stdout
    assert run("dance").returncode == 2


def test_average_command(tmp_path):
    for seed in (1, 2):
        save_checkpoint(small_model(seed=seed), tmp_path / f"c{seed}.pt")
    result = run("average", str(tmp_path / "c1.pt"), str(tmp_path / "c2.pt"), "--out", str(tmp_path / "avg.pt"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "avg.pt").exists()
