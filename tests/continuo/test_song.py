"""The song document without a window: commands, undo, the continuation, the time index, conversions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from continuo.song import CONTINUATION, MOTIF, GenerationSettings, Song, SongLockedError
from music_transformer import Note


def test_every_edit_is_one_undo_step(qapp):
    song = Song()
    a, b = song.new_note(60, 100, 0, 1), song.new_note(64, 90, 1, 1)
    song.add_notes([a, b])
    song.replace_notes([a.with_(pitch=62)], "Transpose")
    song.remove_notes([b.id])
    assert [n.pitch for n in song.notes()] == [62]
    song.undo_stack.undo()
    assert [n.pitch for n in song.notes()] == [62, 64]
    song.undo_stack.undo()
    assert [n.pitch for n in song.notes()] == [60, 64]
    song.undo_stack.undo()
    assert len(song) == 0
    song.undo_stack.redo()
    assert len(song) == 2


def test_tempo_edits_merge_and_notes_keep_their_beats(qapp):
    song = Song()
    song.add_notes([song.new_note(60, 100, 2, 1)])
    song.set_tempo(100)
    song.set_tempo(90)
    assert song.undo_stack.count() == 2  # the two tempo changes are one step, like a dragged spin box
    assert song.performance_notes() == [Note(60, 100, 2 * 60 / 90, 3 * 60 / 90)]
    song.undo_stack.undo()
    assert song.tempo == 120
    with pytest.raises(ValueError):
        song.set_tempo(5)


def test_accept_and_discard_the_continuation_are_undoable(qapp):
    song = Song()
    song.add_notes([song.new_note(60, 100, 0, 1), song.new_note(62, 100, 1, 1, CONTINUATION)])
    assert song.accept_continuation()
    assert {n.part for n in song.notes()} == {MOTIF}
    song.undo_stack.undo()
    assert [n.part for n in song.notes()] == [MOTIF, CONTINUATION]
    assert song.discard_continuation()
    assert [n.part for n in song.notes()] == [MOTIF]
    song.undo_stack.undo()
    assert len(song.notes(CONTINUATION)) == 1
    assert not Song().accept_continuation()


def test_a_streamed_continuation_is_one_step_and_locks_edits(qapp):
    song = Song()
    song.add_notes([song.new_note(60, 100, 0, 2)])
    song.add_notes([song.new_note(50, 100, 2, 1, CONTINUATION)])  # an old continuation, replaced
    changes = []
    song.notes_changed.connect(lambda: changes.append(len(song)))
    song.begin_stream(CONTINUATION)
    assert song.motif_end() == 2.0 and song.is_writing
    song.append([Note(62, 80, 1.0, 1.5)])  # seconds from the song's start: where the motif ends
    song.append([Note(64, 80, 1.5, 2.0)])
    with pytest.raises(SongLockedError):
        song.add_notes([song.new_note(70, 100, 0, 1)])
    assert changes  # the view saw each batch as it arrived
    song.commit()
    assert [(n.pitch, n.start, n.part) for n in song.notes(CONTINUATION)] == [
        (62, 2.0, CONTINUATION),
        (64, 3.0, CONTINUATION),
    ]
    song.undo_stack.undo()  # one step takes the whole continuation back, and the old one returns
    assert [n.pitch for n in song.notes(CONTINUATION)] == [50]
    song.undo_stack.redo()
    assert [n.pitch for n in song.notes(CONTINUATION)] == [62, 64]
    song.begin_stream(CONTINUATION)
    song.append([Note(70, 80, 5, 6)])
    song.abort()
    assert [n.pitch for n in song.notes(CONTINUATION)] == [62, 64]


def test_a_take_streams_into_the_motif_keeps_the_continuation_and_quantizes_on_the_way_in(qapp):
    song = Song()
    song.add_notes([song.new_note(50, 100, 0, 1, CONTINUATION)])
    song.begin_stream(MOTIF, quantize=0.5)
    assert song.notes(CONTINUATION) and song.undo_stack.count() == 1  # a take replaces nothing
    assert "take is being recorded" in song.lock_message()
    song.append([Note(60, 90, 0.13, 0.4)])  # beat 0.26: its start goes to the eighth-note grid, its length stays
    song.append([Note(72, 80, 1.0, 1.5)], CONTINUATION)  # a duet's answer lands in the continuation
    with pytest.raises(SongLockedError):
        song.set_tempo(90)
    assert song.commit()
    assert [(n.pitch, n.start, n.length, n.part) for n in song.notes()] == [
        (50, 0.0, 1.0, CONTINUATION),
        (60, 0.5, pytest.approx(0.54), MOTIF),
        (72, 2.0, 1.0, CONTINUATION),
    ]
    assert song.undo_stack.undoText() == "Record"
    song.undo_stack.undo()
    assert [n.pitch for n in song.notes()] == [50]
    song.begin_stream(MOTIF)
    assert not song.commit() and song.undo_stack.count() == 2  # an empty take is no undo step
    assert not song.is_writing and song.lock_message() == ""


def test_quantize_is_one_undoable_step_of_starts_or_starts_and_ends(qapp):
    song = Song()
    notes = [song.new_note(60, 90, 0.26, 0.5), song.new_note(62, 90, 1.02, 0.5), song.new_note(64, 90, 2.0, 0.5)]
    song.add_notes(notes)
    assert song.quantize([note.id for note in notes], 0.25)
    assert [note.start for note in song.notes()] == [0.25, 1.0, 2.0]
    song.undo_stack.undo()
    assert [note.start for note in song.notes()] == [0.26, 1.02, 2.0]
    assert not song.quantize([notes[2].id], 0.25)  # already on the grid: no empty undo step
    assert song.quantize([notes[0].id], 0.25, ends=True)  # 0.26..0.76 -> 0.25..0.75
    assert (song.note(notes[0].id).start, song.note(notes[0].id).length) == (0.25, 0.5)


def test_notes_in_finds_exactly_the_overlapping_notes(qapp):
    rng = random.Random(3)
    song = Song()
    song.add_notes(
        [
            song.new_note(rng.randint(20, 100), 80, rng.uniform(0, 200), rng.choice([0.1, 0.5, 1, 4, 40]), MOTIF)
            for _ in range(2000)
        ]
    )
    for _ in range(200):
        start = rng.uniform(-10, 210)
        end = start + rng.uniform(0, 30)
        low = rng.randint(0, 110)
        high = low + rng.randint(0, 30)
        expected = {n.id for n in song.notes() if n.end >= start and n.start <= end and low <= n.pitch <= high}
        assert {n.id for n in song.notes_in(start, end, low, high)} == expected


def test_seconds_and_beats_meet_in_one_place(qapp):
    song = Song()
    song.set_tempo(90)
    notes = song.notes_from_performance([Note(60, 70, 1.0, 1.5)])
    assert (notes[0].start, notes[0].length) == (1.5, 0.75)
    song.add_notes(notes)
    assert song.performance_notes() == [Note(60, 70, 1.0, 1.5)]
    assert song.to_seconds(song.to_beats(3.3)) == pytest.approx(3.3)


def test_a_beat_falls_in_a_bar_and_a_beat_of_the_metre(qapp):
    song = Song()
    assert tuple(song.bar_beat(0.0))[:2] == (1, 1) and tuple(song.bar_beat(5.5))[:2] == (2, 2)
    song.set_time_signature(3, 4)
    assert str(song.bar_beat(7.25)) == "3.2"
    song.set_time_signature(6, 8)  # counted in eighths: 4.5 quarters is the second bar's fourth eighth
    assert str(song.bar_beat(4.5)) == "2.4"
    where = song.bar_beat(2.999)  # never a beat past the bar's last
    assert (where.bar, where.beat) == (1, 6)


def test_settings_and_model_are_part_of_the_document(qapp):
    song = Song()
    song.set_settings(GenerationSettings(temperature=0.9, top_k=20, seed=4))
    song.set_model("assets/maestro-small.pt")
    assert song.settings.top_k == 20 and song.model == "assets/maestro-small.pt"
    song.undo_stack.undo()
    song.undo_stack.undo()
    assert song.settings == GenerationSettings() and song.model == "default"
    with pytest.raises(ValueError):
        GenerationSettings.from_dict({"temperature": -1})


_edit = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 127), st.integers(1, 127), st.floats(0, 64), st.floats(0.01, 8)),
    st.tuples(st.just("remove"), st.integers(0, 30)),
    st.tuples(st.just("move"), st.integers(0, 30), st.floats(-4, 4), st.integers(-12, 12)),
    st.tuples(st.just("tempo"), st.floats(20, 400)),
    st.tuples(st.just("accept")),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_edit, max_size=25))
def test_any_edits_undo_to_nothing_and_redo_to_the_same_song(qapp, edits):
    song = Song()
    for edit in edits:
        notes = song.notes()
        if edit[0] == "add":
            song.add_notes([song.new_note(edit[1], edit[2], edit[3], edit[4], CONTINUATION if edit[1] % 2 else MOTIF)])
        elif edit[0] == "remove" and notes:
            song.remove_notes([notes[edit[1] % len(notes)].id])
        elif edit[0] == "move" and notes:
            note = notes[edit[1] % len(notes)]
            song.replace_notes([note.with_(start=note.start + edit[2], pitch=note.pitch + edit[3])])
        elif edit[0] == "tempo":
            song.set_tempo(edit[1])
        elif edit[0] == "accept":
            song.accept_continuation()
    final = (song.notes(), song.meta())
    while song.undo_stack.canUndo():
        song.undo_stack.undo()
    assert song.notes() == [] and song.tempo == 120
    while song.undo_stack.canRedo():
        song.undo_stack.redo()
    assert (song.notes(), song.meta()) == final


def test_a_stream_left_running_stops_growing_at_the_songs_limits(qapp, monkeypatch):
    import continuo.song as song_module

    monkeypatch.setattr(song_module, "MAX_NOTES", 5)
    song = Song()  # 120 BPM: two beats a second
    song.add_notes([song.new_note(60, 90, 0, 1), song.new_note(62, 90, 1, 1)])
    song.begin_stream(MOTIF)
    last = 7200.0  # the last second the song may hold: two hours, beat 14,400 at 120 BPM
    assert song.last_beat() == 14_400
    added = song.append(
        [Note(64, 90, 1.0, 2.0), Note(65, 90, last - 0.25, last + 10.0), Note(66, 90, last + 1, last + 2)]
    )
    assert [(n.pitch, n.end) for n in added] == [(64, 4.0), (65, 14_400)]  # cut at the end, not past
    assert song.append([Note(67, 90, 3.0, 3.5)]) and not song.append([Note(69, 90, 4.0, 4.5)])  # 5 notes: full
    assert song.commit() and len(song) == 5 and max(n.end for n in song.notes()) == 14_400
