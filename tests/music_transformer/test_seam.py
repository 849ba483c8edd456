"""The seam between a primer and what the model writes after it: the generated tokens decode from where the primer
leaves off (its velocity in force, its notes still sounding), on every path, with the bundled model."""

import subprocess
import sys

import pytest

from music_transformer import (
    Note,
    continuation_notes,
    encode,
    events,
    generate,
    infill,
    load_checkpoint,
    primer_tokens,
    read_midi,
    write_midi,
)
from music_transformer.events import (
    DEFAULT_VELOCITY,
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    VELOCITY_OFFSET,
    NoteDecoder,
    bin_to_velocity,
    decode_after,
    is_note_off,
    is_note_on,
    is_velocity,
    shift_ticks,
)

LOUD = 100


@pytest.fixture(scope="module")
def bundled():
    return load_checkpoint(device="cpu")


def arpeggio_over_a_bass(velocity=LOUD):
    """Two bars of a C major arpeggio in eighths over a C3-G2 bass, 120 bpm, every note at `velocity`."""
    upper = [Note(pitch, velocity, i * 0.25, (i + 1) * 0.25) for i, pitch in enumerate([60, 64, 67, 72, 67, 64] * 3)]
    return upper[:16] + [Note(pitch, velocity, i * 1.0, (i + 1) * 1.0) for i, pitch in enumerate([48, 43, 48, 43])]


def expected_velocities(primer, tokens, start):
    """(pitch, start tick) -> velocity of every note the tokens strike: the last velocity event before it, the
    primer's included (64 where there is none)."""
    velocity = DEFAULT_VELOCITY
    for token in primer:
        if is_velocity(token):
            velocity = bin_to_velocity(token - VELOCITY_OFFSET)
    expected, now = {}, events.to_ticks(start)
    for token in tokens:
        now += shift_ticks(token)
        if is_velocity(token):
            velocity = bin_to_velocity(token - VELOCITY_OFFSET)
        elif is_note_on(token):
            expected[(token - NOTE_ON_OFFSET, now)] = velocity
    return expected


def notes_before_own_velocity(tokens):
    """How many notes the model strikes before it writes a velocity of its own."""
    first = next((i for i, token in enumerate(tokens) if is_velocity(token)), len(tokens))
    return sum(is_note_on(token) for token in tokens[:first])


def assert_velocities_follow_the_tokens(notes, primer, tokens, start):
    expected = expected_velocities(primer, tokens, start)
    assert len(notes) == len(expected)
    assert {(note.pitch, events.to_ticks(note.start)): note.velocity for note in notes} == expected


def test_a_motif_at_100_continues_at_100_until_the_model_writes_a_velocity(bundled):
    motif = arpeggio_over_a_bass()
    motif_end = max(note.end for note in motif)
    primer = primer_tokens(motif, until=motif_end)
    tokens = list(generate(bundled, primer, seconds=12, seed=2))
    assert notes_before_own_velocity(tokens) >= 3  # the seed writes notes before a velocity of its own
    notes = continuation_notes(tokens, start=motif_end, primer=primer)
    assert_velocities_follow_the_tokens(notes, primer, tokens, motif_end)
    leading = notes[:notes_before_own_velocity(tokens)]
    assert leading and all(note.velocity == bin_to_velocity(events.velocity_to_bin(LOUD)) for note in leading)
    assert continuation_notes(tokens, start=motif_end, primer=motif) == notes  # the motif as notes: the same


def test_beam_search_decodes_the_same_way(bundled):
    motif = arpeggio_over_a_bass()
    primer = primer_tokens(motif, until=4.0)
    tokens = list(generate(bundled, primer, seconds=4, beam_size=3))
    assert notes_before_own_velocity(tokens) >= 1
    notes = continuation_notes(tokens, start=4.0, primer=primer)
    assert_velocities_follow_the_tokens(notes, primer, tokens, 4.0)
    assert all(note.velocity != DEFAULT_VELOCITY for note in notes)


def test_a_fill_takes_the_velocity_of_the_music_before_the_gap(bundled):
    song = arpeggio_over_a_bass(velocity=40) * 1
    song += [Note(note.pitch, 40, note.start + 6.0, note.end + 6.0) for note in arpeggio_over_a_bass()]
    start, end = 3.0, 6.0
    before = [note for note in song if note.start < start]
    after = [note for note in song if note.start >= end]
    for seed in range(4):
        tokens = list(infill(bundled, before, after, start, end, seed=seed))
        if notes_before_own_velocity(tokens):
            break
    else:
        pytest.fail("no fill struck a note before a velocity of its own")
    notes = continuation_notes(tokens, start=start, primer=before)
    primer = events.split_at(encode(before), events.to_ticks(start))[0]
    assert_velocities_follow_the_tokens(notes, primer, tokens, start)
    assert notes[0].velocity == bin_to_velocity(events.velocity_to_bin(40))


def test_a_note_sounding_across_the_seam_gets_the_end_the_model_gives_it(bundled):
    """From Playhead: the bass sounds on across the seam at 2.5 s; the model's note-off ends it, and it is not
    a new note of the continuation."""
    motif = arpeggio_over_a_bass()
    seam = 2.5
    primer = events.split_at(encode(motif), events.to_ticks(seam))[0]
    tokens = list(generate(bundled, primer, seconds=6, seed=0))
    off_tick, now = None, 0
    for token in tokens:
        now += shift_ticks(token)
        if token == NOTE_OFF_OFFSET + 48 and off_tick is None:
            off_tick = now
    assert off_tick is not None  # the model (or the stream's close) ends the bass
    notes, extended = decode_after(primer, tokens, start=seam)
    bass = [note for note in extended if note.pitch == 48]  # (the C5 ending at the seam ends there too)
    assert bass == [Note(48, LOUD - 2, 2.0, seam + off_tick / 100)]  # 100's bin plays at 98
    assert all(note.start >= seam for note in notes)
    assert_velocities_follow_the_tokens(notes, primer, tokens, seam)


def test_the_decoder_after_a_primer_carries_its_notes_and_leaves_those_never_ended():
    primer = encode([Note(60, 100, 0.0, 2.0), Note(64, 100, 0.0, 2.0), Note(67, 30, 0.5, 2.0)])
    primer = events.split_at(primer, 100)[0]  # all three sound at 1.0 s
    decoder = NoteDecoder.after(primer, time_offset=1.0)
    assert decoder.velocity == bin_to_velocity(events.velocity_to_bin(30)) and decoder.carried == {60, 64, 67}
    new = []
    for token in [events.time_shift(10), NOTE_OFF_OFFSET + 60, events.time_shift(10), NOTE_ON_OFFSET + 64,
                  events.time_shift(10), NOTE_OFF_OFFSET + 64]:
        new += decoder.feed(token)
    new += decoder.finish()
    assert [note.pitch for note in decoder.extended] == [60, 64]  # the note-off, then the restrike
    assert decoder.extended[0] == Note(60, 98, 0.0, 1.1) and decoder.extended[1].end == pytest.approx(1.2)
    assert new == [Note(64, 30, 1.2, 1.3)]  # the restrike is new, at the velocity in force; 67 stays as it was
    assert events.decode([NOTE_ON_OFFSET + 60, events.time_shift(5)]) == [Note(60, 64, 0.0, 0.05)]


def test_a_note_off_of_a_note_the_primer_never_struck_is_ignored():
    notes, extended = decode_after([], [NOTE_OFF_OFFSET + 60, events.time_shift(5)], start=0.0)
    assert notes == [] and extended == []
    assert not any(is_note_off(t) for t in primer_tokens([Note(60, 90, 0.0, 1.0)], until=1.0)[:1])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "music_transformer.cli", *args], capture_output=True, text=True,
                          timeout=240)


def test_the_command_line_continues_a_motif_at_its_velocity(bundled, tmp_path):
    motif = arpeggio_over_a_bass()
    write_midi(motif, tmp_path / "motif.mid")
    result = run_cli("generate", "--primer", str(tmp_path / "motif.mid"), "--seconds", "12", "--seed", "2",
                     "--device", "cpu", "--out", str(tmp_path / "out.mid"))
    assert result.returncode == 0, result.stderr
    written = [note for note in read_midi(tmp_path / "out.mid") if note.start >= 4.0 - 1e-3]
    primer = primer_tokens(read_midi(tmp_path / "motif.mid"), until=4.0)
    tokens = list(generate(bundled, primer, seconds=12, seed=2))  # what the command wrote, token by token
    expected = expected_velocities(primer, tokens, 4.0)
    assert notes_before_own_velocity(tokens) >= 3 and len(written) == len(expected)
    assert {(note.pitch, events.to_ticks(note.start)): note.velocity for note in written} == expected
    assert DEFAULT_VELOCITY not in expected.values()


def test_the_command_line_fills_a_gap_at_the_velocity_before_it(bundled, tmp_path):
    song = [Note(note.pitch, 40, note.start + shift, note.end + shift) for shift in (0.0, 6.0)
            for note in arpeggio_over_a_bass()]
    write_midi(song, tmp_path / "song.mid")
    song = read_midi(tmp_path / "song.mid")
    before, after = [note for note in song if note.start < 3.0], [note for note in song if note.start >= 6.0]
    seed = next(seed for seed in range(6)
                if notes_before_own_velocity(list(infill(bundled, before, after, 3.0, 6.0, seed=seed))))
    result = run_cli("infill", "--input", str(tmp_path / "song.mid"), "--start", "3", "--end", "6", "--seed",
                     str(seed), "--device", "cpu", "--out", str(tmp_path / "filled.mid"))
    assert result.returncode == 0, result.stderr
    filled = [note for note in read_midi(tmp_path / "filled.mid") if 3.0 - 1e-3 <= note.start < 6.0 - 1e-3]
    tokens = list(infill(bundled, before, after, 3.0, 6.0, seed=seed))
    expected = expected_velocities(events.split_at(encode(before), 300)[0], tokens, 3.0)
    assert {(note.pitch, events.to_ticks(note.start)): note.velocity for note in filled} == expected
    assert DEFAULT_VELOCITY not in expected.values()
