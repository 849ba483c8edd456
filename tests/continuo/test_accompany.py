"""Accompany through the real widgets: the notes kept (a Ctrl-drag on the keyboard selects a range of pitches, or
the panel's pitch range leaves them out), the other part written live and heard as written, with variations,
undo, Accept and Discard as for Continue; the kept notes never moved, recoloured or lost. A small random model
writes quickly."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from continuo.song import CONTINUATION, MOTIF
from tests.continuo.helpers import drag, key, settings, small_checkpoint, summary, wait_done

pytestmark = pytest.mark.timeout(120)

MELODY = [(72, 0.0), (76, 1.0), (79, 2.0), (77, 3.0), (76, 4.0), (74, 5.0), (72, 6.0), (79, 7.0)]  # (pitch, beat)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small random model: the `studio` fixture loads it."""
    return small_checkpoint(tmp_path_factory.mktemp("accompany") / "small.pt", seed=4)


def melody_and_an_old_bass(song):
    """A melody from C5 up over 8 beats (kept), and an old bass note under it (replaced) and one after it (not)."""
    melody = [song.new_note(pitch, 80 + index, beat, 0.75) for index, (pitch, beat) in enumerate(MELODY)]
    old_bass, later = song.new_note(43, 70, 2.0, 2.0), song.new_note(41, 70, 9.0, 1.0)
    song.add_notes([*melody, old_bass, later])
    song.undo_stack.clear()
    return melody, old_bass, later


def keyboard_drag(qtbot, roll, low: int, high: int, modifiers=Qt.ControlModifier) -> None:
    """A drag on the keyboard from one key to another, with Ctrl (or Shift) held."""
    keyboard, state = roll.keyboard, roll.state
    x = keyboard.width() // 2
    drag(qtbot, keyboard, QPoint(x, round(state.y_of(high) + 3)), QPoint(x, round(state.y_of(low) + 3)), modifiers)


def test_a_ctrl_drag_on_the_keyboard_selects_the_notes_of_a_range_of_pitches(qtbot, window, roll):
    song = window.song
    melody, old_bass, later = melody_and_an_old_bass(song)
    keyboard_drag(qtbot, roll, 72, 79)
    assert roll.state.selection == {note.id for note in melody}
    keyboard_drag(qtbot, roll, 41, 41, Qt.ShiftModifier)  # Shift adds to the selection
    assert roll.state.selection == {note.id for note in melody} | {later.id}
    qtbot.mouseClick(roll.keyboard, Qt.LeftButton, Qt.NoModifier, QPoint(5, round(roll.state.y_of(60) + 3)))
    assert roll.state.selection == {note.id for note in melody} | {later.id}  # a plain click only plays the key


def test_accompany_keeps_the_selection_and_writes_the_other_part_heard_as_written_as_one_undo_step(qtbot, studio, roll):
    window, song = studio, studio.song
    melody, old_bass, later = melody_and_an_old_bass(song)
    settings(window, seed=3, temperature=1.2)
    before = summary(song)
    keyboard_drag(qtbot, roll, 72, 79)
    panel = window.generation_panel
    assert panel.accompany_button.isEnabled() and window.studio_actions.accompany_action.isEnabled()
    window.recorder.clear()
    qtbot.mouseClick(panel.accompany_button, Qt.LeftButton)
    assert window.generation.generating and song.is_writing and window.transport.playing
    assert song.note(old_bass.id) is None  # the old part in the range written in goes at once
    wait_done(qtbot, window)
    new = song.notes(CONTINUATION)
    assert new, "the random model wrote nothing"
    assert all(note.pitch not in range(72, 80) and 21 <= note.pitch <= 108 for note in new)
    # over the kept notes' span (to the 10 ms tick: 0.02 beats)
    assert all(-1e-6 <= note.start < 7.75 and note.end <= 7.75 + 0.021 for note in new)
    for note in melody:  # never moved, recoloured or lost
        assert song.note(note.id) == note and song.note(note.id).part == MOTIF
    assert song.note(later.id) == later  # after the span: not in the way
    assert song.undo_stack.undoText() == "Accompany"
    # heard as written: the new part through the live feed, the kept melody from the song
    qtbot.waitUntil(lambda: not window.transport.playing, timeout=30000)
    heard = sorted(pitch for _, kind, pitch, _ in window.recorder.notes() if kind == "on")
    assert sorted([note.pitch for note in new] + [pitch for pitch, _ in MELODY] + [41]) == heard
    song.undo_stack.undo()
    assert summary(song) == before
    song.undo_stack.redo()
    assert song.notes(CONTINUATION) == new


def test_accompany_variations_are_picked_kept_in_the_session_accepted_and_discarded_as_for_continue(
    qtbot, studio, roll, tmp_path
):
    window, song = studio, studio.song
    melody, _, _ = melody_and_an_old_bass(song)
    settings(window, seed=11, variations=3)
    window.generation.listen = False
    roll.state.select(note.id for note in melody)
    key(qtbot, roll, "Ctrl+Shift+A")
    qtbot.waitUntil(lambda: len(window.generation.variations) == 3, timeout=60000)
    wait_done(qtbot, window)
    assert [variation.seed for variation in window.generation.variations] == [11, 12, 13]
    assert song.variations.kind == "accompany"
    assert window.generation.choose_variation(2)
    chosen = song.notes(CONTINUATION)
    assert len(chosen) == len(window.generation.variations[2].notes)
    assert all(note.pitch not in range(72, 80) and -1e-6 <= note.start < 7.75 for note in chosen)
    assert all(song.note(note.id) == note for note in melody)
    before = summary(song)
    assert window.document.save_to(tmp_path / "accompanied.continuo")
    assert window.document.open_path(tmp_path / "accompanied.continuo", ask_to_save=False)
    assert summary(song) == before and song.variations.kind == "accompany" and len(song.variations.variations) == 3
    assert all(song.note(note.id) == note for note in melody)
    chosen = song.notes(CONTINUATION)
    window.studio_actions.discard_action.trigger()
    assert not song.notes(CONTINUATION) and all(song.note(note.id) == note for note in melody)
    song.undo_stack.undo()  # the discard
    window.studio_actions.accept_action.trigger()
    assert not song.notes(CONTINUATION)
    assert len(song.notes(MOTIF)) == len(melody) + 1 + len(chosen)  # the melody, the note after it, the new part
    assert all(song.note(note.id) == note for note in melody)


def test_with_nothing_selected_it_keeps_the_notes_outside_the_panels_pitch_range_and_writes_in_it(qtbot, studio, roll):
    window, song = studio, studio.song
    melody, old_bass, later = melody_and_an_old_bass(song)
    settings(window, seed=5, temperature=1.3)
    window.generation.listen = False
    panel = window.generation_panel
    for box, pitch in ((panel.lowest_box, "C1"), (panel.highest_box, "B4")):  # typed, as a musician would
        box.lineEdit().selectAll()
        qtbot.keyClicks(box.lineEdit(), pitch)
        qtbot.keyClick(box.lineEdit(), Qt.Key_Return)
    assert (song.settings.lowest, song.settings.highest) == (24, 71)
    roll.state.select([])
    window.studio_actions.accompany_action.trigger()
    wait_done(qtbot, window)
    new = song.notes(CONTINUATION)
    assert new and all(24 <= note.pitch <= 71 for note in new)
    assert all(-1e-6 <= note.start < 7.75 for note in new)  # over the span of the kept notes, the melody
    assert all(song.note(note.id) == note for note in melody)
    assert song.note(old_bass.id) is None  # in the range written in, inside the span: replaced (Undo brings it back)
    assert song.note(later.id) == later  # after the span: not in the way


def test_accompany_says_what_to_do_and_loses_nothing_when_it_cannot(qtbot, studio, roll):
    window, song = studio, studio.song
    melody, _, _ = melody_and_an_old_bass(song)
    roll.state.select([])
    window.studio_actions.accompany_action.trigger()  # the panel's range is the whole keyboard: nothing to keep
    assert not window.generation.generating
    assert "select the notes to keep" in window.statusBar().currentMessage()
    window.generation.listen = False
    settings(window, seed=1)
    window.generation.continue_song()
    wait_done(qtbot, window)
    continuation = song.notes(CONTINUATION)
    roll.state.select(note.id for note in [*melody, *continuation])
    before = summary(song)
    window.studio_actions.accompany_action.trigger()
    assert not window.generation.generating and "accept the continuation first" in window.statusBar().currentMessage()
    assert summary(song) == before
