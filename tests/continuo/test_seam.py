"""The seam in the studio: what the model writes after the music (Continue, Fill, the duet's answers) takes up that
music's velocity until the model writes one of its own, with the bundled model and the real widgets."""

from __future__ import annotations

import dataclasses
import queue
import threading

import pytest
from PySide6.QtCore import Qt

from continuo.generation import AnswerRequest, GenerationWorker, primer_until
from continuo.generation.messages import Finished, NotesWritten
from continuo.playback.scheduler import LiveFeed
from continuo.song import CONTINUATION, MOTIF
from music_transformer import generate, infill, load_checkpoint
from music_transformer.checkpoint import DEFAULT_CHECKPOINT
from music_transformer.events import DEFAULT_VELOCITY, decode_after, is_note_on, is_velocity, to_ticks
from tests.continuo.helpers import draw_note

pytestmark = pytest.mark.timeout(120)

PIANO = frozenset(range(21, 109))  # the panel's default range: the piano's 88 keys


def notes_before_own_velocity(tokens) -> int:
    first = next((i for i, token in enumerate(tokens) if is_velocity(token)), len(tokens))
    return sum(is_note_on(token) for token in tokens[:first])


def by_onset(notes) -> dict[tuple[int, int], int]:
    """(pitch, start tick) -> velocity."""
    return {(note.pitch, to_ticks(note.start)): note.velocity for note in notes}


@pytest.fixture(scope="module")
def bundled():
    return load_checkpoint(DEFAULT_CHECKPOINT, device="cpu")


def draw_arpeggio(qtbot, roll) -> None:
    """C E G C E G C E in eighths over a C3 in whole notes, drawn with the mouse at the roll's velocity (100)."""
    for index, pitch in enumerate((60, 64, 67, 72, 64, 67, 72, 76)):
        draw_note(qtbot, roll, pitch, index / 2, 0.5)
    draw_note(qtbot, roll, 48, 0, 4)


def test_continue_goes_on_at_the_motifs_velocity_until_the_model_writes_one(qtbot, studio, roll, bundled):
    window, song = studio, studio.song
    draw_arpeggio(qtbot, roll)
    assert {note.velocity for note in song.notes(MOTIF)} == {100}
    start = song.to_seconds(song.motif_end())
    primer = primer_until(song.performance_notes(MOTIF), start)
    seconds = song.to_seconds(16.0)
    for seed in range(8):  # a seed that strikes notes before it writes a velocity of its own
        tokens = list(generate(bundled, primer, seconds=seconds, top_p=0.95, seed=seed, allowed_pitches=PIANO))
        if notes_before_own_velocity(tokens) >= 2:
            break
    else:
        pytest.fail("no seed struck notes before a velocity of its own")
    # the phrase as generate() writes it: no bar-line ending (its last beat would strike nothing)
    song.set_settings(dataclasses.replace(song.settings, length=4, seed=seed, end_at_bar=False))
    window.generation.listen = False
    qtbot.mouseClick(window.generation_panel.continue_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=60000)
    expected, _ = decode_after(primer, tokens, start)
    written = by_onset(song.performance_notes(CONTINUATION))
    assert written == by_onset(expected)
    assert DEFAULT_VELOCITY not in written.values() and 98 in written.values()  # 100's bin, carried on


def test_a_fill_takes_up_the_velocity_of_the_music_before_the_gap(qtbot, studio, roll, bundled):
    window, song = studio, studio.song
    roll.state.velocity = 40
    draw_arpeggio(qtbot, roll)
    for index, pitch in enumerate((60, 64, 67, 72)):
        draw_note(qtbot, roll, pitch, 8 + index / 2, 0.5)
    window.generation.listen = False
    for seed in range(6):
        song.set_settings(dataclasses.replace(song.settings, seed=seed))
        start, end = song.to_seconds(4.0), song.to_seconds(8.0)
        before = [note for note in song.performance_notes() if note.start < start]
        after = [note for note in song.performance_notes() if note.start >= end]
        tokens = list(infill(bundled, before, after, start, end, top_p=0.95, seed=seed, allowed_pitches=PIANO))
        if notes_before_own_velocity(tokens):
            break
    else:
        pytest.fail("no seed struck a note before a velocity of its own")
    assert window.generation.fill(4.0, 8.0)
    qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=60000)
    expected, _ = decode_after(primer_until(before, start), tokens, start)
    written = by_onset(song.performance_notes(CONTINUATION))
    assert written == by_onset(expected)
    assert DEFAULT_VELOCITY not in written.values() and 38 in written.values()  # 40's bin


def test_the_duets_answer_takes_up_the_players_velocity(bundled):
    """The duet's NoteStream: the worker answers a phrase played at 100 at 100 until the model writes a velocity."""
    from music_transformer import Note, primer_tokens

    phrase = [Note(pitch, 100, index * 0.25, index * 0.25 + 0.2) for index, pitch in enumerate((60, 64, 67, 72) * 2)]
    primer = primer_tokens(phrase, until=2.5)
    seed = next(
        seed
        for seed in range(8)
        if notes_before_own_velocity(list(generate(bundled, primer, seconds=3.0, top_p=0.95, seed=seed)))
    )
    tokens = list(generate(bundled, primer, seconds=3.0, top_p=0.95, seed=seed))
    worker = GenerationWorker()
    try:
        worker.load(str(DEFAULT_CHECKPOINT), "cpu")
        request = AnswerRequest(primer, 3.0, LiveFeed(0.0), threading.Event(), replies=queue.Queue(), seed=seed)
        worker.answer(request)
        answered = []
        while True:
            message = request.replies.get(timeout=60)
            if isinstance(message, NotesWritten):
                answered.extend(message.notes)
            elif isinstance(message, Finished):
                break
    finally:
        worker.stop()
    expected, _ = decode_after(primer, tokens, 0.0)
    answered.sort(key=lambda note: (note.start, note.pitch))
    assert [(note.pitch, note.velocity) for note in answered] == [(note.pitch, note.velocity) for note in expected]
    assert DEFAULT_VELOCITY not in {note.velocity for note in answered}


def test_from_playhead_a_note_sounding_across_it_ends_where_the_model_ends_it(qtbot, studio, roll, bundled):
    """The bass drawn over two bars sounds on at the playhead (the end of bar one): the model reads it sounding,
    and the song's bass ends where the model ends it, not where it was drawn."""
    window, song = studio, studio.song
    draw_arpeggio(qtbot, roll)
    draw_note(qtbot, roll, 43, 4, 4)
    bass = next(note for note in song.notes() if note.pitch == 48)
    song.edit(removed_ids=[bass.id], added=[bass.with_(length=8.0)], text="Lengthen the bass")
    playhead = 4.0
    start = song.to_seconds(playhead)
    primer = primer_until([note for note in song.performance_notes() if note.start < start], start)
    seconds = song.to_seconds(8.0)
    for seed in range(8):  # a seed whose model ends the bass itself, before the continuation's end closes it
        tokens = list(generate(bundled, primer, seconds=seconds, top_p=0.95, seed=seed, allowed_pitches=PIANO))
        (model_bass,) = [note for note in decode_after(primer, tokens, start)[1] if note.pitch == 48]
        if model_bass.end < start + seconds - 0.05 and abs(model_bass.end - song.to_seconds(8.0)) > 0.05:
            break
    else:
        pytest.fail("no seed ended the bass before the continuation's end")
    song.set_settings(dataclasses.replace(song.settings, length=2, seed=seed))
    window.generation.listen = False
    assert window.generation.continue_from(playhead)
    qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=60000)
    basses = [note for note in song.performance_notes() if note.pitch == 48 and note.start < start]
    assert len(basses) == 1 and basses[0].start == 0.0
    assert basses[0].end == pytest.approx(model_bass.end, abs=1e-6)
    assert not [note for note in song.performance_notes() if note.pitch == 43]  # the note after it was replaced
    song.undo_stack.undo()  # the bass comes back as it was drawn
    assert [note.end for note in song.performance_notes() if note.pitch == 48] == [song.to_seconds(8.0)]
