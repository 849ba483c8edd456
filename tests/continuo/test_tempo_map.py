"""The tempo map: beats to seconds through every tempo change, bars through every metre change, and the song's
conversions that the views, playback, generation and export read."""

from __future__ import annotations

import numpy as np
import pytest

from continuo.song import Song, TempoMap
from continuo.tempo_map import BarBeat


def waltz_map() -> TempoMap:
    """3/4 at 120 BPM for four bars, then 60 BPM and 4/4 from beat 12 (bar 5)."""
    return TempoMap(((0.0, 120.0), (12.0, 60.0)), ((0.0, 3, 4), (12.0, 4, 4)))


def test_beats_and_seconds_follow_every_tempo_change():
    tempo_map = waltz_map()
    assert tempo_map.seconds(12.0) == pytest.approx(6.0)  # 12 beats at 120 BPM
    assert tempo_map.seconds(14.0) == pytest.approx(8.0)  # then a second a beat
    assert tempo_map.beats(7.0) == pytest.approx(13.0)
    beats = np.linspace(0, 40, 81)
    assert np.allclose(tempo_map.beats_array(tempo_map.seconds_array(beats)), beats)
    assert [tempo_map.seconds(b) for b in (3.0, 20.0)] == pytest.approx(list(tempo_map.seconds_array([3.0, 20.0])))
    assert tempo_map.tempo_at(11.99) == 120.0 and tempo_map.tempo_at(12.0) == 60.0


def test_bars_follow_every_metre_change():
    tempo_map = waltz_map()
    assert [(bar.beat, bar.index, bar.length) for bar in tempo_map.bar_lines(0.0, 20.0)] == [
        (0.0, 0, 3.0), (3.0, 1, 3.0), (6.0, 2, 3.0), (9.0, 3, 3.0), (12.0, 4, 4.0), (16.0, 5, 4.0), (20.0, 6, 4.0),
    ]  # fmt: skip
    assert tempo_map.bar_beat(11.0) == BarBeat(4, 3, 0.0)
    assert tempo_map.bar_beat(12.0) == BarBeat(5, 1, 0.0)
    assert str(tempo_map.bar_beat(17.5)) == "6.2"
    assert tempo_map.bar_start(5) == 16.0 and tempo_map.bar_start(2) == 6.0
    assert tempo_map.add_bars(10.5, 1) == pytest.approx(14.0)  # half through bar 4, then half through bar 5
    assert tempo_map.bar_line_at_or_after(12.0) == 12.0 and tempo_map.bar_line_at_or_after(12.5) == 16.0
    assert tempo_map.bar_line_at_or_after(11.999_999_999) == 12.0  # arithmetic's crumbs stay on the line


def test_a_bar_a_metre_change_cuts_short_counts_as_a_bar_and_six_eight_counts_eighths():
    pickup = TempoMap(metres=((0.0, 3, 4), (4.0, 4, 4)))  # 3/4, then 4/4 from beat 4: a bar of one beat
    assert [(bar.beat, bar.index, bar.length) for bar in pickup.bar_lines(0.0, 8.0)] == [
        (0.0, 0, 3.0), (3.0, 1, 1.0), (4.0, 2, 4.0), (8.0, 3, 4.0),
    ]  # fmt: skip
    assert pickup.bar_beat(4.0) == BarBeat(3, 1, 0.0)
    jig = TempoMap.steady(100.0, (6, 8))
    assert jig.bar_beat(3.0 + 2.5) == BarBeat(2, 6, 0.0)  # the sixth eighth of bar 2
    assert jig.bar_at(7.0).length == 3.0


def test_a_map_out_of_order_is_refused():
    with pytest.raises(ValueError, match="in order"):
        TempoMap(((0.0, 120.0), (8.0, 90.0), (4.0, 60.0)))
    with pytest.raises(ValueError, match="starts at beat 0"):
        TempoMap(((1.0, 120.0),))


def test_the_song_converts_through_its_map_and_its_tempo_box_scales_the_map(qapp):
    song = Song()
    assert song.set_tempo_map(waltz_map())
    assert song.tempo == 120.0 and song.time_signature == (3, 4) and song.beats_per_bar == 3.0
    assert song.to_seconds(14.0) == pytest.approx(8.0) and song.to_beats(8.0) == pytest.approx(14.0)
    assert song.seconds_between(10.0, 14.0) == pytest.approx(1.0 + 2.0)
    assert song.bar_beat_at(6.0) == BarBeat(5, 1, 0.0)
    assert song.time_signature_at(13.0) == (4, 4) and song.tempo_at(13.0) == 60.0
    song.set_tempo(60.0)  # half as fast: every tempo halves, so the music keeps its shape
    assert song.tempo_map.tempi == ((0.0, 60.0), (12.0, 30.0))
    song.undo_stack.undo()
    assert song.tempo_map == waltz_map()
    song.set_time_signature(2, 4)  # the first metre only: the 4/4 from beat 12 stays
    assert song.tempo_map.metres == ((0.0, 2, 4), (12.0, 4, 4))
    notes = song.notes_from_performance([song_note_seconds(song, 12.0, 13.0)])
    assert (notes[0].start, notes[0].length) == pytest.approx((12.0, 1.0))


def song_note_seconds(song: Song, start: float, end: float):
    from music_transformer import Note

    return Note(60, 80, song.to_seconds(start), song.to_seconds(end))
