"""Checkpoints: one format, atomic saves, clear errors for anything else."""

import pytest
import torch

from music_transformer import CheckpointError, ModelConfig, load_checkpoint, save_checkpoint
from music_transformer.checkpoint import read_checkpoint

from .test_model import small_model


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


def test_averaging_checkpoints_takes_the_mean_of_their_weights(tmp_path):
    from music_transformer.checkpoint import average_checkpoints

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
