"""Training data: MIDI folders, the music21 corpus cache, the split, augmentation and crops."""

import logging
import os

import numpy as np
import pytest

from music_transformer import Note, decode, encode, write_midi
from music_transformer import data
from music_transformer.events import PAD, START


def make_midi_folder(root, pieces=12, notes_per_piece=40, corrupt=0):
    """A folder tree of small, learnable MIDI pieces (scales and arpeggios), some corrupt files."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(pieces):
        folder = root / ("nested/deeper" if index % 3 == 0 else "top")
        folder.mkdir(parents=True, exist_ok=True)
        base = 48 + int(rng.integers(0, 24))
        steps = [0, 2, 4, 5, 7, 9, 11, 12] if index % 2 else [0, 4, 7, 12, 7, 4]
        notes = [Note(base + steps[k % len(steps)], 80, 0.25 * k, 0.25 * k + 0.2) for k in range(notes_per_piece)]
        write_midi(notes, folder / f"piece{index:02d}.{'midi' if index % 4 == 0 else 'mid'}", bpm=120)
    for index in range(corrupt):
        (root / "top" / f"broken{index}.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage" + bytes(index))
    (root / "top" / "notes.txt").write_text("not music")
    return root


def test_a_midi_folder_is_read_recursively_and_corrupt_files_are_skipped_and_counted(tmp_path, caplog):
    folder = make_midi_folder(tmp_path / "midi", pieces=9, corrupt=2)
    with caplog.at_level(logging.WARNING, logger="music_transformer.data"):
        dataset = data.load_dataset(str(folder), cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(dataset.train) + len(dataset.valid) == 9
    assert dataset.skipped == 2
    skipped_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(skipped_lines) == 2 and all("broken" in line for line in skipped_lines)
    assert {p.piece_id for p in dataset.train + dataset.valid} >= {"nested/deeper/piece00.midi", "top/piece01.mid"}
    piece = (dataset.train + dataset.valid)[0]
    assert piece.token_count == len(encode(data.array_to_notes(piece.notes)))
    # The cache is where we asked, never in the repository.
    assert list((tmp_path / "cache").rglob("*.npz"))


def test_conversion_is_reused_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    folder = make_midi_folder(tmp_path / "midi", pieces=6)
    cache = tmp_path / "cache"
    data.load_dataset(str(folder), cache_dir=cache, workers=1, progress=False)
    files = sorted(cache.rglob("*.npz"))
    assert len(files) == 6
    files[2].unlink()  # as if the conversion had been killed before this file
    read = []
    original = data.read_source
    monkeypatch.setattr(data, "read_source", lambda source: read.append(source.source_id) or original(source))
    dataset = data.load_dataset(str(folder), cache_dir=cache, workers=1, progress=False)
    assert len(read) == 1 and len(dataset.train) + len(dataset.valid) == 6


def test_parallel_conversion_of_a_few_music21_pieces(tmp_path):
    sources = data.corpus_sources(("bach", "fiddle"), limit=2)
    assert len(sources) == 4 and sources[0].source_id.startswith("bach/")
    data.convert_sources(sources, cache_dir=tmp_path, workers=2, progress=False)
    dataset = data.load_dataset("corpus:bach,fiddle", cache_dir=tmp_path, limit=2, progress=False)
    pieces = dataset.train + dataset.valid
    assert dataset.skipped == 0 and len(pieces) >= 4  # an O'Neill/Ryan file may hold several tunes
    chorale = next(p for p in pieces if p.piece_id.startswith("bach/"))
    notes = data.array_to_notes(chorale.notes)
    assert len({n.pitch for n in notes}) > 10 and all(n.velocity == data.DEFAULT_VELOCITY for n in notes)
    starts = sorted({round(n.start, 3) for n in notes})
    assert min(np.diff(starts)) >= 0.14  # 16th notes and longer at 100 bpm: no grace-note debris
    with pytest.raises(data.DataError, match="unknown corpus part"):
        data.corpus_sources(("nope",))


def test_a_music21_score_becomes_notes_at_its_tempo_with_ties_joined():
    import music21

    score = music21.stream.Score()
    part = music21.stream.Part()
    part.append(music21.tempo.MetronomeMark(number=60))
    first, second = music21.note.Note("C4", quarterLength=1), music21.note.Note("C4", quarterLength=1)
    first.tie, second.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    part.append([first, second, music21.chord.Chord(["E4", "G4"], quarterLength=2)])
    score.append(part)
    notes = data.score_notes(score)
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0.0, 2.0), (64, 2.0, 4.0), (67, 2.0, 4.0)]


def test_a_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="no such folder"):
        data.load_dataset(str(tmp_path / "nowhere"), cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no MIDI files"):
        data.load_dataset(str(tmp_path / "empty"), cache_dir=tmp_path / "c", progress=False)


def test_the_split_is_deterministic_by_piece_and_about_five_percent():
    ids = [f"collection/piece{i}" for i in range(20000)]
    first = [data.is_valid_piece(i) for i in ids]
    assert first == [data.is_valid_piece(i) for i in reversed(ids)][::-1]
    assert 0.04 < sum(first) / len(first) < 0.06
    # Pinned: the same ids fall on the same side on any machine, in any Python (no salted hash()).
    assert [data.is_valid_piece(f"collection/piece{i}") for i in range(40)].count(True) == \
        sum(first[:40])
    assert data.is_valid_piece("bach/bwv1.6") == data.is_valid_piece("bach/bwv1.6")


def test_split_never_shares_a_piece_and_does_not_depend_on_the_file_order(tmp_path):
    folder = make_midi_folder(tmp_path / "midi", pieces=30)
    one = data.load_dataset(str(folder), cache_dir=tmp_path / "c1", workers=1, progress=False)
    for path in sorted(folder.rglob("*.mid*"))[:5]:  # touched files: a fresh cache entry, same split
        os.utime(path, (1, 1))
    two = data.load_dataset(str(folder), cache_dir=tmp_path / "c1", workers=1, progress=False)
    assert {p.piece_id for p in one.valid} == {p.piece_id for p in two.valid}
    assert not {p.piece_id for p in one.valid} & {p.piece_id for p in one.train}
    assert all(data.is_valid_piece(p.piece_id) for p in one.valid)


def test_augmentation_transposes_and_stretches_every_note_alike():
    notes = data.notes_to_array([Note(60, 80, 0.0, 0.5), Note(64, 90, 0.5, 1.0), Note(67, 70, 1.0, 2.0)])
    shifts, factors = set(), []
    for seed in range(200):
        out = data.augment(notes, np.random.default_rng(seed))
        shift = out[:, 0] - notes[:, 0]
        assert len(set(shift)) == 1 and -3 <= shift[0] <= 3
        shifts.add(int(shift[0]))
        factor = out[1:, 2] / notes[1:, 2]
        assert np.allclose(factor, factor[0]) and 0.95 <= factor[0] <= 1.05
        assert np.allclose(out[:, 3] / notes[:, 3], factor[0])
        assert (out[:, 1] == notes[:, 1]).all()  # velocities untouched
        factors.append(factor[0])
    assert shifts == set(range(-3, 4))
    assert min(factors) < 0.96 and max(factors) > 1.04
    assert (notes[:, 0] == [60, 64, 67]).all()  # the input is not modified


def test_augmentation_keeps_notes_on_the_keyboard():
    notes = data.notes_to_array([Note(1, 80, 0.0, 0.5), Note(126, 80, 0.0, 0.5)])
    for seed in range(50):
        out = data.augment(notes, np.random.default_rng(seed))
        assert out[:, 0].min() >= 0 and out[:, 0].max() <= 127
    high = data.notes_to_array([Note(126, 80, 0.0, 0.5)])
    assert max(data.augment(high, np.random.default_rng(s))[0, 0] for s in range(50)) <= 127


def test_an_augmented_piece_encodes_to_the_augmented_notes():
    notes = data.notes_to_array([Note(60 + k % 5, 80, 0.3 * k, 0.3 * k + 0.25) for k in range(30)])
    out = data.augment(notes, np.random.default_rng(3))
    tokens = data.piece_tokens(out)
    assert tokens[0] == START
    decoded = decode(tokens[1:-1])
    assert [n.pitch for n in decoded] == [int(p) for p in out[:, 0]]
    assert np.allclose([n.start for n in decoded], out[:, 2], atol=0.006)


def test_crops_have_the_training_length_and_start_with_start_at_the_piece_start():
    tokens = [START] + list(range(100))
    starts = set()
    for seed in range(300):
        window = data.crop(tokens, 16, np.random.default_rng(seed))
        assert len(window) == 17
        offset = tokens.index(int(window[0]))
        assert list(window) == tokens[offset:offset + 17]
        starts.add(offset)
    assert 0 in starts and max(starts) == len(tokens) - 17
    short = data.crop([START, 5, 6], 8, np.random.default_rng(0))
    assert list(short) == [START, 5, 6] + [PAD] * 6


def test_training_batches_are_reproducible_resumable_and_split_over_ranks(tmp_path):
    pieces = [data.Piece(f"p{i}", data.notes_to_array(
        [Note(50 + i + k % 7, 80, 0.2 * k, 0.2 * k + 0.15) for k in range(30 + 5 * i)]), 0) for i in range(10)]
    for piece in pieces:
        piece.token_count = len(data.piece_tokens(piece.notes))
    whole = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1))
    assert len(whole) == data.batches_per_epoch(pieces, 16, 2)
    again = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1))
    assert all((a[1] == b[1]).all() for a, b in zip(whole, again))
    resumed = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1, start=3))
    assert [b for b, _ in resumed] == [b for b, _ in whole[3:]]
    assert all((a[1] == b[1]).all() for a, b in zip(whole[3:], resumed))
    other_epoch = list(data.training_batches(pieces, 16, 2, seed=7, epoch=2))
    assert any((a[1] != b[1]).any() for a, b in zip(whole, other_epoch))
    # Two ranks of batch 1 each take 1 row; together they are the rows one process would take for batch 2.
    single = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1))
    rank0 = list(data.training_batches(pieces, 16, 1, seed=7, epoch=1, rank=0, world_size=2))
    rank1 = list(data.training_batches(pieces, 16, 1, seed=7, epoch=1, rank=1, world_size=2))
    for (_, both), (_, first), (_, second) in zip(single, rank0, rank1):
        assert (both == np.concatenate([first, second])).all()


def test_validation_chunks_cover_each_piece_in_windows():
    piece = data.Piece("v", data.notes_to_array([Note(60, 80, 0.1 * k, 0.1 * k + 0.05) for k in range(20)]), 0)
    tokens = data.piece_tokens(piece.notes)
    chunks = data.validation_chunks([piece], 16)
    assert chunks.shape == (int(np.ceil((len(tokens) - 1) / 16)), 17)
    assert list(chunks[0]) == tokens[:17] and chunks[1][0] == tokens[16]
    assert (chunks[-1] == PAD).any()
    assert len(data.validation_chunks([piece] * 10, 16, max_chunks=5)) == 5
