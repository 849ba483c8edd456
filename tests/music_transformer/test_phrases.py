"""Phrase endings: a continuation that ends on a bar line, its last beat starting no note."""

import math

import pretty_midi
import pytest

from music_transformer import Note, generate, generate_variations, read_midi, save_checkpoint, write_midi
from music_transformer.cli import main
from music_transformer.events import is_note_on, shift_ticks
from music_transformer.phrases import bar_seconds, phrase_release, phrase_seconds
from tests.music_transformer.helpers import PRIMER, assert_valid_stream, small_model


def note_on_ticks(tokens):
    """The tick (from the stream's start) of every note-on."""
    tick, ticks = 0, []
    for token in tokens:
        tick += shift_ticks(token)
        if is_note_on(token):
            ticks.append(tick)
    return ticks


def test_bars_follow_the_tempo_and_the_metre():
    assert bar_seconds(120) == pytest.approx(2.0)
    assert bar_seconds(120, (3, 4)) == pytest.approx(1.5)
    assert bar_seconds(90, (6, 8)) == pytest.approx(2.0)  # three quarter notes
    for bpm, signature in ((0, (4, 4)), (-60, (4, 4)), (math.nan, (4, 4)), (True, (4, 4)), (120, (0, 4)),
                           (120, (4, 3)), (120, (4.0, 4))):
        with pytest.raises(ValueError):
            bar_seconds(bpm, signature)


def test_a_phrase_ends_on_the_bar_line_after_the_length_asked_for():
    assert phrase_seconds(3.98, 12.0, 2.0) == pytest.approx(12.02)  # from a motif's last note to bar 9
    assert phrase_seconds(4.0, 8.0, 2.0) == pytest.approx(8.0)  # already on a bar line: as asked
    assert phrase_seconds(4.0, 8.0 - 1e-9, 2.0) == pytest.approx(8.0)  # float rounding is not a bar more
    assert phrase_seconds(1.0, 0.5, 1.5, downbeat=0.25) == pytest.approx(0.75)
    for start in (0.0, 0.3, 7.77):
        for seconds in (0.1, 5.0, 12.0, 31.3):
            length = phrase_seconds(start, seconds, 2.0)
            assert seconds - 1e-9 <= length < seconds + 2.0  # honoured to within a bar
            assert (start + length) / 2.0 == pytest.approx(round((start + length) / 2.0))
    for arguments in ((-1.0, 4.0, 2.0), (0.0, 0.0, 2.0), (0.0, 4.0, 0.0), (0.0, math.inf, 2.0),
                      (0.0, 4.0, math.nan), (0.0, "4", 2.0), (0.0, 4.0, 2.0, -1.0), (0.0, 7199.0, 7.0)):
        with pytest.raises(ValueError):
            phrase_seconds(*arguments)
    assert phrase_release(8.0, 0.5) == 0.5
    assert phrase_release(0.6, 0.5) == 0.3  # a short phrase keeps half of itself for music
    with pytest.raises(ValueError):
        phrase_release(8.0, 0.0)


def test_the_release_starts_no_note_and_the_music_ends_on_time():
    model = small_model()
    # seeds with which, without a release, the random model strikes notes in the last half second
    late = [seed for seed in range(12) if max(note_on_ticks(list(generate(model, PRIMER, seconds=2.0, seed=seed))),
                                               default=0) >= 150][:3]
    assert len(late) == 3
    for seed in late:
        ended = list(generate(model, PRIMER, seconds=2.0, seed=seed, release_seconds=0.5))
        assert_valid_stream(ended)
        assert sum(shift_ticks(token) for token in ended) == 200
        assert max(note_on_ticks(ended), default=0) < 150
        beam = list(generate(model, PRIMER, seconds=2.0, beam_size=2, release_seconds=0.5))
        assert_valid_stream(beam)
        assert max(note_on_ticks(beam), default=0) < 150


def test_each_variation_ends_its_phrase():
    model = small_model()
    rows = {}
    for row, token in generate_variations(model, PRIMER, seeds=[1, 2, 3], seconds=2.0, release_seconds=0.5):
        rows.setdefault(row, []).append(token)
    assert sorted(rows) == [0, 1, 2]
    for tokens in rows.values():
        assert_valid_stream(tokens)
        assert sum(shift_ticks(token) for token in tokens) == 200
        assert max(note_on_ticks(tokens), default=0) < 150


@pytest.mark.parametrize("release", [-0.5, math.nan, math.inf, True, "1", 1e9])
def test_a_release_that_is_not_a_length_is_refused(release):
    model = small_model()
    with pytest.raises(ValueError, match="release_seconds"):
        generate(model, PRIMER, seconds=2.0, release_seconds=release)
    with pytest.raises(ValueError, match="release_seconds"):
        generate_variations(model, PRIMER, seeds=[1], seconds=2.0, release_seconds=release)


def test_generate_ends_at_a_bar_line_in_the_metre_given_at_the_primers_tempo(tmp_path):
    save_checkpoint(small_model(), tmp_path / "model.pt")
    motif = [Note(60, 90, 0.0, 0.5), Note(62, 90, 0.5, 1.0), Note(64, 90, 1.0, 2.1)]
    write_midi(motif, tmp_path / "motif.mid", bpm=90)  # 3/4 at 90 bpm: bars of 2 s
    common = ["generate", "--primer", str(tmp_path / "motif.mid"), "--seconds", "3", "--checkpoint",
              str(tmp_path / "model.pt"), "--device", "cpu"]
    for seed in range(3):
        out = tmp_path / f"bar{seed}.mid"
        assert main(common + ["--out", str(out), "--seed", str(seed), "--end-at-bar", "--time-signature", "3/4"]) == 0
        continuation = read_midi(out)[3:]
        assert continuation and min(note.start for note in continuation) >= 2.1 - 1e-3
        assert max(note.end for note in continuation) <= 6.0 + 0.02  # 2.1 + 3 s, on to the bar line at 6 s
        assert max(note.start for note in continuation) < 6.0 - 60 / 90  # its last beat strikes no note
        assert pretty_midi.PrettyMIDI(str(out)).get_tempo_changes()[1][0] == pytest.approx(90)  # the primer's
        plain = tmp_path / f"plain{seed}.mid"
        assert main(common + ["--out", str(plain), "--seed", str(seed)]) == 0
        assert max(note.end for note in read_midi(plain)) <= 5.1 + 0.02  # as before: the length, where it ends


@pytest.mark.parametrize("value", ["3", "0/4", "4/3", "33/4", "x/y", "4/4/4", "-3/4"])
def test_generate_refuses_a_metre_that_has_no_bars_in_one_line(tmp_path, capsys, value):
    code = main(["generate", "--out", str(tmp_path / "o.mid"), "--checkpoint", str(tmp_path / "none.pt"),
                 "--end-at-bar", "--time-signature", value])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "argument --time-signature" in error, error
    assert not list(tmp_path.iterdir())
