"""Accompaniment: the kept notes fed to the model at their own times, the new part in its own range, bad input
refused with what is wrong."""

import threading

import pytest

from music_transformer import Note, decode, events, load_checkpoint
from music_transformer.accompaniment import accompany, accompany_notes, accompany_variations
from music_transformer.events import quantize_notes, to_ticks

from .helpers import assert_valid_stream, small_model

# a melody from C5 up, one note sounding across the start (1 s), one long note held 5 s, loudness changing
MELODY = [Note(72, 90, 0.5, 1.5), Note(76, 60, 1.5, 2.0), Note(79, 100, 2.0, 2.25), Note(77, 100, 2.25, 7.5),
          Note(74, 40, 7.5, 8.0), Note(72, 90, 8.0, 8.75)]
BASS = range(21, 60)


def fed_tokens(model, run):
    """The tokens the model reads, in order (a forward hook sees each step)."""
    fed = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: fed.extend(args[0][0].tolist())
                                             if args else fed.extend(kwargs["tokens"][0].tolist()), with_kwargs=True)
    try:
        tokens = run()
    finally:
        handle.remove()
    return fed, tokens


def test_each_kept_note_is_fed_at_its_own_time_and_the_new_part_keeps_to_its_range():
    model = small_model()
    fed, tokens = fed_tokens(model, lambda: list(accompany(model, MELODY, BASS, 1.0, 9.0, seed=3,
                                                           max_note_seconds=2.0)))
    assert fed[:2] == events.header("any")
    heard = decode(fed[2:])  # from 0 s: the kept notes before the start, then the stream of both parts
    kept = [(note.pitch, to_ticks(note.start), to_ticks(note.end), events.velocity_to_bin(note.velocity))
            for note in heard if note.pitch >= 60]
    assert kept == [(pitch, start, end, events.velocity_to_bin(velocity))
                    for start, end, pitch, velocity in quantize_notes(MELODY)]
    assert_valid_stream(tokens)
    new = decode(tokens, 1.0)
    assert new, "the model wrote nothing"
    assert all(note.pitch in BASS and 1.0 - 1e-9 <= note.start < 9.0 and note.end <= 9.0 + 1e-9 for note in new)
    assert all(note.duration <= 2.0 + 1e-9 for note in new)  # the hold limit is the new part's; a kept note's is not
    # what the new part's own tokens say is what the model wrote: the stream's notes outside the melody's range
    # (those it ended before the last token fed; the closing note-offs are never fed)
    last = events.duration_seconds(fed[2:]) - 1e-9
    written = [(note.pitch, round(note.start, 2), round(note.end, 2), note.velocity) for note in heard
               if note.pitch < 60 and note.end < last]
    assert written and written == [(note.pitch, round(note.start, 2), round(note.end, 2), note.velocity)
                                   for note in new if note.end < last]


def test_a_model_taught_anticipation_hears_each_kept_note_announced_two_seconds_ahead_as_in_training():
    model = small_model()
    assert events.has_anticipation(model.config.vocab_size)
    fed, tokens = fed_tokens(model, lambda: list(accompany(model, MELODY, BASS, 1.0, 9.0, seed=3)))
    tick, announced = 0, []
    for token in fed[2:]:
        tick += events.shift_ticks(token)
        if events.is_anticipation(token):
            announced.append((token - events.ANTICIPATE_OFFSET, tick))
    # every kept note-on in the stream, announced ANTICIPATION_TICKS before (from 0 s at the earliest), once
    assert announced == [(pitch, max(0, start - events.ANTICIPATION_TICKS))
                         for start, _, pitch, _ in quantize_notes(MELODY)]
    assert not any(events.is_anticipation(token) for token in tokens)  # announcements are not the new part's
    older = small_model(vocab_size=events.ANTICIPATE_OFFSET)  # a model never taught them: nothing announced
    fed, _ = fed_tokens(older, lambda: list(accompany(older, MELODY, BASS, 1.0, 9.0, seed=3)))
    assert not any(events.is_anticipation(token) for token in fed)


def test_the_kept_notes_come_back_exactly_as_given_and_a_seed_repeats_the_new_part():
    model = small_model()
    melody = [Note(72, 90, 0.503, 1.4999), *MELODY[1:]]  # off the 10 ms grid: given back as it was
    kept, new = accompany_notes(model, melody, BASS, 0.0, 9.0, seed=5)
    assert kept == melody and all(a is b for a, b in zip(kept, melody, strict=True))
    assert new == accompany_notes(model, melody, BASS, 0.0, 9.0, seed=5)[1]
    assert new != accompany_notes(model, melody, BASS, 0.0, 9.0, seed=6)[1]


def test_variations_are_the_rows_of_one_batch_each_drawing_what_its_seed_draws_alone():
    model = small_model()
    rows = {}
    for row, token in accompany_variations(model, MELODY, BASS, 0.0, 6.0, seeds=[7, 8], temperature=0.9):
        rows.setdefault(row, []).append(token)
    for row, seed in enumerate((7, 8)):
        assert rows[row] == list(accompany(model, MELODY, BASS, 0.0, 6.0, seed=seed, temperature=0.9))


def test_cancel_stops_it_with_the_new_parts_notes_closed():
    model = small_model()
    cancel = threading.Event()
    tokens = []
    for token in accompany(model, MELODY, BASS, 0.0, 60.0, seed=1, cancel=cancel):
        tokens.append(token)
        if len(tokens) == 40:
            cancel.set()
    assert 40 <= len(tokens) < 80
    assert_valid_stream(tokens)


def test_a_key_lock_narrows_the_range_written_in():
    model = small_model()
    c_major = {pitch for pitch in range(128) if pitch % 12 in (0, 2, 4, 5, 7, 9, 11)}
    written = [note for seed in range(6)  # an untrained model: some seeds write nothing at all
               for note in accompany_notes(model, MELODY, BASS, 0.0, 9.0, seed=seed, temperature=1.5,
                                           allowed_pitches=c_major)[1]]
    assert written and all(note.pitch in BASS and note.pitch in c_major for note in written)


@pytest.mark.parametrize("change, message", [
    (dict(keep=[]), "no notes to keep"),
    (dict(keep="C4"), "keep must be a list of notes"),
    (dict(keep=[Note(72, 80, float("nan"), 1.0)]), "start must be a time in seconds, not nan"),
    (dict(keep=[Note(72, 80, 0.0, float("inf"))]), "end must be a time in seconds"),
    (dict(keep=[Note(72, 80, 2.0, 1.0)]), "times are out of order"),
    (dict(keep=[Note(72, 80, -1.0, 1.0)]), "starts before 0 s"),
    (dict(write_range=range(50, 80)), "ranges overlap: kept notes at C5, D5, E5, F5 and 1 more lie in the range"),
    (dict(write_range=[]), "range to write in is empty"),
    (dict(write_range=[200]), "MIDI pitches 0..127"),
    (dict(start=4.0, end=3.0), "times are out of order: the end"),
    (dict(start=float("nan")), "start must be a time"),
    (dict(start=20.0, end=30.0), "no kept note sounds between 20 s and 30 s"),
    (dict(temperature=-1.0), "temperature"),
    (dict(allowed_pitches=[72]), "no pitch of the key lock lies in the range"),
])
def test_bad_input_is_refused_when_called_saying_what_is_wrong(change, message):
    arguments = dict(keep=MELODY, write_range=BASS, start=0.0, end=9.0)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        accompany(small_model(), **arguments)


def test_the_bundled_model_writes_a_left_hand_under_a_melody_in_its_range():
    model = load_checkpoint(None)
    melody = [Note(pitch, 90, 0.5 * step, 0.5 * step + 0.45)
              for step, pitch in enumerate([72, 74, 76, 77, 79, 77, 76, 74, 72, 74, 76, 72, 79, 76, 72, 72])]
    kept, new = accompany_notes(model, melody, range(21, 60), 0.0, 8.0, seed=0, temperature=0.9)
    assert kept == melody
    # a left hand about as busy as a real one: 2 notes a second or more (30 here; waiting for the melody's next
    # event each time the model reached for a melody note gave 15, and 6 to 16 over five seeds)
    assert len(new) >= 16 and all(21 <= note.pitch < 60 for note in new)
    assert all(0.0 <= note.start < 8.0 and note.end <= 8.0 + 1e-9 for note in new)


def test_a_note_of_the_kept_part_the_model_draws_is_a_short_wait_ending_at_the_next_kept_event_at_latest():
    import numpy as np

    from music_transformer.accompaniment import KEPT_WAIT_TICKS, KeptPerformance

    writable = np.zeros(events.NUM_PITCHES, dtype=bool)
    writable[list(BASS)] = True
    kept = [(100, 1, 72, 20), (150, 0, 72, 0)]  # a kept C5 from 1 s to 1.5 s
    performance = KeptPerformance(events.VOCAB_SIZE, None, writable, kept)
    performance.start_continuation()
    mask = np.zeros(events.VOCAB_SIZE, dtype=np.float32)
    _, limit = performance.rules(None, 300, None, mask)
    assert limit == 100  # time may pass up to the kept note, no farther
    assert performance.drawn(events.note_on(76), limit) == events.time_shift(KEPT_WAIT_TICKS)  # the melody's E
    assert performance.drawn(events.note_on(48), limit) == events.note_on(48)  # its own notes are its own
    assert performance.drawn(events.time_shift(100), limit) == events.time_shift(100)
    performance.update(events.time_shift(98))
    _, limit = performance.rules(None, 202, None, mask)
    assert performance.drawn(events.note_on(76), limit) == events.time_shift(2)  # the kept note is 20 ms away


def test_at_an_instant_the_new_parts_notes_below_a_kept_note_come_before_it_as_encode_orders_them():
    """Fed first, a melody's note-on was followed by notes above it (as in training) and the new part climbed over
    the melody; now the new part's note-ons below a kept note-on at one instant come before it, none after."""
    model = small_model()
    for seed in range(4):
        fed, _ = fed_tokens(model, lambda seed=seed: list(accompany(model, MELODY, BASS, 0.0, 9.0, seed=seed,
                                                                    temperature=1.5)))
        kept_on_at_this_tick = None
        for token in fed[2:]:
            if events.is_time_shift(token):
                kept_on_at_this_tick = None
            elif events.is_note_on(token) and token >= 60:
                kept_on_at_this_tick = token
            elif events.is_note_on(token):
                assert kept_on_at_this_tick is None, "a note of the new part below a kept note, struck after it"


def test_the_benchmarks_measures_and_its_reading_of_pop909s_tracks(tmp_path):
    import pretty_midi

    from bench.accompany import agreement, at_once, pop909_parts, span_agreement

    kept = [Note(72, 80, 0.0, 1.0), Note(76, 80, 1.0, 2.0)]
    part = [Note(48, 80, 0.5, 1.5), Note(50, 80, 1.5, 2.5), Note(52, 80, 6.0, 7.0)]  # C and D near, E alone
    assert agreement(part, kept, 1.0) == 0.5  # the E has no kept note within 1 s: not counted
    assert agreement(part[2:], kept, 1.0) is None
    # over the span [0, 2): C sounds 1 s and E 1 s in both parts -> cosine 1
    assert span_agreement([Note(48, 80, 0.0, 1.0), Note(52, 80, 1.0, 2.0)], kept, 0.0, 2.0) == pytest.approx(1.0)
    assert span_agreement([Note(49, 80, 0.0, 2.0)], kept, 0.0, 2.0) == 0.0  # C sharp against C and E
    assert span_agreement([Note(48, 80, 0.0, 1.0), Note(50, 80, 1.0, 2.0)], kept, 0.0, 2.0) == pytest.approx(0.5)
    assert span_agreement([], kept, 0.0, 2.0) is None
    assert at_once([Note(48, 80, 0.0, 2.0), Note(52, 80, 1.0, 3.0)], 0.0, 4.0) == pytest.approx(4 / 3)
    assert at_once([], 0.0, 4.0) == 0.0
    midi = pretty_midi.PrettyMIDI()
    for name, pitch in (("MELODY", 72), ("BRIDGE", 67), ("PIANO", 48)):
        track = pretty_midi.Instrument(0, name=name)
        track.notes.append(pretty_midi.Note(90, pitch, 0.0, 1.0))
        midi.instruments.append(track)
    midi.write(str(tmp_path / "song.mid"))
    melody, other = pop909_parts(tmp_path / "song.mid")
    assert [note.pitch for note in melody] == [72] and sorted(note.pitch for note in other) == [48, 67]
