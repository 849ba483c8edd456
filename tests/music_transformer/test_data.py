"""Training data: MIDI folders, the music21 corpus cache, the split, augmentation and crops."""

import json
import logging
import math
import os
import re
import sys
from collections import Counter

import numpy as np
import pytest

from music_transformer import Note, data, decode, encode, events, sources
from music_transformer.errors import DataError
from music_transformer.events import NOTE_ON_OFFSET, PAD, START

from .helpers import make_midi_folder


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
    assert piece.token_count == len(encode(sources.array_to_notes(piece.notes)))
    # The cache is where we asked, never in the repository.
    assert list((tmp_path / "cache").rglob("*.npz"))


def test_a_pianolatron_catalogue_leaves_out_the_one_velocity_rolls_and_classical_names_the_style(tmp_path):
    folder = make_midi_folder(tmp_path / "pianolatron" / "midi", pieces=4)
    for path in sorted(folder.rglob("piece*.mid*")):  # roll files are named by their id, then "_exp"
        path.rename(path.with_name(f"{path.stem}_exp{path.suffix}"))
    catalog = [{"druid": "piece00", "type": "88-note"}, {"druid": "piece01", "type": "welte-red"},
               {"druid": "piece02", "type": "duo-art"}]  # piece03 has no entry, as one real roll has none
    (tmp_path / "pianolatron" / "catalog.json").write_text(json.dumps(catalog))
    found = sources.resolve_sources(f"classical={folder}")
    assert sorted(s.source_id.rsplit("/", 1)[-1] for s in found) == \
        ["piece01_exp.mid", "piece02_exp.mid", "piece03_exp.mid"]
    assert {s.style for s in found} == {"classical"}
    (tmp_path / "pianolatron" / "catalog.json").write_text("[{]")
    with pytest.raises(DataError, match="catalog.json: not a roll catalogue"):
        sources.resolve_sources(str(folder))


def test_conversion_is_reused_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    folder = make_midi_folder(tmp_path / "midi", pieces=6)
    cache = tmp_path / "cache"
    data.load_dataset(str(folder), cache_dir=cache, workers=1, progress=False)
    files = sorted(cache.rglob("*.npz"))
    assert len(files) == 6
    files[2].unlink()  # as if the conversion had been killed before this file
    read = []
    original = sources.read_source
    monkeypatch.setattr(sources, "read_source", lambda source: read.append(source.source_id) or original(source))
    dataset = data.load_dataset(str(folder), cache_dir=cache, workers=1, progress=False)
    assert len(read) == 1 and len(dataset.train) + len(dataset.valid) == 6


def test_parallel_conversion_of_a_few_music21_pieces(tmp_path):
    found = sources.corpus_sources(("bach", "fiddle"), limit=2)
    assert len(found) == 4 and found[0].source_id.startswith("bach/")
    sources.convert_sources(found, cache_dir=tmp_path, workers=2, progress=False)
    dataset = data.load_dataset("corpus:bach,fiddle", cache_dir=tmp_path, limit=2, progress=False)
    pieces = dataset.train + dataset.valid
    assert dataset.skipped == 0 and len(pieces) >= 4  # an O'Neill/Ryan file may hold several tunes
    chorale = next(p for p in pieces if p.piece_id.startswith("bach/"))
    notes = sources.array_to_notes(chorale.notes)
    assert len({n.pitch for n in notes}) > 10 and all(n.velocity == sources.DEFAULT_VELOCITY for n in notes)
    starts = sorted({round(n.start, 3) for n in notes})
    assert min(np.diff(starts)) >= 0.14  # 16th notes and longer at 100 bpm: no grace-note debris
    with pytest.raises(DataError, match="unknown corpus part"):
        sources.corpus_sources(("nope",))


def test_without_music21_midi_folders_still_load_and_the_corpus_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)  # as in an install without the train extra
    folder = make_midi_folder(tmp_path / "midi", 3)
    dataset = data.load_dataset(str(folder), cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert len(dataset.train) + len(dataset.valid) == 3
    for reading in (lambda: sources.corpus_sources(("bach",)), lambda: sources.check_readable([str(folder), "corpus"]),
                    lambda: data.load_dataset("corpus:bach", cache_dir=tmp_path / "cache", progress=False)):
        with pytest.raises(DataError, match=re.escape('pip install "continuo[train]"')):
            reading()
    sources.check_readable([str(folder), "x.tokens.npz"])  # nothing else needs it


def test_a_music21_score_becomes_notes_at_its_tempo_with_ties_joined():
    import music21

    score = music21.stream.Score()
    part = music21.stream.Part()
    part.append(music21.tempo.MetronomeMark(number=60))
    first, second = music21.note.Note("C4", quarterLength=1), music21.note.Note("C4", quarterLength=1)
    first.tie, second.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    part.append([first, second, music21.chord.Chord(["E4", "G4"], quarterLength=2)])
    score.append(part)
    notes = sources.score_notes(score)
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0.0, 2.0), (64, 2.0, 4.0), (67, 2.0, 4.0)]


def test_a_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        data.load_dataset(str(tmp_path / "nowhere"), cache_dir=tmp_path / "c", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MIDI files"):
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
    notes = sources.notes_to_array([Note(60, 80, 0.0, 0.5), Note(64, 90, 0.5, 1.0), Note(67, 70, 1.0, 2.0)])
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
    notes = sources.notes_to_array([Note(1, 80, 0.0, 0.5), Note(126, 80, 0.0, 0.5)])
    for seed in range(50):
        out = data.augment(notes, np.random.default_rng(seed))
        assert out[:, 0].min() >= 0 and out[:, 0].max() <= 127
    high = sources.notes_to_array([Note(126, 80, 0.0, 0.5)])
    assert max(data.augment(high, np.random.default_rng(s))[0, 0] for s in range(50)) <= 127


def test_an_augmented_piece_encodes_to_the_augmented_notes():
    notes = sources.notes_to_array([Note(60 + k % 5, 80, 0.3 * k, 0.3 * k + 0.25) for k in range(30)])
    out = data.augment(notes, np.random.default_rng(3))
    tokens = data.piece_tokens(out, "folk")
    assert tokens[:2] == [START, events.style_token("folk")] and tokens[-1] == events.END
    assert data.piece_tokens(out, "folk", events.LEGACY_VOCAB_SIZE)[:2] == [START, tokens[2]]
    decoded = decode(tokens[2:-1])
    assert [n.pitch for n in decoded] == [int(p) for p in out[:, 0]]
    assert np.allclose([n.start for n in decoded], out[:, 2], atol=0.006)


def test_crops_have_the_training_length_and_may_open_with_a_header():
    tokens = list(range(100))
    starts = set()
    for seed in range(300):
        window = data.crop(tokens, 16, np.random.default_rng(seed))
        assert len(window) == 17
        offset = tokens.index(int(window[0]))
        assert list(window) == tokens[offset:offset + 17]
        starts.add(offset)
    assert 0 in starts and max(starts) == len(tokens) - 17
    head = events.header("folk")
    window = data.crop(tokens, 16, np.random.default_rng(1), head)
    offset = int(window[2])
    assert list(window) == head + tokens[offset:offset + 15]
    short = data.crop([5, 6], 8, np.random.default_rng(0), [START])
    assert list(short) == [START, 5, 6] + [PAD] * 6


def _piece(index=0, count=120, style="pop-piano"):
    rng = np.random.default_rng(index)
    notes = []
    for k in range(count):
        start = 0.25 * k + float(rng.uniform(0, 0.05))
        notes.append(Note(48 + int(rng.integers(0, 24)), int(rng.integers(30, 110)), start,
                          start + float(rng.uniform(0.1, 1.5))))
    array = sources.notes_to_array(notes)
    return data.Piece(f"p{index}", array, len(encode(notes)), style)


def _fim_parts(sample):
    """(style, gap ticks, suffix, prefix, middle) of a fill-in-the-middle sample, PAD removed."""
    tokens = [int(t) for t in sample if t != PAD]
    assert tokens[0] == START and events.STYLE_OFFSET <= tokens[1] < events.SUFFIX
    suffix_at, prefix_at, middle_at = (tokens.index(m) for m in (events.SUFFIX, events.PREFIX, events.MIDDLE))
    gap = tokens[2:suffix_at]
    assert gap and all(events.is_time_shift(t) for t in gap)
    return (events.STYLES[tokens[1] - events.STYLE_OFFSET], sum(map(events.shift_ticks, gap)),
            tokens[suffix_at + 1:prefix_at], tokens[prefix_at + 1:middle_at], tokens[middle_at + 1:])


def test_a_fim_sequence_holds_the_true_gap_after_its_suffix_and_prefix():
    notes = [Note(60, 78, 0.0, 1.0), Note(48, 58, 0.5, 3.2), Note(62, 78, 2.5, 3.0), Note(64, 90, 2.8, 4.5),
             Note(65, 70, 4.2, 4.6), Note(67, 70, 5.0, 5.5)]  # velocities in the middle of their bins
    tokens = encode(notes)
    sequence = data.fim_sequence(tokens, "folk", 256, first=200, gap=200, suffix_room=100)
    style, gap, suffix, prefix, middle = _fim_parts(sequence)
    assert (style, gap) == ("folk", 200)
    assert prefix == events.split_at(tokens, 200)[0]
    # The middle: 48's note-off when due, 62 and 64 begun in the gap, 64 closed at the gap's end (4.0 s).
    assert decode(middle, start=2.0) == [Note(62, 78, 2.5, 3.0), Note(64, 90, 2.8, 4.0)]
    assert events.note_off(48) in middle and sum(map(events.shift_ticks, middle)) == 200
    assert middle[-1] == events.note_off(64)
    # The suffix: the notes that begin at the gap's end or later, from there (65 and 67, not 64).
    assert decode(suffix, start=4.0) == [Note(65, 70, 4.2, 4.6), Note(67, 70, 5.0, 5.5)]
    full_middle, full_prefix = middle, prefix
    short = data.fim_sequence(tokens, "folk", 24, first=200, gap=200, suffix_room=4)
    _, _, suffix, prefix, middle = _fim_parts(short)
    assert len(short) == 25 and len(suffix) == 4  # less room: the prefix is cut on the left
    assert middle == full_middle and len(prefix) < len(full_prefix) and full_prefix[-len(prefix):] == prefix
    cut = data.fim_sequence(tokens, "folk", 14, first=200, gap=200, suffix_room=0)
    assert len(cut) == 15 and _fim_parts(cut)[3] == [] and _fim_parts(cut)[4] == full_middle[:len(cut) - 7]


def test_fim_samples_vary_the_gap_and_the_suffix_and_fill_the_room():
    piece = _piece()
    tokens = encode(sources.array_to_notes(piece.notes))
    gaps, suffixes = [], []
    for seed in range(60):
        sample = data.fim_sample(tokens, "pop-piano", 256, np.random.default_rng(seed))
        assert len(sample) == 257
        style, gap, suffix, prefix, middle = _fim_parts(sample)
        if sample[-1] == PAD:  # room left over only when the prefix reaches back to the piece's start
            assert prefix == events.split_at(tokens, sum(map(events.shift_ticks, prefix)))[0]
        assert style == "pop-piano"
        gaps.append(gap)
        suffixes.append(len(suffix))
    assert min(gaps) >= 50 and max(gaps) <= 1600 and len(set(gaps)) > 30
    assert min(suffixes) <= 20 and max(suffixes) >= 60


def test_training_samples_mix_headed_windows_bare_windows_and_fim_with_style_dropout():
    piece = _piece(count=400)
    mix = data.SampleMix(max_transpose=3, fim_rate=0.5, style_dropout=0.15)
    kinds = {"fim": 0, "header": 0, "bare": 0}
    styles = []
    for index in range(600):
        sample = data.training_sample(piece, 128, seed=1, epoch=0, index=index, mix=mix)
        assert len(sample) == 129
        if sample[0] != START:
            kinds["bare"] += 1
            assert not set(sample.tolist()) & set(events.SPECIAL_TOKENS) - {PAD, events.END}
            continue
        styles.append(events.STYLES[int(sample[1]) - events.STYLE_OFFSET])
        kinds["fim" if events.SUFFIX in sample else "header"] += 1
    assert 240 <= kinds["fim"] <= 360 and 90 <= kinds["header"] <= 210 and 90 <= kinds["bare"] <= 210
    assert set(styles) == {"pop-piano", "any"}
    assert 0.08 <= styles.count("any") / len(styles) <= 0.22
    plain = data.SampleMix()
    assert all(events.SUFFIX not in data.training_sample(piece, 128, 1, 0, i, plain) for i in range(50))


def test_accompaniment_windows_announce_a_kept_part_on_one_side_of_a_split_two_seconds_ahead():
    piece = _piece(count=400)
    mix = data.SampleMix(max_transpose=0, accompany_rate=0.5)
    announcing, sides = 0, set()
    for index in range(200):
        sample = data.training_sample(piece, 256, seed=2, epoch=0, index=index, mix=mix).tolist()
        if not any(map(events.is_anticipation, sample)):
            continue
        announcing += 1
        tick, announced, struck = 0, {}, []
        for token in sample:
            tick += events.shift_ticks(token)
            if events.is_anticipation(token):
                announced.setdefault(token - events.ANTICIPATE_OFFSET, []).append(tick)
            elif events.is_note_on(token):
                struck.append((token - NOTE_ON_OFFSET, tick))
        kept = [(pitch, at) for pitch, at in struck if at - events.ANTICIPATION_TICKS in announced.get(pitch, ())]
        others = [(pitch, at) for pitch, at in struck if (pitch, at) not in kept]
        # those whose announcement would lie inside the window (after its first instant, which a crop may cut)
        later = [(pitch, at) for pitch, at in others if at > events.ANTICIPATION_TICKS]
        assert kept and later, "a kept part and a part to write, each with notes"
        if min(p for p, _ in kept) > max(p for p, _ in later):
            sides.add("melody kept")
        else:
            assert max(p for p, _ in kept) < min(p for p, _ in later)
            sides.add("bass kept")
    assert 70 <= announcing <= 130 and sides == {"melody kept", "bass kept"}
    assert not any(events.is_anticipation(t) for i in range(50)
                   for t in data.training_sample(piece, 256, 2, 0, i, data.SampleMix()).tolist())


def test_a_token_pack_holds_the_pieces_their_styles_and_split(tmp_path):
    folder = make_midi_folder(tmp_path / "midi", pieces=8)
    dataset = data.load_dataset([f"pop-piano={folder}"], cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert {p.style for p in dataset.train + dataset.valid} == {"pop-piano"}
    written = data.save_token_pack(dataset, tmp_path / "pack.tokens.npz")
    assert written["pieces"] == 8 and written["tokens"] == sum(p.token_count for p in dataset.train + dataset.valid)
    packed = data.load_dataset(str(tmp_path / "pack.tokens.npz"))
    for before, after in zip(dataset.train + dataset.valid, packed.train + packed.valid, strict=True):
        assert (before.piece_id, before.style, before.token_count) == (after.piece_id, after.style, after.token_count)
        assert encode(sources.array_to_notes(before.notes)) == encode(sources.array_to_notes(after.notes))
    assert [p.piece_id for p in packed.valid] == [p.piece_id for p in dataset.valid]
    with pytest.raises(DataError, match="ends in"):
        data.save_token_pack(dataset, tmp_path / "pack.npz")
    (tmp_path / "bad.tokens.npz").write_bytes(b"not a pack")
    with pytest.raises(DataError, match="not a token pack"):
        data.load_dataset(str(tmp_path / "bad.tokens.npz"))
    with np.load(tmp_path / "pack.tokens.npz") as pack:
        parts = dict(pack)
    damages = [dict(ids=parts["ids"][:-1]), dict(styles=parts["styles"][1:]), dict(tokens=parts["tokens"][:-5]),
               dict(offsets=parts["offsets"][::-1]), dict(tokens=parts["tokens"] + 1000)]
    for change in damages:  # an id or a style missing, offsets past the tokens or going back, foreign tokens
        with open(tmp_path / "damaged.tokens.npz", "wb") as handle:
            np.savez(handle, **{**parts, **change})
        with pytest.raises(DataError, match="damaged token pack"):
            data.load_dataset(str(tmp_path / "damaged.tokens.npz"))


def _pop_song(path, beats=96):
    """A file laid out as POP909's are: a MELODY track over a BRIDGE and a PIANO track, each at its own
    velocity. The melody dips under the bridge now and then, so no split pitch sets it apart."""
    import pretty_midi

    song = pretty_midi.PrettyMIDI()
    for name, velocity in (("MELODY", 100), ("BRIDGE", 60), ("PIANO", 35)):
        track = pretty_midi.Instrument(0, name=name)
        for beat in range(beats):
            at = 0.5 * beat
            if name == "MELODY":
                pitch, at = 67 + (beat * 5) % 12 - (12 if beat % 4 == 3 else 0), at
            elif name == "BRIDGE":
                pitch, at = 62 + beat % 5, at + 0.25
            else:
                pitch = 43 + (beat % 4) * 4
            track.notes.append(pretty_midi.Note(velocity, pitch, at, at + 0.4))
        song.instruments.append(track)
    song.write(str(path))
    return path


def test_a_melody_track_is_marked_in_the_cache_and_the_token_pack(tmp_path):
    folder = tmp_path / "pop"
    folder.mkdir()
    _pop_song(folder / "001.mid")
    dataset = data.load_dataset(f"pop-piano={folder}", cache_dir=tmp_path / "cache", workers=1, progress=False)
    (piece,) = dataset.train + dataset.valid
    assert piece.melody is not None and piece.melody.sum() == 96 and len(piece.notes) == 288
    assert set(piece.notes[piece.melody][:, 1].tolist()) == {100}  # the melody's notes, and only those
    assert (data.load_dataset(str(make_midi_folder(tmp_path / "plain", pieces=2)), cache_dir=tmp_path / "cache",
                              workers=1, progress=False).train[0].melody is None)  # a file without one
    data.save_token_pack(dataset, tmp_path / "pop.tokens.npz")
    (packed,) = (lambda d: d.train + d.valid)(data.load_dataset(str(tmp_path / "pop.tokens.npz")))
    binned = events.bin_to_velocity(events.velocity_to_bin(100))  # as the codec keeps it
    assert packed.melody.sum() == 96 and set(packed.notes[packed.melody][:, 1].tolist()) == {binned}
    with np.load(tmp_path / "pop.tokens.npz") as pack:
        parts = dict(pack)
    with open(tmp_path / "old.tokens.npz", "wb") as handle:  # a pack made before the flags: no melody
        np.savez(handle, **{name: value for name, value in parts.items() if name != "melody"})
    assert data.load_dataset(str(tmp_path / "old.tokens.npz")).train[0].melody is None
    with open(tmp_path / "damaged.tokens.npz", "wb") as handle:
        np.savez(handle, **{**parts, "melody": parts["melody"][:-1]})
    with pytest.raises(DataError, match="melody flags and its notes disagree"):
        data.load_dataset(str(tmp_path / "damaged.tokens.npz"))


def test_accompaniment_windows_of_a_song_with_a_melody_track_keep_that_track(tmp_path):
    _pop_song(tmp_path / "001.mid")
    (piece,) = (lambda d: d.train + d.valid)(
        data.load_dataset(str(tmp_path), cache_dir=tmp_path / "cache", workers=1, progress=False))
    melody_bin = events.velocity_to_bin(100)
    mix = data.SampleMix(max_transpose=2, accompany_rate=1.0)
    kinds = Counter()
    for index in range(100):
        tick, velocity, announced, struck = 0, None, {}, []
        for token in data.training_sample(piece, 512, seed=3, epoch=0, index=index, mix=mix).tolist():
            tick += events.shift_ticks(token)
            if events.is_velocity(token):
                velocity = token - events.VELOCITY_OFFSET
            elif events.is_anticipation(token):
                announced.setdefault(token - events.ANTICIPATE_OFFSET, []).append(tick)
            elif events.is_note_on(token) and tick > events.ANTICIPATION_TICKS:  # its announcement in the window
                struck.append((token - NOTE_ON_OFFSET, velocity, tick - events.ANTICIPATION_TICKS in
                               announced.get(token - NOTE_ON_OFFSET, ())))
        kept = {(pitch, bin_) for pitch, bin_, was in struck if was}
        if kept and all((bin_ == melody_bin) == was for _, bin_, was in struck):
            kinds["melody track"] += 1
        else:
            kinds["a range of the keyboard"] += 1
    assert 45 <= kinds["melody track"] <= 75 and kinds["a range of the keyboard"] >= 25


def test_every_source_names_its_style():
    assert {s.style for s in sources.corpus_sources(("bach", "palestrina", "fiddle"), limit=1)} == \
        {"chorale", "renaissance", "folk"}


def test_training_batches_are_reproducible_resumable_and_split_over_ranks(tmp_path):
    pieces = [data.Piece(f"p{i}", sources.notes_to_array(
        [Note(50 + i + k % 7, 80, 0.2 * k, 0.2 * k + 0.15) for k in range(30 + 5 * i)]), 0) for i in range(10)]
    for piece in pieces:
        piece.token_count = len(encode(sources.array_to_notes(piece.notes)))
    whole = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1))
    assert len(whole) == data.batches_per_epoch(pieces, 16, 2, seed=7, epoch=1)
    again = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1))
    assert all((a[1] == b[1]).all() for a, b in zip(whole, again, strict=True))
    resumed = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1, start=3))
    assert [b for b, _ in resumed] == [b for b, _ in whole[3:]]
    assert all((a[1] == b[1]).all() for a, b in zip(whole[3:], resumed, strict=True))
    other_epoch = list(data.training_batches(pieces, 16, 2, seed=7, epoch=2))
    assert any((a[1] != b[1]).any() for a, b in zip(whole, other_epoch, strict=True))
    # Two ranks of batch 1 each take 1 row; together they are the rows one process would take for batch 2.
    single = list(data.training_batches(pieces, 16, 2, seed=7, epoch=1))
    rank0 = list(data.training_batches(pieces, 16, 1, seed=7, epoch=1, rank=0, world_size=2))
    rank1 = list(data.training_batches(pieces, 16, 1, seed=7, epoch=1, rank=1, world_size=2))
    for (_, both), (_, first), (_, second) in zip(single, rank0, rank1, strict=True):
        assert (both == np.concatenate([first, second])).all()


def _scale_piece(name, count, style):
    """A piece of `count` notes stepping up the scale, with its token count."""
    made = data.Piece(name, sources.notes_to_array(
        [Note(55 + k % 12, 80, 0.2 * k, 0.2 * k + 0.15) for k in range(count)]), 0, style)
    made.token_count = len(encode(sources.array_to_notes(made.notes)))
    return made


def test_short_pieces_are_packed_whole_into_shared_samples_and_long_ones_cropped():
    short = [_scale_piece(f"s{i}", 4 + i, "folk") for i in range(12)]  # 14 to 48 tokens each
    long = [_scale_piece(f"l{i}", 60, "pop-piano") for i in range(3)]  # about 180 tokens: three windows each
    pieces = short + long
    plan = data.epoch_plan(pieces, 64, seed=3, epoch=0)
    assert plan == data.epoch_plan(pieces, 64, seed=3, epoch=0) != data.epoch_plan(pieces, 64, seed=3, epoch=1)
    packed = [group for group in plan if len(group) > 1]
    assert packed and all(i < len(short) for group in packed for i in group)
    assert sorted(i for group in plan for i in group if i < len(short)) == list(range(len(short)))  # each once
    for i in range(len(short), len(pieces)):
        assert plan.count((i,)) == round(pieces[i].token_count / 64)
    for group in packed:
        assert sum(pieces[i].token_count + 3 for i in group) <= 65
    plain = data.SampleMix(max_transpose=0)
    index = plan.index(packed[0])
    sample = data.packed_sample([pieces[i] for i in packed[0]], 64, 3, 0, index, plain)
    assert len(sample) == 65 and sample[0] == START
    heads = [k for k, token in enumerate(sample.tolist()) if token == START]
    assert len(heads) == len(packed[0]) and all(sample[k - 1] == events.END for k in heads[1:])
    assert (sample == PAD).sum() <= 65 - sum(pieces[i].token_count + 3 for i in packed[0])
    # every row of every batch comes from the plan, and the packed rows are mostly music, not PAD
    rows = np.concatenate([batch for _, batch in data.training_batches(pieces, 64, 2, seed=3, epoch=0, mix=plain)])
    assert rows.shape == (len(plan) // 2 * 2, 65) and (rows != PAD).mean() > 0.75
    assert data.batches_per_epoch(pieces, 64, 2, seed=3, epoch=0) == len(plan) // 2


def test_validation_chunks_cover_each_piece_in_windows_each_opening_with_the_header():
    piece = data.Piece("v", sources.notes_to_array([Note(60, 80, 0.1 * k, 0.1 * k + 0.05) for k in range(20)]), 0,
                       "folk")
    tokens = encode(sources.array_to_notes(piece.notes)) + [events.END]
    head = events.header("folk")
    chunks = data.validation_chunks([piece], 16)
    assert chunks.shape == (int(np.ceil(len(tokens) / 15)), 17)
    assert list(chunks[0]) == head + tokens[:15] and list(chunks[1][:3]) == head + tokens[15:16]
    assert (chunks[-1] == PAD).any()
    assert len(data.validation_chunks([piece] * 10, 16, max_chunks=5)) == 5


def test_style_weights_change_how_often_each_styles_pieces_come_round():
    short = [_scale_piece(f"s{i}", 4 + i, "folk") for i in range(12)]  # packed whole
    long = [_scale_piece(f"l{i}", 60, "pop-piano") for i in range(3)]  # three windows each
    pieces = short + long
    turns = [round(p.token_count / 64) for p in long]

    def counts(plan):
        return Counter(i for group in plan for i in group)

    # unweighted (and weights of 1) is the plan as before: each short piece once, each long one by its tokens
    plain = data.epoch_plan(pieces, 64, seed=3, epoch=0)
    assert data.epoch_plan(pieces, 64, seed=3, epoch=0, style_weights=(("folk", 1.0),)) == plain
    # whole weights: every piece exactly that many turns; 0 leaves the style out
    plan = data.epoch_plan(pieces, 64, seed=3, epoch=0, style_weights=data.style_weights({"folk": 3, "pop-piano": 0}))
    assert counts(plan) == {i: 3 for i in range(len(short))}
    assert all(sum(pieces[i].token_count + 3 for i in group) <= 65 for group in plan)
    # a fraction: that many turns on average over epochs, reproducibly, never fewer than its whole part
    weights = data.style_weights({"pop-piano": 2.5})
    assert data.epoch_plan(pieces, 64, 3, 4, weights) == data.epoch_plan(pieces, 64, 3, 4, weights)
    seen = [counts(data.epoch_plan(pieces, 64, seed=3, epoch=epoch, style_weights=weights))
            for epoch in range(200)]
    for k, i in enumerate(range(len(short), len(pieces))):
        per_epoch = [c[i] for c in seen]
        assert set(per_epoch) <= {math.floor(2.5 * turns[k]), math.ceil(2.5 * turns[k])}
        assert np.mean(per_epoch) == pytest.approx(2.5 * turns[k], abs=0.15)
    assert all(c[i] == 1 for c in seen for i in range(len(short)))
    # weights so small that nothing would come round: one turn each rather than an empty epoch
    tiny = data.epoch_plan(pieces[:2], 64, seed=3, epoch=0, style_weights=(("folk", 0.001),))
    assert counts(tiny) == {0: 1, 1: 1}
    # training_batches and batches_per_epoch follow the weights
    mix = data.SampleMix(max_transpose=0, style_weights=data.style_weights({"pop-piano": 0}))
    rows = np.concatenate([batch for _, batch in data.training_batches(pieces, 64, 1, seed=3, epoch=0, mix=mix)])
    assert len(rows) == data.batches_per_epoch(pieces, 64, 1, seed=3, epoch=0, style_weights=mix.style_weights)
    assert len(rows) == len(data.epoch_plan(pieces, 64, 3, 0, mix.style_weights)) < len(plain)
    assert not (rows == events.style_token("pop-piano")).any()


@pytest.mark.parametrize("weights, message", [({"jazz": 2}, "no style 'jazz'"), ({"folk": -1}, "from 0 to 100"),
                                              ({"folk": 101}, "from 0 to 100"), ({"folk": math.nan}, "not nan"),
                                              ({"folk": "2"}, "a number"), ({"folk": True}, "a number")])
def test_style_weights_refuse_unknown_styles_and_weights_out_of_range(weights, message):
    with pytest.raises(ValueError, match=message):
        data.style_weights(weights)


def test_a_restated_passage_comes_back_at_once_and_the_piece_goes_on_after_it():
    notes = sources.notes_to_array([Note(60, 80, 0.0, 1.0), Note(64, 80, 1.0, 3.0), Note(67, 100, 2.0, 2.5),
                                    Note(72, 90, 3.0, 4.0)])
    again = sources.array_to_notes(data.restated(notes, [data.Passage(1.0, 2.0, transpose=2, loudness=0.5)]))
    assert sorted(again, key=lambda n: (n.start, n.pitch)) == [
        Note(60, 80, 0.0, 1.0), Note(64, 80, 1.0, 3.0), Note(67, 100, 2.0, 2.5),  # the passage [1, 3), released at 3
        Note(66, 40, 3.0, 5.0), Note(69, 50, 4.0, 4.5),  # again, a step up and half as loud
        Note(72, 90, 5.0, 6.0)]  # the rest, 2 s later
    assert sources.array_to_notes(data.restated(notes, [])) == sources.array_to_notes(notes)


def test_passage_after_passage_each_comes_back_at_once():
    notes = sources.notes_to_array([Note(60, 80, 0.0, 1.5), Note(62, 80, 1.0, 2.0), Note(64, 80, 2.0, 3.0),
                                    Note(65, 80, 3.0, 4.0)])
    twice = sources.array_to_notes(data.restated(notes, [data.Passage(0.0, 1.0), data.Passage(1.0, 2.0, 12, 1.0)]))
    assert sorted(twice, key=lambda n: (n.start, n.pitch)) == [
        Note(60, 80, 0.0, 1.0), Note(60, 80, 1.0, 2.0),  # [0, 1): the held note released at 1, and again
        Note(62, 80, 2.0, 3.0), Note(64, 80, 3.0, 4.0),  # [1, 3) ...
        Note(74, 80, 4.0, 5.0), Note(76, 80, 5.0, 6.0),  # ... again an octave up
        Note(65, 80, 6.0, 7.0)]  # the rest, 3 s later


def _self_match(sample):
    """The most note pairs of a window that share one (time apart, pitches apart): a passage and its return."""
    tick, struck = 0, []
    for token in (int(t) for t in sample if t != PAD):
        tick += events.shift_ticks(token)
        if events.is_note_on(token):
            struck.append((tick, token - NOTE_ON_OFFSET))
    votes = Counter((b[0] - a[0], b[1] - a[1]) for i, a in enumerate(struck) for b in struck[i + 1:] if b[0] > a[0])
    return max(votes.values(), default=0)


def test_restatement_windows_hold_a_passage_and_its_return_and_plain_windows_do_not():
    rng = np.random.default_rng(5)  # random pitches at random gaps: nothing in it comes back by chance
    starts = np.cumsum(rng.uniform(0.1, 0.4, 400))
    piece = data.Piece("random", sources.notes_to_array(
        [Note(int(rng.integers(36, 85)), int(rng.integers(30, 110)), float(s), float(s + rng.uniform(0.1, 1.5)))
         for s in starts]), 0)
    restating = data.SampleMix(max_transpose=0, restate_rate=1.0)
    matches = [_self_match(data.training_sample(piece, 256, seed=3, epoch=0, index=i, mix=restating))
               for i in range(40)]
    plain = [_self_match(data.training_sample(piece, 256, seed=3, epoch=0, index=i, mix=data.SampleMix()))
             for i in range(40)]
    assert min(matches) > max(plain), (matches, plain)
    assert np.median(matches) >= 8  # passages of a second or more, four notes a second
    # a window is never longer than asked, and a piece of one note restates what it can
    one = data.Piece("one", sources.notes_to_array([Note(60, 80, 0.0, 0.5)]), 4)
    sample = data.training_sample(one, 32, seed=0, epoch=0, index=0, mix=restating)
    assert sample.shape == (33,) and [t - NOTE_ON_OFFSET for t in sample if events.is_note_on(t)] == [60, 60]


def _steady_bars(bars: int) -> np.ndarray:
    """A piece in a steady beat: each 2 s bar struck at 0, 0.5, 0.75 and 1 s, a different pitch on each."""
    pattern = [(0.0, 60), (0.5, 64), (0.75, 67), (1.0, 72)]
    return sources.notes_to_array([Note(pitch + bar % 5, 80, 2.0 * bar + at, 2.0 * bar + at + 0.2)
                                   for bar in range(bars) for at, pitch in pattern])


def test_a_passage_ends_where_its_start_falls_in_the_bar():
    onsets = np.unique(_steady_bars(12)[:, 2])
    ahead = data.onsets_ahead(onsets)
    at = {float(t): i for i, t in enumerate(onsets)}
    # about 3.4 s from a downbeat: the onset at 3 s is nearer, the downbeat at 4 s falls as the start does
    assert onsets[data.passage_end(onsets, ahead, at[0.0], 3.4)] == 4.0
    assert onsets[data.passage_end(onsets, ahead, at[2.5], 5.7)] == 8.5  # a second beat, not the nearer downbeat
    # nothing that far but the next onsets: the first onset past 0.8 times, or the piece's last
    assert onsets[data.passage_end(onsets, ahead, at[1.0], 0.1)] == 2.0
    assert data.passage_end(onsets, ahead, at[20.0], 16.0) == len(onsets) - 1
    assert ahead.shape == (len(onsets), data.RHYTHM_AHEAD) and ahead[0].tolist() == [0.5, 0.75, 1.0, 2.0]


def test_restated_windows_keep_the_pieces_beat():
    notes = _steady_bars(60)
    gaps = []
    for seed in range(20):
        tokens = data.restated_window(notes, 400, np.random.default_rng(seed))
        ticks = events.token_ticks(tokens)
        struck = np.unique([tick for tick, token in zip(ticks, tokens, strict=True) if events.is_note_on(token)])
        gaps += np.diff(struck).tolist()
        assert _self_match(tokens) >= 8  # and each holds returns
    assert set(gaps) == {25, 50, 100}  # ticks: every gap between onsets is one the piece has, returns or not
