"""What the roll draws: note colours where notes are, and nowhere else."""

from __future__ import annotations

from PySide6.QtGui import QColor

from app.piano_roll import Palette
from app.song import CONTINUATION, MOTIF
from conftest import draw_note
from music_transformer import Note


def pixel(image, point):
    return QColor(image.pixel(point.x(), point.y()))


def test_drawn_notes_have_note_colour_at_their_positions_and_nowhere_else(qtbot, roll):
    notes = [(60, 0, 1), (64, 2, 0.5), (67, 4, 2)]
    for pitch, beat, length in notes:
        draw_note(qtbot, roll, pitch, beat, length)
    roll.state.select(())
    image = roll.canvas.grab().toImage()
    motif = Palette.note_fill(MOTIF, 100)
    for pitch, beat, length in notes:
        centre = roll.point_for(beat + length / 2, pitch)
        assert pixel(image, centre) == motif, (pitch, beat)
    # Everywhere else on the grid there is no note colour: scan the whole image.
    inside = set()
    for pitch, beat, length in notes:
        top = round(roll.state.y_of(pitch))
        for x in range(round(roll.state.x_of(beat)), round(roll.state.x_of(beat + length)) + 1):
            for y in range(top, top + round(roll.state.key_height) + 1):
                inside.add((x, y))
    motif_rgb = motif.rgb()
    stray = [(x, y) for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)
             if image.pixel(x, y) == motif_rgb and (x, y) not in inside]
    assert not stray, stray[:5]
    assert sum(1 for x, y in inside if 0 <= x < image.width() and image.pixel(x, y) == motif_rgb) > 500


def test_selection_velocity_and_parts_show_as_colour(qtbot, roll):
    song = roll.song
    soft, loud = song.new_note(60, 20, 0, 1), song.new_note(62, 127, 0, 1)
    continuation = song.new_note(64, 127, 0, 1, CONTINUATION)
    song.add_notes([soft, loud, continuation])
    roll.state.select([loud.id])
    image = roll.canvas.grab().toImage()
    colours = {note.id: pixel(image, roll.point_for(0.5, note.pitch)) for note in (soft, loud, continuation)}
    assert colours[soft.id] == Palette.note_fill(MOTIF, 20)
    assert colours[loud.id] == Palette.note_fill(MOTIF, 127, selected=True)
    assert colours[continuation.id] == Palette.note_fill(CONTINUATION, 127)
    assert len({c.rgb() for c in colours.values()}) == 3
    assert Palette.note_fill(MOTIF, 20) != Palette.note_fill(MOTIF, 127)


def test_a_continuation_being_written_looks_unfinished(qtbot, roll):
    song = roll.song
    song.begin_continuation()
    song.append_continuation_notes([Note(64, 127, 0.0, 1.0)])  # beats 0..2 at 120 BPM
    writing = roll.canvas.grab().toImage()
    song.end_continuation()
    done = roll.canvas.grab().toImage()
    where = roll.point_for(1.0, 64)
    assert pixel(done, where) == Palette.note_fill(CONTINUATION, 127)
    row = [writing.pixel(x, where.y()) for x in range(round(roll.state.x_of(0.2)), round(roll.state.x_of(1.8)))]
    assert Palette.note_fill(CONTINUATION, 127).rgb() not in row
    assert len(set(row)) >= 2  # hatched: more than one colour along the note


def test_thousands_of_notes_in_view_draw_as_one_image_with_the_same_colours(qtbot, roll):
    from app.piano_roll.canvas import OVERVIEW_THRESHOLD

    song = roll.song
    notes = [song.new_note(48 + (i % 5) * 2, 127, i * 0.25, 0.25) for i in range(OVERVIEW_THRESHOLD + 500)]
    lone = song.new_note(80, 20, 100, 8)
    song.add_notes(notes + [lone])
    roll.state.set_view(left_beat=0, top_key=127 - 84, pixels_per_beat=4, key_height=8)
    image = roll.canvas.grab().toImage()
    loud, soft = Palette.note_fill(MOTIF, 127).rgb(), Palette.note_fill(MOTIF, 20).rgb()
    centre = roll.point_for(104, 80)
    assert image.pixel(centre.x(), centre.y()) == soft
    for index in range(200, 205):  # one note on each of the five pitches, around beat 50
        point = roll.point_for(index * 0.25 + 0.125, 48 + (index % 5) * 2)
        assert image.pixel(point.x(), point.y()) == loud
    for pitch in (49, 51, 60, 79):  # rows without notes
        y = roll.point_for(0, pitch).y()
        assert all(image.pixel(x, y) not in (loud, soft) for x in range(0, image.width(), 3))
    roll.state.select([lone.id])
    image = roll.canvas.grab().toImage()
    assert image.pixel(centre.x(), centre.y()) == Palette.note_fill(MOTIF, 20, selected=True).rgb()
    lane = roll.velocity_lane.grab().toImage()
    x = round(roll.state.x_of(50)) + 1
    assert lane.pixel(x, lane.height() - 6) == loud
    assert lane.pixel(x, round(roll.velocity_lane.y_of(127)) - 3) != loud  # stems stop at their velocity
