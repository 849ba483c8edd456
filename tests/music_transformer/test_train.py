"""The training loop, its checkpoints and resumption, NaN stops, DDP on gloo, eval, and the bundled model."""

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from music_transformer import Note, decode, evaluation, events, generate, load_checkpoint, write_midi
from music_transformer import train as train_module
from music_transformer.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint, save_checkpoint
from music_transformer.cli import main as cli_main
from music_transformer.events import duration_seconds
from music_transformer.model import ModelConfig, MusicTransformer

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def make_midi_folder(root, pieces=16, notes_per_piece=48):
    """Small pieces a tiny model learns in a few steps: repeated scales and arpeggios, some long."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(pieces):
        base = 48 + (index * 5) % 24
        steps = [0, 2, 4, 5, 7, 9, 11, 12] if index % 2 else [0, 4, 7, 12, 7, 4]
        count = notes_per_piece * (3 if index % 4 == 0 else 1)
        notes = [Note(base + steps[k % len(steps)], 80, 0.25 * k, 0.25 * k + 0.2) for k in range(count)]
        write_midi(notes, root / f"piece{index:02d}.mid", bpm=120)
    return root


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    return make_midi_folder(tmp_path_factory.mktemp("midi"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTINUO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tiny_train(folder, out, **overrides):
    settings = {"steps": 12, "checkpoint_minutes": 0.0}
    settings.update(overrides)
    return train_module.train(str(folder), out, config="tiny", overrides=settings, threads=1, progress=False)


def test_a_tiny_model_learns_a_tiny_dataset(midi_folder, cache, tmp_path):
    summary = _tiny_train(midi_folder, tmp_path / "run", steps=120, learning_rate=1e-2, warmup_steps=5)
    assert summary["step"] == 120 and summary["stopped"] == "done"
    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(history) >= 4  # before training, after each epoch, at the end
    assert history[0]["step"] == 0 and history[0]["valid_nll"] > 5.0  # log(391) = 5.97: knows nothing
    nlls = [h["valid_nll"] for h in history]
    assert nlls[-1] < 3.0 and nlls[-1] < nlls[1] < nlls[0]
    model = load_checkpoint(tmp_path / "run" / "model.pt", device="cpu")
    assert "training" not in read_checkpoint(tmp_path / "run" / "model.pt")
    assert model.metadata["step"] == 120


def test_bfloat16_autocast_on_the_cpu_learns_as_float32_does(midi_folder, cache, tmp_path):
    summaries = {precision: _tiny_train(midi_folder, tmp_path / precision, steps=120, learning_rate=1e-2,
                                        warmup_steps=5, precision=precision)
                 for precision in ("float32", "bfloat16")}
    low, high = summaries["bfloat16"]["valid_nll"], summaries["float32"]["valid_nll"]
    assert low < 3.0 and abs(low - high) < 0.15
    assert low != high  # the linear layers really ran in bfloat16
    with pytest.raises(train_module.TrainingError, match="precision must be one of"):
        train_module.TrainConfig(precision="fp8")


def test_resume_continues_exactly_where_a_crashed_run_stopped(midi_folder, cache, tmp_path, monkeypatch):
    straight = _tiny_train(midi_folder, tmp_path / "straight", steps=10)
    calls = {"n": 0}
    original_step = torch.optim.AdamW.step

    def crash_at_seven(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # as if killed during step 7: checkpoints up to step 6 exist
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", crash_at_seven)
    with pytest.raises(KeyboardInterrupt):
        _tiny_train(midi_folder, tmp_path / "crashed", steps=10)
    monkeypatch.setattr(torch.optim.AdamW, "step", original_step)
    assert read_checkpoint(tmp_path / "crashed" / "last.pt")["training"]["step"] == 6
    with pytest.raises(train_module.TrainingError, match="--resume"):
        _tiny_train(midi_folder, tmp_path / "crashed", steps=10)
    resumed = train_module.train(str(midi_folder), tmp_path / "crashed", resume=True, threads=1, progress=False)
    assert resumed["step"] == straight["step"] == 10
    a = read_checkpoint(tmp_path / "straight" / "model.pt")["model"]
    b = read_checkpoint(tmp_path / "crashed" / "model.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_model_gains_the_anticipate_tokens_only_where_it_is_taught_accompaniment(midi_folder, cache, tmp_path):
    _tiny_train(midi_folder, tmp_path / "plain", steps=2, accompany_rate=0.0)
    plain = read_checkpoint(tmp_path / "plain" / "model.pt")
    assert plain["config"]["vocab_size"] == events.ANTICIPATE_OFFSET  # styles and fill markers, no announcements
    assert train_module.TrainConfig().accompany_rate == 0.0  # the default: none (they did not pay)
    # from its weights with accompaniment windows: it grows the ANTICIPATE tokens
    train_module.train(str(midi_folder), tmp_path / "taught", config="tiny", threads=1, progress=False,
                       overrides={"steps": 2, "learning_rate": 1e-3, "warmup_steps": 1, "accompany_rate": 0.1},
                       init_from=tmp_path / "plain" / "model.pt")
    taught = read_checkpoint(tmp_path / "taught" / "model.pt")
    assert taught["config"]["vocab_size"] == events.ANTICIPATION_VOCAB_SIZE
    assert events.has_anticipation(taught["config"]["vocab_size"])
    # and keeps them when a later run has none
    train_module.train(str(midi_folder), tmp_path / "later", config="tiny", threads=1, progress=False,
                       overrides={"steps": 1, "learning_rate": 1e-3, "warmup_steps": 1, "accompany_rate": 0.0},
                       init_from=tmp_path / "taught" / "model.pt")
    assert read_checkpoint(tmp_path / "later" / "model.pt")["config"]["vocab_size"] == events.ANTICIPATION_VOCAB_SIZE
    # a run begun before accompaniment windows (its saved settings do not name them) resumes as it was begun
    last = read_checkpoint(tmp_path / "plain" / "last.pt")
    del last["training"]["config"]["accompany_rate"]
    torch.save(last, tmp_path / "plain" / "last.pt")
    resumed = train_module.train(str(midi_folder), tmp_path / "plain", config="tiny", threads=1, progress=False,
                                 resume=True, overrides={"steps": 3})
    assert resumed["step"] == 3
    assert read_checkpoint(tmp_path / "plain" / "model.pt")["config"]["vocab_size"] == events.ANTICIPATE_OFFSET


def test_a_new_run_can_start_from_a_trained_models_weights_with_new_settings(midi_folder, cache, tmp_path):
    first = _tiny_train(midi_folder, tmp_path / "first", steps=30, learning_rate=1e-2, warmup_steps=5)
    second = train_module.train(str(midi_folder), tmp_path / "second", config="tiny", threads=1, progress=False,
                                overrides={"steps": 4, "learning_rate": 1e-3, "warmup_steps": 2},
                                model_overrides={"dropout": 0.2}, init_from=tmp_path / "first" / "model.pt")
    history = [json.loads(line) for line in (tmp_path / "second" / "log.jsonl").read_text().splitlines()]
    # it starts where the first run ended, not from scratch (near log 391 = 5.97), and keeps going
    assert history[0]["step"] == 0 and history[0]["valid_nll"] == pytest.approx(first["valid_nll"], rel=1e-4)
    assert second["step"] == 4 and second["valid_nll"] < 5.0
    saved = read_checkpoint(tmp_path / "second" / "model.pt")
    assert saved["config"]["dropout"] == 0.2 and saved["metadata"]["init_from"]["path"] == "model.pt"
    assert saved["metadata"]["init_from"]["step"] == 30
    # each stage's settings travel with the weights, the stage before's under init_from (for the model card)
    assert saved["metadata"]["recipe"]["steps"] == 4 and saved["metadata"]["recipe"]["learning_rate"] == 1e-3
    assert saved["metadata"]["init_from"]["recipe"]["steps"] == 30
    with pytest.raises(train_module.TrainingError, match="it may only grow.*d_model cannot change"):
        train_module.train(str(midi_folder), tmp_path / "third", config="tiny", threads=1, progress=False,
                           model_overrides={"d_model": 32}, init_from=tmp_path / "first" / "model.pt")
    # it may grow: longer crops, relative buckets with a far row, the sounding-pitches input
    grown = {"train_length": 64, "max_relative_distance": 64, "relative_buckets": 16, "sounding_input": True}
    train_module.train(str(midi_folder), tmp_path / "grown", config="tiny", threads=1, progress=False,
                       overrides={"steps": 2, "learning_rate": 1e-3, "warmup_steps": 1}, model_overrides=grown,
                       init_from=tmp_path / "first" / "model.pt")
    saved = read_checkpoint(tmp_path / "grown" / "model.pt")
    assert {key: saved["config"][key] for key in grown} == grown and "sounding.weight" in saved["model"]
    with pytest.raises(train_module.TrainingError, match="can grow its vocabulary.*not max_relative_distance"):
        train_module.train(str(midi_folder), tmp_path / "fifth", config="tiny", threads=1, progress=False,
                           model_overrides={"max_relative_distance": 64}, init_from=tmp_path / "first" / "model.pt")
    # from a model in the shipped form (the bundled one's: weights.safetensors and weights.json) just the same
    shipped = tmp_path / "weights.safetensors"
    save_checkpoint(load_checkpoint(tmp_path / "first" / "model.pt", device="cpu"), shipped, step=30)
    train_module.train(str(midi_folder), tmp_path / "fourth", config="tiny", threads=1, progress=False,
                       overrides={"steps": 1, "learning_rate": 1e-3, "warmup_steps": 1}, init_from=shipped)
    history = [json.loads(line) for line in (tmp_path / "fourth" / "log.jsonl").read_text().splitlines()]
    assert history[0]["valid_nll"] == pytest.approx(first["valid_nll"], rel=1e-4)
    assert read_checkpoint(tmp_path / "fourth" / "model.pt")["metadata"]["init_from"]["path"] == shipped.name


def test_a_run_killed_by_a_signal_resumes_from_its_last_checkpoint(midi_folder, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "CONTINUO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [PYTHON, "-m", "music_transformer.cli", "train", "--data", str(midi_folder), "--out", str(out),
               "--config", "tiny", "--steps", "100000", "--checkpoint-minutes", "0", "--threads", "1",
               "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    saved = 0
    while time.monotonic() < deadline and saved < 3:
        time.sleep(0.2)
        try:
            saved = read_checkpoint(out / "last.pt")["training"]["step"]
        except Exception:  # noqa: BLE001 - a checkpoint half written as we read it
            saved = 0
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert saved >= 3, process.stdout.read().decode()
    saved = read_checkpoint(out / "last.pt")["training"]["step"]  # the file is whole after a kill
    result = subprocess.run([*command[:command.index("--steps")], "--steps", str(saved + 3), "--resume",
                             "--threads", "1", "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resuming {out / 'last.pt'} at step {saved}" in result.stdout
    assert read_checkpoint(out / "last.pt")["training"]["step"] == saved + 3


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(midi_folder, cache, tmp_path, monkeypatch):
    original_forward = MusicTransformer.forward
    calls = {"n": 0}

    def poisoned(self, tokens, *args, **kwargs):
        logits = original_forward(self, tokens, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 5:
                return logits * float("nan")
        return logits

    monkeypatch.setattr(MusicTransformer, "forward", poisoned)
    with pytest.raises(train_module.TrainingError, match="NaN at step 5.*last good checkpoint") as error:
        _tiny_train(midi_folder, tmp_path / "run", steps=20)
    assert "step 4" in str(error.value)
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["training"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert not (tmp_path / "run" / "model.pt").exists()


def test_the_command_line_reports_a_nan_stop_as_a_message_not_a_traceback(midi_folder, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("CONTINUO_CACHE", str(tmp_path / "cache"))
    code = cli_main(["train", "--data", str(midi_folder), "--out", str(tmp_path / "run"), "--config", "tiny",
                     "--steps", "3", "--lr", "1e30", "--threads", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and "NaN" in captured.err and "Traceback" not in captured.err
    code = cli_main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run2"),
                     "--config", "tiny", "--no-progress"])
    assert code == 2 and "no such folder" in capsys.readouterr().err


def test_ddp_with_two_gloo_processes_on_the_cpu(midi_folder, tmp_path):
    env = {**os.environ, "CONTINUO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    torchrun = Path(PYTHON).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [PYTHON, "-m", "torch.distributed.run"]
    result = subprocess.run([*launcher, "--standalone", "--nproc_per_node=2", "-m", "music_transformer.commands.train",
                             "--data", str(midi_folder), "--out", str(out), "--config", "tiny", "--steps", "4",
                             "--threads", "1", "--no-progress"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 process(es) on cpu" in result.stdout
    assert result.stdout.count("finished:") == 1  # only rank 0 speaks
    state = read_checkpoint(out / "last.pt")
    assert state["training"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_learning_rate_warms_up_then_decays():
    config = train_module.TrainConfig(learning_rate=1e-3, warmup_steps=10, steps=110, min_learning_rate_ratio=0.1)
    rates = [train_module.learning_rate(s, config, train_module._progress(s, 0.0, config)) for s in range(110)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in pairwise(rates[:10]))
    assert all(a >= b for a, b in pairwise(rates[10:]))
    assert rates[-1] == pytest.approx(1e-4, rel=0.01)
    unplanned = train_module.TrainConfig(warmup_steps=10)
    assert train_module.learning_rate(39, unplanned, None) == pytest.approx(unplanned.learning_rate / 2)


def test_the_tokens_loss_is_their_cross_entropy_label_smoothed_when_asked():
    torch.manual_seed(0)
    logits, pad = torch.randn(2, 5, 7), 6
    targets = torch.randint(0, 6, (2, 5))
    targets[1, 3:] = pad
    # by hand, in float64, over the positions that are not PAD
    log_probs = torch.log_softmax(logits.double(), -1)[targets != pad]
    scored = targets[targets != pad]
    hard = -log_probs[torch.arange(len(scored)), scored].mean()
    loss, reported = train_module.token_loss(logits, targets, None, pad)
    assert float(loss) == float(reported) == pytest.approx(float(hard), rel=1e-5)
    # smoothing 0.1 spreads a tenth of each target's mass over the whole vocabulary
    smoothed, reported = train_module.token_loss(logits, targets, None, pad, label_smoothing=0.1)
    assert float(smoothed) == float(reported) == pytest.approx(float(0.9 * hard - 0.1 * log_probs.mean()), rel=1e-5)


def test_training_settings_that_left_the_library_are_read_or_refused_by_name(tmp_path):
    # distillation's weight, saved by runs before it left the loop: 0 changed nothing, anything else is bench's
    assert train_module.TrainConfig.from_dict({"soft_target_weight": 0.0}) == train_module.TrainConfig()
    with pytest.raises(train_module.TrainingError, match="distillation is bench/jsb.py's"):
        train_module.TrainConfig.from_dict({"soft_target_weight": 0.5})
    # a config file written for an earlier version: the kernel's block is left out, attention dropout refused
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": {"n_layers": 1, "block_size": 64, "attention_dropout": 0.0}}))
    assert train_module.load_config(str(path))[0] == ModelConfig(n_layers=1)
    path.write_text(json.dumps({"model": {"n_layers": 1, "attention_dropout": 0.1}}))
    with pytest.raises(train_module.TrainingError, match="attention dropout left Continuo"):
        train_module.load_config(str(path))


# a one-layer model of `Cycles`' eight tokens, for the loop's tests that train on them
CYCLES_MODEL = ModelConfig(vocab_size=8, n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0,
                           max_relative_distance=16, train_length=16)


class Cycles:
    """`TrainingData` for the loop's own loss functions: sequences that step through 1..7 by a stride, with
    soft targets (one-hot on the next token, or uniform) when asked for."""

    name, pad, vocab_size = "cycles", 0, 8

    def __init__(self, soft=None):
        self.soft = soft

    def describe(self):
        return "cycles"

    def _tokens(self, rng, rows, length):
        strides = rng.integers(1, 4, (rows, 1))
        return (1 + (np.arange(length + 1)[None] * strides + rng.integers(0, 7, (rows, 1))) % 7).astype(np.int64)

    def batches(self, length, batch_size, seed, epoch, start, rank, world_size, max_transpose):
        rng = np.random.default_rng([seed, epoch])
        for index in range(start, 3):
            tokens = self._tokens(rng, batch_size, length)
            if self.soft is None:
                yield index, tokens
                continue
            soft = (np.eye(self.vocab_size, dtype=np.float32)[tokens[:, 1:]] if self.soft == "tokens"
                    else np.full((*tokens[:, 1:].shape, self.vocab_size), 1 / self.vocab_size, dtype=np.float32))
            yield index, (tokens, soft)

    def validation_batches(self, length, batch_size):
        return [self._tokens(np.random.default_rng(99), 4, length)]


def with_soft_targets(logits, targets, soft, pad, label_smoothing):
    """A loss function a benchmark may bring (bench/jsb.py's distillation): half the tokens' cross-entropy,
    half the cross-entropy against the soft targets the batch brings."""
    tokens, _ = train_module.token_loss(logits, targets, None, pad, label_smoothing)
    if soft is None:
        raise train_module.TrainingError("the batch brings no soft targets")
    log_probs = torch.log_softmax(logits.float(), -1)[targets != pad]
    return 0.5 * tokens - 0.5 * (soft[targets != pad] * log_probs).sum(-1).mean(), tokens


def test_the_loop_minimises_the_loss_function_it_is_given_with_what_the_batches_bring(tmp_path):
    model_config = CYCLES_MODEL

    def trained(name, soft, loss=train_module.token_loss):
        config = train_module.TrainConfig(batch_size=4, learning_rate=1e-2, warmup_steps=1, steps=9,
                                          checkpoint_minutes=0.0)
        summary = train_module.train(Cycles(soft), tmp_path / name, config=(model_config, config), threads=1,
                                     progress=False, loss=loss)
        return summary, load_checkpoint(tmp_path / name / "model.pt", device="cpu").state_dict()

    _, alone = trained("tokens", None)
    # soft targets certain of every next token train as the tokens alone do; uniform ones do not
    _, taught_the_tokens = trained("certain", "tokens", with_soft_targets)
    _, taught_uniform = trained("uniform", "uniform", with_soft_targets)
    assert all(torch.allclose(alone[key], taught_the_tokens[key], atol=1e-5) for key in alone)
    assert not all(torch.allclose(alone[key], taught_uniform[key], atol=1e-3) for key in alone)
    # the plain loss reads the tokens alone, whatever else a batch brings; a loss function's error stops the run
    _, plain = trained("plain", "uniform")
    assert all(torch.equal(alone[key], plain[key]) for key in alone)
    with pytest.raises(train_module.TrainingError, match="brings no soft targets"):
        trained("no-teacher", None, with_soft_targets)


class Marked(MusicTransformer):
    """A model with one more learned vector, read into every position's logits: a subclass adds weights."""

    def __init__(self, config):
        super().__init__(config)
        self.mark = torch.nn.Parameter(torch.zeros(config.d_model))

    def forward(self, tokens, cache=None, window=None):
        return super().forward(tokens, cache, window) + self.head(self.mark)


def test_the_loop_trains_resumes_and_keeps_the_model_class_it_is_given(tmp_path, capsys):
    config = train_module.TrainConfig(batch_size=4, learning_rate=1e-2, warmup_steps=1, steps=3,
                                      checkpoint_minutes=0.0)
    run = tmp_path / "run"
    train_module.train(Cycles(), run, config=(CYCLES_MODEL, config), threads=1, progress=False,
                       model_class=Marked)
    trained = read_checkpoint(run / "model.pt")["model"]["mark"]
    assert trained.abs().sum() > 0  # learnt from zero with the rest of the weights
    capsys.readouterr()
    summary = train_module.train(Cycles(), run, resume=True, overrides={"steps": 5}, threads=1, progress=False,
                                 model_class=Marked)
    assert summary["step"] == 5 and not torch.equal(read_checkpoint(run / "model.pt")["model"]["mark"], trained)
    # the run had decayed to its floor (1e-3); the longer plan is halfway down its cosine again, and says so
    assert "puts the learning rate back up from 0.001 to 0.0055: a warm restart" in capsys.readouterr().out
    train_module.train(Cycles(), run, resume=True, overrides={"steps": 5}, threads=1, progress=False,
                       model_class=Marked)
    assert "warm restart" not in capsys.readouterr().out  # the same plan again: nothing to say


def test_configs_presets_files_and_errors(tmp_path):
    model_config, train_config = train_module.load_config("small")
    assert model_config.positional == "relative" and train_config.batch_size > 0
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64},
                                "train": {"batch_size": 3}}))
    model_config, train_config = train_module.load_config(str(path))
    assert model_config.n_layers == 1 and train_config.batch_size == 3
    path.write_text(json.dumps({"model": {"layers": 1}}))
    with pytest.raises(train_module.TrainingError, match="unknown model setting 'layers'"):
        train_module.load_config(str(path))
    with pytest.raises(train_module.TrainingError, match="neither a preset"):
        train_module.load_config("huge")


def test_eval_prints_nll_overall_and_by_position(midi_folder, cache, tmp_path, capsys):
    _tiny_train(midi_folder, tmp_path / "run", steps=8)
    code = cli_main(["eval", "--checkpoint", str(tmp_path / "run" / "model.pt"), "--data", str(midi_folder),
                     "--split", "all", "--device", "cpu"])
    output = capsys.readouterr().out
    assert code == 0
    for bucket in ("overall", "[0,L)", "[L,2L)", "[2L,4L)"):
        assert bucket in output
    result = json.loads(output.strip().splitlines()[-1])
    assert result["long_pieces"] > 0 and result["train_length"] == 32
    assert result["tokens"]["[0,L)"] == 31 * result["long_pieces"]
    assert result["tokens"]["[2L,4L)"] == 64 * result["long_pieces"]
    assert all(0 < result[name] < 10 for name in ("overall", "[0,L)", "[L,2L)", "[2L,4L)"))


def test_position_nll_matches_token_by_token_windowed_decoding(midi_folder, cache, tmp_path):
    from music_transformer import data

    _tiny_train(midi_folder, tmp_path / "run", steps=4)
    model = load_checkpoint(tmp_path / "run" / "model.pt", device="cpu")
    dataset = data.load_dataset(str(midi_folder), progress=False)
    piece = max(dataset.train + dataset.valid, key=lambda p: p.token_count)
    result = evaluation.position_nll(model, [piece])
    tokens = data.piece_tokens(piece.notes)[:4 * 32]
    cache_ = model.new_cache(32)
    total = 0.0
    with torch.inference_mode():
        for i in range(len(tokens) - 1):
            logits = model(torch.tensor([[tokens[i]]]), cache=cache_)[0, -1]
            total -= float(torch.log_softmax(logits, -1)[tokens[i + 1]])
    assert result["overall"] == pytest.approx(total / (len(tokens) - 1), rel=1e-4)
    longer = evaluation.position_nll(model, [piece], span=6 * 32)  # as a model trained on 48-token crops is scored
    assert longer["tokens"]["overall"] == min(6 * 32, len(data.piece_tokens(piece.notes))) - 1 > len(tokens) - 1
    assert longer["[2L,4L)"] == pytest.approx(result["[2L,4L)"], rel=1e-6)  # the positions by L stay the same


def test_the_bundled_model_loads_without_arguments_and_writes_valid_music(monkeypatch):
    monkeypatch.delenv("CONTINUO_MODEL", raising=False)
    assert DEFAULT_CHECKPOINT.exists(), f"the bundled model is missing: {DEFAULT_CHECKPOINT}"
    assert DEFAULT_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    model = load_checkpoint(device="cpu")
    assert model.metadata.get("valid_nll") and model.metadata.get("step")
    primer = [Note(60 + p, 80, 0.5 * k, 0.5 * k + 0.45) for k, p in enumerate([0, 4, 7, 12, 7, 4, 0, 4])]
    tokens = list(generate(model, primer, max_tokens=300, seed=1, top_p=0.95))
    notes = decode(tokens)
    assert len(tokens) == 300 and len(notes) >= 10 and duration_seconds(tokens) > 2.0
    assert all(0 <= n.pitch < 128 and n.end > n.start for n in notes)
    assert len({n.pitch for n in notes}) >= 3  # not one note over and over


def test_prefetched_batches_come_in_order_and_errors_come_out_where_they_happened():
    from music_transformer.train import prefetched

    assert list(prefetched(iter(range(50)))) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad piece")

    stream = prefetched(broken())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad piece"):
        next(stream)


def test_style_weights_lengthen_the_epoch_are_recorded_and_bad_ones_refused(midi_folder, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("CONTINUO_CACHE", str(tmp_path / "cache"))
    plain = _tiny_train(midi_folder, tmp_path / "plain", steps=40)  # about 35 batches an epoch
    weighted = _tiny_train(midi_folder, tmp_path / "weighted", steps=40, style_weights={"any": 3})
    assert plain["step"] == weighted["step"] == 40
    assert weighted["epoch"] < plain["epoch"]  # the folder's pieces (style `any`) come round three times an epoch
    assert read_checkpoint(tmp_path / "weighted" / "last.pt")["training"]["config"]["style_weights"] == {"any": 3.0}
    for weights, message in (("jazz=2", "no style 'jazz'"), ("folk", "is not STYLE=WEIGHT"),
                             ("folk=2,folk=3", "named twice"), ("folk=lots", "must be a number, not 'lots'"),
                             ("any=0", "the style weights leave out every piece (any)")):
        code = cli_main(["train", "--data", str(midi_folder), "--out", str(tmp_path / weights), "--config", "tiny",
                         "--steps", "1", "--threads", "1", "--no-progress", "--style-weights", weights])
        error = capsys.readouterr().err
        assert code == 2 and message in error and "Traceback" not in error, error
    with pytest.raises(train_module.TrainingError, match="style_weights: the weight of folk must be"):
        train_module.TrainConfig(style_weights={"folk": -1})
