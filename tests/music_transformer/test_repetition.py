"""The repetition penalty: a pitch struck on onset after onset and a figure played over and over cost their note-ons,
so that neither sampling at a low temperature nor beam search loops (the bundled model, a two-bar arpeggio)."""

import math
from collections import Counter

import numpy as np
import pytest

from music_transformer import Note, continuation_notes, events, generate, generate_variations, limits, primer_tokens
from music_transformer.checkpoint import load_checkpoint
from music_transformer.events import note_off, note_on, time_shift
from music_transformer.performance import FREE_STRIKES, MOST_STRIKES, Performance

from .helpers import PRIMER, small_model


def _follow(tokens, penalty=1.0):
    performance = Performance(events.VOCAB_SIZE, repetition_penalty=penalty)
    for token in tokens:
        performance.update(token)
    return performance


def _note_on_costs(performance):
    mask = np.zeros(events.VOCAB_SIZE, dtype=np.float32)
    forced, _ = performance.rules(None, None, None, mask)
    assert forced is None
    return mask[:128]


def _strikes(pitch, times):
    return [token for _ in range(times) for token in (note_on(pitch), time_shift(10), note_off(pitch))]


def test_a_pitch_struck_on_onset_after_onset_costs_more_each_time_past_the_fourth_and_never_a_ninth():
    for times in range(1, MOST_STRIKES + 1):
        costs = _note_on_costs(_follow(_strikes(64, times), penalty=1.5))
        expected = -1.5 * max(0, times + 1 - FREE_STRIKES) if times < MOST_STRIKES else -math.inf
        assert costs[64] == expected, times
        assert costs[65] == 0.0 and costs[63] == 0.0
    # a chord is one onset: E4 in every chord of a C major triad struck eight times is not struck a ninth
    chord = [token for _ in range(8) for token in (note_on(60), note_on(64), note_on(67), time_shift(10),
                                                   note_off(60), note_off(64), note_off(67))]
    assert np.isneginf(_note_on_costs(_follow(chord))[[60, 64, 67]]).all()
    # another pitch in between breaks the run
    assert _note_on_costs(_follow(_strikes(64, 7) + _strikes(62, 1) + _strikes(64, 3)))[64] == 0.0


def test_a_figure_played_twice_may_go_on_and_each_further_time_round_costs_the_penalty():
    figure = [60, 64, 67, 72]
    def played(notes):
        return _note_on_costs(_follow([token for pitch in notes for token in _strikes(pitch, 1)]))
    assert played(figure + figure[:3]).min() == 0.0  # twice round is free
    assert played(figure * 2)[60] == pytest.approx(-1 / 4)  # the first note of a third time round
    assert played(figure * 2 + [60, 64])[67] == pytest.approx(-3 / 4)  # three notes into the third time round
    assert played(figure * 3)[60] == pytest.approx(-5 / 4)
    assert played(figure * 3 + [60, 65])[67] == 0.0  # the loop is broken


def test_a_primer_that_repeats_a_pitch_longer_allows_the_continuation_as_many():
    performance = _follow(_strikes(64, 12) + _strikes(62, 1))
    performance.start_continuation()
    for token in _strikes(64, 11):
        performance.update(token)
    assert _note_on_costs(performance)[64] == -(12 - (FREE_STRIKES + 4))  # the twelfth, as the primer's
    for token in _strikes(64, 1):
        performance.update(token)
    assert np.isneginf(_note_on_costs(performance)[64])


def test_the_penalty_off_costs_nothing():
    assert _note_on_costs(_follow(_strikes(64, 20) + _strikes(60, 1) * 0, penalty=0.0)).max() == 0.0
    assert not np.isneginf(_note_on_costs(_follow(_strikes(64, 20), penalty=0.0))[64])


@pytest.mark.parametrize("bad", [-0.5, limits.MAX_REPETITION_PENALTY + 0.1, float("nan"), "1", True])
def test_a_bad_repetition_penalty_is_refused_when_called(bad):
    model = small_model()
    with pytest.raises(ValueError, match="repetition_penalty must be a number from 0 to 10"):
        generate(model, PRIMER, repetition_penalty=bad)
    with pytest.raises(ValueError, match="repetition_penalty must be"):
        generate_variations(model, PRIMER, seeds=[1, 2], repetition_penalty=bad)


BAR = 2.0  # seconds: 4/4 at 120 bpm


def _arpeggio():
    """A two-bar C major arpeggio in eighths over a bass, every note at velocity 100 (the issue's motif)."""
    notes = []
    for bar, figure in enumerate(([60, 64, 67, 72, 67, 64, 60, 64], [60, 64, 67, 72, 76, 79, 76, 72])):
        notes.append(Note(48, 100, bar * BAR, bar * BAR + BAR))
        notes += [Note(p, 100, bar * BAR + i * BAR / 8, bar * BAR + (i + 1) * BAR / 8) for i, p in enumerate(figure)]
    return notes


def _longest_streak(notes):
    onsets = {}
    for note in notes:
        onsets.setdefault(events.to_ticks(note.start), set()).add(note.pitch)
    streak, longest = Counter(), 0
    for tick in sorted(onsets):
        streak = Counter({pitch: streak[pitch] + 1 for pitch in onsets[tick]})
        longest = max(longest, *streak.values())
    return longest


@pytest.fixture(scope="module")
def bundled():
    return load_checkpoint(device="cpu")


def test_at_temperature_0_8_no_pitch_is_struck_on_more_than_eight_onsets_in_a_row(bundled):
    """Seeds 1, 2, 3 and 6 struck one pitch on 14, 17, 12 and 12 onsets in a row before the penalty."""
    motif = _arpeggio()
    primer = primer_tokens(motif, until=2 * BAR)
    for seed in (1, 2, 3, 6):
        tokens = list(generate(bundled, primer, seconds=12.0, temperature=0.8, top_p=0.95, seed=seed))
        assert _longest_streak(continuation_notes(tokens, start=2 * BAR)) <= MOST_STRIKES, seed
    rows = {}
    for row, token in generate_variations(bundled, primer, seeds=[1, 2], seconds=12.0, temperature=0.8, top_p=0.95):
        rows.setdefault(row, []).append(token)
    assert all(_longest_streak(continuation_notes(tokens, start=2 * BAR)) <= MOST_STRIKES for tokens in rows.values())


def test_beam_search_repeats_no_bar_more_than_twice(bundled):
    """Before the penalty, four beams wrote E5 on 46 onsets in a row, one bar five times over."""
    motif = _arpeggio()
    tokens = list(generate(bundled, primer_tokens(motif, until=2 * BAR), seconds=12.0, beam_size=4))
    notes = continuation_notes(tokens, start=2 * BAR)
    bars = {}
    for note in notes:
        bar = int((note.start - 2 * BAR + 1e-9) // BAR)
        bars.setdefault(bar, []).append((events.to_ticks(note.start - 2 * BAR - bar * BAR), note.pitch))
    assert len(bars) >= 5
    assert max(Counter(tuple(sorted(notes)) for notes in bars.values()).values()) <= 2
    assert _longest_streak(notes) <= MOST_STRIKES
