"""Checkpoints: one format, atomic saves, clear errors for anything else."""

import hashlib
import json
import os
import re
import stat
import time
import zipfile
from pathlib import Path

import pytest
import torch

from music_transformer import CheckpointError, ModelConfig, MusicTransformer, limits, load_checkpoint, save_checkpoint
from music_transformer.checkpoint import DEFAULT_CHECKPOINT, average_checkpoints, read_checkpoint
from tests.bounds import bounded

from .helpers import small_model


def test_save_and_load_give_the_same_model_and_metadata(tmp_path):
    model = small_model("absolute")
    save_checkpoint(model, tmp_path / "m.pt", steps=12, data="unit test")
    loaded = load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert loaded.config == model.config and not loaded.training
    assert loaded.metadata["steps"] == 12 and loaded.metadata["data"] == "unit test"
    tokens = torch.randint(0, 391, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens))
    assert not list(tmp_path.glob("*.tmp")), "the temporary file was left behind"


def test_half_precision_weights_load_into_a_float32_model(tmp_path):
    model = small_model()
    save_checkpoint(model.half(), tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert loaded.embedding.weight.dtype == torch.float32


@pytest.mark.parametrize("content,message", [
    (b"", "damaged"),
    (b"not a checkpoint at all", "damaged"),
])
def test_damaged_files_raise_a_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"broken.pt.*{message}"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    save_checkpoint(small_model(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(tmp_path / "m.pt")


def test_other_torch_files_newer_versions_and_mismatched_weights(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Continuo model"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(small_model(), tmp_path / "m.pt")
    state = read_checkpoint(tmp_path / "m.pt")
    torch.save({**state, "version": 99}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer version"):
        load_checkpoint(tmp_path / "newer.pt")
    torch.save({**state, "config": {**state["config"], "d_model": 32, "n_heads": 4}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_round_trips_and_ignores_unknown_keys():
    config = ModelConfig(n_layers=3)
    assert ModelConfig.from_dict({**config.to_dict(), "from_the_future": 1}) == config


def test_checkpoints_written_with_the_retired_settings_load_and_compute_the_same(tmp_path):
    """Earlier versions wrote the attention's query block and its dropout into every checkpoint (the bundled
    model's too): neither changes what a trained model computes, so they are read and left out."""
    assert load_checkpoint(device="cpu").config.to_dict().keys() == ModelConfig().to_dict().keys()
    model = small_model()
    save_checkpoint(model, tmp_path / "m.pt")
    state = read_checkpoint(tmp_path / "m.pt")
    retired = {"block_size": 32, "attention_dropout": 0.1}
    torch.save({**state, "config": {**state["config"], **retired}}, tmp_path / "old.pt")
    tokens = torch.randint(0, 391, (1, 90))
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "old.pt", device="cpu")(tokens), model(tokens))
    # relative attention plus a timing signal was the JSB benchmark's research model: refused, saying where it lives
    torch.save({**state, "config": {**state["config"], "positional": "both"}}, tmp_path / "both.pt")
    with pytest.raises(CheckpointError, match='both.pt: describes a model Continuo cannot build .*bench/jsb.py'):
        load_checkpoint(tmp_path / "both.pt", device="cpu")


def test_averaging_checkpoints_takes_the_mean_of_their_weights(tmp_path):
    models = [small_model(seed=seed) for seed in (1, 2, 3)]
    for index, model in enumerate(models):
        save_checkpoint(model, tmp_path / f"step{index}.pt", step=index)
    average_checkpoints([tmp_path / f"step{index}.pt" for index in range(3)], tmp_path / "mean.pt")
    averaged = load_checkpoint(tmp_path / "mean.pt", device="cpu")
    expected = sum(m.head.weight for m in models) / 3
    torch.testing.assert_close(averaged.head.weight, expected)
    assert averaged.metadata["step"] == 2 and len(averaged.metadata["averaged_from"]) == 3
    save_checkpoint(small_model(n_layers=1), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="another model"):
        average_checkpoints([tmp_path / "step0.pt", tmp_path / "other.pt"], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


# --- every part of a checkpoint checked, the config before any weight is made ---------------------------

BAD_CONFIGS = {
    "n_heads": 0, "d_model": "32", "n_layers": 10**6, "vocab_size": 0, "train_length": 0, "max_relative_distance": -1,
    "local_block": 0, "dropout": float("nan"), "d_ff": True, "positional": ["relative"],
}


@pytest.mark.parametrize("key", list(BAD_CONFIGS))
def test_a_config_outside_the_limits_is_a_value_error(key):
    with pytest.raises(ValueError, match=key if key != "positional" else "positional"):
        ModelConfig(**{**small_model().config.to_dict(), key: BAD_CONFIGS[key]})


def test_the_biggest_model_is_refused_by_its_parameter_count():
    with pytest.raises(ValueError, match="weights; Continuo builds models of up to"):
        ModelConfig(n_layers=limits.MAX_LAYERS, d_model=limits.MAX_D_MODEL, n_heads=8, d_ff=limits.MAX_D_FF)
    with pytest.raises(ValueError, match="a model config is a set of named settings"):
        ModelConfig.from_dict([("n_layers", 2)])


@pytest.mark.parametrize("config", [dict(), dict(positional="absolute", vocab_size=391),
                                    dict(positional="relative", local_block=16, d_ff=96)])
def test_the_parameter_count_is_known_before_the_model_is_built(config):
    model = small_model(**config)
    assert model.config.parameter_count() == model.num_parameters()


@pytest.mark.parametrize("key", list(BAD_CONFIGS))
def test_a_checkpoint_with_a_bad_config_is_refused_before_any_weight_is_made(tmp_path, key):
    save_checkpoint(small_model(), tmp_path / "m.pt")
    state = read_checkpoint(tmp_path / "m.pt")
    torch.save({**state, "config": {**state["config"], key: BAD_CONFIGS[key]}}, tmp_path / "bad.pt")
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="bad.pt: describes a model Continuo cannot build"):
        load_checkpoint(tmp_path / "bad.pt", device="cpu")
    assert time.perf_counter() - started < 5  # a million layers took 40 s and 5.7 GB before


@pytest.mark.parametrize("change,message", [
    ({"metadata": "x"}, "description"), ({"metadata": 5}, "description"), ({"metadata": {1: 2}}, "description"),
    ({"version": "1"}, "format version"), ({"version": [1]}, "format version"), ({"version": None}, "format version"),
    ({"version": True}, "format version"), ({"config": [1, 2]}, "incomplete"), ({"model": None}, "incomplete"),
])
def test_parts_of_the_wrong_kind_are_refused(tmp_path, change, message):
    save_checkpoint(small_model(), tmp_path / "m.pt")
    torch.save({**read_checkpoint(tmp_path / "m.pt"), **change}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=f"bad.pt: .*{message}"):
        load_checkpoint(tmp_path / "bad.pt", device="cpu")


def test_weights_that_are_not_numbers_are_refused(tmp_path):
    save_checkpoint(small_model(), tmp_path / "m.pt")
    state = read_checkpoint(tmp_path / "m.pt")
    torch.save({**state, "model": {name: 1 for name in state["model"]}}, tmp_path / "kinds.pt")
    with pytest.raises(CheckpointError, match="kinds.pt: .*not all named arrays of numbers"):
        load_checkpoint(tmp_path / "kinds.pt", device="cpu")
    for name in ("final_norm.weight", "embedding.weight"):  # the embedding is tied: head.weight loads after it
        weights = dict(state["model"])
        weights[name] = torch.full_like(weights[name], float("nan"))
        torch.save({**state, "model": weights}, tmp_path / "nan.pt")
        with pytest.raises(CheckpointError, match="nan.pt: .*not numbers"):
            load_checkpoint(tmp_path / "nan.pt", device="cpu")
    with pytest.raises(CheckpointError, match="nan.pt: .*not numbers"):
        average_checkpoints([tmp_path / "m.pt", tmp_path / "nan.pt"], tmp_path / "mean.pt")
    assert not (tmp_path / "mean.pt").exists()


def _rewritten(source, target, change):
    """A copy of a checkpoint's zip archive with one part's bytes or packing changed."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            body, packing = change(info.filename, original.read(info))
            copy.writestr(info.filename, body, compress_type=packing)


def test_a_packed_part_is_refused_before_it_is_unpacked(tmp_path):
    """A 1 MB file whose weights were a deflated zip member made torch allocate 1.3 GB."""
    save_checkpoint(small_model(), tmp_path / "m.pt")
    _rewritten(tmp_path / "m.pt", tmp_path / "packed.pt", lambda name, body: (
        (bytes(64 * 2**20), zipfile.ZIP_DEFLATED) if name.endswith("data/0") else (body, zipfile.ZIP_STORED)))
    assert (tmp_path / "packed.pt").stat().st_size < 2**20
    with pytest.raises(CheckpointError, match="packed.pt: .*packed in a way Continuo never writes"):
        load_checkpoint(tmp_path / "packed.pt", device="cpu")


def test_a_part_that_claims_to_lie_past_the_end_of_the_file_is_refused(tmp_path):
    save_checkpoint(small_model(), tmp_path / "m.pt")
    data = bytearray((tmp_path / "m.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "m.pt") as archive:
        info = next(info for info in archive.infolist() if info.filename.endswith("data/0"))
    directory = data.find(b"PK\x01\x02")
    while True:  # the central directory entry of data/0: its sizes at offsets 20 and 24
        name_length = int.from_bytes(data[directory + 28:directory + 30], "little")
        if data[directory + 46:directory + 46 + name_length].decode().endswith("data/0"):
            break
        extra = int.from_bytes(data[directory + 30:directory + 32], "little")
        comment = int.from_bytes(data[directory + 32:directory + 34], "little")
        directory += 46 + name_length + extra + comment
    huge = (2**31).to_bytes(4, "little")
    data[directory + 20:directory + 28] = huge + huge
    (tmp_path / "liar.pt").write_bytes(bytes(data))
    assert info.file_size < 2**31
    with pytest.raises(CheckpointError, match="liar.pt: .*packed in a way Continuo never writes"):
        load_checkpoint(tmp_path / "liar.pt", device="cpu")


def test_folders_and_unknown_devices(tmp_path):
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path, device="cpu")
    save_checkpoint(small_model(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="unknown device 'foo'"):
        load_checkpoint(tmp_path / "m.pt", device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            load_checkpoint(tmp_path / "m.pt", device="cuda")


def test_saved_models_are_readable_by_everyone(tmp_path):
    previous = os.umask(0o022)
    try:
        save_checkpoint(small_model(), tmp_path / "m.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "m.pt").st_mode) == 0o644


def test_a_file_past_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    save_checkpoint(small_model(), tmp_path / "m.pt")
    monkeypatch.setattr(limits, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="m.pt: the file is .* GB; Continuo reads model files up to"):
        load_checkpoint(tmp_path / "m.pt", device="cpu")


# --- the shipped form: NAME.safetensors (the weights) and NAME.json (the config and metadata) -------------------

ROOT = Path(__file__).resolve().parents[2]
# sha256 of every tensor's bytes, in the state_dict's order, of assets/default.pt as it last shipped
# (`git show 3cdff65:assets/default.pt`): the safetensors file converted from it holds the same numbers.
BUNDLED_WEIGHTS_SHA256 = "420951f749c4aaf3044b603ece054f3ec70a4f5c0505ccaa8ce8bc083e133726"


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_the_bundled_model_ships_as_safetensors_and_json_with_the_last_pt_s_weights():
    assert DEFAULT_CHECKPOINT.name == "default.safetensors" and DEFAULT_CHECKPOINT.with_suffix(".json").is_file()
    assert not (ROOT / "assets" / "default.pt").exists()  # in the history only
    description = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text("utf-8"))
    assert description["format"] == "continuo-music-transformer" and description["version"] == 1
    assert description["config"] == {**ModelConfig().to_dict(), **description["config"]}  # every setting, no more
    model = load_checkpoint(device="cpu")
    assert model.metadata["valid_nll"] == description["metadata"]["valid_nll"] and model.metadata["card"]
    assert weights_digest(model) == BUNDLED_WEIGHTS_SHA256
    assert model.head.weight is model.embedding.weight  # stored once, tied again


def test_the_model_card_names_the_files_that_ship():
    card = (ROOT / "assets" / "README.md").read_text("utf-8")
    assert card.startswith("# `default.safetensors`")
    assert "`default.json`" in card
    # assets/default.pt is named only where the card says how to get an older model out of the history
    for line in card.splitlines():
        for mention in re.finditer(r"assets/default\.pt", line):
            assert re.search(r"git show [0-9a-f]{7,40}:$", line[:mention.start()]), line


def test_safetensors_save_and_load_give_the_same_model_bitwise(tmp_path):
    model = small_model("absolute")
    save_checkpoint(model, tmp_path / "m.safetensors", steps=12, data="unit test")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary left
    tokens = torch.randint(0, 391, (1, 20))
    for path in (tmp_path / "m.safetensors", tmp_path / "m.json"):  # either file of the pair opens the model
        loaded = load_checkpoint(path, device="cpu")
        assert loaded.config == model.config and not loaded.training
        assert loaded.metadata["steps"] == 12 and loaded.metadata["data"] == "unit test"
        with torch.no_grad():
            assert torch.equal(loaded(tokens), model(tokens))
    header = json.loads((tmp_path / "m.safetensors").read_bytes()[8:8 + int.from_bytes(
        (tmp_path / "m.safetensors").read_bytes()[:8], "little")])
    assert "embedding.weight" in header and "head.weight" not in header  # the tied head is stored once
    with pytest.raises(ValueError, match="training state"):
        save_checkpoint(model, tmp_path / "t.safetensors", training={"step": 1})
    assert not (tmp_path / "t.safetensors").exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_safetensors_load_into_a_float32_model(tmp_path, dtype):
    model = small_model()
    save_checkpoint(model.to(dtype), tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors", device="cpu")
    assert loaded.embedding.weight.dtype == torch.float32
    assert torch.equal(loaded.embedding.weight, model.embedding.weight.float())


def test_averaging_and_training_take_both_forms(tmp_path):
    models = [small_model(seed=seed) for seed in (1, 2)]
    save_checkpoint(models[0], tmp_path / "a.pt", step=1)
    save_checkpoint(models[1], tmp_path / "b.safetensors", step=2)
    average_checkpoints([tmp_path / "a.pt", tmp_path / "b.safetensors"], tmp_path / "mean.safetensors")
    averaged = load_checkpoint(tmp_path / "mean.safetensors", device="cpu")
    torch.testing.assert_close(averaged.head.weight, (models[0].head.weight + models[1].head.weight) / 2)
    assert averaged.metadata["step"] == 2 and len(averaged.metadata["averaged_from"]) == 2
    state = read_checkpoint(tmp_path / "b.safetensors")  # what --init-from reads: the .pt's dictionary
    assert set(state) == {"format", "version", "config", "model", "metadata"}
    assert state["model"].keys() == models[1].state_dict().keys()


def write_safetensors(path: Path, header: dict, data: bytes = b"") -> None:
    """A safetensors file with exactly this header, whatever it claims, and these bytes after it."""
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def header_of(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + length]), raw[8 + length:]


@pytest.fixture
def shipped(tmp_path):
    """A small model in the shipped form: tmp_path/m.safetensors and m.json."""
    save_checkpoint(small_model(), tmp_path / "m.safetensors")
    return tmp_path / "m.safetensors"


def test_a_header_claiming_a_big_model_in_a_small_file_is_refused_before_anything_is_allocated(tmp_path):
    """A config within the limits (210 M weights, 840 MB) and a header that fits it exactly, in a file of 8 kB:
    refused by the file's size against the header's, with nothing allocated for the weights."""
    config = ModelConfig(n_layers=4, d_model=2048, n_heads=8, d_ff=8192)
    (tmp_path / "big.json").write_text(json.dumps({"format": "continuo-music-transformer", "version": 1,
                                                   "config": config.to_dict()}))
    with torch.device("meta"):
        shapes = {name: list(t.shape) for name, t in MusicTransformer(config).state_dict().items()
                  if name != "head.weight"}
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(torch.Size(shape).numel())
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    write_safetensors(tmp_path / "big.safetensors", header)
    assert offset > 800 * 2**20 and (tmp_path / "big.safetensors").stat().st_size < 2**14
    with bounded("loading big.safetensors", memory_bytes=100 * 2**20), \
            pytest.raises(CheckpointError, match=r"big.safetensors: .*damaged \(the file is [\d,]+ bytes; its header "
                                                 r"describes [\d,]+: cut short\)"):
        load_checkpoint(tmp_path / "big.safetensors", device="cpu")


def test_a_header_whose_shapes_disagree_with_the_config_is_refused(shipped):
    header, data = header_of(shipped)
    header["blocks.0.attention.out.weight"]["shape"] = [32, 128]  # the same number of bytes, another shape
    write_safetensors(shipped, header, data)
    with pytest.raises(CheckpointError, match=r"m.safetensors: the weights do not fit the model they describe "
                                              r"\(blocks.0.attention.out.weight is 32 x 128, the model's is 64 x 64\)"):
        load_checkpoint(shipped, device="cpu")


def test_a_huge_tensor_claimed_in_a_small_file_is_refused_by_its_shape(shipped):
    header, data = header_of(shipped)
    header["embedding.weight"] = {"dtype": "F32", "shape": [2**40, 64], "data_offsets": [0, 2**48]}
    write_safetensors(shipped, header, data)
    with bounded("loading m.safetensors", memory_bytes=100 * 2**20), \
            pytest.raises(CheckpointError, match="embedding.weight is 1099511627776 x 64, the model's is 528 x 64"):
        load_checkpoint(shipped, device="cpu")


@pytest.mark.parametrize("change,message", [
    (lambda h: h.update({"blocks.9.attention.qkv.weight": h["final_norm.bias"]}),
     r"holds a weight the model it describes has no place for \('blocks.9.attention.qkv.weight'\)"),
    (lambda h: h.update({"head.weight": h["embedding.weight"]}), r"has no place for \('head.weight'\)"),
    (lambda h: h.pop("final_norm.bias"), r"do not fit the model they describe \(final_norm.bias is missing\)"),
    (lambda h: h["final_norm.bias"].update(dtype="I64"), r"final_norm.bias is stored as 'I64'; Continuo reads "
                                                         r"weights stored as float32 \(F32\), float16 \(F16\)"),
    (lambda h: h["final_norm.bias"].update(dtype="F64"), r"stored as 'F64'"),
    (lambda h: h["final_norm.bias"].update(data_offsets=[0, 100]),
     r"damaged \(final_norm.bias takes 100 bytes, its shape 256\)"),
    (lambda h: h["final_norm.bias"].update(shape=[64.0]), r"damaged \(the shape of final_norm.bias is not"),
    (lambda h: h["final_norm.bias"].update(data_offsets=[0, "256"]), r"damaged \(the place of final_norm.bias"),
    (lambda h: h["final_norm.bias"].update(data_offsets=[h["final_norm.bias"]["data_offsets"][0] + 4,
                                                         h["final_norm.bias"]["data_offsets"][1] + 4]),
     r"damaged \(its weights overlap or leave gaps\)"),
    (lambda h: h.update({"__metadata__": {"format": 1}}), r"damaged \(its header's metadata is not text\)"),
    (lambda h: h["final_norm.bias"].update(extra=1), r"damaged \(its header's entry for final_norm.bias"),
])
def test_every_tensor_s_name_dtype_shape_and_place_are_checked(shipped, change, message):
    header, data = header_of(shipped)
    change(header)
    write_safetensors(shipped, header, data)
    with pytest.raises(CheckpointError, match=f"m.safetensors: .*{message}"):
        load_checkpoint(shipped, device="cpu")


def test_truncated_and_overlong_safetensors_are_refused(shipped):
    data = shipped.read_bytes()
    for cut, message in ((len(data) // 2, "cut short"), (len(data) - 1, "cut short"), (100, "header claims"),
                         (5, "shorter than a header"), (0, "shorter than a header")):
        shipped.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"m.safetensors: .*damaged .*{message}"):
            load_checkpoint(shipped, device="cpu")
    shipped.write_bytes(data + b"\0")
    with pytest.raises(CheckpointError, match="m.safetensors: .*bytes past its end"):
        load_checkpoint(shipped, device="cpu")
    shipped.write_bytes((2**62).to_bytes(8, "little") + data[8:])
    with pytest.raises(CheckpointError, match=r"its header claims 4,611,686,018,427,387,904 bytes"):
        load_checkpoint(shipped, device="cpu")
    write_safetensors(shipped, [1, 2])
    with pytest.raises(CheckpointError, match="its header names no weights"):
        load_checkpoint(shipped, device="cpu")
    shipped.write_bytes((4).to_bytes(8, "little") + b"{\xff]}")
    with pytest.raises(CheckpointError, match="its header is not JSON"):
        load_checkpoint(shipped, device="cpu")


def test_a_config_past_the_limits_is_refused_before_the_weights_are_read(shipped):
    config_path = shipped.with_suffix(".json")
    description = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**description, "config": {**description["config"], "n_layers": 10**6}}))
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="m.safetensors: describes a model Continuo cannot build .*n_layers"):
        load_checkpoint(shipped, device="cpu")
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("description,message", [
    (None, r"its config \(m.json\) is not beside it"),
    (b"{not json", r"its config \(m.json\) is damaged \(not JSON\)"),
    (b"[" * 100_000 + b"]" * 100_000, r"its config \(m.json\) is damaged \(not JSON\)"),
    (b" " * (2**20 + 1), r"its config \(m.json\) is over 1,024 kB"),
    ({"format": "other"}, "not a Continuo model file"),
    ({"version": 99}, "made by a newer version of Continuo"),
    ({"version": "1"}, "format version"),
    ({"config": None}, "incomplete"),
    ({"metadata": [1]}, "description is not a set of named values"),
    ({"config": {"d_model": 32, "n_heads": 4}}, r"do not fit the model they describe \(\S+ is [\d x]+, the model's is"),
])
def test_a_config_that_is_missing_damaged_or_not_continuo_s_is_refused(shipped, description, message):
    config_path = shipped.with_suffix(".json")
    if description is None:
        config_path.unlink()
    elif isinstance(description, bytes):
        config_path.write_bytes(description)
    else:
        original = json.loads(config_path.read_text())
        if "config" in description and isinstance(description["config"], dict):
            description = {"config": {**original["config"], **description["config"]}}
        config_path.write_text(json.dumps({**original, **description}))
    with pytest.raises(CheckpointError, match=f"m.safetensors: .*{message}"):
        load_checkpoint(shipped, device="cpu")


def test_a_config_without_its_weights_and_a_missing_pair(tmp_path, shipped):
    shipped.unlink()
    with pytest.raises(CheckpointError, match=r"m.json: its weights \(m.safetensors\) are not beside it"):
        load_checkpoint(shipped.with_suffix(".json"), device="cpu")
    with pytest.raises(CheckpointError, match="m.safetensors: no such model file"):
        load_checkpoint(shipped, device="cpu")
    (tmp_path / "folder.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path / "folder.safetensors", device="cpu")


def test_safetensors_weights_that_are_not_numbers_are_refused(shipped):
    model = load_checkpoint(shipped, device="cpu")
    with torch.no_grad():
        model.final_norm.weight[3] = float("nan")
    save_checkpoint(model, shipped)
    with pytest.raises(CheckpointError, match="m.safetensors: .*not numbers"):
        load_checkpoint(shipped, device="cpu")


def test_a_model_file_may_name_the_window_to_decode_with_and_generate_and_eval_take_it(tmp_path):
    from music_transformer.sampling import Sampling

    model = small_model()  # trained on 128-token crops
    save_checkpoint(model, tmp_path / "plain.pt")
    assert load_checkpoint(tmp_path / "plain.pt", device="cpu").default_window == 128
    save_checkpoint(model, tmp_path / "narrow.safetensors", decode_window=48)
    narrow = load_checkpoint(tmp_path / "narrow.safetensors", device="cpu")
    assert narrow.default_window == 48
    assert Sampling.checked(narrow, 1.0, None, None, [0], None, None, 1.0, None, 1, "any", 0.0).window == 48
    assert Sampling.checked(narrow, 1.0, None, None, [0], 100, None, 1.0, None, 1, "any", 0.0).window == 100
    for bad in (0, 70_000, "512", 12.5, True):
        save_checkpoint(model, tmp_path / "bad.pt", decode_window=bad)
        with pytest.raises(CheckpointError, match="bad.pt: the model file is damaged \\(its decoding window is"):
            load_checkpoint(tmp_path / "bad.pt", device="cpu")
