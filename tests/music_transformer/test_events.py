"""The performance-event codec: layout, canonical encoding and round trips (property tests)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from music_transformer import VOCAB_SIZE, Note, decode, encode, events
from music_transformer.events import (
    NOTE_OFF_OFFSET,
    NUM_EVENTS,
    TIME_SHIFT_OFFSET,
    VELOCITY_OFFSET,
    NoteDecoder,
    bin_to_velocity,
    time_shift,
    velocity_to_bin,
)

notes_strategy = st.lists(
    st.builds(lambda pitch, velocity, start, length: Note(pitch, velocity, start, start + length),
              st.integers(0, 127), st.integers(1, 127),
              st.floats(0, 30, allow_nan=False), st.floats(0, 5, allow_nan=False)),
    max_size=60)


def test_vocabulary_is_the_papers_then_the_old_control_tokens_then_styles_and_infilling():
    assert NUM_EVENTS == 388
    assert (NOTE_OFF_OFFSET, TIME_SHIFT_OFFSET, VELOCITY_OFFSET) == (128, 256, 356)
    assert (events.PAD, events.START, events.END) == (388, 389, 390)  # as in models made before styles
    assert events.LEGACY_VOCAB_SIZE == 391
    # The model v2's five styles, then the fill markers; "classical" came after them, at the next free number
    assert [events.style_token(style) for style in events.STYLES] == [391, 392, 393, 394, 395, 399]
    assert (events.SUFFIX, events.PREFIX, events.MIDDLE, events.STYLES_VOCAB_SIZE) == (396, 397, 398, 399)
    # then one ANTICIPATE token a pitch (accompaniment: a kept note announced ahead)
    assert (events.ANTICIPATE_OFFSET, events.anticipate(0), events.anticipate(127), VOCAB_SIZE) == (400, 400, 527, 528)
    assert time_shift(1) == 256 and time_shift(100) == 355
    assert [events.token_name(t) for t in (392, 396, 398, 399, 460)] == \
        ["STYLE(pop-piano)", "SUFFIX", "MIDDLE", "STYLE(classical)", "ANTICIPATE(60)"]
    assert events.SPECIAL_TOKENS == tuple(range(388, 528))
    assert [events.has_anticipation(size) for size in (399, 400, 528)] == [False, False, True]


def test_a_kept_part_is_announced_two_seconds_ahead_of_each_of_its_notes():
    melody = [Note(72, 80, 0.5, 1.0), Note(74, 80, 3.0, 4.0)]
    bass = [Note(48, 60, 0.0, 4.0)]
    tokens = events.encode(melody + bass, kept=lambda pitch, start: pitch >= 60)
    assert events.ANTICIPATION_TICKS == 200
    loud, soft = (f"VELOCITY({events.velocity_to_bin(v)})" for v in (80, 60))
    # 72 begins at 0.5 s: announced at 0 s (no earlier), first of that instant; 74 begins at 3 s: announced at
    # 1 s, before 72's note-off there, and the wait from 1 s to 3 s goes on after it
    assert [events.token_name(t) for t in tokens] == [
        "ANTICIPATE(72)", soft, "NOTE_ON(48)", "TIME_SHIFT(500ms)", loud, "NOTE_ON(72)", "TIME_SHIFT(500ms)",
        "ANTICIPATE(74)", "NOTE_OFF(72)", "TIME_SHIFT(1000ms)", "TIME_SHIFT(1000ms)", "NOTE_ON(74)",
        "TIME_SHIFT(1000ms)", "NOTE_OFF(48)", "NOTE_OFF(74)"]
    assert events.decode(tokens) == events.decode(events.encode(melody + bass))  # the same notes
    assert not any(map(events.is_anticipation, events.encode(melody + bass)))  # nothing announced unless asked
    crossing = events.encode([Note(72, 80, 0.0, 0.1), Note(74, 80, 2.5, 2.6)], kept=lambda pitch, start: True)
    assert [events.token_name(t) for t in crossing][3:7] == [  # a wait across an announcement is split there
        "TIME_SHIFT(100ms)", "NOTE_OFF(72)", "TIME_SHIFT(400ms)", "ANTICIPATE(74)"]


def test_a_model_knows_the_styles_its_vocabulary_holds():
    assert events.known_styles(events.LEGACY_VOCAB_SIZE) == ()
    assert events.known_styles(399) == ("any", "pop-piano", "chorale", "renaissance", "folk")
    assert events.known_styles(VOCAB_SIZE) == events.STYLES
    with pytest.raises(ValueError, match="made before the style 'classical'"):
        events.header("classical", 399)
    assert events.header("folk", 399) == [events.START, 395]


def test_the_header_names_the_style_only_for_models_that_know_styles():
    assert events.header("folk") == [events.START, events.style_token("folk")]
    assert events.header(None) == [events.START, events.style_token("any")]
    assert events.header("folk", events.LEGACY_VOCAB_SIZE) == [events.START]
    with pytest.raises(ValueError, match="unknown style"):
        events.style_token("jazz")


@given(notes_strategy, st.integers(0, 4000))
@settings(max_examples=150, deadline=None)
def test_split_at_cuts_a_sequence_at_a_time_and_loses_nothing(notes, tick):
    tokens = encode(notes)
    before, after = events.split_at(tokens, tick)
    assert sum(events.shift_ticks(t) for t in before) == tick  # the first part ends exactly at the cut
    total = sum(events.shift_ticks(t) for t in tokens)
    assert sum(events.shift_ticks(t) for t in after) == max(0, total - tick)
    assert [t for t in before + after if not events.is_time_shift(t)] == \
        [t for t in tokens if not events.is_time_shift(t)]
    assert decode(before + after) == decode(tokens + events.shift_tokens(max(0, tick - total)))
    if after and not events.is_time_shift(after[0]):
        assert total >= tick  # an event at the cut itself opens the second part


def test_split_at_puts_events_at_the_cut_after_it():
    tokens = encode([Note(60, 80, 0.0, 1.0), Note(62, 80, 1.0, 2.0)])
    before, after = events.split_at(tokens, 100)
    assert [events.token_name(t) for t in before] == ["VELOCITY(19)", "NOTE_ON(60)", "TIME_SHIFT(1000ms)"]
    assert [events.token_name(t) for t in after][:2] == ["NOTE_OFF(60)", "NOTE_ON(62)"]


def test_fim_context_lays_out_suffix_prefix_middle_with_the_gap_length():
    context = events.fim_context("pop-piano", 250, [7], [8, 9])
    assert [events.token_name(t) for t in context] == [
        "START", "STYLE(pop-piano)", "TIME_SHIFT(1000ms)", "TIME_SHIFT(1000ms)", "TIME_SHIFT(500ms)",
        "SUFFIX", "NOTE_ON(7)", "PREFIX", "NOTE_ON(8)", "NOTE_ON(9)", "MIDDLE"]


def test_closing_offs_close_what_began_and_still_sounds_earliest_first():
    tokens = [events.note_on(64), time_shift(5), events.note_on(60), events.note_on(67), time_shift(5),
              events.note_off(60), events.note_off(50)]
    assert events.closing_offs(tokens) == [events.note_off(64), events.note_off(67)]


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
    for original, back in zip(notes, decoded, strict=True):
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
    decoder = NoteDecoder(time_offset=10.0)
    streamed = [n for t in tokens for n in decoder.feed(t)] + decoder.finish()
    expected = decode(tokens)
    assert sorted((n.pitch, round(n.start - 10.0, 6), round(n.end - 10.0, 6)) for n in streamed) == \
        sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for n in expected)
