"""The memory benchmark (bench/memory.py, issue 45): its continuation figures on hand-made notes, and one small
end-to-end run on a pianolatron-like folder whose catalogue marks an 88-note roll."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import memory  # noqa: E402
from music_transformer import ModelConfig, MusicTransformer, Note, data, events, save_checkpoint, sources, write_midi  # noqa: E402

FIGURE = [60, 62, 64, 65, 67, 65, 64, 62]  # a scale up and down: steps of 1 and 2


def _line(pitches, start=0.0, step=0.25, velocity=80):
    return [Note(p, velocity, start + i * step, start + i * step + step * 0.8) for i, p in enumerate(pitches)]


def test_motif_reuse_is_one_for_the_primer_played_again_and_zero_for_unrelated_leaps():
    primer = _line(FIGURE * 2)
    assert memory.motif_reuse(_line(FIGURE * 2, start=0.0), primer) == 1.0
    assert memory.motif_reuse(_line(FIGURE[3:] + FIGURE, start=0.1), primer) == 1.0  # from another note: same
    assert memory.motif_reuse(_line([FIGURE[0] + 12 + p - 60 for p in FIGURE * 2]), primer) == 1.0  # transposed
    leaps = _line([48, 55, 43, 50, 62, 45, 57, 52, 64])  # fifths, fourths and sixths: no step of 1 or 2
    assert memory.motif_reuse(leaps, primer) == 0.0
    half = _line(FIGURE[:5] + [72, 50, 79, 41])  # the first 5 notes: 2 of its 6 patterns are the primer's
    assert memory.motif_reuse(half, primer) == pytest.approx(2 / 6)
    assert math.isnan(memory.motif_reuse(_line([60, 62, 64]), primer))  # fewer than 4 notes: no pattern


def test_motif_reuse_by_chance_reads_each_continuation_against_the_other_pieces_primers():
    def piece(pitches):  # 45 s or more: a 20 s primer and its 16 s continuation
        return data.Piece("p", sources.notes_to_array(_line(pitches * 30)), 0)

    leaps = [48, 55, 43, 50, 62, 45]
    scales = [piece(FIGURE), piece([p + 5 for p in FIGURE])]  # one figure, twice: each finds it in the other
    assert memory.chance_reuse(scales) == 1.0
    assert memory.chance_reuse([piece(FIGURE), piece(leaps)]) == 0.0  # nothing shared
    assert memory.chance_reuse([piece(FIGURE), piece(FIGURE), piece(leaps)]) == pytest.approx(0.5)  # median
    assert math.isnan(memory.chance_reuse([piece(FIGURE)]))


def test_interval_patterns_read_a_chord_from_its_top_note_down_whatever_order_it_is_written_in():
    chord = [Note(60, 80, 1.0, 2.0), Note(67, 80, 1.0, 2.0), Note(64, 80, 1.001, 2.0)]  # within one 10 ms tick
    notes = [*chord, Note(72, 80, 2.0, 3.0), Note(59, 80, 0.0, 1.0)]
    assert memory.interval_patterns(notes) == [(8, -3, -4), (-3, -4, 12)]  # 59 | 67 64 60 | 72


def test_notes_at_once_is_the_time_weighted_count_of_sounding_notes():
    triad = [Note(p, 80, 0.0, 2.0) for p in (60, 64, 67)]
    assert memory.notes_at_once(triad, 4.0) == pytest.approx(1.5)  # three notes for half the time
    assert memory.notes_at_once([*triad, Note(48, 80, 3.0, 10.0)], 4.0) == pytest.approx(1.75)  # cut at the end
    assert memory.notes_at_once([], 4.0) == 0.0


def test_cap_share_counts_the_notes_held_to_the_decoders_cap_and_pools_over_runs():
    notes = [Note(60, 80, 0.0, 8.0), Note(64, 80, 0.0, 7.95), Note(67, 80, 0.0, 7.0), Note(72, 80, 8.0, 8.5)]
    assert memory.CAP_SECONDS == pytest.approx(7.9)
    assert memory.at_cap(notes) == 2
    runs = [[memory.figures(notes, notes)], [memory.figures(_line(FIGURE), notes), memory.figures([], notes)]]
    assert memory.summary(runs)["at_cap"] == pytest.approx(2 / (4 + 8))  # pooled over every note of every run


def test_velocity_jump_pitch_class_agreement_and_density():
    primer = [Note(60, 40, 0.0, 17.0), Note(64, 80, 18.5, 19.0), Note(67, 60, 19.5, 20.0)]  # last 2 s: 70
    after = [Note(60, 100, 0.0, 1.0), Note(62, 110, 1.5, 4.0), Note(64, 20, 2.5, 3.0)]  # first 2 s: 105
    figures = memory.figures(after, primer, seconds=4.0, primer_seconds=20.0)
    assert figures["velocity_jump"] == pytest.approx(35.0)
    assert math.isnan(memory.velocity_jump(primer, [Note(60, 100, 3.0, 4.0)]))  # nothing in the first 2 s
    # duration-weighted: primer C 17 s, E 0.5, G 0.5; continuation C 1, D 2.5, E 0.5
    expected = (17 * 1 + 0.5 * 0.5) / (math.sqrt(17 ** 2 + 0.5 ** 2 + 0.5 ** 2) * math.sqrt(1 + 2.5 ** 2 + 0.5 ** 2))
    assert figures["pitch_class_agreement"] == pytest.approx(expected)
    assert figures["notes_per_second"] == pytest.approx(0.75)


def _valid_ids(count):
    """Roll ids whose `ID_exp.mid` falls in the held-out split."""
    ids = (f"r{n:04d}" for n in range(10_000))
    return [i for i in ids if data.is_valid_piece(f"{i}_exp.mid")][:count]


def test_the_benchmark_runs_end_to_end_and_leaves_out_the_88_note_rolls(tmp_path, capsys):
    folder = tmp_path / "pianolatron" / "midi"
    folder.mkdir(parents=True)
    kept, left_out = _valid_ids(3)[:2], _valid_ids(3)[2]
    for roll in [*kept, left_out, "r_train"]:  # 44 s each: 176 notes, a note every 0.25 s
        write_midi(_line(FIGURE * 22), folder / f"{roll}_exp.mid", bpm=120)
    catalog = [{"druid": roll, "type": "welte-red"} for roll in kept] + [{"druid": left_out, "type": "88-note"}]
    (folder.parent / "catalog.json").write_text(json.dumps(catalog))
    torch.manual_seed(0)
    config = dict(n_layers=1, d_model=32, n_heads=2, d_ff=64, train_length=64, max_relative_distance=64)
    save_checkpoint(MusicTransformer(ModelConfig(**config)), tmp_path / "model.pt")
    save_checkpoint(MusicTransformer(ModelConfig(**config, vocab_size=events.LEGACY_VOCAB_SIZE)), tmp_path / "old.pt")
    assert memory.main(["--checkpoint", str(tmp_path / "model.pt"), "--baseline", str(tmp_path / "old.pt"),
                        "--data", f"classical={folder}", "--cache", str(tmp_path / "cache"), "--pieces", "5",
                        "--seeds", "1", "--windows", "16", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    source = result["sources"]["classical"]
    assert source["held_out"] == 2 and sorted(source["ids"]) == sorted(f"{roll}_exp.mid" for roll in kept)
    assert set(source["nll"]) == {"model", "baseline"} and set(source["nll"]["model"]) == {"16", "32"}
    assert all(value > 0 for model in source["nll"].values() for value in model.values())
    real = source["continuations"]["real"]
    assert real["notes_per_second"] == pytest.approx(4.0)  # a note every 0.25 s
    assert real["motif_reuse"] == 1.0 and real["at_cap"] == 0.0  # the figure again and again, short notes
    assert real["rhythm_reuse"] == 1.0  # in its beat
    assert source["chance_motif_reuse"] == 1.0  # every roll plays the same figure: the others' primers hold it too
    assert real["notes_at_once"] == pytest.approx(0.8, abs=0.02)  # each note sounds 0.2 s of every 0.25 s
    assert set(source["targets"]) == {"model", "baseline"}
    assert set(source["ratios"]["model"]) == set(memory.FIGURES) - {"at_cap"}
    # the copy test: 10 s of the figure heard twice; the return is as many tokens as the first hearing, give or
    # take the events at the seam (the velocity event it does not need again)
    for returns in source["copy"].values():
        assert set(returns) == {"+0", "+2"}
        for test in returns.values():
            first, again = test["tokens"]["first"], test["tokens"]["again"]
            assert first > 100 and abs(first - again) <= 0.02 * first
            assert test["gain"] == test["first"] - test["again"]
    assert set(source["loop"]) == {"model", "baseline"}
    assert len(source["loop"]["model"]["rounds"]) == memory.LOOP_ROUNDS
    assert all(value > 0 for value in source["loop"]["model"]["rounds"])


def test_the_context_benchmark_scores_by_position_and_kind_and_a_window_past_the_piece_changes_nothing(tmp_path,
                                                                                                      capsys):
    from bench import context_use

    folder = tmp_path / "pop" / "midi"
    folder.mkdir(parents=True)
    for roll in _valid_ids(2):
        write_midi(_line(FIGURE * 22), folder / f"{roll}_exp.mid", bpm=120)
    torch.manual_seed(0)
    config = dict(n_layers=1, d_model=32, n_heads=2, d_ff=64, train_length=64, max_relative_distance=64)
    save_checkpoint(MusicTransformer(ModelConfig(**config)), tmp_path / "model.pt")
    assert context_use.main(["--checkpoint", str(tmp_path / "model.pt"), "--data", f"pop-piano={folder}",
                             "--cache", str(tmp_path / "cache"), "--windows", "8", "300", "400", "--from", "8",
                             "--to", "200", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["pieces"]) == 2 and result["style"] == "pop-piano"
    short, long, longer = (result["windows"][w] for w in ("8", "300", "400"))
    assert long == longer  # every position sees the whole piece before it with either window (4L = 256 tokens)
    assert short["by_position"]["[1,256)"] != long["by_position"]["[1,256)"]
    kinds = long["by_kind"]
    assert all(kinds[kind]["tokens"] > 0 for kind in ("note-on", "note-off", "time shift"))
    assert sum(kind["nats_share"] for kind in kinds.values() if kind["nats_share"]) == pytest.approx(1.0)


def test_rhythm_reuse_is_the_share_of_gaps_between_onsets_the_primer_has():
    primer = _line(FIGURE * 2)  # a note every 0.25 s
    assert memory.rhythm_reuse(_line(FIGURE, start=7.0), primer) == 1.0
    assert memory.rhythm_reuse(_line(FIGURE, step=0.26), primer) == 1.0  # a tick off: the beat rounded
    assert memory.rhythm_reuse(_line(FIGURE, step=0.3), primer) == 0.0
    chords = [Note(p, 80, at, at + 0.1) for at in (0.0, 0.25, 0.75) for p in (60, 64)]  # a chord is one onset
    assert memory.rhythm_reuse(chords, primer) == 0.5  # gaps of 0.25 and 0.5 s
    assert math.isnan(memory.rhythm_reuse([Note(60, 80, 0.0, 1.0)], primer))
    assert list(memory.onset_gaps(chords)) == [25, 50]
