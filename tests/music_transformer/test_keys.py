"""Keys: the Krumhansl-Schmuckler key finder and the pitches a key and a range allow."""

import pytest

from music_transformer import Note
from music_transformer.keys import PIANO_RANGE, Key, allowed_pitches, detect_key, key_scores, parse_key


def scale_run(tonic_pitch, steps, length=0.5):
    return [Note(tonic_pitch + step, 80, k * length, (k + 1) * length) for k, step in enumerate(steps)]


MAJOR = [0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0]
HARMONIC_MINOR = [0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0]


@pytest.mark.parametrize("tonic", range(12))
def test_a_cadential_scale_is_found_in_its_key_in_every_transposition(tonic):
    assert detect_key(scale_run(60 + tonic, MAJOR)) == Key(tonic, "major")
    assert detect_key(scale_run(57 + tonic, HARMONIC_MINOR)) == Key((9 + tonic) % 12, "minor")


def test_held_notes_weigh_more_than_passing_ones():
    # An A minor triad held long, with a quick C major scale over it: A minor.
    notes = [Note(57, 80, 0.0, 8.0), Note(60, 80, 0.0, 8.0), Note(64, 80, 0.0, 8.0)]
    notes += scale_run(72, MAJOR, length=0.05)
    assert detect_key(notes).name == "A minor"
    assert key_scores(notes)[0][0] > key_scores(notes)[1][0]


def test_no_notes_no_key():
    assert detect_key([]) is None


def test_allowed_pitches_keep_to_the_scale_and_the_range():
    pitches = allowed_pitches(Key(2, "major"), *PIANO_RANGE)  # D major on the 88 keys
    assert min(pitches) == 21 and max(pitches) == 107  # A0 is in D major; C8 is not, B7 is the top
    assert {p % 12 for p in pitches} == {2, 4, 6, 7, 9, 11, 1}
    assert allowed_pitches(None, 60, 64) == {60, 61, 62, 63, 64}
    pentatonic = [p for p in range(128) if p % 12 in (0, 3, 5, 7, 10)]
    assert len(allowed_pitches(Key(0, "minor pentatonic"))) == len(pentatonic)
    with pytest.raises(ValueError):
        allowed_pitches(None, 70, 60)
    with pytest.raises(ValueError, match="unknown scale"):
        Key(0, "lydian dominant")


def test_keys_are_read_from_their_names():
    assert parse_key("D minor") == Key(2, "minor")
    assert parse_key("eb Major") == Key(3, "major")
    assert parse_key("F#  harmonic   minor") == Key(6, "harmonic minor")
    assert parse_key("Cb") == Key(11, "major")
    assert parse_key(Key(9, "dorian").name) == Key(9, "dorian")
    for bad in ("H major", "", "C# lydian dominant", "5 minor"):
        with pytest.raises(ValueError):
            parse_key(bad)


def test_pitch_names_and_ranges_read_as_the_studio_shows_them():
    from music_transformer.keys import parse_pitch, parse_pitch_range, pitch_name

    assert [parse_pitch(text) for text in ("C4", "c4", "A0", "C8", "Bb3", "A#0", "60", " G9 ")] == \
        [60, 60, 21, 108, 58, 22, 60, 127]
    assert all(parse_pitch(pitch_name(pitch)) == pitch for pitch in range(128))
    assert parse_pitch("H4") is None and parse_pitch("200") is None and parse_pitch("G#9") is None
    assert parse_pitch_range("C4:C8") == (60, 108) and parse_pitch_range("21:B3") == (21, 59)
    for bad, said in (("C4-C8", "colon"), ("C8:C4", "low to high"), ("C4:", "colon"), ("X1:C4", "colon")):
        with pytest.raises(ValueError, match=said):
            parse_pitch_range(bad)
