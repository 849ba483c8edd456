"""The music-transformer command, run as a user would."""

import subprocess
import sys
from pathlib import Path

import pytest

from music_transformer import Note, generate, limits, read_midi, save_checkpoint, write_midi
from music_transformer.arguments import ArgumentParser, positive_float, sampling_options, share
from music_transformer.cli import main

from .helpers import small_model


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


def test_generate_keeps_from_looping_unless_the_repetition_penalty_is_off(tmp_path):
    """At temperature 0.8 the bundled model strikes one pitch on more than 8 onsets in a row without the penalty
    for some seeds (the model of 2026-12-01: seed 2, 17 onsets); which seeds depends on the model, so they are
    tried from 2 on until one loops, and with the penalty on the same seed must not."""
    motif = [Note(48, 100, 0.0, 4.0)] + [Note(p, 100, i * 0.25, i * 0.25 + 0.25)
                                          for i, p in enumerate([60, 64, 67, 72, 67, 64, 60, 64,
                                                                 60, 64, 67, 72, 76, 79, 76, 72])]
    write_midi(motif, tmp_path / "motif.mid")

    def longest_streak(seed, *options):
        out = tmp_path / "out.mid"
        assert main(["generate", "--primer", str(tmp_path / "motif.mid"), "--seconds", "12", "--out", str(out),
                     "--temperature", "0.8", "--top-p", "0.95", "--seed", str(seed), "--device", "cpu",
                     *options]) == 0
        onsets = {}
        for note in read_midi(out):
            if note.start >= 4.0 - 1e-3:
                onsets.setdefault(round(note.start, 2), set()).add(note.pitch)
        runs, longest = {}, 0
        for start in sorted(onsets):
            runs = {pitch: runs.get(pitch, 0) + 1 for pitch in onsets[start]}
            longest = max(longest, *runs.values())
        return longest

    tried = {}
    for seed in range(2, 10):
        tried[seed] = longest_streak(seed, "--repetition-penalty", "0")
        if tried[seed] > 8:
            assert longest_streak(seed) <= 8, tried
            return
    pytest.fail(f"no seed looped with the penalty off (longest streak by seed: {tried})")


def test_errors_are_one_clear_line(tmp_path):
    (tmp_path / "motif.mid").write_bytes(b"garbage")
    save_checkpoint(small_model(), tmp_path / "model.pt")
    result = run("generate", "--primer", str(tmp_path / "motif.mid"), "--out", str(tmp_path / "o.mid"),
                 "--checkpoint", str(tmp_path / "model.pt"))
    assert result.returncode == 2
    assert "motif.mid" in result.stderr and "Traceback" not in result.stderr
    result = run("generate", "--out", str(tmp_path / "o.mid"), "--checkpoint", str(tmp_path / "none.pt"))
    assert result.returncode == 2 and "no such model file" in result.stderr
    assert not (tmp_path / "o.mid").exists()


def test_generate_keeps_to_a_key_and_a_range(tmp_path):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    motif = [Note(57 + step, 90, 0.25 * k, 0.25 * k + 0.25) for k, step in enumerate([0, 2, 3, 5, 7, 8, 11, 12])]
    write_midi(motif, tmp_path / "motif.mid")
    result = run("generate", "--primer", str(tmp_path / "motif.mid"), "--seconds", "8",
                 "--out", str(tmp_path / "o.mid"),
                 "--checkpoint", str(tmp_path / "model.pt"), "--seed", "1", "--temperature", "1.5", "--key", "auto",
                 "--lowest", "55", "--highest", "80")
    assert result.returncode == 0, result.stderr
    assert "key: A minor" in result.stdout
    new = read_midi(tmp_path / "o.mid")[len(motif):]
    assert new and all(n.pitch % 12 in {9, 11, 0, 2, 4, 5, 7} and 55 <= n.pitch <= 80 for n in new)
    for bad in (["--key", "H major"], ["--lowest", "90", "--highest", "80"], ["--key", "C major", "--lowest", "61",
                                                                            "--highest", "61"]):
        result = run("generate", "--out", str(tmp_path / "x.mid"), "--checkpoint", str(tmp_path / "model.pt"), *bad)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_infill_writes_new_music_into_the_gap_and_keeps_the_rest(tmp_path):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    song = [Note(60 + k % 5, 90, 0.5 * k, 0.5 * k + 0.4) for k in range(16)]  # 0 to 8 s
    write_midi(song, tmp_path / "song.mid")
    result = run("infill", "--input", str(tmp_path / "song.mid"), "--start", "2", "--end", "5", "--out",
                 str(tmp_path / "filled.mid"), "--checkpoint", str(tmp_path / "model.pt"), "--seed", "2",
                 "--temperature", "1.3")
    assert result.returncode == 0, result.stderr
    assert "replacing 6" in result.stdout
    filled = read_midi(tmp_path / "filled.mid")
    outside = [(n.pitch, round(n.start, 2)) for n in filled if not 2.0 - 1e-3 <= n.start < 5.0 - 1e-3]
    assert outside == [(n.pitch, round(n.start, 2)) for n in song if not 2.0 <= n.start < 5.0]
    new = [n for n in filled if 2.0 - 1e-3 <= n.start < 5.0 - 1e-3]
    assert all(n.end <= 5.0 + 0.02 for n in new)
    kept = run("infill", "--input", str(tmp_path / "song.mid"), "--start", "2", "--end", "5", "--keep", "--out",
               str(tmp_path / "kept.mid"), "--checkpoint", str(tmp_path / "model.pt"), "--seed", "2")
    assert kept.returncode == 0, kept.stderr
    assert len(read_midi(tmp_path / "kept.mid")) >= len(song)
    backwards = run("infill", "--input", str(tmp_path / "song.mid"), "--start", "5", "--end", "2", "--out",
                    str(tmp_path / "x.mid"), "--checkpoint", str(tmp_path / "model.pt"))
    assert backwards.returncode == 2 and "must come after" in backwards.stderr


def test_help_and_unknown_commands():
    assert "generate" in run("--help").stdout
    assert run("dance").returncode == 2


def test_average_command(tmp_path):
    for seed in (1, 2):
        save_checkpoint(small_model(seed=seed), tmp_path / f"c{seed}.pt")
    result = run("average", str(tmp_path / "c1.pt"), str(tmp_path / "c2.pt"), "--out", str(tmp_path / "avg.pt"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "avg.pt").exists()
    # either form in, either form out: a .pt and a shipped model (safetensors and JSON) averaged into the shipped form
    save_checkpoint(small_model(seed=3), tmp_path / "c3.safetensors")
    result = run("average", str(tmp_path / "c1.pt"), str(tmp_path / "c3.safetensors"), "--out",
                 str(tmp_path / "avg.safetensors"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "avg.safetensors").exists() and (tmp_path / "avg.json").exists()
    assert "(.safetensors" in run("average", "--help").stdout


# --- every user error is one line on stderr, found before any work -----------------------------------------

BAD_GENERATE = {
    "--seconds": ["nan", "inf", "-5", "0", "1e9", "x"], "--temperature": ["nan", "-1", "inf", "10.001"],
    "--top-k": ["-1", "2.5", "401"], "--top-p": ["0", "2", "1.001", "nan"], "--seed": ["-1", "1.5"],
    "--beam-size": ["0", "1000"],
    "--length-penalty": ["nan", "-1"], "--repetition-penalty": ["nan", "-0.5", "10.5", "x"],
    "--bpm": ["0", "nan", "-120", "100000"], "--device": ["foo", "cuda:x"],
}


@pytest.mark.parametrize("option,value", [(option, value) for option, values in BAD_GENERATE.items()
                                          for value in values])
def test_generate_refuses_bad_arguments_before_loading_a_model(tmp_path, capsys, option, value):
    """The model file does not exist: an argument checked after loading would say that instead."""
    code = main(["generate", "--out", str(tmp_path / "o.mid"), "--checkpoint", str(tmp_path / "none.pt"),
                 option, value])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and f"argument {option}" in error, error
    assert not list(tmp_path.iterdir())


# (option, just inside limits.py's bound, just outside it)
SAMPLING_BOUNDS = [("--temperature", limits.MIN_TEMPERATURE, "-0.001"),
                   ("--temperature", limits.MAX_TEMPERATURE, "10.001"),
                   ("--top-k", limits.MIN_TOP_K, "-1"), ("--top-k", limits.MAX_TOP_K, "401"),
                   ("--top-p", 0.001, "0"), ("--top-p", limits.MAX_TOP_P, "1.001")]


@pytest.mark.parametrize("command", ["generate", "infill"])
@pytest.mark.parametrize("option,inside,outside", SAMPLING_BOUNDS)
def test_the_sampling_options_read_the_bounds_generate_enforces(tmp_path, capsys, command, option, inside, outside):
    """Just inside a bound parses (and generate takes it), just outside is one line and exit 2."""
    parser = ArgumentParser(prog=f"music-transformer {command}")
    sampling_options(parser)
    value = parser.parse_args([option, f"{inside:g}"]).__dict__[option[2:].replace("-", "_")]
    assert value == inside
    generate(small_model(), [], max_tokens=1, **{option[2:].replace("-", "_"): value})  # refuses nothing
    fixed = ["--input", str(tmp_path / "in.mid"), "--start", "1", "--end", "2"] if command == "infill" else []
    code = main([command, *fixed, "--out", str(tmp_path / "o.mid"), "--checkpoint", str(tmp_path / "none.pt"),
                 option, outside])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and f"argument {option}" in error, error


@pytest.mark.parametrize("out,message", [("nowhere/o.mid", "does not exist"), ("folder", "is a folder"),
                                         ("file/o.mid", "does not exist")])
def test_generate_checks_the_output_path_before_generating(tmp_path, capsys, out, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    code = main(["generate", "--out", str(tmp_path / out), "--checkpoint", str(tmp_path / "none.pt")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and message in error


def test_a_primer_and_seconds_past_two_hours_are_refused_before_generating(tmp_path, capsys):
    write_midi([Note(60, 90, 5400.0, 5401.0)], tmp_path / "long.mid")
    code = main(["generate", "--primer", str(tmp_path / "long.mid"), "--seconds", "7000", "--out",
                 str(tmp_path / "o.mid"), "--checkpoint", str(tmp_path / "none.pt")])
    assert code == 2 and "2 hours" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [
    ["eval", "--data", "x", "--window", "-1"], ["eval", "--data", "x", "--window", "0"],
    ["eval", "--data", "x", "--threads", "-1"], ["eval", "--data", "x", "--limit", "-1"],
    ["eval", "--data", "x", "--device", "foo"], ["train", "--data", "x", "--out", "run", "--steps", "-1"],
    ["train", "--data", "x", "--out", "run", "--lr", "nan"], ["train", "--data", "x", "--out", "run", "--dropout", "1"],
    ["train", "--data", "x", "--out", "run", "--batch-size", "0"], ["train", "--data", "x", "--out", "run",
                                                                     "--train-length", "0"],
    ["train", "--data", "x", "--out", "run", "--fim-rate", "2"], ["train", "--data", "x", "--out", "run",
                                                                   "--max-minutes", "-1"],
    ["train", "--data", "x", "--out", "file/run"], ["eval", "--data", "x", "--cache", "file/cache"],
    ["average", "a.pt", "b.pt", "--out", "nowhere/avg.pt"], ["generate", "--bogus"], ["eval"],
])
def test_eval_train_and_average_refuse_bad_arguments_in_one_line(tmp_path, capsys, monkeypatch, arguments):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    code = main(arguments)
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "Traceback" not in error, error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("command", [["train", "--out", "run"], ["pack", "--out", "c.tokens.npz"], ["eval"]])
def test_the_corpus_without_music21_names_the_extra_in_one_line(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONTINUO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "music21", None)  # as in an install without the train extra
    code = main([command[0], "--data", "corpus:bach", *command[1:]])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "Traceback" not in error, error
    assert error.startswith(f"music-transformer {command[0]}: ") and 'pip install "continuo[train]"' in error
    assert list(tmp_path.iterdir()) == []  # said before anything was written


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-1", "", "1e400", "0x10"])
def test_number_types_refuse_what_is_not_a_finite_number_in_range(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="must be"):
        positive_float(text)
    assert positive_float("0.5") == 0.5 and share("1") == 1.0


def test_averaging_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    save_checkpoint(small_model(), tmp_path / "good.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    code = main(["average", str(tmp_path / "good.pt"), str(tmp_path / "bad.pt"), "--out", str(tmp_path / "avg.pt")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "bad.pt" in error
    assert not (tmp_path / "avg.pt").exists()


def _unwritable_folder(tmp_path):
    """A folder no file can be made in: a locked one, or for root (whom locks do not stop) /sys."""
    from music_transformer.arguments import _takes_files

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for folder in (locked, Path("/sys")):
        if folder.is_dir() and not _takes_files(folder):
            return folder
    pytest.skip("no folder here refuses new files")


def test_an_unwritable_output_folder_is_found_before_generating(tmp_path, capsys):
    folder = _unwritable_folder(tmp_path)
    code = main(["generate", "--out", str(folder / "o.mid"), "--checkpoint", str(tmp_path / "none.pt")])
    assert code == 2 and "is not writable" in capsys.readouterr().err
    code = main(["eval", "--data", "x", "--cache", str(folder / "cache")])
    assert code == 2 and "is not writable" in capsys.readouterr().err


def test_accompany_keeps_the_melody_and_writes_a_part_in_the_rest_of_the_keyboard(tmp_path):
    import mido

    save_checkpoint(small_model(), tmp_path / "model.pt")
    melody = [Note(72 + k % 5, 90, 0.5 * k, 0.5 * k + 0.4) for k in range(1, 13)]  # 0.5 to 6.4 s
    write_midi(melody + [Note(40, 70, 0.0, 6.0)], tmp_path / "song.mid")  # the old bass is not kept
    result = run("accompany", str(tmp_path / "song.mid"), "--keep", "C5:C8", "--out", str(tmp_path / "out.mid"),
                 "--checkpoint", str(tmp_path / "model.pt"), "--seed", "2", "--temperature", "1.2")
    assert result.returncode == 0, result.stderr
    assert "12 kept notes" in result.stdout
    names = [message.name for track in mido.MidiFile(tmp_path / "out.mid").tracks for message in track
             if message.type == "track_name"]
    assert names == ["kept", "accompaniment"]
    notes = read_midi(tmp_path / "out.mid")
    kept = [(n.pitch, round(n.start, 3), round(n.end, 3), n.velocity) for n in notes if n.pitch >= 72]
    assert kept == [(n.pitch, round(n.start, 3), round(n.end, 3), n.velocity) for n in melody]
    new = [n for n in notes if n.pitch < 72]
    assert new and all(21 <= n.pitch and 0.5 - 1e-3 <= n.start and n.end <= 6.4 + 0.02 for n in new)
    # --write names the range, --seconds the length from the first kept note
    result = run("accompany", str(tmp_path / "song.mid"), "--keep", "C5:C8", "--write", "C2:B3", "--seconds", "3",
                 "--out", str(tmp_path / "low.mid"), "--checkpoint", str(tmp_path / "model.pt"), "--seed", "2")
    assert result.returncode == 0, result.stderr
    new = [n for n in read_midi(tmp_path / "low.mid") if n.pitch < 72]
    assert new and all(36 <= n.pitch <= 59 and n.end <= 3.5 + 0.02 for n in new)


@pytest.mark.parametrize("options, message", [
    (["--keep", "C4-C8"], "argument --keep: a pitch range is two notes with a colon"),
    (["--keep", "C8:C4"], "runs from low to high"),
    (["--keep", "C4:C8", "--write", "A0:C4"], "overlap: the kept part and the new part need pitches"),
    (["--keep", "A0:C8"], "holds the whole keyboard"),
    (["--keep", "C1:B1"], "no note from C1 to B1 to keep"),
    (["--keep", "C4:C8", "--seconds", "nan"], "argument --seconds"),
    (["--keep", "C4:C8", "--write", "C0:G#0"], "no pitch of the key lock lies in the range to write in"),
])
def test_accompany_errors_are_one_line_and_exit_2(tmp_path, capsys, options, message):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    write_midi([Note(72, 90, 0.0, 1.0), Note(76, 90, 1.0, 2.0)], tmp_path / "song.mid")
    code = main(["accompany", str(tmp_path / "song.mid"), "--out", str(tmp_path / "o.mid"), "--checkpoint",
                 str(tmp_path / "model.pt"), *options])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "o.mid").exists()


# Gaps the command line fills or refuses: each refused in one line, exit 2, before any music is written (issue 48)
BAD_GAPS = [(["--start", "1", "--end", "1.001"], "at least 10 ms"),
            (["--start", "1e308", "--end", "1.7e308"], "the gap's start must be a time from 0 to 7,200 seconds"),
            (["--start", "7190", "--end", "7300"], "the gap's end must be a time from 0 to 7,200 seconds"),
            (["--start", "0", "--end", "7201"], "the gap's end must be a time from 0 to 7,200 seconds"),
            (["--start", "1e8", "--end", "100000001"], "the gap's start must be a time from 0 to 7,200")]


@pytest.mark.parametrize("gap,message", BAD_GAPS)
def test_infill_refuses_a_gap_it_cannot_fill_in_one_line(tmp_path, capsys, gap, message):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    write_midi([Note(60 + k % 5, 90, 0.5 * k, 0.5 * k + 0.4) for k in range(16)], tmp_path / "song.mid")
    code = main(["infill", "--input", str(tmp_path / "song.mid"), *gap, "--out", str(tmp_path / "filled.mid"),
                 "--checkpoint", str(tmp_path / "model.pt")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "filled.mid").exists()


def test_infill_with_a_model_made_before_infilling_is_one_line(tmp_path, capsys):
    save_checkpoint(small_model(vocab_size=391), tmp_path / "old.pt")  # the vocabulary before styles
    write_midi([Note(60, 90, 0.0, 0.5), Note(62, 90, 3.0, 3.5)], tmp_path / "song.mid")
    code = main(["infill", "--input", str(tmp_path / "song.mid"), "--start", "1", "--end", "2", "--out",
                 str(tmp_path / "filled.mid"), "--checkpoint", str(tmp_path / "old.pt")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "made before infilling" in error, error


def test_a_model_that_writes_no_time_stops_with_one_line_sampling_or_beam(tmp_path):
    """Every weight at 3e38 (finite, so the checkpoint loads): sampling wrote note-on after note-on with no time
    passing and never ended, and beam search raised an IndexError. Both stop now, in one line, exit 2."""
    import torch

    model = small_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(3e38)
    save_checkpoint(model, tmp_path / "huge.pt")
    write_midi([Note(60, 90, 0.0, 0.5)], tmp_path / "motif.mid")
    for extra in ([], ["--beam-size", "4"]):
        result = run("generate", "--primer", str(tmp_path / "motif.mid"), "--seconds", "2", "--out",
                     str(tmp_path / "out.mid"), "--checkpoint", str(tmp_path / "huge.pt"), "--seed", "1", *extra)
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert "Traceback" not in result.stderr and "checkpoint may be damaged" in last, result.stderr[-2000:]
        assert not (tmp_path / "out.mid").exists()


def test_seeds_are_checked_by_one_rule_everywhere(tmp_path, capsys):
    model = small_model()
    assert len(list(generate(model, [], max_tokens=3, seed=limits.MAX_SEED))) == 3
    for seed in (limits.MAX_SEED + 1, 2**64, 10**300, -5, 1.5, True):
        with pytest.raises(ValueError, match="seed must be a whole number"):  # at the call, not at the first token
            generate(model, [], max_tokens=3, seed=seed)
    for text in (str(2**64), "-5"):
        code = main(["generate", "--out", str(tmp_path / "o.mid"), "--seed", text])
        error = capsys.readouterr().err
        assert code == 2 and error.count("\n") == 1 and f"from 0 to {limits.MAX_SEED:,}" in error, error
