"""The performance-event codec: layout, canonical encoding and round trips (property tests)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from music_transformer import VOCAB_SIZE, Note, decode, encode
from music_transformer import events
from music_transformer.events import (NOTE_OFF_OFFSET, NUM_EVENTS, TIME_SHIFT_OFFSET, VELOCITY_OFFSET,
                                      Decoder, bin_to_velocity, time_shift, velocity_to_bin)

notes_strategy = st.lists(
    st.builds(lambda pitch, velocity, start, length: Note(pitch, velocity, start, start + length),
              st.integers(0, 127), st.integers(1, 127),
              st.floats(0, 30, allow_nan=False), st.floats(0, 5, allow_nan=False)),
    max_size=60)


def test_vocabulary_is_the_papers_plus_three_special_tokens():
    assert NUM_EVENTS == 388
    assert (NOTE_OFF_OFFSET, TIME_SHIFT_OFFSET, VELOCITY_OFFSET) == (128, 256, 356)
    assert VOCAB_SIZE == 391
    assert time_shift(1) == 256 and time_shift(100) == 355


def test_velocity_bins_hold_four_velocities_each():
    assert [velocity_to_bin(v) for v in (1, 4, 5, 127)] == [0, 0, 1, 31]
    for velocity in range(1, 128):
        assert abs(bin_to_velocity(velocity_to_bin(velocity)) - velocity) <= 3


def test_encode_a_small_phrase():
    tokens = encode([Note(60, 100, 0.0, 0.5), Note(64, 100, 0.5, 1.75)])
    names = [events.token_name(t) for t in tokens]
    assert names == ["VELOCITY(24)", "NOTE_ON(60)", "TIME_SHIFT(500ms)", "NOTE_OFF(60)", "NOTE_ON(64)",
                     "TIME_SHIFT(1000ms)", "TIME_SHIFT(250ms)", "NOTE_OFF(64)"]


def test_a_long_rest_is_several_shifts_and_time_does_not_drift():
    notes = [Note(60, 80, 0.0, 0.013), Note(62, 80, 3.337, 3.341), Note(64, 80, 1000.004, 1000.5)]
    decoded = decode(encode(notes))
    for original, back in zip(notes, decoded):
        assert abs(back.start - original.start) <= 0.005 + 1e-9


def test_overlapping_strikes_on_one_pitch_end_the_earlier_note():
    decoded = decode(encode([Note(60, 90, 0.0, 2.0), Note(60, 70, 0.5, 1.0)]))
    assert [(n.start, n.end) for n in decoded] == [(0.0, 0.5), (0.5, 1.0)]


def test_zero_length_notes_last_one_tick():
    decoded = decode(encode([Note(60, 90, 1.0, 1.0)]))
    assert len(decoded) == 1 and abs(decoded[0].end - 1.01) < 1e-9


@settings(max_examples=300, deadline=None)
@given(notes_strategy)
def test_notes_survive_the_round_trip(notes):
    decoded = decode(encode(notes))
    # every pitch that was played is played; onsets/offsets within 10 ms; velocity within one bin
    assert {n.pitch for n in decoded} == {n.pitch for n in notes}
    for note in decoded:
        matches = [o for o in notes if o.pitch == note.pitch and abs(o.start - note.start) <= 0.01 + 1e-9]
        assert matches, f"{note} has no source note"
        assert any(velocity_to_bin(o.velocity) == velocity_to_bin(note.velocity) for o in matches)
    # notes that nothing overlaps keep their exact length to the 10 ms grid
    for original in notes:
        same_pitch = [o for o in notes if o.pitch == original.pitch and o is not original]
        if all(o.end + 0.02 < original.start or o.start > original.end + 0.02 for o in same_pitch):
            back = [n for n in decoded if n.pitch == original.pitch and abs(n.start - original.start) <= 0.01]
            assert len(back) == 1
            assert abs(back[0].end - original.end) <= 0.01 + 1e-9 or original.end - original.start < 0.01


@settings(max_examples=300, deadline=None)
@given(notes_strategy)
def test_canonical_token_sequences_survive_decode_then_encode(notes):
    tokens = encode(notes)
    assert encode(decode(tokens)) == tokens


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, VOCAB_SIZE - 1), max_size=300))
def test_any_token_sequence_decodes_to_valid_notes(tokens):
    notes = decode(tokens)
    for note in notes:
        assert 0 <= note.pitch < 128 and 1 <= note.velocity <= 127
        assert note.end > note.start >= 0
    encode(notes)  # and encodes again without complaint


def test_streaming_decoder_matches_decode_and_honours_an_offset():
    tokens = encode([Note(60, 100, 0.0, 0.5), Note(67, 50, 0.2, 0.9), Note(64, 100, 0.5, 1.75)])
    decoder = Decoder(time_offset=10.0)
    streamed = [n for t in tokens for n in decoder.feed(t)] + decoder.finish()
    expected = decode(tokens)
    assert sorted((n.pitch, round(n.start - 10.0, 6), round(n.end - 10.0, 6)) for n in streamed) == \
        sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for n in expected)
