"""Streaming generation: sampling controls, stopping, validity, and decoding far past the training length."""

import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from music_transformer import (
    VOCAB_SIZE,
    Note,
    continuation_notes,
    decode,
    encode,
    events,
    generate,
    generate_variations,
    infill,
    infilling,
    limits,
    load_checkpoint,
    primer_tokens,
)
from music_transformer.events import (
    NOTE_OFF_OFFSET,
    START,
    duration_seconds,
    is_note_off,
    is_note_on,
    is_time_shift,
    is_velocity,
    shift_ticks,
    shift_tokens,
    time_shift,
)
from music_transformer.midi import read_midi
from music_transformer.sampling import Sampler, Sampling, filter_logits, peak_waits
from music_transformer.stream_cache import StreamCache

from .helpers import PRIMER, assert_valid_stream, small_model


def test_tokens_stream_one_at_a_time():
    model = small_model()
    stream = generate(model, PRIMER, max_tokens=5, seed=0)
    first = next(stream)
    assert isinstance(first, int)
    assert len([first, *stream]) == 5


def test_a_seed_repeats_a_run_exactly_and_another_seed_differs():
    model = small_model()
    runs = [list(generate(model, PRIMER, max_tokens=80, seed=seed)) for seed in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_temperature_zero_is_greedy_and_deterministic_without_a_seed():
    model = small_model()
    assert list(generate(model, PRIMER, max_tokens=30, temperature=0)) == \
        list(generate(model, PRIMER, max_tokens=30, temperature=0))


def test_top_k_ranks_the_whole_vocabulary():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [True, True, False, False, False]


KINDS = [
    (events.NOTE_ON_OFFSET, events.NOTE_OFF_OFFSET),
    (events.NOTE_OFF_OFFSET, events.TIME_SHIFT_OFFSET),
    (events.TIME_SHIFT_OFFSET, events.VELOCITY_OFFSET),
    (events.VELOCITY_OFFSET, events.NUM_EVENTS),
    (events.NUM_EVENTS, events.VOCAB_SIZE),
]
NARROWED = (0, 1, 3)  # note-ons, note-offs, velocities


def test_top_p_narrows_the_pitches_but_keeps_the_chance_of_waiting():
    logits = torch.full((events.VOCAB_SIZE,), float("-inf"))
    logits[events.note_on(60)], logits[events.note_on(64)], logits[events.note_on(61)] = 0.0, -1.0, -4.0
    waits = [events.time_shift(ticks) for ticks in (10, 50, 100)]
    logits[waits] = torch.tensor([1.0, -2.0, -3.0])  # the long waits are each unlikely
    before = torch.softmax(logits, -1)
    after = torch.softmax(filter_logits(logits, top_p=0.9), -1)
    # among the note-ons: 60 and 64 hold 0.73 and 0.27 of the note-ons' chance, 61 0.013: 61 goes
    assert after[events.note_on(61)] == 0 and after[events.note_on(60)] > before[events.note_on(60)]
    strike = slice(events.NOTE_ON_OFFSET, events.NOTE_OFF_OFFSET)
    torch.testing.assert_close(after[strike].sum(), before[strike].sum())
    torch.testing.assert_close(after[waits], before[waits])  # every wait, the long ones too
    # a nucleus over the whole vocabulary would have dropped the 1 s wait (0.9 of the mass comes first)
    assert before[waits[2]] < 0.1 and after[waits[2]] > 0


def _reference_nucleus(probabilities, top_p):
    """The indices of the smallest set of the most likely that holds top_p of the probability, by sorting."""
    values, order = torch.sort(probabilities, descending=True)
    kept = (torch.cumsum(values, 0) - values) < top_p
    return set(order[kept & (values > 0)].tolist())


def _is_the_nucleus(kept, probabilities, top_p):
    """Whether `kept` is the reference nucleus, up to ties: two tokens whose probabilities agree to float32
    rounding may rank either way round, so one can stand in for the other at the nucleus's edge."""
    differ = kept ^ _reference_nucleus(probabilities, top_p)
    return all(any(abs(probabilities[a] - probabilities[b]) <= 1e-5 * probabilities[a] for b in differ - {a})
               for a in differ)


@hypothesis_settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), top_p=st.floats(0.01, 0.999), blocked=st.floats(0.0, 0.95),
       rows=st.integers(1, 3), scale=st.floats(0.1, 8.0))
def test_top_p_keeps_each_kinds_nucleus_and_each_kinds_probability(seed, top_p, blocked, rows, scale):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, events.VOCAB_SIZE, generator=generator, dtype=torch.float64).float() * scale
    logits[torch.rand(rows, events.VOCAB_SIZE, generator=generator) < blocked] = float("-inf")
    logits[0, events.NOTE_OFF_OFFSET:events.TIME_SHIFT_OFFSET] = float("-inf")  # a kind the rules block whole
    filtered = filter_logits(logits, top_p=top_p)
    assert not torch.isnan(filtered).any()
    before, after = torch.softmax(logits, -1), torch.softmax(filtered, -1)
    for row in range(rows):
        for index, (start, end) in enumerate(KINDS):
            old, new = before[row, start:end], after[row, start:end]
            torch.testing.assert_close(new.sum(), old.sum(), atol=1e-5, rtol=1e-4)  # the kind's chance stays
            if old.sum() == 0:
                assert (new == 0).all()
            elif index in NARROWED:
                kept = set(torch.nonzero(new > 0).flatten().tolist())
                assert _is_the_nucleus(kept, old / old.sum(), top_p), (kept, _reference_nucleus(old / old.sum(), top_p))
            else:
                torch.testing.assert_close(new, old, atol=1e-6, rtol=1e-4)  # time shifts untouched


def test_top_k_one_always_picks_the_most_likely_allowed_token():
    model = small_model()
    assert list(generate(model, PRIMER, max_tokens=40, top_k=1, seed=1)) == \
        list(generate(model, PRIMER, max_tokens=40, temperature=0))


def test_stops_after_the_requested_seconds_with_every_note_closed():
    model = small_model()
    tokens = list(generate(model, PRIMER, seconds=6.0, seed=3))
    assert duration_seconds(tokens) == pytest.approx(6.0)
    assert_valid_stream(tokens)


def test_stops_after_the_requested_tokens_with_every_note_closed():
    model = small_model()
    for seed in range(5):
        tokens = list(generate(model, PRIMER, max_tokens=50, seed=seed))
        assert len(tokens) <= 50
        assert_valid_stream(tokens)


def test_cancel_is_checked_every_token():
    model = small_model()
    cancel = threading.Event()
    tokens = []
    for token in generate(model, PRIMER, seed=4, cancel=cancel):
        tokens.append(token)
        if len(tokens) == 25:
            cancel.set()
    assert 25 <= len(tokens) <= 26 + 128  # then only the closing: a 10 ms shift if a note just began, note-offs
    closing = tokens[25:]
    if closing and is_time_shift(closing[0]):
        assert closing[0] == time_shift(1)
        closing = closing[1:]
    assert all(is_note_off(t) for t in closing)
    assert_valid_stream(tokens)
    calls = []
    assert list(generate(model, PRIMER, seed=4, cancel=lambda: calls.append(1) or len(calls) > 3))
    assert len(calls) >= 4


def test_no_note_is_held_longer_than_the_limit():
    model = small_model()
    notes = decode(list(generate(model, PRIMER, seconds=30, seed=5, max_note_seconds=1.0)))
    assert max(n.end - n.start for n in notes) <= 1.0 + 1e-6


def test_primer_can_be_notes_and_can_end_in_silence():
    model = small_model()
    notes = [Note(60, 80, 0.0, 0.5)]
    assert list(generate(model, notes, max_tokens=20, seed=2)) == \
        list(generate(model, encode(notes), max_tokens=20, seed=2))
    assert duration_seconds(primer_tokens(notes, until=2.0)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="vocabulary"):
        next(generate(model, [10_000], max_tokens=3))


def test_runs_eight_times_past_the_training_length_on_a_bounded_cache():
    window = 64
    model = small_model(train_length=window, max_relative_distance=window)
    keys_seen = []  # keys each new token attends to, and the positions the cache holds
    model.blocks[0].attention.register_forward_hook(
        lambda module, args, output: keys_seen.append(len(args[1])))
    tokens = list(generate(model, PRIMER, max_tokens=16 * window, seed=6))
    assert len(tokens) == 16 * window
    steps = keys_seen[1:]  # after the primer, one call per token
    assert len(steps) >= 16 * window - 129
    # storage is bounded by twice the window (a buffer shifted down once per window), whatever the length,
    # and each new token attends to the last `window` positions only: the work per token stays flat
    assert max(steps) <= 2 * window
    assert steps.count(max(steps)) >= 10  # it keeps coming back to the same size: no growth
    notes = decode(tokens)
    assert notes and all(n.end > n.start for n in notes)
    assert_valid_stream(tokens)
    assert sum(1 for t in tokens if is_time_shift(t)) > 0


def _log_probability(model, primer, tokens):
    context = torch.tensor([events.header(None) + list(primer) + list(tokens)])
    with torch.no_grad():
        log_probabilities = torch.log_softmax(model(context)[0, :-1].float(), -1)
    targets = context[0, 1:]
    return float(log_probabilities[torch.arange(len(targets)), targets][len(primer):].sum())


def test_beam_search_finds_a_likelier_continuation_than_greedy_and_stays_valid():
    model = small_model()
    greedy = list(generate(model, PRIMER, max_tokens=40, temperature=0, max_note_seconds=None))
    beam = list(generate(model, PRIMER, max_tokens=40, beam_size=4, max_note_seconds=None))
    assert len(beam) <= 40
    assert_valid_stream(beam)
    assert _log_probability(model, PRIMER, beam) >= _log_probability(model, PRIMER, greedy) - 1e-4
    assert beam == list(generate(model, PRIMER, max_tokens=40, beam_size=4, max_note_seconds=None))


def test_beam_search_stops_at_the_requested_seconds_and_can_be_cancelled():
    model = small_model()
    tokens = list(generate(model, PRIMER, seconds=3.0, beam_size=3))
    assert duration_seconds(tokens) == pytest.approx(3.0)
    assert_valid_stream(tokens)
    cancel = threading.Event()
    cancel.set()
    assert all(is_note_off(t) for t in generate(model, PRIMER, seconds=3.0, beam_size=3, cancel=cancel))


def test_decoding_on_the_cpu_uses_the_requested_threads_and_puts_the_setting_back():
    model = small_model()
    before = torch.get_num_threads()
    seen = []
    model.blocks[0].register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    list(generate(model, PRIMER, max_tokens=5, seed=1, cpu_threads=1))
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def _first_context(model, stream):
    """The tokens the model read before the first new token of `stream`."""
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0][0].tolist()),
                                             with_kwargs=True)
    next(stream)
    handle.remove()
    return seen[0]


def test_the_style_token_follows_start_and_any_is_the_default():
    model = small_model()
    assert _first_context(model, generate(model, PRIMER, max_tokens=5, style="folk")) == \
        [START, events.style_token("folk")] + PRIMER
    assert list(generate(model, PRIMER, max_tokens=20, seed=3)) == \
        list(generate(model, PRIMER, max_tokens=20, seed=3, style="any"))


def test_a_model_made_before_styles_reads_start_and_the_primer_only():
    model = small_model(vocab_size=events.LEGACY_VOCAB_SIZE)
    assert _first_context(model, generate(model, PRIMER, max_tokens=5, style="folk")) == [START] + PRIMER
    assert all(t < events.NUM_EVENTS for t in generate(model, PRIMER, max_tokens=60, seed=1))


@pytest.mark.parametrize("bad", [dict(temperature=float("nan")), dict(temperature=-1), dict(top_k=-1),
                                 dict(top_p=0.0), dict(top_p=1.5), dict(window=-1), dict(window=0),
                                 dict(max_tokens=-2), dict(seconds=float("inf")), dict(seconds=-5),
                                 dict(cpu_threads=-1), dict(seed=-3), dict(style="jazz"), dict(beam_size=0),
                                 dict(max_note_seconds=0.0)])
def test_bad_arguments_are_refused_when_called_not_at_the_first_token(bad):
    with pytest.raises(ValueError):
        generate(small_model(), PRIMER, **bad)


def test_top_k_reaches_every_event_a_model_may_draw():
    # the control tokens (styles, fill markers, announcements) are never drawn: 400 covers the 388 events
    assert events.NUM_EVENTS <= limits.MAX_TOP_K == 400 < VOCAB_SIZE


# (argument, just inside its bound, just outside it, the bound's words in the error)
BOUNDS = [("temperature", limits.MIN_TEMPERATURE, -1e-6, "from 0 to 10"),
          ("temperature", limits.MAX_TEMPERATURE, limits.MAX_TEMPERATURE + 1e-6, "from 0 to 10"),
          ("top_k", limits.MIN_TOP_K, -1, "from 0 to 400"), ("top_k", limits.MAX_TOP_K, limits.MAX_TOP_K + 1, "to 400"),
          ("top_p", 1e-6, limits.MIN_TOP_P, "more than 0 and at most 1"),
          ("top_p", limits.MAX_TOP_P, limits.MAX_TOP_P + 1e-6, "more than 0 and at most 1"),
          ("window", limits.MIN_WINDOW, limits.MIN_WINDOW - 1, "from 1 to 65,536"),
          ("window", limits.MAX_WINDOW, limits.MAX_WINDOW + 1, "from 1 to 65,536")]


@pytest.mark.parametrize("name,inside,outside,bound", BOUNDS)
def test_the_sampling_bounds_of_limits_hold_for_generate_variations_and_infill(name, inside, outside, bound):
    """Just inside a bound is accepted (and writes music), just outside is refused when called, naming the bound."""
    model = small_model()
    calls = [lambda **setting: generate(model, PRIMER, max_tokens=6, seed=1, **setting),
             lambda **setting: generate_variations(model, PRIMER, seeds=[1, 2], max_tokens=6, **setting),
             lambda **setting: infill(model, BEFORE, AFTER, 2.0, 2.5, seed=1, **setting)]
    for call in calls:
        stream = call(**{name: inside})
        if name != "window":  # a window of one position, or of 65,536, is accepted; writing with it is not the point
            assert list(stream)
        with pytest.raises(ValueError, match=f"{name} must be .*{bound}"):
            call(**{name: outside})


def test_variations_are_at_most_limits_max_variations():
    model = small_model()
    seeds = list(range(limits.MAX_VARIATIONS))
    assert {variation for variation, _ in generate_variations(model, PRIMER, seeds=seeds, max_tokens=3)} == \
        set(seeds)
    with pytest.raises(ValueError, match=f"1 to {limits.MAX_VARIATIONS} seeds"):
        generate_variations(model, PRIMER, seeds=[*seeds, 99], max_tokens=3)


BEFORE = [Note(60, 90, 0.0, 1.0), Note(64, 70, 0.5, 1.0), Note(48, 60, 0.5, 3.2), Note(55, 80, 1.5, 2.6)]
AFTER = [Note(62, 80, 4.0, 4.5), Note(65, 85, 4.5, 5.0)]


def test_infill_reads_suffix_then_prefix_and_writes_only_inside_the_gap():
    model = small_model()
    start, end = 2.0, 4.0
    context = _first_context(model, infill(model, BEFORE, AFTER, start, end, seed=0))
    suffix = encode([Note(n.pitch, n.velocity, n.start - end, n.end - end) for n in AFTER])
    prefix, _ = events.split_at(encode(BEFORE), 200)
    assert context == events.fim_context("any", 200, suffix, prefix)
    for seed in range(6):
        tokens = list(infill(model, BEFORE, AFTER, start, end, seed=seed, temperature=1.2))
        assert duration_seconds(tokens) == pytest.approx(end - start)  # exactly the gap, never past it
        notes = continuation_notes(tokens, start=start)
        assert all(start - 1e-9 <= n.start < end and n.end <= end + 1e-9 for n in notes)
        assert events.closing_offs(tokens) == []  # every note begun in the gap is closed in it


def test_infill_ends_the_notes_sounding_into_the_gap_when_they_are_due_and_never_restrikes_them():
    model = small_model()
    for seed in range(6):
        tokens = list(infill(model, BEFORE, AFTER, 2.0, 4.0, seed=seed, temperature=1.5))
        offs, now, struck_48 = [], 0, []
        for token in tokens:
            now += events.shift_ticks(token)
            if token in (events.note_off(48), events.note_off(55)) \
                    and events.note_on(token - events.NOTE_OFF_OFFSET) not in {struck for struck, _ in struck_48}:
                offs.append((token - events.NOTE_OFF_OFFSET, now))  # the held note's, not a new one's
            if token == events.note_on(48) or token == events.note_on(55):
                struck_48.append((token, now))
        assert sorted(offs) == [(48, 120), (55, 60)]  # 3.2 s and 2.6 s, from the gap's start at 2.0 s
        assert all(now >= 120 if token == events.note_on(48) else now >= 60 for token, now in struck_48)


def test_infill_releases_its_notes_before_the_gap_ends_unless_the_music_after_strikes_them_there():
    model = small_model()
    start, end = 2.0, 4.0  # AFTER strikes 62 right at the gap's end: a note of 62 may last up to it
    for seed in range(8):
        tokens = list(infill(model, BEFORE, AFTER, start, end, seed=seed, temperature=1.5))
        fill = continuation_notes(tokens, start=start)
        assert duration_seconds(tokens) == pytest.approx(end - start)
        assert all(n.end < end - 1e-9 or n.pitch == 62 for n in fill), "a note cut off at the gap's end"
        # no note begins too late to last 50 ms before it must end: no stub at the end
        assert all(n.start <= end - 0.06 + 1e-9 or (n.pitch == 62 and n.start <= end - 0.05 + 1e-9) for n in fill)
    chord = [Note(pitch, 80, end, end + 0.5) for pitch in range(24, 104)]  # the music after strikes all these
    handed = []
    for seed in range(6):
        fill = continuation_notes(list(infill(model, BEFORE, chord, start, end, seed=seed, temperature=1.5)), start)
        handed += [n for n in fill if n.end > end - 1e-9]
    assert handed and all(24 <= n.pitch < 104 for n in handed), "no note handed over to the music after the gap"


def test_infill_keeps_the_loudness_of_the_music_around_the_gap():
    model = small_model()
    before = [Note(60 + i % 5, 30 + i % 3 * 4, 0.25 * i, 0.25 * i + 0.2) for i in range(20)]  # 30..38, to 5 s
    after = [Note(62, 34, 7.0, 7.5), Note(64, 38, 7.5, 8.0)]
    low, high = infilling.loudness_around(before, after, 5.0, 7.0)
    assert (events.bin_to_velocity(low), events.bin_to_velocity(high)) == (30, 38)
    velocities = []
    for seed in range(40):  # a random model at a high temperature writes every velocity, but not here
        tokens = list(infill(model, before, after, 5.0, 7.0, seed=seed, temperature=1.5))
        velocities += [token - events.VELOCITY_OFFSET for token in tokens if events.is_velocity(token)]
        if len(velocities) >= 5:
            break
    assert len(velocities) >= 5 and all(low <= velocity <= high for velocity in velocities)
    assert infilling.loudness_around([], [], 5.0, 7.0) is None


def test_infill_with_the_bundled_model_joins_a_piano_piece_without_cutting_its_notes():
    model = load_checkpoint(None)
    piece = read_midi(Path(__file__).resolve().parents[2] / "assets" / "examples" / "motif.mid")
    length = max(n.end for n in piece)
    start, end = round(length / 2 - 1, 2), round(length / 2 + 1, 2)
    before = [n for n in piece if n.start < start]
    after = [n for n in piece if n.start >= end]
    struck = {n.pitch for n in after if events.to_ticks(n.start) == events.to_ticks(end)}
    for seed in range(4):
        fill = continuation_notes(list(infill(model, before, after, start, end, seed=seed)), start=start)
        assert fill
        assert all(n.end < end - 1e-9 or n.pitch in struck for n in fill), "a note cut off at the gap's end"
        assert all(n.start <= end - 0.06 + 1e-9 for n in fill if n.pitch not in struck)  # no stub at the end


def test_infill_refuses_what_it_cannot_do():
    model = small_model()
    with pytest.raises(ValueError, match="end at least 10 ms after it starts"):
        infill(model, BEFORE, AFTER, 3.0, 3.0)
    with pytest.raises(ValueError, match="start"):
        infill(model, BEFORE, AFTER, float("nan"), 3.0)
    with pytest.raises(ValueError, match="temperature"):
        infill(model, BEFORE, AFTER, 2.0, 3.0, temperature=float("inf"))
    with pytest.raises(ValueError, match="cannot fill gaps"):
        infill(small_model(vocab_size=events.LEGACY_VOCAB_SIZE), BEFORE, AFTER, 2.0, 3.0)


def test_variations_are_valid_music_each_and_the_same_seeds_repeat_them():
    model = small_model()
    runs = []
    for _ in range(2):
        written = {}
        for variation, token in generate_variations(model, PRIMER, seeds=[3, 1, 4], max_tokens=60):
            written.setdefault(variation, []).append(token)
        runs.append(written)
    assert runs[0] == runs[1] and sorted(runs[0]) == [0, 1, 2]
    for tokens in runs[0].values():
        assert 0 < len(tokens) <= 60
        assert_valid_stream(tokens)
    assert len({tuple(tokens) for tokens in runs[0].values()}) == 3


def test_a_variation_draws_what_a_single_stream_with_its_seed_draws():
    # Its logits are the single stream's to float rounding and its noise the same seed's: here, with no near
    # tie, the same music (not guaranteed: see generate_variations).
    model = small_model()
    for settings in (dict(temperature=0), dict(top_p=0.9), dict(top_k=20, temperature=1.3)):
        batch = {}
        for variation, token in generate_variations(model, PRIMER, seeds=[5, 6], seconds=4.0, **settings):
            batch.setdefault(variation, []).append(token)
        for variation, seed in enumerate((5, 6)):
            assert batch[variation] == list(generate(model, PRIMER, seconds=4.0, seed=seed, **settings))


def test_cancel_stops_every_variation_each_closing_its_notes():
    model = small_model()
    cancel = threading.Event()
    written = {0: [], 1: [], 2: []}
    for variation, token in generate_variations(model, PRIMER, seeds=[1, 2, 3], cancel=cancel):
        written[variation].append(token)
        if len(written[2]) == 30:
            cancel.set()
    for tokens in written.values():
        assert 30 <= len(tokens) <= 31 + 128
        closing = tokens[30:]
        assert all(is_note_off(t) for t in closing[1:]) and (not closing or is_note_off(closing[0])
                                                            or closing[0] == time_shift(1))
        assert_valid_stream(tokens)


def test_variations_stop_each_at_the_requested_seconds():
    model = small_model()
    written = {}
    for variation, token in generate_variations(model, PRIMER, seeds=[7, 8, 9, 10], seconds=5.0):
        written.setdefault(variation, []).append(token)
    assert len({len(tokens) for tokens in written.values()}) > 1  # each on its own
    for tokens in written.values():
        assert duration_seconds(tokens) == pytest.approx(5.0)
        assert_valid_stream(tokens)


@pytest.mark.parametrize("seeds", [[], [1, -1], [True], "12", list(range(65)), 3])
def test_variations_refuse_bad_seeds_when_called(seeds):
    with pytest.raises(ValueError, match="seed"):
        generate_variations(small_model(), PRIMER, seeds=seeds, max_tokens=5)


def test_decoding_past_the_window_keeps_a_flat_cache_and_attends_to_the_window_only(monkeypatch):
    window = 64
    model = small_model(train_length=window, max_relative_distance=window)
    seen = []  # (keys the new token attends to, positions the cache holds) at every step
    begin_step = StreamCache.begin_step

    def watch(cache):
        begin_step(cache)
        seen.append((cache.plan.end - cache.plan.first, len(cache)))

    monkeypatch.setattr(StreamCache, "begin_step", watch)
    tokens = list(generate(model, PRIMER, max_tokens=16 * window, seed=6))
    assert len(tokens) == 16 * window and len(seen) >= 16 * window - 129
    assert max(keys for keys, _ in seen) == window and {held for _, held in seen} == {window}
    assert_valid_stream(tokens)


def test_hooks_on_the_model_see_every_step_and_change_nothing():
    model = small_model()
    calls = []
    plain = list(generate(model, PRIMER, max_tokens=40, seed=2, top_p=0.9))
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    watched = list(generate(model, PRIMER, max_tokens=40, seed=2, top_p=0.9))
    handle.remove()
    assert watched == plain and len(calls) > 20  # the context, then a forward pass per token sampled


def test_a_draw_follows_the_softmax_of_the_allowed_tokens():
    model = small_model()
    sampling = Sampling.checked(model, 1.0, None, None, [11], None, None, None, None, 1, "any")
    sampler = Sampler(sampling, 1, 6, torch.device("cpu"))
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 5.0, 0.5]])
    sampler.masks[0, 4] = float("-inf")  # a token the rules forbid
    counts = torch.zeros(6)
    for _ in range(20000):
        sampler.prepare()
        counts[sampler.draw(logits)] += 1
    allowed = torch.softmax(logits[0].masked_fill(torch.arange(6) == 4, float("-inf")), -1)
    assert counts[4] == 0
    torch.testing.assert_close(counts / counts.sum(), allowed, atol=0.012, rtol=0)


def test_a_drawn_wait_moves_to_the_likeliest_wait_near_it():
    shift = events.time_shift
    scores = torch.full((1, events.VOCAB_SIZE), -5.0)
    scores[0, [shift(37), shift(38), shift(39), shift(40)]] = torch.tensor([1.0, 2.0, 1.5, 0.5])
    scores[0, shift(100)] = 1.0
    scores[0, shift(98)] = float("-inf")  # a wait the rules forbid
    drawn = torch.tensor([shift(36), shift(39), shift(40), shift(38), shift(99), shift(97), 60, shift(1)])
    moved = peak_waits(scores.expand(len(drawn), -1), drawn, 2).tolist()
    assert moved == [shift(38), shift(38), shift(38), shift(38), shift(100), shift(97), 60, shift(1)]  # 97: none near
    assert peak_waits(scores, torch.tensor([shift(39)]), 0).tolist() == [shift(39)]  # 0: as drawn
    equal = torch.zeros(1, events.VOCAB_SIZE)
    assert peak_waits(equal, torch.tensor([shift(50)]), 2).tolist() == [shift(50)]  # itself among equals
    assert peak_waits(torch.zeros(1, 6), torch.tensor([4]), 2).tolist() == [4]  # a vocabulary without waits


def test_draws_with_waits_moved_to_their_peak_keep_each_peaks_share():
    """Which of the model's waits is made keeps the model's odds (the peak and the waits around it together);
    the waits beside a peak are never made."""
    model = small_model()
    shift = events.time_shift
    logits = torch.full((1, events.VOCAB_SIZE), float("-inf"))
    logits[0, [shift(24), shift(25), shift(26)]] = torch.tensor([0.0, 1.0, 0.0])  # a beat, sampled loosely
    logits[0, [shift(99), shift(100)]] = torch.tensor([0.5, 1.0])  # a long rest
    logits[0, events.NOTE_ON_OFFSET + 60] = 1.0  # or a note now
    sampling = Sampling.checked(model, 1.0, None, None, [5], None, None, None, None, 1, "any")
    assert sampling.wait_peak_ticks == limits.DEFAULT_WAIT_PEAK_TICKS == 2
    sampler = Sampler(sampling, 1, events.VOCAB_SIZE, torch.device("cpu"))
    counts = {}
    for _ in range(6000):
        sampler.prepare()
        token = int(sampler.draw(logits))
        counts[token] = counts.get(token, 0) + 1
    assert set(counts) == {shift(25), shift(100), events.NOTE_ON_OFFSET + 60}
    odds = torch.softmax(logits[0], -1)
    for token, share in ((shift(25), odds[[shift(24), shift(25), shift(26)]].sum()),
                         (shift(100), odds[[shift(99), shift(100)]].sum())):
        assert counts[token] / 6000 == pytest.approx(float(share), abs=0.02)


@pytest.mark.parametrize("ticks", [-1, 11, 1.5, True])
def test_a_wait_peak_out_of_range_is_refused(ticks):
    with pytest.raises(ValueError, match="wait_peak_ticks must be a whole number from 0 to 10"):
        list(generate(small_model(), PRIMER, max_tokens=4, seed=0, wait_peak_ticks=ticks))


def test_a_stream_makes_each_wait_as_the_model_most_expects_it_unless_told_not_to():
    model = small_model()
    shift = events.time_shift
    fixed = torch.full((events.VOCAB_SIZE,), -30.0)  # every step's logits, through a hook on the model
    fixed[[shift(24), shift(25), shift(26)]] = torch.tensor([0.0, 0.5, 0.0])  # a beat of 250 ms, loosely
    fixed[[events.NOTE_ON_OFFSET + 60, NOTE_OFF_OFFSET + 60]] = 0.5
    handle = model.register_forward_hook(lambda module, inputs, output: fixed.expand_as(output).clone())
    try:
        waits = {ticks: {t for seed in range(3) for t in generate(model, PRIMER, max_tokens=150, seed=seed,
                                                                  max_note_seconds=None, wait_peak_ticks=ticks)
                         if is_time_shift(t)} for ticks in (0, 2)}
    finally:
        handle.remove()
    assert waits[2] == {shift(25)} and waits[0] == {shift(24), shift(25), shift(26)}


def _pitches(tokens):
    return {t - events.NOTE_ON_OFFSET for t in tokens if is_note_on(t)}


def test_allowed_pitches_keep_every_new_note_to_a_key_and_range_over_many_seeds():
    from music_transformer.keys import Key, allowed_pitches

    model = small_model()
    allowed = allowed_pitches(Key(2, "minor"), 50, 74)  # D minor, D3 to D5
    written = set()
    for seed in range(5):
        tokens = list(generate(model, PRIMER, seconds=4.0, seed=seed, temperature=1.5, allowed_pitches=allowed))
        assert_valid_stream(tokens)
        written |= _pitches(tokens)
    for _, token in generate_variations(model, PRIMER, seeds=[1, 2, 3], seconds=4.0, allowed_pitches=allowed):
        written |= _pitches([token])
    for seed in range(4):
        written |= _pitches(infill(model, BEFORE, AFTER, 2.0, 4.0, seed=seed, temperature=1.5,
                                   allowed_pitches=allowed))
    assert written and written <= allowed
    assert len(written) >= 4  # the model still chooses among the allowed pitches
    beam = list(generate(model, PRIMER, seconds=3.0, beam_size=3, allowed_pitches=allowed))
    assert _pitches(beam) <= allowed


def test_allowed_pitches_draw_from_the_models_distribution_restricted_to_them():
    model = small_model()
    allowed = {60, 62, 64, 65, 67, 69, 71}
    locked = list(generate(model, PRIMER, max_tokens=1, temperature=0, allowed_pitches=allowed | set(range(128))))
    assert locked == list(generate(model, PRIMER, max_tokens=1, temperature=0))  # every pitch: no change
    with torch.no_grad():
        logits = model(torch.tensor([events.header(None) + PRIMER]))[0, -1]
    first = list(generate(model, PRIMER, max_tokens=1, temperature=0, allowed_pitches={61}))[0]
    # the most likely token among those a free stream allows, with every note-on but 61's masked
    masked = logits.clone()
    masked[[events.note_on(p) for p in range(128) if p != 61]] = float("-inf")
    masked[events.NUM_EVENTS:] = float("-inf")
    masked[events.NOTE_OFF_OFFSET:events.TIME_SHIFT_OFFSET] = float("-inf")  # nothing sounds after the primer
    assert first == int(masked.argmax())


@pytest.mark.parametrize("bad", [set(), {128}, {-1}, {60.5}, "C major", 60])
def test_a_bad_pitch_set_is_refused_when_called(bad):
    with pytest.raises(ValueError):
        generate(small_model(), PRIMER, allowed_pitches=bad)
    with pytest.raises(ValueError):
        infill(small_model(), BEFORE, AFTER, 2.0, 3.0, allowed_pitches=bad)


def test_nothing_to_write_writes_nothing_but_the_closing_in_every_mode():
    model = small_model()
    held = PRIMER[:-1]  # the last note still sounds at the primer's end
    for beam_size in (1, 2):
        assert list(generate(model, PRIMER, max_tokens=0, beam_size=beam_size)) == []
        assert list(generate(model, PRIMER, seconds=0, beam_size=beam_size)) == []
        closing = list(generate(model, held, seconds=0, beam_size=beam_size))
        offs = [t for t in closing if not is_time_shift(t)]  # a tick first if the note only just began
        assert offs and all(is_note_off(t) for t in offs) and len(closing) - len(offs) <= 1


def test_a_window_or_a_primer_past_the_limits_is_refused():
    with pytest.raises(ValueError, match="window"):
        generate(small_model(), PRIMER, window=2**31)
    for until in (float("nan"), float("inf"), -1.0, 1e9):
        with pytest.raises(ValueError, match="primer"):
            primer_tokens([Note(60, 80, 0.0, 1.0)], until=until)


def test_only_the_last_window_of_a_long_primer_is_read_and_the_seam_is_still_the_whole_primers():
    """A 200,000-token primer took 85 s before the first token: every window of it was read, though no new
    token can attend past the last. Now only that one is read; what sounds at the seam and its velocity are
    still taken from the whole primer."""
    window = 64
    model = small_model(train_length=window, max_relative_distance=window)
    held = Note(40, 100, 19.0, 30.0)  # struck 3 s before the seam, 80-odd tokens back: before the window read
    notes = [Note(60 + index % 12, 100, index * 0.05, index * 0.05 + 0.04) for index in range(440)] + [held]
    primer, now = [], 0  # the performance cut at 22 s, the held note still sounding there
    for token in encode(notes):
        if now + shift_ticks(token) > 2200:
            break
        primer.append(token)
        now += shift_ticks(token)
    primer += shift_tokens(2200 - now)  # the velocity (100) is set once, at the very start
    assert NOTE_OFF_OFFSET + held.pitch not in primer
    assert len(primer) > 20 * window
    assert held.pitch in {t for t in primer[:-window] if is_note_on(t)}
    read = []
    model.register_forward_pre_hook(lambda module, args: read.append(args[0].shape[1]))
    stream = generate(model, primer, seconds=0.5, seed=3)
    first = next(stream)
    assert sum(read) <= window  # before the first token: the last window of the primer (with the header's) only
    tokens = [first, *stream]
    assert_valid_stream(primer + tokens)  # the held note is the primer's: it is ended, never ended twice
    assert NOTE_OFF_OFFSET + held.pitch in tokens
    first_velocity = next((index for index, token in enumerate(tokens) if is_velocity(token)), len(tokens))
    before = continuation_notes(tokens[:first_velocity], start=22.0, primer=primer)
    assert all(note.velocity == 100 for note in before)  # the primer's velocity, set 20 windows back, holds
