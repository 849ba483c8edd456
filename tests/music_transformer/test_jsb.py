"""The JSB Chorales benchmark (bench/jsb.py): serialisation, batches, training through the shared loop, --eval."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from music_transformer.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import jsb  # noqa: E402


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


def nll_by_hand(checkpoint, chorales, encode=jsb.serialise, places=None):
    """NLL per token of every token after START of every chorale, each chorale whole, one at a time."""
    model = jsb.load_checkpoint(checkpoint, device="cpu")
    total = count = 0
    with torch.no_grad():
        for chorale in chorales:
            tokens = torch.from_numpy(encode(chorale))[None]
            cycle = None if places is None else torch.from_numpy(places(chorale))[None, :-1]
            logits = model(tokens[:, :-1], cycle_positions=cycle)
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


def trains_and_scores_with_its_places(run, option, jsb_folder, tmp_path):
    """`run`, whose cycle embedding is told each token's places by the data option `option`, learns through
    the shared loop, and --eval and a scoring by hand with those places agree with its summary; the
    option and the metre together are refused."""
    cycle, places, _ = jsb.PLACES[option]
    summary = train_smoke(run, jsb_folder, tmp_path / "config.json")
    assert summary["model"]["position_cycle"] == cycle and summary["data"] == {option: True}
    assert summary["valid_nll"] < 3.0
    valid = jsb.read_chorales(jsb_folder / "valid.json")
    checkpoint = tmp_path / "runs" / run / "model.pt"
    assert jsb.score(checkpoint, valid, "cpu") == pytest.approx(summary["valid_nll"], abs=1e-4)
    assert nll_by_hand(checkpoint, valid, places=places) == pytest.approx(summary["valid_nll"], abs=1e-4)
    with pytest.raises(jsb.JSBError, match="choose one"):
        jsb.JSBData(valid, valid, metre=True, **{option: True})


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


def _pitches_from_intervals(tokens):
    """By hand: the interval encoding read back as `serialise`'s pitch tokens."""
    tokens = list(tokens)
    first = next(i for i, token in enumerate(tokens) if token < jsb.REST)
    return tokens[:first + 1] + [token - jsb.FIRST_INTERVAL - jsb.WIDEST + tokens[first]
                                 if token >= jsb.FIRST_INTERVAL else token for token in tokens[first + 1:]]


def test_the_interval_encoding_is_the_same_in_every_key_and_reads_back():
    chorale = np.array([[-1, 55, 52, 48], [62, -1, 53, 47], [81, 36, 60, 48]])
    tokens = jsb.serialise_intervals(chorale)
    # the rest and START keep their tokens, the alto's 55 is the first pitch, then intervals from it
    assert tokens[:3].tolist() == [jsb.START, jsb.REST, 55 - jsb.LOWEST]
    assert tokens[3] == jsb.FIRST_INTERVAL + jsb.WIDEST + (52 - 55) and tokens[6] == jsb.REST
    assert jsb.INTERVAL_VOCAB_SIZE == 140 and max(tokens) < jsb.INTERVAL_VOCAB_SIZE
    assert _pitches_from_intervals(tokens) == jsb.serialise(chorale).tolist()
    # from the widest interval down (81 - 36 after a 36, 36 - 81 after an 81) every token is in the vocabulary
    extremes = jsb.serialise_intervals(np.array([[36, 36, 36, 36], [81, 81, 81, 81]]))
    assert extremes[5] == jsb.INTERVAL_VOCAB_SIZE - 1 and min(extremes[2:5]) == jsb.FIRST_INTERVAL + jsb.WIDEST
    bottom = jsb.serialise_intervals(np.array([[81, 81, 81, 81], [36, 36, 36, 36]]))
    assert bottom[5] == jsb.FIRST_INTERVAL
    moved = jsb.serialise_intervals(chorale, shift=-3)
    assert moved[2] == tokens[2] - 3 and moved[3:].tolist() == tokens[3:].tolist()


def test_every_named_config_builds_every_run():
    for config in jsb.CONFIGS:
        for run in jsb.RUNS:
            model_config, train_config, data_options = jsb.run_configs(config, run)
            encoding = data_options.get("encoding", "pitches")
            assert model_config.vocab_size == jsb.ENCODING_VOCAB_SIZES[encoding] and train_config.steps > 0
            assert model_config.train_length >= 4 * 516 + 1  # the longest training chorale, whole
    assert jsb.run_configs("cpu", "absolute")[0].positional == "absolute"
    assert jsb.run_configs("cpu", "relative-local")[0].local_block == 256
    assert jsb.run_configs("cpu", "relative-timing")[0].positional == "both"
    assert jsb.run_configs("cpu", "relative", steps=7)[1].steps == 7
    assert jsb.run_configs("gpu", "relative", max_minutes=2.5)[1].max_minutes == 2.5
    assert jsb.run_configs("cpu", "relative-bar")[0].position_cycle == 64
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
    pitch_model = jsb.run_configs("cpu", "relative-timing-bar-pitch")[0]
    assert pitch_model.relative_pitch == jsb.REST and pitch_model.position_cycle == 64  # the 46 pitch tokens
    for run in ("relative-timing-metre", "absolute-metre"):
        metre_model, _, data_options = jsb.run_configs("cpu", run)
        assert metre_model.position_cycle == jsb.METRE_CYCLE and data_options["metre"] is True


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
        # taught by the running average of its own weights, over keys: 8,000 steps, about 12,000 plain ones' minutes
        "cpu-2h-mean-teacher.json": {"data.mean_teacher": 0.999, "data.mean_teacher_ramp": 2000, "train.steps": 8000},
        # wider, trained on windows of 512 tokens (a whole chorale has 966 on average), 4 a batch
        "cpu-2h-256-windows.json": {"model.d_model": 256, "model.d_ff": 1024, "model.train_length": 512,
                                    "model.max_relative_distance": 512, "train.batch_size": 4, "train.steps": 8000},
        "cpu-256-windows.json": {"model.d_model": 256, "model.d_ff": 1024, "model.train_length": 512,
                                 "model.max_relative_distance": 512, "train.batch_size": 4, "train.steps": 3000},
    }


def test_a_config_file_with_an_unknown_data_option_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": {}, "train": {}, "data": {"transpose_whithin": "voices"}}))
    with pytest.raises(jsb.JSBError, match="transpose_whithin"):
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
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, epoch[4:]))
    other = [b for _, b in data.batches(4096, 4, seed=3, epoch=1, start=0, rank=0, world_size=1, max_transpose=5)]
    assert not all(np.array_equal(a, b) for (_, a), b in zip(epoch, other))


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


@pytest.mark.parametrize("period", [16, 12])
@pytest.mark.parametrize("pickup", [True, False])
def test_the_metre_and_pickup_are_inferred_from_where_the_long_notes_start(period, pickup):
    chorale = hymn(period, pickup, bars=6)
    assert jsb.infer_metre(chorale) == (period, 4 if pickup else 0)
    places = jsb.metre_positions(chorale)
    assert len(places) == len(jsb.serialise(chorale)) and places[0] == jsb.METRE_CYCLE - 1
    base = 0 if period == 16 else 64
    first_bar_line = 1 + 4 * (4 if pickup else 0)  # the downbeat's soprano token
    assert places[first_bar_line:first_bar_line + 4].tolist() == [base, base + 1, base + 2, base + 3]
    assert places[1:].max() == base + 4 * period - 1 and places[1:].min() == base
    if pickup:  # the pickup is the bar's last quarter
        assert places[1] == base + 4 * (period - 4)


def test_metre_batches_carry_each_tokens_place_in_its_bar():
    chorales = [hymn(16, True, 10, seed=1), hymn(12, False, 12, seed=2), hymn(16, False, 9, seed=3)]
    data = jsb.JSBData(chorales, chorales, metre=True)
    full = [jsb.metre_positions(c) for c in chorales]
    for length in (2304, 100):  # whole chorales, and cropped at random places
        for _, (tokens, places) in data.batches(length, 2, seed=0, epoch=0, start=0, rank=0, world_size=1,
                                                 max_transpose=5):
            assert tokens.shape == places.shape
            for row_tokens, row in zip(tokens, places):
                row = row[row_tokens != jsb.PAD]
                assert any(len(f) >= len(row) and any((f[o:o + len(row)] == row).all()
                                                      for o in range(len(f) - len(row) + 1)) for f in full)
    valid = data.validation_batches(0, 0, max_tokens=300)
    assert all(isinstance(b, tuple) and b[0].shape == b[1].shape for b in valid)
    assert sorted(int((b[0][:, 1:] != jsb.PAD).sum()) for b in valid) == sorted(4 * len(c) for c in chorales)
    assert all(isinstance(b, np.ndarray) for b in jsb.JSBData(chorales, chorales).validation_batches(0, 0))


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


def test_a_metre_model_learns_through_the_shared_loop_and_eval_reads_the_metre(jsb_folder, tmp_path):
    config, smoke = tmp_path / "config.json", jsb.CONFIGS["smoke"]
    summary = train_smoke("relative-timing-metre", jsb_folder, config)
    assert summary["model"]["position_cycle"] == jsb.METRE_CYCLE and summary["data"] == {"metre": True}
    assert summary["valid_nll"] < 3.0  # untrained: about log(49) = 3.9
    valid = jsb.read_chorales(jsb_folder / "valid.json")
    assert jsb.score(tmp_path / "runs" / "relative-timing-metre" / "model.pt", valid, "cpu") == \
        pytest.approx(summary["valid_nll"], abs=1e-4)
    # Scored with the default places (the position modulo the cycle) instead, the same weights do worse.
    model = jsb.load_checkpoint(tmp_path / "runs" / "relative-timing-metre" / "model.pt", device="cpu")
    plain = jsb.validation_nll(model, jsb.JSBData(valid, valid).validation_batches(0, 0), model.device, pad=jsb.PAD)
    assert plain > summary["valid_nll"] + 0.01
    with pytest.raises(jsb.JSBError, match="position_cycle=113"):
        config.write_text(json.dumps({"model": smoke["model"], "train": smoke["train"], "data": {"metre": True}}))
        jsb.run_configs(str(config), "relative-bar")


def test_an_interval_model_trains_and_scores_the_same_chorales(jsb_folder, tmp_path):
    """The interval encoding through the shared loop: its score is the NLL of the chorales' own tokens."""
    config, smoke = tmp_path / "config.json", jsb.CONFIGS["smoke"]
    summary = train_smoke("relative-timing-bar-intervals", jsb_folder, config, transpositions=2)
    assert summary["model"]["vocab_size"] == jsb.INTERVAL_VOCAB_SIZE and summary["data"] == {"encoding": "intervals"}
    assert summary["valid_nll"] < 3.0  # untrained: about log(140) = 4.9
    assert "key_averaged_valid_nll" not in summary  # the same in every key: nothing to average
    checkpoint = tmp_path / "runs" / "relative-timing-bar-intervals" / "model.pt"
    valid = jsb.read_chorales(jsb_folder / "valid.json")
    assert jsb.score(checkpoint, valid, "cpu") == pytest.approx(summary["valid_nll"], abs=1e-4)
    assert nll_by_hand(checkpoint, valid, encode=jsb.serialise_intervals) == pytest.approx(summary["valid_nll"],
                                                                                        abs=1e-4)
    with pytest.raises(jsb.JSBError, match="without --transpositions"):
        jsb.score(checkpoint, valid, "cpu", transpositions=1)
    config.write_text(json.dumps({"model": {**smoke["model"], "relative_pitch": jsb.REST}, "train": smoke["train"],
                                  "data": {"encoding": "intervals"}}))
    with pytest.raises(jsb.JSBError, match="interval encoding has none"):
        jsb.run_configs(str(config), "relative")
    config.write_text(json.dumps({"model": smoke["model"], "train": smoke["train"], "data": {"encoding": "degrees"}}))
    with pytest.raises(jsb.JSBError, match="encoding must be one of pitches, intervals"):
        jsb.run_configs(str(config), "relative")


def test_degree_places_are_the_pitch_class_above_the_first_pitch_in_every_key(jsb_folder, tmp_path):
    chorale = np.array([[-1, 55, 52, 48], [62, -1, 53, 47]])
    # START and the silent soprano: class 12; the alto's 55 is the first pitch (class 0); 52 is 9 above it
    # (mod 12), 48 is 5, 62 is 7; the place in the cycle is the position modulo 64
    assert jsb.degree_positions(chorale).tolist() == [12 * 64 + 0, 12 * 64 + 1, 2, 9 * 64 + 3, 5 * 64 + 4,
                                                      7 * 64 + 5, 12 * 64 + 6, 10 * 64 + 7, 4 * 64 + 8]
    data = jsb.JSBData.load(jsb_folder, degrees=True)
    _, (tokens, places) = next(data.batches(4096, 2, seed=0, epoch=0, start=0, rank=0, world_size=1, max_transpose=5))
    for row_tokens, row_places in zip(tokens, places):  # each row's places are its chorale's, whatever its key
        length = int((row_tokens != jsb.PAD).sum())
        pitched = np.flatnonzero(row_tokens[:length] < jsb.REST)
        assert ((row_places[pitched] // 64) == (row_tokens[pitched] - row_tokens[pitched[0]]) % 12).all()
    trains_and_scores_with_its_places("relative-timing-degrees", "degrees", jsb_folder, tmp_path)
    config, smoke = tmp_path / "config.json", jsb.CONFIGS["smoke"]
    config.write_text(json.dumps({"model": smoke["model"], "train": smoke["train"], "data": {"degrees": True}}))
    with pytest.raises(jsb.JSBError, match="position_cycle=832"):
        jsb.run_configs(str(config), "relative-bar")


def test_held_places_tell_how_long_the_next_voice_has_held_its_pitch_from_the_past_only(jsb_folder, tmp_path):
    chorale = np.array([[60, 55, 52, 48], [60, 55, 52, 47], [62, 55, -1, 47], [62, 57, -1, 47]])
    # START predicts the soprano's first note: nothing held yet; after the bass of step t the soprano of
    # step t + 1 comes next, after any other voice the next voice of the same step (a rest holds too)
    held = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 1, 1, 3, 1, 2, 2]
    places = jsb.held_positions(chorale)
    assert (places // 64).tolist() == held and (places % 64).tolist() == list(range(17))
    changed = chorale.copy()
    changed[3] = [70, 70, 70, 70]  # the last step's tokens (13..16) move only the places after them
    assert (jsb.held_positions(changed)[:14] == places[:14]).all()
    assert not (jsb.held_positions(changed) == places).all()
    whole_notes = np.tile([[60, 55, 52, 48]], (40, 1))
    assert jsb.held_positions(whole_notes).max() // 64 == jsb.HELD_LONGEST
    data = jsb.JSBData.load(jsb_folder, held=True)
    _, (tokens, row_places) = next(data.batches(4096, 2, seed=0, epoch=0, start=0, rank=0, world_size=1,
                                                max_transpose=5))
    chorales = data.train
    for row_tokens, places_of_row in zip(tokens, row_places):  # a transposed chorale keeps its places
        length = int((row_tokens != jsb.PAD).sum())
        index = next(i for i, c in enumerate(chorales) if 4 * len(c) + 1 == length)
        assert (places_of_row[:length] == jsb.held_positions(chorales[index])).all()
    trains_and_scores_with_its_places("relative-timing-held", "held", jsb_folder, tmp_path)


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
    assert cli_main(["bench", "jsb", "--config", str(config), "--data", str(jsb_folder), "--out", str(out),
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

    assert cli_main(["bench", "jsb", "--eval", str(jsb_folder / "valid.json"),
                     "--checkpoint", str(out / "relative" / "model.pt")]) == 0
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
    from music_transformer.model import ModelConfig, MusicTransformer

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
    teacher = jsb.load_checkpoint(tmp_path / "runs" / "relative" / "averaged.pt", device="cpu")
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
    for (index, tokens), (same_index, (taught_tokens, places, soft)) in zip(
            plain.batches(length, 3, 0, 1, 0, 0, 1, 2), taught.batches(length, 3, 0, 1, 0, 0, 1, 2)):
        assert index == same_index and np.array_equal(tokens, taught_tokens) and places is None
        assert soft.shape == (*tokens[:, 1:].shape, jsb.VOCAB_SIZE) and soft.dtype == np.float32
        for row, soft_row in zip(tokens, soft):
            matches = [probabilities[offset:offset + length]
                       for full, probabilities in expected.values()
                       for offset in range(len(full) - length)
                       if np.array_equal(full[offset:offset + length + 1], row)]
            assert any(np.allclose(soft_row[:, :jsb.REST + 1], m, atol=1e-3) for m in matches)
            assert np.allclose(soft_row.sum(-1), 1.0, atol=1e-2) and not soft_row[:, jsb.START:].any()
            rows += 1
    assert rows == 3 * (len(plain.train) // 3)
    # the cropped and the whole: a row of a chorale shorter than the length is padded, its soft rows 0
    (_, (tokens, _, soft)), *_ = taught.batches(2304, 24, 0, 0, 0, 0, 1, 2)
    padded = tokens[:, 1:] == jsb.PAD
    assert padded.any() and not soft[padded].any() and np.allclose(soft[~padded].sum(-1), 1.0, atol=1e-2)

    interval = jsb.JSBData.load(jsb_folder, encoding="intervals")
    with pytest.raises(jsb.JSBError, match="needs the pitch encoding"):
        interval.distil_from(teacher, 1)


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
    assert summary["train"]["soft_target_weight"] == jsb.SOFT_TARGET_WEIGHT and summary["teacher_seconds"] > 0
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


@pytest.mark.parametrize("ramp, steps_taken", [(0, 1000), (4, 1)])
def test_a_mean_teacher_follows_the_weights_and_teaches_each_crop_in_a_key_near_the_rows(
        jsb_folder, tmp_path, ramp, steps_taken):
    """With a mean teacher, `after_step` keeps a running average of the model's weights (a copy at first),
    and each batch row's soft targets are that average's predictions of the row's crop in a key within ±3
    of the row's (every pitch inside the vocabulary), read back in the row's key, and while the ramp lasts
    (step / ramp of the way) mixed with the row's tokens; the keys vary, the batches' tokens are those of
    a plain run."""
    train_smoke("relative-timing-bar", jsb_folder, tmp_path / "config.json")
    model = jsb.load_checkpoint(tmp_path / "runs" / "relative-timing-bar" / "model.pt", device="cpu")
    plain = jsb.JSBData.load(jsb_folder)
    taught = jsb.JSBData.load(jsb_folder, mean_teacher=0.5, mean_teacher_ramp=ramp)
    assert "decay 0.5" in taught.describe()
    with pytest.raises(jsb.JSBError, match="calls after_step first"):
        next(taught.batches(60, 3, 0, 1, 0, 0, 1, 2))

    # the running average: a copy, then the warm-up's decay (1 + step) / (10 + step), then at most 0.5
    start = {name: value.clone() for name, value in model.state_dict().items()}
    taught.after_step(model, 0)
    teacher = taught.mean_teacher
    assert teacher is not model and not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    taught.after_step(model, 1)  # decay 2 / 11: 9 / 11 of the way to the model
    taught.after_step(model, 1000)  # decay 0.5: half of the rest
    moved = 1.0 - (2 / 11) * 0.5
    for name, parameter in teacher.named_parameters():
        assert torch.allclose(parameter, start[name] + moved, atol=1e-5), name
    with torch.no_grad():  # the teacher that teaches below: the trained weights themselves
        for name, parameter in teacher.named_parameters():
            parameter.copy_(start[name])
        for name, parameter in model.named_parameters():
            parameter.copy_(start[name])
    taught.after_step(model, steps_taken)  # the ramp's place; the teacher stays (it is the model)
    say = min(1.0, steps_taken / ramp) if ramp else 1.0

    length, keys_used, rows = 60, set(), 0  # shorter than every chorale: each row is a crop
    for (index, tokens), (same_index, (taught_tokens, places, soft)) in zip(
            plain.batches(length, 3, 0, 1, 0, 0, 1, 2), taught.batches(length, 3, 0, 1, 0, 0, 1, 2)):
        assert index == same_index and np.array_equal(tokens, taught_tokens) and places is None
        assert soft.shape == (*tokens[:, 1:].shape, jsb.VOCAB_SIZE) and soft.dtype == np.float32
        for row, soft_row in zip(tokens, soft):
            assert np.allclose(soft_row.sum(-1), 1.0, atol=1e-4) and not soft_row[:, jsb.START:].any()
            found = []
            for chorale in plain.train:
                for shift in jsb.allowed_shifts(chorale, plain.transpose_ranges, 2):
                    full = jsb.serialise(chorale, shift)
                    for offset in range(0, len(full) - length, jsb.CROP_STEP):
                        if not np.array_equal(full[offset:offset + length + 1], row):
                            continue
                        for key in jsb.allowed_shifts(chorale, jsb.VOCABULARY_RANGES, 5):
                            if abs(key - shift) > jsb.TEACHER_TRANSPOSITIONS:
                                continue
                            crop = torch.from_numpy(jsb.serialise(chorale, key)[offset:offset + length])[None]
                            with torch.no_grad():
                                log_probs = torch.log_softmax(teacher(crop)[0].double(), -1).numpy()
                            expected = say * np.exp(jsb.in_key(log_probs, key - shift))
                            expected[np.arange(length), row[1:]] += 1.0 - say
                            if np.allclose(soft_row[:, :jsb.REST + 1], expected, atol=1e-4):
                                found.append(key - shift)
            assert found, "a row's soft targets are no nearby key's predictions of its crop"
            keys_used.update(found)
            rows += 1
    assert rows == 3 * (len(plain.train) // 3) and len(keys_used) >= 4  # keys either side, not only the row's own

    with pytest.raises(jsb.JSBError, match="between 0 and 1"):
        jsb.JSBData.load(jsb_folder, mean_teacher=1.0)
    with pytest.raises(jsb.JSBError, match="needs the pitch encoding"):
        jsb.JSBData.load(jsb_folder, mean_teacher=0.9, encoding="intervals")
    with pytest.raises(jsb.JSBError, match="number of steps"):
        jsb.JSBData.load(jsb_folder, mean_teacher=0.9, mean_teacher_ramp=-1)
    with pytest.raises(jsb.JSBError, match="goes with mean_teacher"):
        jsb.JSBData.load(jsb_folder, mean_teacher_ramp=100)
    with pytest.raises(jsb.JSBError, match="choose one"):  # refused before the teacher predicts anything
        taught.distil_from(model, 1)


def test_a_run_with_a_mean_teacher_learns_from_its_own_average(jsb_folder, tmp_path, capsys):
    """A config with the data option mean_teacher trains with soft targets (weight 0.5 unless told) and is
    scored as any run; with --teachers as well it is refused."""
    config = tmp_path / "config.json"
    summary = train_smoke("relative-timing-bar", jsb_folder, config)
    settings = json.loads(config.read_text())
    settings["data"] = {"mean_teacher": 0.99}
    config.write_text(json.dumps(settings))
    out = tmp_path / "mean-teacher"
    assert jsb.main(["--config", str(config), "--runs", "relative-timing-bar", "--data", str(jsb_folder),
                     "--out", str(out), "--keep-every", "10", "--json"]) == 0
    (taught,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    assert taught["data"] == {"mean_teacher": 0.99} and taught["train"]["soft_target_weight"] == jsb.SOFT_TARGET_WEIGHT
    assert taught["step"] == 30 and taught["valid_nll"] < 3.0 and taught["valid_nll"] != summary["valid_nll"]
    assert taught["averaged_valid_nll"] == pytest.approx(
        nll_by_hand(out / "relative-timing-bar" / "averaged.pt", jsb.read_chorales(jsb_folder / "valid.json")),
        abs=1e-4)
    assert jsb.main(["--config", str(config), "--runs", "relative-timing-bar", "--data", str(jsb_folder),
                     "--out", str(tmp_path / "w"), "--soft-target-weight", "0.8", "--json"]) == 0
    (weighted,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    assert weighted["train"]["soft_target_weight"] == 0.8 and weighted["valid_nll"] != taught["valid_nll"]
    assert jsb.main(["--config", str(config), "--runs", "relative-timing-bar", "--data", str(jsb_folder),
                     "--out", str(tmp_path / "x"), "--teachers", str(tmp_path / "runs")]) == 1
    assert "choose one" in capsys.readouterr().err and not (tmp_path / "x" / "relative-timing-bar").exists()


def test_eval_refuses_a_model_of_another_vocabulary_and_bad_arguments(jsb_folder, tmp_path, capsys):
    from music_transformer.checkpoint import save_checkpoint
    from music_transformer.model import ModelConfig, MusicTransformer

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
    assert distilled["train"]["soft_target_weight"] == jsb.SOFT_TARGET_WEIGHT
