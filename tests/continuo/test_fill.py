"""Fill a gap and Continue from Playhead, through the real widgets: a time range dragged in the ruler (or the
selected notes), the panel's buttons, the menu and the shortcuts, with a small random model that knows the
style tokens (infilling needs one). Each writes as one undo step."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from continuo.generation import NO_FILL_TIP
from continuo.song import CONTINUATION, MOTIF
from tests.continuo.helpers import drag, key, settings, small_checkpoint, summary, wait_done

pytestmark = pytest.mark.timeout(90)

BELOW_LOOP_STRIP = 26  # a y in the ruler under the loop strip: clicks move the playhead, drags choose a range


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small random model with the full vocabulary, which can fill gaps: the `studio` fixture loads it."""
    return small_checkpoint(tmp_path_factory.mktemp("styled") / "styled.pt", seed=3)


def eight_bars(song) -> None:
    """A note on every beat for 8 bars (32 beats): music before, inside and after any gap."""
    song.add_notes([song.new_note(60 + (beat % 8), 90, beat, 0.5) for beat in range(32)])
    song.undo_stack.clear()


def ruler_drag(qtbot, roll, start: float, end: float) -> None:
    x0, x1 = round(roll.state.x_of(start)), round(roll.state.x_of(end))
    drag(qtbot, roll.ruler, QPoint(x0, BELOW_LOOP_STRIP), QPoint(x1, BELOW_LOOP_STRIP))


def test_a_drag_in_the_ruler_chooses_a_time_range_a_click_or_escape_clears_it(qtbot, window, roll):
    roll.state.set_view(pixels_per_beat=40)
    ruler_drag(qtbot, roll, 4, 8)
    assert roll.state.time_range == (4.0, 8.0)  # on the grid
    assert roll.transport.playhead == 4.0
    ruler_drag(qtbot, roll, 10, 6)  # dragged leftwards: the same span, in order
    assert roll.state.time_range == (6.0, 10.0)
    qtbot.mouseClick(roll.ruler, Qt.LeftButton, Qt.NoModifier, QPoint(round(roll.state.x_of(3)), BELOW_LOOP_STRIP))
    assert roll.state.time_range is None and roll.transport.playhead == 3.0
    ruler_drag(qtbot, roll, 1, 2)
    key(qtbot, roll, "Escape")
    assert roll.state.time_range is None


def test_fill_writes_the_range_joined_to_what_surrounds_it_as_one_undo_step(qtbot, studio, roll):
    window, song = studio, studio.song
    assert window.generation.can_fill  # the module's model knows the style tokens
    eight_bars(song)
    roll.state.set_view(pixels_per_beat=40)
    settings(window, seed=5)
    before = summary(song)
    ruler_drag(qtbot, roll, 8, 16)
    panel = window.generation_panel
    assert panel.fill_button.isEnabled() and window.studio_actions.fill_action.isEnabled()
    window.recorder.clear()
    qtbot.mouseClick(panel.fill_button, Qt.LeftButton)
    assert window.generation.generating and song.is_writing
    assert window.transport.playing and window.transport.playhead == pytest.approx(8.0, abs=0.5)  # from the range
    # The notes that were in the range are out of it at once; what is written streams in, drawn as written.
    assert not [note for note in song.notes() if 8 <= note.start < 16 and note.part == MOTIF]
    wait_done(qtbot, window)
    filled = song.notes(CONTINUATION)
    assert filled, "the random model wrote nothing"
    assert all(8.0 - 1e-6 <= note.start < 16.0 and note.end <= 16.0 + 1e-6 for note in filled)
    kept = [(n.pitch, n.start) for n in song.notes(MOTIF)]
    assert kept == [(60 + beat % 8, float(beat)) for beat in range(32) if not 8 <= beat < 16]
    assert song.undo_stack.undoText() == "Fill"
    song.undo_stack.undo()
    assert summary(song) == before
    song.undo_stack.redo()
    assert song.notes(CONTINUATION) == filled


def fills_of_beats_8_to_16(qtbot, window, fills: int = 3, seeds: int = 8):
    """Fills beats 8 to 16 with seed after seed (the random model at temperature 1.5), yielding the notes of each
    of the first `fills` fills that write any, then undoing it. (The random model may wait out a whole gap: any
    change to how a draw is made changes which seeds do.)"""
    window.generation.listen = False
    written = 0
    for seed in range(seeds):
        settings(window, seed=seed, temperature=1.5)
        assert window.generation.fill(8, 16)
        wait_done(qtbot, window)
        filled = window.song.notes(CONTINUATION)
        if filled:
            written += 1
            yield filled
        if window.song.undo_stack.undoText() == "Fill":
            window.song.undo_stack.undo()
        if written == fills:
            return
    raise AssertionError(f"the random model wrote nothing in {seeds - written} of {seeds} fills")


def test_a_fill_releases_its_notes_before_the_range_ends_unless_the_music_after_strikes_them(qtbot, studio, roll):
    eight_bars(studio.song)  # the music after the range strikes 60 on its first beat, 16
    tempo = studio.song.to_seconds(1.0)
    for filled in fills_of_beats_8_to_16(qtbot, studio):
        assert all(note.end < 16.0 - 1e-6 or note.pitch == 60 for note in filled), "a note cut at the range's end"
        # and none begins too late to last 50 ms before it has to end: no stub at the range's end
        assert all((16.0 - note.start) * tempo >= 0.05 - 1e-6 for note in filled)


def test_a_fill_is_as_loud_as_the_music_around_it(qtbot, studio, roll):
    song = studio.song
    song.add_notes([song.new_note(60 + (beat % 8), 40, beat, 0.5) for beat in range(32)])  # quiet: velocity 40
    for filled in fills_of_beats_8_to_16(qtbot, studio):
        # the model's bin of 40 (37..40, written 38): none at 64, where a fresh decoder began before
        assert {note.velocity for note in filled} == {38}


def test_fill_can_keep_the_notes_in_its_way_and_takes_the_selected_notes_span(qtbot, studio, roll):
    window, song = studio, studio.song
    eight_bars(song)
    settings(window, seed=2)
    window.generation_panel.keep_box.setChecked(True)
    assert song.settings.keep_existing
    window.generation.listen = False
    inside = [note for note in song.notes() if 4 <= note.start < 8]
    roll.state.select(note.id for note in inside)
    assert roll.fill_range() == (4.0, 7.5)  # from the first start to the last end
    key(qtbot, roll, "Ctrl+F")
    wait_done(qtbot, window)
    assert all(song.note(note.id) == note for note in inside)  # only added to
    assert len(song.notes(MOTIF)) == 32
    assert all(4.0 - 1e-6 <= note.start < 7.5 for note in song.notes(CONTINUATION))


def test_fill_variations_can_be_picked_within_the_range(qtbot, studio, roll):
    window, song = studio, studio.song
    eight_bars(song)
    settings(window, seed=11, variations=3)
    window.generation.listen = False
    roll.state.set_time_range(16, 24)
    window.studio_actions.fill_action.trigger()
    qtbot.waitUntil(lambda: len(window.generation.variations) == 3, timeout=60000)
    wait_done(qtbot, window)
    assert [variation.seed for variation in window.generation.variations] == [11, 12, 13]
    assert window.generation.choose_variation(2)
    chosen = song.notes(CONTINUATION)
    assert len(chosen) == len(window.generation.variations[2].notes)
    assert all(16 - 1e-6 <= note.start < 24 for note in chosen)
    assert len(song.notes(MOTIF)) == 24  # the 8 notes of the range went with the fill, once


def test_fill_waits_for_a_model_that_can_fill_and_says_why(qtbot, window, roll, tmp_path):
    old = small_checkpoint(tmp_path / "old.pt", styles=False)
    window.generation.choose_model(old)
    qtbot.waitUntil(lambda: window.generation.model_source == str(old), timeout=20000)
    roll.state.set_time_range(0, 4)
    fill = window.studio_actions.fill_action
    assert not fill.isEnabled() and fill.toolTip() == NO_FILL_TIP
    assert window.generation_panel.fill_button.toolTip() == NO_FILL_TIP
    assert not window.generation.fill(0, 4) and window.statusBar().currentMessage() == NO_FILL_TIP


def test_continue_from_the_playhead_replaces_later_notes_or_keeps_them(qtbot, studio, roll):
    window, song = studio, studio.song
    eight_bars(song)
    settings(window, seed=4, length=2)
    window.generation.listen = False
    window.transport.set_playhead(12.0)
    key(qtbot, roll, "Ctrl+Alt+Return")
    said = "Set aside the 20 notes from the playhead on for the new music (Undo brings them back)"
    assert said in window.message_line.history()  # nothing changes without a word (kept when other words follow)
    wait_done(qtbot, window)
    written = song.notes(CONTINUATION)
    assert written and all(12.0 - 1e-6 <= note.start <= 20.0 + 1e-6 for note in written)
    assert [note.start for note in song.notes(MOTIF)] == [float(beat) for beat in range(12)]  # later ones replaced
    assert song.undo_stack.undoText() == "Continue from playhead"
    song.undo_stack.undo()
    assert len(song.notes(MOTIF)) == 32 and not song.notes(CONTINUATION)
    window.generation_panel.keep_box.setChecked(True)
    window.studio_actions.from_playhead_action.trigger()
    wait_done(qtbot, window)
    assert len(song.notes(MOTIF)) == 32 and song.notes(CONTINUATION)
    assert window.message_line.history().count(said) == 1  # kept notes are not said to be set aside


def test_continue_from_the_playhead_fills_a_chosen_time_range(qtbot, studio, roll):
    window, song = studio, studio.song
    eight_bars(song)
    settings(window, seed=9)
    window.generation.listen = False
    roll.state.set_time_range(4, 8)
    assert "fill" in window.studio_actions.from_playhead_action.toolTip()
    window.studio_actions.from_playhead_action.trigger()
    assert "Set aside the 4 notes in the time range for the new music (Undo brings them back)" in (
        window.message_line.history()
    )
    wait_done(qtbot, window)
    assert song.undo_stack.undoText() == "Fill"
    assert all(4 - 1e-6 <= note.start < 8 for note in song.notes(CONTINUATION))


def test_every_note_written_keeps_to_the_key_and_the_range_over_many_seeds(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    eight_bars(song)
    window.generation.listen = False
    panel.key_mode_box.setCurrentIndex(panel.key_mode_box.findData("chosen"))
    panel.tonic_box.setCurrentText("D")
    panel.scale_box.setCurrentText("dorian")
    for box, name in ((panel.lowest_box, "C3"), (panel.highest_box, "A4")):
        box.setFocus()
        box.selectAll()
        qtbot.keyClicks(box, name)
        qtbot.keyClick(box, Qt.Key_Return)
    assert (song.settings.lowest, song.settings.highest) == (48, 69)
    allowed = {pitch for pitch in range(48, 70) if (pitch - 2) % 12 in (0, 2, 3, 5, 7, 9, 10)}
    settings(window, variations=8, length=4)
    for write in (window.generation.continue_song, lambda: window.generation.fill(8, 24)):
        for seed in (100, 200):
            settings(window, seed=seed)
            assert write()
            qtbot.waitUntil(lambda: len(window.generation.variations) == 8, timeout=60000)
            wait_done(qtbot, window)
            for variation in window.generation.variations:
                assert {note.pitch for note in variation.notes} <= allowed, variation.seed
            assert {note.pitch for note in song.notes(CONTINUATION)} <= allowed
            written = sum(len(variation.notes) for variation in window.generation.variations)
            assert written >= 5  # not a vacuous pass: the masked sampler still writes notes (9 to 18 here)


def test_a_range_past_the_songs_end_is_refused_before_any_note_is_removed(qtbot, studio, roll):
    """Issue 48: fill(4, inf) deleted the notes from beat 4 on, failed, then said the notes written so far were kept;
    continue_from(47999) worked for seconds, wrote nothing and said nothing. Both are refused at once, in words."""
    window, song = studio, studio.song
    eight_bars(song)
    before = song.notes()
    refused = [
        (lambda: window.generation.fill(4, float("inf")), "Cannot fill up to beat inf"),
        (lambda: window.generation.fill(4, 20_000), "Cannot fill up to beat 20,000"),  # 2 hours: beat 14,400
        (lambda: window.generation.fill(float("nan"), 8), "Cannot fill"),
        (lambda: window.generation.continue_from(47_999), "Cannot continue from the playhead at beat 47,999"),
        (lambda: window.generation.continue_from(14_400), "Cannot continue from the playhead at beat 14,400"),
    ]
    for write, message in refused:
        assert not write(), message
        assert not window.generation.generating and not song.is_writing
        assert song.notes() == before and song.undo_stack.count() == 0  # nothing removed, nothing to undo
        shown = window.statusBar().currentMessage()
        assert shown.startswith(message) and "ends at beat 14,400 (2 hours at 120 BPM)" in shown, shown
    song.set_tempo(400)  # beat 47,999 is inside two hours at 400 BPM: a continuation to the end is written
    song.undo_stack.clear()
    settings(window, length=1.0, length_unit="bars", end_at_bar=False)
    assert window.generation.continue_from(47_998)
    wait_done(qtbot, window)
    assert all(note.end <= 48_000 for note in song.notes())
