"""The JSB Chorales benchmark (bench/jsb.py): serialisation, batches, the bar model, training through the shared
loop, distillation, --eval."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import jsb  # noqa: E402
from music_transformer.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from music_transformer.model import ModelConfig, MusicTransformer, sinusoidal_positions  # noqa: E402


def make_chorales(count, seed=0):
    """Chorale-like data a one-layer model learns quickly: block chords held for 4 or 8 sixteenths.

    Chorale i opens with an upbeat of i + 1 sixteenths, so no two chorales have the same length.
    """
    rng = np.random.default_rng(seed)
    chorales = []
    for index in range(count):
        key = int(rng.integers(48, 56))
        steps = [[key + 19, key + 16, key + 7, key - 12]] * (index + 1)
        for chord in range(8):
            root = key + (0, 5, 7, 5)[chord % 4]
            third = root + (4 if chord % 2 == 0 else 3)
            voicing = [root + 19, third + 12, root + 7, root - 12]  # S A T B
            steps += [voicing] * (4 if chord % 3 else 8)
        steps.append([-1, -1, -1, -1])
        chorales.append(steps)
    return chorales


def nll_by_hand(checkpoint, chorales):
    """NLL per token of every token after START of every chorale, each chorale whole, one at a time."""
    model = jsb.load_model(checkpoint, device="cpu")
    total = count = 0
    with torch.no_grad():
        for chorale in chorales:
            tokens = torch.from_numpy(jsb.serialise(chorale))[None]
            logits = model(tokens[:, :-1])
            total += float(torch.nn.functional.cross_entropy(logits[0], tokens[0, 1:], reduction="sum"))
            count += tokens.shape[1] - 1
    return total / count


def train_smoke(run, jsb_folder, config, **options):
    """Trains a named run for 30 steps of the smoke config (written to `config`) into runs/ beside it; its summary."""
    smoke = jsb.CONFIGS["smoke"]
    config.write_text(json.dumps({"model": smoke["model"], "train": {**smoke["train"], "steps": 30,
                                                                     "learning_rate": 1e-2}}))
    return jsb.train_run(str(config), run, config.parent / "runs", None, 1, "cpu", 10, False, str(jsb_folder),
                         **options)


@pytest.fixture
def jsb_folder(tmp_path):
    folder = tmp_path / "jsb"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps(make_chorales(24, seed=1)))
    (folder / "valid.json").write_text(json.dumps(make_chorales(6, seed=2)))
    return folder


def test_a_chorale_is_serialised_in_raster_order_with_a_rest_token():
    chorale = np.array([[60, 55, 52, 48], [62, -1, 53, 47]])
    tokens = jsb.serialise(chorale).tolist()
    assert tokens == [jsb.START, 24, 19, 16, 12, 26, jsb.REST, 17, 11]
    assert jsb.serialise(chorale, shift=2).tolist()[1:5] == [26, 21, 18, 14]
    assert jsb.VOCAB_SIZE == 49 and max(tokens) < jsb.VOCAB_SIZE


def test_every_named_config_builds_every_run():
    for config in jsb.CONFIGS:
        for run in jsb.RUNS:
            model_config, train_config, _ = jsb.run_configs(config, run)
            assert model_config.vocab_size == jsb.VOCAB_SIZE and train_config.steps > 0
            assert model_config.train_length >= 4 * 516 + 1  # the longest training chorale, whole
    assert jsb.run_configs("cpu", "absolute")[0].positional == "absolute"
    assert jsb.run_configs("cpu", "relative-local")[0].local_block == 256
    assert jsb.run_configs("cpu", "relative-timing")[0].positional == "relative"
    assert jsb.run_configs("cpu", "relative", steps=7)[1].steps == 7
    assert jsb.run_configs("gpu", "relative", max_minutes=2.5)[1].max_minutes == 2.5
    assert jsb.model_class("relative-bar") is jsb.BarTransformer and jsb.model_class("relative") is MusicTransformer
    assert jsb.model_class("relative-timing") is jsb.TimingTransformer
    assert jsb.model_class("relative-timing-bar-all-keys") is jsb.TimingBarTransformer
    assert jsb.run_configs("cpu", "absolute-bar")[0].positional == "absolute"
    _, train_config, data_options = jsb.run_configs("gpu", "relative-timing-bar-all-keys")
    assert train_config.max_transpose == 6 and data_options == {"transpose_within": "vocabulary"}
    assert jsb.run_configs("gpu", "relative")[2] == {"transpose_within": "voices"}
    long_model, long_train, _ = jsb.run_configs("cpu-long", "relative-timing-bar")
    assert long_model == jsb.run_configs("cpu", "relative-timing-bar")[0]  # the cpu model, trained longer
    assert long_train.precision == "bfloat16" and long_train.steps > jsb.run_configs("cpu", "relative")[1].steps
    two_hours_model, two_hours_train, _ = jsb.run_configs("cpu-2h", "absolute")
    assert two_hours_model == jsb.run_configs("cpu", "absolute")[0]
    assert two_hours_train.precision == "auto" and two_hours_train.steps == 12000  # float32 on the CPU


def test_the_committed_config_files_change_only_what_their_names_say():
    """bench/jsb_configs/: the README's experiments against cpu-2h (one change each, or one idea's changes),
    reproducible from a clone."""
    base_model, base_train, base_data = jsb.run_configs("cpu-2h", "relative-timing-bar")
    changes = {}
    for path in sorted((REPO / "bench" / "jsb_configs").glob("*.json")):
        model, train, data = jsb.run_configs(str(path), "relative-timing-bar")
        changed = {f"model.{k}": v for k, v in vars(model).items() if vars(base_model)[k] != v}
        changed.update({f"train.{k}": v for k, v in vars(train).items() if vars(base_train)[k] != v})
        changed.update({f"data.{k}": v for k, v in data.items() if base_data.get(k) != v})
        changes[path.name] = changed
    assert changes == {
        "cpu-2h-4-layers.json": {"model.n_layers": 4, "train.steps": 9000},  # the same minutes as 3 layers
        "cpu-2h-dropout-0.2.json": {"model.dropout": 0.2},
        # wider, trained on windows of 512 tokens (a whole chorale has 966 on average), 4 a batch
        "cpu-2h-256-windows.json": {"model.d_model": 256, "model.d_ff": 1024, "model.train_length": 512,
                                    "model.max_relative_distance": 512, "train.batch_size": 4, "train.steps": 8000},
        "cpu-256-windows.json": {"model.d_model": 256, "model.d_ff": 1024, "model.train_length": 512,
                                 "model.max_relative_distance": 512, "train.batch_size": 4, "train.steps": 3000},
    }


def test_a_config_file_with_an_unknown_data_option_is_refused(tmp_path):
    path = tmp_path / "config.json"
    for removed in ({"transpose_whithin": "voices"}, {"mean_teacher": 0.999}, {"metre": True}):
        path.write_text(json.dumps({"model": {}, "train": {}, "data": removed}))
        with pytest.raises(jsb.JSBError, match=f"unknown data option.*{next(iter(removed))}"):
            jsb.run_configs(str(path), "relative")
    path.write_text(json.dumps({"base": "cpu-3h", "model": {"dropout": 0.2}}))
    with pytest.raises(jsb.JSBError, match="base 'cpu-3h' is none of cpu, gpu"):
        jsb.run_configs(str(path), "relative")
    with pytest.raises(jsb.JSBError, match="transpose_within"):
        jsb.JSBData([np.zeros((4, 4), dtype=np.int64) + 60], [], transpose_within="octaves")


def test_bad_files_get_a_message_naming_the_problem(tmp_path):
    cases = {"garbage.json": "not json {", "empty.json": "[]",
             "shape.json": json.dumps([[[60, 55, 52]]]),
             "pitch.json": json.dumps([[[60, 55, 52, 48]], [[60, 55, 52, 48], [90, 55, 52, 48]]])}
    messages = {}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(jsb.JSBError) as error:
            jsb.read_chorales(tmp_path / name)
        messages[name] = str(error.value)
    assert "not a JSON file" in messages["garbage.json"]
    assert "non-empty list" in messages["empty.json"]
    assert "chorale 0" in messages["shape.json"]
    assert "chorale 1, step 1, soprano: pitch 90" in messages["pitch.json"]
    with pytest.raises(jsb.JSBError, match="no such file"):
        jsb.read_chorales(tmp_path / "missing.json")


def test_transpositions_keep_every_voice_in_its_range():
    chorales = [np.array(c) for c in make_chorales(20)]
    ranges = jsb.voice_ranges(chorales)
    for chorale in chorales:
        shifts = jsb.allowed_shifts(chorale, ranges, 5)
        assert 0 in shifts and all(abs(s) <= 5 for s in shifts)
        for shift in shifts:
            for voice in range(4):
                pitches = chorale[:, voice][chorale[:, voice] >= 0] + shift
                assert ranges[voice, 0] <= pitches.min() and pitches.max() <= ranges[voice, 1]
        for shift in set(range(-5, 6)) - set(shifts):  # every refused shift leaves some voice's range
            assert any((c := chorale[:, v][chorale[:, v] >= 0] + shift).min() < ranges[v, 0] or c.max() > ranges[v, 1]
                       for v in range(4))


def test_transposing_within_the_vocabulary_reaches_further_than_the_voices_ranges():
    middle = np.array([[65, 60, 55, 45]] * 8)  # two chorales a tone apart: each voice's range is 3 semitones
    train = [middle, middle + 2]
    by_voices = jsb.JSBData(train, train)
    by_vocabulary = jsb.JSBData(train, train, transpose_within="vocabulary")
    assert jsb.allowed_shifts(middle, by_voices.transpose_ranges, 6) == [0, 1, 2]
    assert jsb.allowed_shifts(middle, by_vocabulary.transpose_ranges, 6) == list(range(-6, 7))
    edge = np.array([[80, 70, 60, 38]] * 8)  # the vocabulary (36..81) still bounds it
    assert jsb.allowed_shifts(edge, by_vocabulary.transpose_ranges, 6) == [-2, -1, 0, 1]


def test_an_epoch_holds_every_chorale_once_transposed_and_resumes_exactly(jsb_folder):
    data = jsb.JSBData.load(jsb_folder)
    epoch = list(data.batches(4096, 4, seed=3, epoch=0, start=0, rank=0, world_size=1, max_transpose=5))
    assert len(epoch) == 6  # 24 chorales, 4 a batch
    rows = [row[row != jsb.PAD] for _, batch in epoch for row in batch]
    by_length = {4 * len(c) + 1: i for i, c in enumerate(data.train)}
    seen, transposed = set(), 0
    for row in rows:
        index = by_length[len(row)]
        original = jsb.serialise(data.train[index])
        shift = int(row[1] - original[1])
        assert abs(shift) <= 5 and np.array_equal(row, jsb.serialise(data.train[index], shift))
        seen.add(index)
        transposed += shift != 0
    assert seen == set(range(24)) and transposed > 0
    again = list(data.batches(4096, 4, seed=3, epoch=0, start=4, rank=0, world_size=1, max_transpose=5))
    assert [i for i, _ in again] == [4, 5]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, epoch[4:], strict=True))
    other = [b for _, b in data.batches(4096, 4, seed=3, epoch=1, start=0, rank=0, world_size=1, max_transpose=5)]
    assert not all(np.array_equal(a, b) for (_, a), b in zip(epoch, other, strict=True))


def hymn(period, pickup, bars, seed=0):
    """A chorale in bars of `period` 16ths (16: 4/4, 12: 3/4): a quarter-note pickup when `pickup`, then
    in every bar a half-note chord on the downbeat and quarter-note chords after it; it ends on a bar line."""
    rng = np.random.default_rng(seed)
    lengths = ([4] if pickup else []) + ([8, 4, 4] if period == 16 else [8, 4]) * bars
    steps = []
    for length in lengths:
        root = int(rng.integers(55, 67))
        steps += [[root + 12, root + 7, root + 4, root - 12]] * length
    return np.array(steps)


def test_a_crop_starts_whole_bars_in_so_every_token_keeps_its_place_in_the_bar():
    chorales = [hymn(16, True, 10, seed=1), hymn(16, False, 9, seed=3)]
    data = jsb.JSBData(chorales, chorales)
    length, offsets = 100, set()
    for epoch in range(6):
        for _, tokens in data.batches(length, 2, seed=0, epoch=epoch, start=0, rank=0, world_size=1,
                                      max_transpose=0):
            for row in tokens:
                found = [offset for full in map(jsb.serialise, chorales) for offset in range(len(full) - length)
                         if np.array_equal(full[offset:offset + length + 1], row)]
                assert found and all(offset % jsb.CROP_STEP == 0 for offset in found)
                offsets.update(found)
    assert len(offsets) > 2  # not always the same crop


def test_the_bar_model_tells_each_token_its_place_in_a_4_4_bar():
    # The last position sees the same 30 tokens behind another prefix (one layer, a window of 30: nothing
    # else). Relative attention alone gives it the same logits whatever the prefix; with the bar embedding
    # they are the same when the prefix is a whole number of bars (64 tokens) long, and differ otherwise.
    config = ModelConfig(vocab_size=jsb.VOCAB_SIZE, n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0,
                         max_relative_distance=64, train_length=256)
    torch.manual_seed(0)
    model = jsb.BarTransformer(config).eval()
    plain = MusicTransformer(config).eval()
    plain.load_state_dict({name: value for name, value in model.state_dict().items() if name != "embedding.bar.weight"})
    tokens = torch.randint(0, jsb.REST, (1, 30))
    prefixes = {length: torch.randint(0, jsb.REST, (1, length)) for length in (64, 67, 128)}
    with torch.no_grad():
        model.embedding.bar.weight.normal_(0, 0.1)  # as large as trained weights, not the near-zero initial ones
        last = lambda network, prefix: network(torch.cat([prefixes[prefix], tokens], 1), window=30)[0, -1]  # noqa: E731
        torch.testing.assert_close(last(plain, 64), last(plain, 67), atol=1e-5, rtol=0)
        torch.testing.assert_close(last(model, 64), last(model, 128), atol=1e-5, rtol=0)
        assert (last(model, 64) - last(model, 67)).abs().max() > 1e-2
    assert model.head.weight is model.embedding.weight  # the output layer still reads the token table
    assert model.num_parameters() == plain.num_parameters() + jsb.BAR * config.d_model
    with pytest.raises(jsb.JSBError, match="no cached decoder"):
        model(tokens, cache=model.new_cache())


def test_the_timing_model_adds_the_sinusoidal_signal_to_relative_attention():
    config = ModelConfig(vocab_size=jsb.VOCAB_SIZE, n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0,
                         max_relative_distance=64, train_length=256)
    torch.manual_seed(0)
    model = jsb.TimingTransformer(config).eval()
    plain = MusicTransformer(config).eval()
    plain.load_state_dict({name: value for name, value in model.state_dict().items() if name != "timing_signal"})
    tokens = torch.randint(0, jsb.REST, (2, 40))
    with torch.no_grad():  # the same weights, told each token's absolute position: other logits
        assert not torch.allclose(model(tokens), plain(tokens), atol=1e-4)
        # by hand: Vaswani et al.'s encodings added to the scaled embeddings, as positional="both" did
        signal = sinusoidal_positions(torch.arange(40), 32)
        x = plain.embedding(tokens) * 32 ** 0.5 + signal
        for layer, block in enumerate(plain.blocks):
            x = block(x, None, layer, None)
        torch.testing.assert_close(model(tokens), plain.head(plain.final_norm(x)), atol=0, rtol=0)
    assert model.num_parameters() == plain.num_parameters()  # a signal, not weights
    with pytest.raises(jsb.JSBError, match="no cached decoder"):
        model(tokens, cache=model.new_cache())


def test_the_distillation_loss_mixes_a_teachers_soft_targets_with_the_tokens():
    torch.manual_seed(0)
    logits, pad = torch.randn(2, 5, 7), 6
    targets = torch.randint(0, 6, (2, 5))
    targets[1, 3:] = pad
    soft = torch.softmax(torch.randn(2, 5, 7), -1)
    loss, nll = jsb.DistillationLoss(0.25)(logits, targets, soft, pad, 0.0)
    # by hand, in float64, over the positions that are not PAD
    log_probs = torch.log_softmax(logits.double(), -1)[targets != pad]
    scored = targets[targets != pad]
    hard = -log_probs[torch.arange(len(scored)), scored].mean()
    against_teacher = -(soft.double()[targets != pad] * log_probs).sum(-1).mean()
    assert float(nll) == pytest.approx(float(hard), rel=1e-5)
    assert float(loss) == pytest.approx(float(0.75 * hard + 0.25 * against_teacher), rel=1e-5)
    assert float(against_teacher) > float(hard) + 0.1  # the teacher's targets are not the tokens
    # a teacher certain of the tokens themselves teaches nothing else; weight 0: the tokens alone
    certain = torch.nn.functional.one_hot(targets, 7).float()
    assert float(jsb.DistillationLoss(0.5)(logits, targets, certain, pad, 0.0)[0]) == pytest.approx(float(hard),
                                                                                                    rel=1e-5)
    mixed, tokens_only = jsb.DistillationLoss(0.0)(logits, targets, soft, pad, 0.0)
    assert float(mixed) == float(tokens_only) == pytest.approx(float(hard), rel=1e-5)
    with pytest.raises(jsb.JSBError, match="between 0 and 1"):
        jsb.DistillationLoss(1.5)
    with pytest.raises(jsb.JSBError, match="no teacher"):
        jsb.DistillationLoss(0.5)(logits, targets, None, pad, 0.0)


def test_a_bar_checkpoint_of_either_naming_loads_and_scores_alike(jsb_folder, tmp_path):
    """A `-bar` run's checkpoints load as a BarTransformer, also those written while the bar embedding was
    ModelConfig.position_cycle (weights `cycle_embedding.weight`) or while the library had the timing signal
    (positional "both"); the library's loader refuses them."""
    summary = train_smoke("relative-timing-bar", jsb_folder, tmp_path / "config.json")
    assert summary["bar_embedding"] and summary["timing_signal"] and summary["model"]["positional"] == "relative"
    checkpoint = tmp_path / "runs" / "relative-timing-bar" / "model.pt"
    model = jsb.load_model(checkpoint, "cpu")
    assert isinstance(model, jsb.TimingBarTransformer) and not model.training
    valid = jsb.read_chorales(jsb_folder / "valid.json")
    assert jsb.score(checkpoint, valid, "cpu") == pytest.approx(summary["valid_nll"], abs=1e-4)
    # as the earlier code wrote it: the config names the cycle and the positions "both", the weights the
    # cycle embedding and no timing signal
    state = read_checkpoint(checkpoint)
    state["config"]["position_cycle"] = jsb.BAR
    state["config"]["positional"] = "both"
    state["model"]["cycle_embedding.weight"] = state["model"].pop("embedding.bar.weight")
    del state["model"]["timing_signal"]
    former = tmp_path / "former.pt"
    torch.save(state, former)
    assert isinstance(jsb.load_model(former, "cpu"), jsb.TimingBarTransformer)
    assert jsb.score(former, valid, "cpu") == jsb.score(checkpoint, valid, "cpu")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(checkpoint, device="cpu")
    state["model"]["cycle_embedding.weight"] = torch.zeros(113, state["config"]["d_model"])  # a metre model's
    torch.save(state, former)
    with pytest.raises(jsb.JSBError, match="former.pt: the weights do not fit"):
        jsb.load_model(former, "cpu")


def test_validation_scores_every_token_of_every_chorale_once(jsb_folder):
    data = jsb.JSBData.load(jsb_folder)
    batches = data.validation_batches(0, 0, max_tokens=200)
    assert len(batches) > 1
    scored = sum(int((b[:, 1:] != jsb.PAD).sum()) for b in batches)
    assert scored == sum(4 * len(c) for c in data.valid)


def test_training_through_the_shared_loop_learns_and_eval_scores_a_split(jsb_folder, tmp_path, capsys):
    config = tmp_path / "config.json"
    smoke = jsb.CONFIGS["smoke"]
    config.write_text(json.dumps({"model": smoke["model"], "train": {**smoke["train"], "steps": 40,
                                                                     "learning_rate": 1e-2}}))
    out = tmp_path / "runs"
    assert jsb.main(["--config", str(config), "--data", str(jsb_folder), "--out", str(out),
                     "--keep-every", "10", "--transpositions", "1", "--json"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed.strip().splitlines()[-1])
    runs = {r["run"]: r for r in result["runs"]}
    assert set(runs) == {"relative", "absolute"}
    assert "±1 keys" in printed and all(run["transpositions"] == 1 for run in runs.values())
    # the key-averaged score of the averaged weights, in the summary and from --eval alike
    assert jsb.main(["--eval", str(jsb_folder / "valid.json"), "--checkpoint", str(out / "relative" / "averaged.pt"),
                     "--transpositions", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(line.split()[-1]) == pytest.approx(runs["relative"]["key_averaged_valid_nll"], abs=1e-4)
    assert runs["relative"]["key_averaged_valid_nll"] != pytest.approx(runs["relative"]["averaged_valid_nll"],
                                                                       abs=1e-4)
    log = [json.loads(line) for line in (out / "relative" / "log.jsonl").read_text().splitlines()]
    assert log[0]["valid_nll"] > 3.0  # untrained: about log(49) = 3.9
    for run in runs.values():
        assert run["step"] == 40 and run["valid_nll"] < 3.0 and run["averaged_checkpoints"] == 4
        assert (out / run["run"] / "model.pt").exists() and (out / run["run"] / "averaged.pt").exists()
    assert "relative" in printed and "0.335" in printed

    assert jsb.main(["--eval", str(jsb_folder / "valid.json"), "--checkpoint", str(out / "relative" / "model.pt")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("nll_per_token: ")
    assert float(line.split()[-1]) == pytest.approx(runs["relative"]["valid_nll"], abs=1e-4)

    # The score by hand: every token after START of every chorale, each chorale whole.
    assert nll_by_hand(out / "relative" / "model.pt", jsb.read_chorales(jsb_folder / "valid.json")) == \
        pytest.approx(runs["relative"]["valid_nll"], abs=1e-4)


def _softmax_in_key(model, chorale, shift):
    """By hand: the model's next-token probabilities for the chorale transposed by `shift`, as a dict
    per position {original token: probability}, renormalised over the pitches and rest it can reach."""
    with torch.no_grad():
        tokens = torch.from_numpy(jsb.serialise(chorale, shift))[None]
        probabilities = torch.softmax(model(tokens[:, :-1])[0].double(), -1).numpy()
    rows = []
    for row in probabilities:
        reachable = {token: row[token + shift] for token in range(jsb.REST) if 0 <= token + shift < jsb.REST}
        reachable[jsb.REST] = row[jsb.REST]
        total = sum(reachable.values())
        rows.append({token: p / total for token, p in reachable.items()})
    return rows


def test_key_averaged_predictions_are_distributions_of_the_past_only():
    """--transpositions: the mean of the transposed models' predictions, read back in the chorale's key;
    a transposition drops out after the first token it cannot reach, so no prediction sees the future."""
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=jsb.VOCAB_SIZE, n_layers=1, d_model=32, n_heads=2, d_ff=64,
                                         dropout=0.0, max_relative_distance=64, train_length=256)).eval()
    # the soprano climbs to the top of the vocabulary (81) at step 3: a shift of +1 or +2 cannot reach it
    chorale = np.array([[76, 67, 60, 48], [79, 67, 60, 48], [79, 65, 62, 50], [81, 65, 62, 50],
                        [79, 64, 60, 48], [-1, 64, 60, 48]])
    top = 4 * 3  # the soprano's 81: token 12 after START
    (averaged,) = jsb.key_averaged_log_probs(model, [chorale], 2)
    assert averaged.shape == (4 * len(chorale), jsb.REST + 1)
    assert np.allclose(np.logaddexp.reduce(averaged, axis=1), 0.0)  # every prediction a distribution

    by_shift = {shift: _softmax_in_key(model, chorale, shift) for shift in (-2, -1, 0)}
    for shift in (1, 2):  # up to the 81 the transposed chorale is the same as serialise's
        by_shift[shift] = _softmax_in_key(model, np.minimum(chorale, 81 - shift), shift)
    targets = jsb.serialise(chorale)[1:]
    for position in (0, 5, top, top + 1, len(targets) - 1):
        shifts = (-2, -1, 0, 1, 2) if position <= top else (-2, -1, 0)  # +1, +2 drop out after the 81
        expected = np.mean([by_shift[shift][position].get(targets[position], 0.0) for shift in shifts])
        assert np.exp(averaged[position, targets[position]]) == pytest.approx(expected, rel=1e-6)
    # at the 81 itself the shifts that cannot reach it still count: probability 0 for it, not dropped
    assert np.exp(averaged[top, targets[top]]) == pytest.approx(
        np.mean([by_shift[shift][top][targets[top]] for shift in (-2, -1, 0)]) * 3 / 5, rel=1e-6)

    # Changing a token changes no prediction before it: not even whether a transposition still counts.
    lowered = chorale.copy()
    lowered[3, 0] = 77
    (changed,) = jsb.key_averaged_log_probs(model, [lowered], 2)
    assert np.allclose(changed[:top + 1], averaged[:top + 1]) and not np.allclose(changed[top + 1:], averaged[top + 1:])


def test_distilling_batches_bring_the_teachers_key_averaged_predictions(jsb_folder, tmp_path):
    """With a teacher, each batch row's soft targets are the teacher's predictions for that chorale in the
    key it was drawn in, averaged over keys around it, cropped with the tokens; PAD rows get none."""
    train_smoke("relative", jsb_folder, tmp_path / "config.json")
    teacher = jsb.load_model(tmp_path / "runs" / "relative" / "averaged.pt", "cpu")
    plain, taught = jsb.JSBData.load(jsb_folder), jsb.JSBData.load(jsb_folder)
    taught.distil_from(teacher, 1)
    assert "±1 keys" in taught.describe()
    # every (chorale, key) a batch can draw: its tokens and the teacher's predictions, by hand
    expected = {}
    for index, chorale in enumerate(plain.train):
        for shift in jsb.allowed_shifts(chorale, plain.transpose_ranges, 2):
            transposed = np.where(chorale >= 0, chorale + shift, -1)
            (log_probs,) = jsb.key_averaged_log_probs(teacher, [transposed], 1)
            expected[index, shift] = (jsb.serialise(chorale, shift), np.exp(log_probs))
    length = 60  # shorter than every chorale: each row is a crop
    rows = 0
    for (index, tokens), (same_index, (taught_tokens, soft)) in zip(
            plain.batches(length, 3, 0, 1, 0, 0, 1, 2), taught.batches(length, 3, 0, 1, 0, 0, 1, 2), strict=True):
        assert index == same_index and np.array_equal(tokens, taught_tokens)
        assert soft.shape == (*tokens[:, 1:].shape, jsb.VOCAB_SIZE) and soft.dtype == np.float32
        for row, soft_row in zip(tokens, soft, strict=True):
            matches = [probabilities[offset:offset + length]
                       for full, probabilities in expected.values()
                       for offset in range(len(full) - length)
                       if np.array_equal(full[offset:offset + length + 1], row)]
            assert any(np.allclose(soft_row[:, :jsb.REST + 1], m, atol=1e-3) for m in matches)
            assert np.allclose(soft_row.sum(-1), 1.0, atol=1e-2) and not soft_row[:, jsb.START:].any()
            rows += 1
    assert rows == 3 * (len(plain.train) // 3)
    # the cropped and the whole: a row of a chorale shorter than the length is padded, its soft rows 0
    (_, (tokens, soft)), *_ = taught.batches(2304, 24, 0, 0, 0, 0, 1, 2)
    padded = tokens[:, 1:] == jsb.PAD
    assert padded.any() and not soft[padded].any() and np.allclose(soft[~padded].sum(-1), 1.0, atol=1e-2)


def test_a_run_distils_from_its_namesake_and_reports_the_teacher(jsb_folder, tmp_path, capsys):
    teachers = tmp_path / "runs"
    config = tmp_path / "config.json"
    train_smoke("relative-timing-bar", jsb_folder, config)
    settings = json.loads(config.read_text())
    settings["train"]["max_transpose"] = 1  # fewer keys for the teacher to predict: seconds, not a minute
    config.write_text(json.dumps(settings))
    out = tmp_path / "distilled"
    assert jsb.main(["--config", str(config), "--runs", "relative-timing-bar", "--data",
                     str(jsb_folder), "--out", str(out), "--keep-every", "10", "--teachers", str(teachers),
                     "--json"]) == 0
    printed = capsys.readouterr().out
    (summary,) = json.loads(printed.strip().splitlines()[-1])["runs"]
    teacher = teachers / "relative-timing-bar" / "averaged.pt"
    assert summary["teacher"] == str(teacher) and summary["teacher_transpositions"] == jsb.TEACHER_TRANSPOSITIONS
    assert summary["soft_target_weight"] == jsb.SOFT_TARGET_WEIGHT and summary["teacher_seconds"] > 0
    assert summary["teacher_key_averaged_valid_nll"] == pytest.approx(
        jsb.score(teacher, jsb.read_chorales(jsb_folder / "valid.json"), "cpu", jsb.TEACHER_TRANSPOSITIONS), abs=1e-6)
    assert "distilled from the runs in" in printed and summary["step"] == 30 and summary["valid_nll"] < 3.0
    assert summary["averaged_valid_nll"] == pytest.approx(
        nll_by_hand(out / "relative-timing-bar" / "averaged.pt", jsb.read_chorales(jsb_folder / "valid.json")),
        abs=1e-4)

    # refused before anything trains: a run with no namesake among the teachers, a weight with no teacher
    assert jsb.main(["--runs", "absolute", "--data", str(jsb_folder), "--out", str(tmp_path / "x"),
                     "--teachers", str(teachers)]) == 1
    assert "no teacher for absolute" in capsys.readouterr().err
    assert jsb.main(["--runs", "relative", "--data", str(jsb_folder), "--soft-target-weight", "0.3"]) == 1
    assert "goes with --teachers" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eval_refuses_a_model_of_another_vocabulary_and_bad_arguments(jsb_folder, tmp_path, capsys):
    events_model = tmp_path / "events.pt"
    save_checkpoint(MusicTransformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64)), events_model)
    assert jsb.main(["--eval", str(jsb_folder / "valid.json"), "--checkpoint", str(events_model)]) == 1
    assert "not a JSB model" in capsys.readouterr().err
    assert jsb.main(["--eval", str(jsb_folder / "valid.json")]) == 1
    assert "go together" in capsys.readouterr().err
    assert jsb.main(["--runs", "relative", "--data", str(jsb_folder), "--transpositions", "-1"]) == 1
    assert "--transpositions must be 0 or more" in capsys.readouterr().err
    assert jsb.main(["--runs", "relative,bogus", "--data", str(jsb_folder)]) == 1
    assert "unknown run 'bogus'" in capsys.readouterr().err


@pytest.mark.skipif(not (jsb.DATA / "train.json").exists(), reason="the shared JSB data is not beside this checkout")
def test_the_shared_data_reads_as_its_readme_says():
    data = jsb.JSBData.load()
    assert len(data.train) == 229 and len(data.valid) == 76
    assert "221,141 tokens" in data.describe()


def test_the_prepared_gpu_script_runs_dry_on_the_cpu(jsb_folder, tmp_path):
    """bench/jsb_gpu.sh end to end with DEVICE=cpu CONFIG=smoke: probe, equal steps, table, report, export."""
    import os
    import subprocess

    runs, report = tmp_path / "runs", tmp_path / "report"
    env = {**os.environ, "DEVICE": "cpu", "CONFIG": "smoke", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "bench" / "jsb_gpu.sh"), str(jsb_folder), str(runs), "6", str(report)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "relative-timing-bar-all-keys" in done.stdout and "decoding:" in done.stdout
    summaries = json.loads((report / "summaries.json").read_text())
    trained = {run: summaries[run] for run in ("relative", "absolute", "relative-timing-bar",
                                               "relative-timing-bar-all-keys")}
    planned = {s["train"]["steps"] for s in trained.values()}
    assert len(planned) == 1 and planned.pop() >= 10  # one budget for all, from the probe
    for summary in trained.values():
        assert summary["stopped"] == "time" or summary["step"] == summary["train"]["steps"]
        assert summary["curve"][0]["step"] == 0 and summary["valid_nll"] < summary["curve"][0]["valid_nll"]
        if "averaged_valid_nll" in summary:  # the averaged weights are also scored averaged over 7 keys
            assert summary["transpositions"] == 3 and 0 < summary["key_averaged_valid_nll"] < 5
    assert "±3 keys" in done.stdout and any("key_averaged_valid_nll" in s for s in trained.values())
    exported = summaries["exported"]
    assert exported["run"] != "absolute" and exported["dtype"] == "float16"
    parts = sorted(report.glob("best.pt.part*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    (tmp_path / "best.pt").write_bytes(b"".join(p.read_bytes() for p in parts))
    assert jsb.score(tmp_path / "best.pt", jsb.read_chorales(jsb_folder / "valid.json"), "cpu") \
        == pytest.approx(exported["valid_nll"], abs=5e-3)

    # the second stage, on the same machine: a run distilled from its namesake trained above
    env["TEACHERS"], env["RUNS"] = str(runs), "relative-timing-bar"
    refused = subprocess.run(["bash", str(REPO / "bench" / "jsb_gpu.sh"), str(jsb_folder), str(runs), "6"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "TEACHERS must not be RUN_DIR" in refused.stdout
    assert (runs / "relative-timing-bar" / "model.pt").exists()  # the teachers are untouched
    distilled_report = tmp_path / "report-distilled"
    done = subprocess.run(["bash", str(REPO / "bench" / "jsb_gpu.sh"), str(jsb_folder), str(tmp_path / "distilled"),
                           "6", str(distilled_report)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "distilled from the runs in" in done.stdout
    distilled = json.loads((distilled_report / "summaries.json").read_text())["relative-timing-bar"]
    assert distilled["teacher"] == str(jsb.teacher_checkpoint(runs, "relative-timing-bar"))
    assert distilled["soft_target_weight"] == jsb.SOFT_TARGET_WEIGHT
