"""The piano model's card benchmark (bench/piano_model.py): the continuation figures, infilling against
left-only scoring, and one small end-to-end run."""

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import piano_model  # noqa: E402
from music_transformer import ModelConfig, MusicTransformer, Note, events, save_checkpoint  # noqa: E402

from .helpers import make_midi_folder  # noqa: E402


def test_music_figures_measure_what_they_say():
    primer = [Note(60, 80, 0.0, 1.0), Note(64, 80, 1.0, 2.0)]
    notes = [Note(48, 40, 0.0, 1.0), Note(60, 100, 0.0, 2.0), Note(60, 60, 2.0, 3.0), Note(67, 80, 2.0, 3.0)]
    figures = piano_model.music_figures(notes, primer, seconds=4.0)
    assert figures["notes_per_second"] == 1.0
    assert figures["silence"] == pytest.approx(0.25)  # nothing sounds from 3 s to 4 s
    assert figures["both_hands"] == pytest.approx(0.25)  # 48 under 60 for the first second
    assert figures["repeated_notes"] == pytest.approx(0.25)  # 60 struck again at the next onset
    assert figures["velocity_spread"] == pytest.approx(torch.tensor([40.0, 100, 60, 80]).std(unbiased=False).item())
    # pitch classes C, C, C, G against C, E: cos = 3 / (sqrt(10) sqrt(2))
    assert figures["pitch_class_agreement"] == pytest.approx(3 / (10 ** 0.5 * 2 ** 0.5))
    assert piano_model.music_figures([], primer, 4.0)["silence"] == 1.0


def test_the_card_benchmark_runs_end_to_end_on_a_small_model(tmp_path, capsys):
    folder = make_midi_folder(tmp_path / "midi", pieces=40, notes_per_piece=400)
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, train_length=64,
                                         max_relative_distance=64))
    save_checkpoint(model, tmp_path / "model.pt")
    old = MusicTransformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, train_length=64,
                                       max_relative_distance=64, vocab_size=events.LEGACY_VOCAB_SIZE))
    save_checkpoint(old, tmp_path / "old.pt")
    assert piano_model.main(["--checkpoint", str(tmp_path / "model.pt"), "--baseline", str(tmp_path / "old.pt"),
                             "--data", f"pop-piano={folder}", "--cache", str(tmp_path / "cache"), "--songs", "1",
                             "--memory-pieces", "1", "--seeds", "1", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["model"]["nll"]) == {"pop-piano"} and result["model"]["nll"]["pop-piano"]["pieces"] >= 1
    assert "infill" in result["model"] and "infill" not in result["baseline"]  # the old vocabulary cannot fill
    join = result["model"]["join"]
    assert join["tokens"] > 0 and all(join[name] > 0 for name in ("fill", "continuation", "real"))
    for gap in ("2s", "4s", "8s"):
        row = result["model"]["infill"][gap]
        assert row["tokens"] > 0 and row["both_sides"] > 0 and row["left_only"] > 0
    assert result["model"]["decode"]["tokens_per_s"] > 0
    kinds = result["model"]["nll_by_kind"]
    assert {"note-on", "note-off", "time shift", "velocity"} <= set(kinds) and "nll_by_kind" in result["baseline"]
    assert sum(row["token_share"] for row in kinds.values()) == pytest.approx(1.0)
    assert sum(row["nats_share"] for row in kinds.values()) == pytest.approx(1.0)
    assert result["continuations"]["songs"] == 1
    assert set(result["continuations"]) == {"model", "baseline", "real", "songs"}
    assert result["continuations"]["real"]["notes_per_second"] == pytest.approx(4.0)  # a note every 0.25 s
    memory = result["memory"]["sources"]["pop-piano"]  # the memory figures, for the same models
    assert memory["pieces"] == 1 and set(memory["nll"]) == {"model", "baseline"}
    assert set(memory["nll"]["model"]) == {"256", "512", "1024", "2048"}
    assert set(memory["continuations"]) == {"model", "baseline", "real"}
    assert memory["continuations"]["real"]["notes_per_second"] == pytest.approx(4.0)


def test_a_style_the_model_was_made_before_is_scored_as_any_and_every_model_reads_the_same_span():
    """The model of 2026-12-01 knows no `classical`: its rolls open with `any` (it stopped the card run), and
    models of other lengths measured in separate runs read the same `span` tokens of each piece."""
    from music_transformer import data, evaluation, sources

    torch.manual_seed(2)
    old = MusicTransformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, train_length=32,
                                       max_relative_distance=32, vocab_size=events.STYLES_VOCAB_SIZE)).eval()
    assert "classical" not in events.known_styles(old.config.vocab_size)
    notes = sources.notes_to_array([Note(60 + k % 7, 70, 0.2 * k, 0.2 * k + 0.15) for k in range(80)])
    pieces = [data.Piece("roll", notes, 0, "classical")]
    nll, _ = piano_model.nll_by_style(old, pieces, span=100)
    expected = evaluation.position_nll(old, pieces, style="any", span=100)
    assert nll["classical"]["overall"] == pytest.approx(expected["overall"])
    assert nll["classical"]["tokens"]["overall"] == 99  # the first 100 tokens, not 4L = 128


def test_nll_by_kind_splits_the_first_windows_cross_entropy_by_event_kind():
    from music_transformer import data, sources

    torch.manual_seed(1)
    model = MusicTransformer(ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, train_length=48,
                                         max_relative_distance=48)).eval()
    pieces = [data.Piece(f"p{i}", sources.notes_to_array([Note(60 + (k * 5 + i) % 12, 40 + 9 * (k % 5), 0.3 * k,
                                                               0.3 * k + 0.2) for k in range(30)]), 0, "pop-piano")
              for i in range(2)]
    kinds = piano_model.nll_by_kind(model, pieces)
    total = count = 0
    velocities = []
    for piece in pieces:
        tokens = data.piece_tokens(piece.notes, "pop-piano")[:49]
        with torch.no_grad():
            nll = torch.nn.functional.cross_entropy(model(torch.tensor([tokens[:-1]]))[0], torch.tensor(tokens[1:]),
                                                    reduction="none")
        total, count = total + float(nll.sum()), count + len(tokens) - 1
        velocities += [float(v) for token, v in zip(tokens[1:], nll, strict=True) if events.is_velocity(token)]
    assert sum(row["nll"] * row["token_share"] for row in kinds.values()) == pytest.approx(total / count, rel=1e-4)
    assert kinds["velocity"]["nll"] == pytest.approx(sum(velocities) / len(velocities), rel=1e-4)
    assert kinds["velocity"]["token_share"] == pytest.approx(len(velocities) / count)
