"""The song's limits hold for every edit (issue 48): an edit, a paste, a variation picked, an import or a tempo that
would leave a song the session reader refuses is refused before it lands, in words; the limits agree (a song the
reader opens is one the library exports and continues: two hours at its tempo); and every value (a seed, a
variation's numbers) is checked by one rule wherever it is entered."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PySide6.QtCore import Qt

from continuo import limits
from continuo.generation.variations import VariationKeeper
from continuo.midi_files import export_midi
from continuo.session import SessionError, read_session, write_session
from continuo.song import (
    CONTINUATION,
    EditRefusedError,
    GenerationSettings,
    Song,
    SongLimitError,
    SongNote,
    VariationNote,
    VariationSet,
    WrittenVariation,
)
from continuo.tempo_map import TempoMap
from music_transformer.limits import MAX_SEED
from tests.continuo.helpers import key


def full_song(count: int = limits.MAX_NOTES, tempo: float = 120.0, spacing: float = 0.05) -> Song:
    song = Song()
    song.load([SongNote(i + 1, 60 + i % 12, 90, i * spacing, spacing) for i in range(count)], {"tempo": tempo})
    return song


def reopens(song: Song, folder) -> list[SongNote]:
    """The song saved and read back: what the studio saves, it reopens, exactly."""
    write_session(song, folder / "song.continuo")
    read = read_session(folder / "song.continuo")
    assert sorted(read.notes, key=lambda n: n.id) == sorted(song.notes(), key=lambda n: n.id)
    return read.notes


def test_one_note_past_the_most_a_song_holds_is_refused_and_the_song_still_reopens(qapp, tmp_path):
    song = full_song()
    version = song.version
    with pytest.raises(SongLimitError, match="would hold 200,001 notes; Continuo keeps songs of up to 200,000"):
        song.add_notes([song.new_note(60, 90, 0, 1)], "Draw note")
    assert len(song) == limits.MAX_NOTES and song.version == version and song.undo_stack.count() == 0
    song.replace_notes([song.note(1).with_(pitch=72)])  # an edit that keeps the count is taken
    assert len(reopens(song, tmp_path)) == limits.MAX_NOTES


def test_the_two_hours_are_measured_through_the_tempo_map(qapp, tmp_path):
    """A song's tempo changes set where its two hours end: a slower tempo later ends them sooner, in the edit's
    check, in what the session reader opens, and so in what Continue may write."""
    song = Song()
    song.add_notes([song.new_note(60, 90, 10_000, 1)])  # 83 min at 120 BPM
    with pytest.raises(SongLimitError, match=r"beat 10,001, 2.2 hours at its tempi; .* \(beat 9,200 at its tempi\)"):
        song.set_tempo_at(4_000, 60.0)  # from beat 4,000 on at 60 BPM: 33 min + 100 min
    assert song.tempo_map.is_steady and len(song) == 1
    assert song.set_tempo_at(9_000, 60.0) is not False  # 75 min + 16.7 min: inside two hours
    assert song.last_beat() == pytest.approx(9_000 + (7_200 - 4_500) * 1.0)
    with pytest.raises(SongLimitError, match="at its tempi"):
        song.add_notes([song.new_note(62, 90, 11_800, 1)])
    reopens(song, tmp_path)
    data = json.loads((tmp_path / "song.continuo").read_text())
    data["tempo_changes"] = [[5_000.0, 30.0]]  # edited by hand: past two hours through the map
    (tmp_path / "late.continuo").write_text(json.dumps(data))
    with pytest.raises(SessionError, match="its notes end at beat 10,001, .* hours at its tempi"):
        read_session(tmp_path / "late.continuo")


def test_a_note_or_a_tempo_past_two_hours_is_refused_in_words(qapp, tmp_path):
    song = Song()  # 120 BPM: two hours end at beat 14,400
    assert song.last_beat() == 14_400 and song.last_beat(TempoMap.steady(limits.MAX_TEMPO)) == limits.MAX_BEATS
    with pytest.raises(SongLimitError, match=r"beat 40,001, 5.6 hours at 120 BPM; Continuo keeps songs of up to 2"):
        song.add_notes([song.new_note(60, 90, 40_000, 1)])
    song.add_notes([song.new_note(60, 90, 14_399, 1)])  # ends on the last beat: kept
    with pytest.raises(SongLimitError, match="hours at 100 BPM"):
        song.set_tempo(100)  # the same beats, slower, would run past two hours
    assert song.tempo == 120
    song.set_tempo(400)
    song.add_notes([song.new_note(62, 90, limits.MAX_BEATS - 1, 1)])
    with pytest.raises(SongLimitError):
        song.add_notes([song.new_note(64, 90, limits.MAX_BEATS, 0.5)])
    reopens(song, tmp_path)
    export_midi(song, tmp_path / "song.mid")  # a song the studio keeps, the library writes
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(SongLimitError):
            song.add_notes([SongNote(song.next_id(), 60, 90, bad, 1.0)])
    with pytest.raises(SongLimitError):
        song.add_notes([SongNote(limits.MAX_NOTE_ID + 1, 60, 90, 0.0, 1.0)])  # an id a session cannot hold


def test_a_session_that_runs_past_two_hours_at_its_tempo_is_refused_as_export_and_continue_would(tmp_path):
    data = {"format": "continuo-session", "version": 1, "tempo": 100.0, "time_signature": [4, 4], "model": "default",
            "settings": {}, "notes": [[1, 60, 90, 0.0, 1.0, "motif"], [2, 62, 90, 39_999.0, 1.0, "motif"]]}  # fmt: skip
    (tmp_path / "long.continuo").write_text(json.dumps(data))
    with pytest.raises(SessionError, match=r"long.continuo: .*beat 40,000, 6.7 hours at 100 BPM"):
        read_session(tmp_path / "long.continuo")
    data["tempo"] = 400.0  # the same beats at 400 BPM: 1.7 hours
    (tmp_path / "fast.continuo").write_text(json.dumps(data))
    song = Song()
    read = read_session(tmp_path / "fast.continuo")
    song.load(read.notes, read.meta)
    export_midi(song, tmp_path / "fast.mid")


def test_a_saved_note_reads_back_exactly(qapp, tmp_path):
    """make fuzz's long profile: a start of 32.493134500469935 beats came back as 32.4931345, rounded when saved."""
    song = Song()
    song.add_notes([song.new_note(60, 90, 32.493134500469935, 1 / 3), song.new_note(62, 90, 0.1 + 0.2, 0.7)])
    notes = reopens(song, tmp_path)
    assert sorted(n.start for n in notes) == [0.1 + 0.2, 32.493134500469935]


def _variations(**changes) -> dict:
    data = {
        "kind": "continue", "start": 1.0, "count": 2, "settings": {}, "chosen": 0, "owned": [1],
        "variations": [{"number": 0, "seed": 1, "notes": [[60, 90, 1.0, 1.0]]},
                       {"number": 1, "seed": 2, "notes": [[62, 90, 2.0, 1.0]]}],
    }  # fmt: skip
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "changes",
    [
        {"variations": [{"number": 0, "seed": 1, "notes": [[62, 90, 5e6, 1.0]]}]},  # a note past the longest song
        {"owned": [int("9" * 4000)]},  # an id of 4,000 digits: OverflowError in the panel's slots
        {"owned": [-3]},
        {"chosen": 10**30},
        {"variations": [{"number": 0, "seed": 10**300, "notes": []}]},
        {"variations": [{"number": 0, "seed": -5, "notes": []}]},
        {"settings": {"seed": 10**300}},
    ],
)
def test_a_sessions_variations_out_of_bounds_are_refused_in_words(tmp_path, changes):
    data = {"format": "continuo-session", "version": 1, "tempo": 120.0, "time_signature": [4, 4],
            "notes": [[1, 60, 90, 0.0, 1.0, "continuation"]], "variations": _variations(**changes)}  # fmt: skip
    (tmp_path / "v.continuo").write_text(json.dumps(data))
    with pytest.raises(SessionError, match="v.continuo: the session file is damaged"):
        read_session(tmp_path / "v.continuo")
    data["variations"] = _variations()
    (tmp_path / "v.continuo").write_text(json.dumps(data))
    assert read_session(tmp_path / "v.continuo").meta["variations"].owned == {1}


@pytest.mark.parametrize("seed", [10**300, -5, 2**63, 1.5, "7"])
def test_a_seed_is_checked_by_the_librarys_rule_in_sessions_and_in_the_song(qapp, tmp_path, seed):
    song = Song()
    with pytest.raises(SongLimitError, match="seed"):
        song.set_settings(dataclasses.replace(song.settings, seed=seed))  # -5 was taken, then every Continue failed
    assert song.settings.seed is None
    data = {"format": "continuo-session", "version": 1, "tempo": 120.0, "time_signature": [4, 4],
            "settings": {"seed": seed}, "notes": []}  # fmt: skip
    (tmp_path / "s.continuo").write_text(json.dumps(data))
    with pytest.raises(SessionError, match="seed"):
        read_session(tmp_path / "s.continuo")
    song.set_settings(dataclasses.replace(song.settings, seed=MAX_SEED))  # the largest seed generate() takes


def test_a_variation_picked_past_the_songs_end_is_refused_and_the_set_is_kept(qapp, tmp_path):
    song = Song()  # 120 BPM: beat 14,400 is two hours
    first = song.new_note(60, 90, 1.0, 1.0, CONTINUATION)
    song.add_notes([first])
    written = (
        WrittenVariation(0, 1, (VariationNote(60, 90, 1.0, 1.0),)),
        WrittenVariation(1, 2, (VariationNote(62, 90, 20_000.0, 1.0),)),  # within MAX_BEATS, past this song's end
    )
    variations = VariationSet("continue", 1.0, 2, GenerationSettings(), written, 0, frozenset({first.id}))
    song.set_variations(variations)
    keeper = VariationKeeper(song)
    with pytest.raises(EditRefusedError, match="hours at 120 BPM"):
        keeper.choose(1)
    assert song.variations == variations and [n.id for n in song.notes()] == [first.id]
    assert keeper.choose(0) is variations  # the other one is picked
    reopens(song, tmp_path)


def test_the_panels_seed_box_holds_every_seed_and_takes_none_outside(qtbot, window):
    panel, song = window.generation_panel, window.song
    panel.fixed_seed.setChecked(True)
    song.set_settings(dataclasses.replace(song.settings, seed=MAX_SEED))  # past a QSpinBox's 32 bits
    assert panel.seed_box.value() == MAX_SEED and panel.seed_box.text() == str(MAX_SEED)
    # the minus sign cannot be typed; past MAX_SEED is corrected to it, as the panel's boxes correct to the nearest
    for typed, expected in (("-5", 5), (str(MAX_SEED + 1), MAX_SEED), ("12", 12)):
        panel.seed_box.setFocus()
        panel.seed_box.selectAll()
        qtbot.keyClicks(panel.seed_box, typed)
        qtbot.keyClick(panel.seed_box, Qt.Key_Return)
        panel.top_k_box.setFocus()
        assert song.settings.seed == expected, typed
        assert panel.seed_box.text() == str(expected)
    panel.seed_box.stepBy(-20)
    assert song.settings.seed == 0


def test_roll_edits_past_the_limits_say_so_and_change_nothing(qtbot, window, roll):
    song = roll.song
    song.load([SongNote(i + 1, 60, 90, i * 0.05, 0.05) for i in range(limits.MAX_NOTES)])
    roll.state.select({1, 2})
    key(qtbot, roll, "Ctrl+D")  # Duplicate: two more notes than a song holds
    assert len(song) == limits.MAX_NOTES
    assert "Continuo keeps songs of up to 200,000 notes" in window.statusBar().currentMessage()
    song.load([])
    window.tempo_box.setValue(120)
    song.add_notes([song.new_note(60, 90, 14_000, 1)])
    window.tempo_box.setValue(60)  # the note would end 4 hours in
    assert song.tempo == 120 and window.tempo_box.value() == 120
    assert "hours at 60 BPM" in window.statusBar().currentMessage()


def test_an_import_that_would_take_the_continuation_past_two_hours_is_refused_in_words(qtbot, window, tmp_path):
    from music_transformer import Note, write_midi

    song = window.song
    song.add_notes([song.new_note(60, 90, 0, 1), song.new_note(67, 90, 14_000, 1, CONTINUATION)])  # 1.9 h
    before = sorted(song.notes(), key=lambda note: note.id)
    write_midi([Note(62, 90, 0.0, 0.5)], tmp_path / "slow.mid", bpm=60)  # at 60 BPM beat 14,000 is 3.9 hours
    assert not window.document.import_motif(tmp_path / "slow.mid")
    assert "slow.mid: " in window.last_error and "hours at 60 BPM" in window.last_error, window.last_error
    assert sorted(song.notes(), key=lambda note: note.id) == before and song.tempo == 120
