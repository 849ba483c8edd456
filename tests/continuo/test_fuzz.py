"""Fuzzing what the studio reads from disk: session files, autosave snapshots and their journals, and the
clipboard's notes; a launch of `continuo` over a damaged autosave folder; and sequences of the musician's own
edits, each landing whole or refused in words, whose song always saves, reopens and restores the same (issue 48).

Each test asserts the contract (issue 25): the input is read and what comes out is within the limits
(continuo/limits.py), so it draws, saves and reads back; or it is refused with our own error (`SessionError`), or
for an autosave, set aside in `autosave/damaged/`, never deleted; in bounded time and memory; and the studio
still starts. A few examples each in `make test`; `make fuzz` runs many more (CONTINUO_FUZZ=long).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from continuo import limits, restore
from continuo.generation.variations import VariationKeeper
from continuo.journal import JournalLine, journal_line, parse_journal_line, scan, snapshot_text
from continuo.midi_files import export_midi, read_midi_file
from continuo.notes import MOTIF
from continuo.session import SessionError, read_session, session_from_bytes, write_session
from continuo.song import (
    CONTINUATION,
    PARTS,
    EditRefusedError,
    GenerationSettings,
    Song,
    VariationNote,
    VariationSet,
    WrittenVariation,
)
from music_transformer import MidiFileError, Note, write_midi
from music_transformer.events import to_ticks
from tests.bounds import bounded

LONG = os.environ.get("CONTINUO_FUZZ") == "long"
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "studio-quick", max_examples=30, deadline=None, derandomize=True, suppress_health_check=HEALTH
)
settings.register_profile("studio-long", max_examples=1000, deadline=None, suppress_health_check=HEALTH)
FUZZ = settings.get_profile("studio-long" if LONG else "studio-quick")
LAUNCHES = settings(FUZZ, max_examples=25 if LONG else 2)  # each one starts a studio in a subprocess

ROOT = Path(__file__).resolve().parents[2]


# --- what comes out must be within the limits ------------------------------------------------------------


def assert_song_within_limits(notes, meta) -> None:
    """What the session checks promise of a song read."""
    assert len(notes) <= limits.MAX_NOTES
    assert len({note.id for note in notes}) == len(notes)
    for note in notes:
        assert 1 <= note.id <= limits.MAX_NOTE_ID
        assert limits.MIN_PITCH <= note.pitch <= limits.MAX_PITCH
        assert limits.MIN_VELOCITY <= note.velocity <= limits.MAX_VELOCITY
        assert math.isfinite(note.start) and math.isfinite(note.length)
        assert 0 <= note.start and 0 < note.length and note.start + note.length <= limits.MAX_BEATS
        assert note.part in PARTS
    if "tempo" in meta:
        assert limits.MIN_TEMPO <= meta["tempo"] <= limits.MAX_TEMPO
    if "time_signature" in meta:
        numerator, denominator = meta["time_signature"]
        assert 1 <= numerator <= limits.MAX_NUMERATOR and denominator in limits.DENOMINATORS


def assert_song_round_trips(song: Song, folder: Path) -> None:
    """A song the studio holds saves, reads back the same, and exports as MIDI or says why not in words."""
    path = folder / "round-trip.continuo"
    write_session(song, path)
    read = read_session(path)

    def rows(notes):
        return sorted((n.id, n.pitch, n.velocity, round(n.start, 6), round(n.length, 6), n.part) for n in notes)

    assert rows(read.notes) == rows(song.notes())
    try:
        export_midi(song, folder / "round-trip.mid")
    except MidiFileError as error:
        assert str(error).startswith("round-trip.mid: ")


# --- hostile values ----------------------------------------------------------------------------------------

HOSTILE_NUMBERS = ["1e999", "-1e999", "NaN", "Infinity", "1e300", "-1", "0", "1e18", "9" * 5000, "1.5", "127", "128"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from([[], {}, [1, 2], {"a": 1}]),
)


def _good_session_data(draw) -> dict:
    notes = []
    for index in range(draw(st.integers(0, 12))):
        notes.append([index + 1, draw(st.integers(0, 127)), draw(st.integers(1, 127)),
                      draw(st.floats(0, 64)), draw(st.floats(0.01, 8)), draw(st.sampled_from(PARTS))])  # fmt: skip
    data = {
        "format": "continuo-session", "version": 1, "tempo": draw(st.floats(20, 400)),
        "time_signature": draw(st.sampled_from([[4, 4], [3, 8], [7, 8], [12, 8]])), "model": "default",
        "settings": {"temperature": 1.0, "top_k": 0}, "view": {"roll": {"left_beat": 0.0}},
        "note_fields": ["id", "pitch", "velocity", "start", "length", "part"], "notes": notes,
    }  # fmt: skip
    if draw(st.booleans()):  # format 2: a tempo map, its changes in order after beat 0
        beats = sorted(set(draw(st.lists(st.floats(0.25, 64), max_size=4))))
        data["version"] = 2
        data["tempo_changes"] = [[beat, draw(st.floats(20, 400))] for beat in beats]
        data["metre_changes"] = [[beat, *draw(st.sampled_from([[2, 4], [5, 8]]))] for beat in beats[:2]]
        data["settings"]["length"] = draw(st.floats(0.5, 400))
    return data


def _paths(data, prefix=()):
    """Every place in a JSON value: (path, value)."""
    yield prefix, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*prefix, index))


def _put(data, path, value):
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


MARK = "\u2603HOSTILE\u2603"  # replaced, in the JSON text, by a number Python's json cannot write


@st.composite
def hostile_json(draw, good) -> bytes:
    """A good document (`good(draw)`) with values replaced by hostile ones, as text, then maybe bytes damaged."""
    data = good(draw)
    numbers = []
    for _ in range(draw(st.integers(1, 4))):
        places = list(_paths(data))
        path, _ = draw(st.sampled_from(places))
        if not path:
            continue
        choice = draw(st.sampled_from(["number", "scalar", "deep", "drop"]))
        if choice == "number":
            numbers.append(draw(st.sampled_from(HOSTILE_NUMBERS)))
            _put(data, path, MARK)
        elif choice == "scalar":
            _put(data, path, copy.deepcopy(draw(SCALARS)))  # sampled lists are shared: never mutate them
        elif choice == "deep":
            _put(data, path, json.loads("[" * 500 + "]" * 500) if draw(st.booleans()) else [[[[[1]]]]])
        elif isinstance(path[-1], str):
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            parent.pop(path[-1], None)
    text = json.dumps(data)
    for number in numbers:
        text = text.replace(json.dumps(MARK), number, 1)
    raw = bytearray(text.encode())
    for _ in range(draw(st.integers(0, 2))):
        if not raw:
            break
        where = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["cut", "byte", "nest"]))
        if action == "cut":
            del raw[where:]
        elif action == "byte":
            raw[where] = draw(st.sampled_from([0x00, 0xFF, 0x22, 0x5B, 0x7D, 0x2C, 0x39, 0x80]))
        else:
            raw[where:where] = b"[" * 100_000
    return bytes(raw)


# --- session files ------------------------------------------------------------------------------------------


@FUZZ
@given(raw=hostile_json(_good_session_data))
def test_session_files_are_read_within_the_limits_or_refused_in_words(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("session")
    path = folder / "fuzz.continuo"
    path.write_bytes(raw)
    with bounded(f"reading {len(raw):,} bytes"):
        try:
            session = read_session(path)
        except SessionError as error:
            assert str(error).startswith("fuzz.continuo: ") and "\n" not in str(error)
            return
    assert_song_within_limits(session.notes, session.meta)
    song = Song()
    song.load(session.notes, session.meta)
    assert_song_round_trips(song, folder)


@FUZZ
@given(raw=hostile_json(_good_session_data))
def test_a_session_that_opens_draws_in_the_window(qtbot, window, raw):
    try:
        session = session_from_bytes(raw, "fuzz")
    except SessionError:
        return
    window.song.load(session.notes, session.meta)
    window.document.apply_view_state(session.view)
    window.roll.zoom_to_fit()
    window.grab()  # an exception while painting fails the test (pytest-qt)
    window.song.undo_stack.setClean()


# --- autosave journals -----------------------------------------------------------------------------------


def _good_journal_line(draw, seq: int) -> dict:
    added = [
        [100 + seq * 10 + index, draw(st.integers(0, 127)), draw(st.integers(1, 127)), draw(st.floats(0, 64)),
         draw(st.floats(0.01, 8)), draw(st.sampled_from(PARTS))]
        for index in range(draw(st.integers(0, 3)))
    ]  # fmt: skip
    meta = draw(st.sampled_from([{}, {"tempo": 90.0}, {"time_signature": [3, 4]}, {"settings": {"top_k": 8}}]))
    return {"seq": seq, "removed": draw(st.lists(st.integers(1, 5), max_size=2)), "added": added, "meta": meta}


@st.composite
def hostile_journal(draw) -> bytes:
    """A journal of good lines and hostile ones (values replaced, bytes damaged, lines cut short)."""
    lines = []
    for seq in range(1, draw(st.integers(1, 8)) + 1):
        if draw(st.booleans()):
            lines.append(json.dumps(_good_journal_line(draw, seq)).encode())
        else:
            lines.append(draw(hostile_json(lambda draw, seq=seq: _good_journal_line(draw, seq))).replace(b"\n", b" "))
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b'\n{"seq": 99, "add']))


@FUZZ
@given(line=hostile_json(lambda draw: _good_journal_line(draw, 1)))
def test_journal_lines_are_read_within_the_limits_or_refused(line):
    with bounded(f"a journal line of {len(line):,} bytes"):
        try:
            parsed = parse_journal_line(line)
        except ValueError:
            return
    assert isinstance(parsed, JournalLine) and parsed.seq >= 0
    assert_song_within_limits(list(parsed.added), parsed.meta)


def _snapshot(seq: int = 0) -> dict:
    return {
        "format": "continuo-session", "version": 1, "tempo": 120.0, "time_signature": [4, 4], "model": "default",
        "settings": {}, "view": {}, "note_fields": ["id", "pitch", "velocity", "start", "length", "part"],
        "notes": [[1, 60, 100, 0.0, 1.0, "motif"], [2, 64, 100, 1.0, 1.0, "motif"]],
        "autosave": {"seq": seq, "document": None, "modified": True, "saved_at": 1_700_000_000.0, "next_id": 3},
    }  # fmt: skip


def _checked(raw: bytes) -> JournalLine | None:
    """A journal line as the journal's reader checks it; None for one it refuses."""
    try:
        return parse_journal_line(raw)
    except ValueError:
        return None


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file() and path.suffix != ".lock"}


@FUZZ
@given(journal=hostile_journal(), snapshot=hostile_json(lambda draw: _snapshot()) | st.just(b""))
def test_a_damaged_autosave_is_restored_within_the_limits_or_kept_aside(tmp_path_factory, journal, snapshot):
    folder = tmp_path_factory.mktemp("autosave")
    (folder / "a.json").write_bytes(snapshot or json.dumps(_snapshot()).encode())
    (folder / "a.journal").write_bytes(journal)
    before = _files(folder)
    with bounded("scanning the autosave"):
        found = scan(folder)  # never raises
    kept = _files(folder)
    for name, data in before.items():  # nothing is deleted: offered where it was, or kept aside unchanged
        assert kept.get(name) == data or found.orphans == [] and not found.damaged
    if not found.orphans:
        return
    orphan = found.orphans[0]
    checked = [_checked(raw) for raw in journal.split(b"\n") if raw.strip()]
    song = Song()
    with bounded("restoring the autosave"):
        restored = restore.restore(orphan, song)
    # Exactly the lines that fail the checks (the planted damage, a line cut short by the kill) are left out and
    # counted; a song of at most 26 notes never reaches MAX_NOTES, the other reason to leave a line out.
    assert not restored.journal_unreadable
    assert restored.skipped == sum(line is None for line in checked)
    assert (restored.left_out() == "") == (restored.skipped == 0)
    # Every line that passes is replayed, in order, unless the snapshot already holds it (an older number).
    passed = [line.seq for line in checked if line is not None]
    replayed = [line.seq for line in orphan.journal]
    if not snapshot:  # the good snapshot, which holds no edit (its number is 0)
        assert replayed == [seq for seq in passed if seq > 0]
    else:
        remaining = iter(passed)
        assert all(seq in remaining for seq in replayed)  # a subsequence: the snapshot's number may be anything
    assert_song_within_limits(song.notes(), song.meta())
    assert_song_round_trips(song, folder)
    found.orphans[0].release()


# --- the studio still starts --------------------------------------------------------------------------------


FIFO = "fifo"  # in damaged_autosave_folder: a FIFO where a file should be (reading it blocked a start forever)


@st.composite
def damaged_autosave_folder(draw) -> dict[str, bytes | str | None]:
    """Several autosaves at once: damaged snapshots, damaged journals, folders (None) and FIFOs where files
    should be."""
    files: dict[str, bytes | str | None] = {}
    for index in range(draw(st.integers(1, 4))):
        snapshot = draw(hostile_json(lambda draw: _snapshot()) | st.just(json.dumps(_snapshot()).encode()))
        files[f"s{index}.json"] = FIFO if draw(st.integers(0, 5)) == 0 else snapshot
        kind = draw(st.sampled_from(["journal", "none", "folder", FIFO]))
        if kind == "journal":
            files[f"s{index}.journal"] = draw(hostile_journal())
        elif kind == "folder":
            files[f"s{index}.journal"] = None
        elif kind == FIFO:
            files[f"s{index}.journal"] = FIFO
    return files


@pytest.mark.timeout(600)
@LAUNCHES
@given(files=damaged_autosave_folder())
@example(files={"s0.json": FIFO, "s1.json": json.dumps(_snapshot()).encode(), "s1.journal": FIFO})
def test_the_studio_starts_over_any_damaged_autosave_folder(tmp_path_factory, files):
    home = tmp_path_factory.mktemp("home")
    folder = home / "autosave"
    folder.mkdir()
    for name, data in files.items():
        if data is None:
            (folder / name).mkdir()
        elif data == FIFO:
            os.mkfifo(folder / name)
        else:
            (folder / name).write_bytes(data)
    before = _files(folder)
    script = home / "script.json"
    dump = home / "started.json"
    script.write_text(json.dumps([{"dump": str(dump)}, {"print": "started"}]))
    env = dict(os.environ, CONTINUO_HOME=str(home), CONTINUO_SCRIPT=str(script), QT_QPA_PLATFORM="offscreen")
    studio = subprocess.Popen([sys.executable, "-m", "continuo.main"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        started = time.monotonic()
        line = ""
        while time.monotonic() - started < 90 and line.strip() != "started":
            line = studio.stdout.readline()
            if not line and studio.poll() is not None:
                break
        assert line.strip() == "started", f"the studio did not start (rc {studio.poll()})"
        assert json.loads(dump.read_text())["notes"] == []  # its window answers (a restore may be on offer)
    finally:
        studio.terminate()
        _, errors = studio.communicate(timeout=30)
    assert "Traceback" not in errors, errors[-3000:]
    kept = _files(folder)
    for name, data in before.items():  # every damaged file kept (in place, or in the damaged folder)
        assert kept.get(name) == data or _clean(Path(name).stem, before), f"{name} was lost"


def _clean(stem: str, before: dict[str, bytes]) -> bool:
    """Whether an autosave held no unsaved work (its snapshot says so): the only kind a launch may delete."""
    try:
        data = json.loads(before.get(f"{stem}.json", b""))
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(data, dict) and isinstance(data.get("autosave"), dict) and data["autosave"].get("modified") is False
    )


# --- MIDI through the studio: import, export, import again -----------------------------------------------


# Strikes of two pitches near the edges of the codec's 10 ms steps, short and restruck (issue 48: an export
# moved a strike into the next step, onto the next strike of its pitch, and the two came back as one note).
def _edgy_note(pitch: int, velocity: int, step: int, edge: float, length: float) -> Note:
    return Note(pitch, velocity, (step + edge) / 100, (step + edge) / 100 + length)


EDGY_NOTES = st.lists(
    st.builds(
        _edgy_note,
        st.sampled_from([60, 61]),
        st.integers(1, 127),
        st.integers(0, 300),
        st.sampled_from([0.5, 0.4999999, 0.5000001]) | st.floats(0.45, 0.55),
        st.floats(0.0001, 0.03),
    ),
    min_size=1,
    max_size=40,
)


@FUZZ
@given(notes=EDGY_NOTES, bpm=st.floats(limits.MIN_TEMPO, limits.MAX_TEMPO))
@example(  # a restrike 0.01 ms past a step's edge: exported at 139.3 bpm, it came back one note with the strike before
    notes=[Note(60, 1, 0.004934943749999999, 0.020637037499999997), Note(60, 1, 1.6451307937499997, 1.6550006812499998),
           Note(60, 1, 1.6550006812499998, 1.6707027749999996)],
    bpm=139.3125,
)  # fmt: skip
def test_a_midi_file_imported_then_exported_comes_back_with_every_note(tmp_path_factory, notes, bpm):
    """The studio's own round trip: the file's notes become the song's (in beats), Export MIDI writes them, and
    reading that file gives every note back in the 10 ms steps it was in."""
    folder = tmp_path_factory.mktemp("midi")
    write_midi(notes, folder / "in.mid", bpm=bpm)
    first = read_midi_file(folder / "in.mid")
    song = Song()
    tempo = first.timing.tempo
    song.load(song.notes_from_performance(first.notes, MOTIF, tempo=tempo), {"tempo": tempo})
    export_midi(song, folder / "out.mid")
    back = read_midi_file(folder / "out.mid").notes

    def steps(notes):
        return sorted((n.pitch, n.velocity, to_ticks(n.start), to_ticks(n.end)) for n in notes)

    assert len(back) == len(first.notes)
    assert steps(back) == steps(first.notes)


# --- the musician's own edits: what the studio saves, it reopens and restores (issue 48) ----------------------

BEATS = st.floats(0, 60_000) | st.sampled_from(
    [0.0, 2_399.0, 2_400.0, 14_399.5, 14_400.0, 47_999.0, 48_000.0, 5e6, 1e300, math.inf, math.nan, -1.0]
)
LENGTHS = st.floats(1e-3, 200) | st.sampled_from([1e-3, 1.0, 1e-9, 1e6, math.inf, math.nan])
SEEDS = st.none() | st.integers(0, 2**64) | st.sampled_from([-5, 10**300, 2**63 - 1, 2**63])
EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 127), BEATS, LENGTHS), min_size=1, max_size=3)),
        st.tuples(st.just("move"), st.integers(0, 50), BEATS),
        st.tuples(st.just("remove"), st.integers(0, 50)),
        st.tuples(st.just("tempo"), st.floats(limits.MIN_TEMPO, limits.MAX_TEMPO) | st.sampled_from([20.0, 400.0])),
        st.tuples(st.just("import"), st.lists(st.tuples(st.integers(0, 127), BEATS, LENGTHS), max_size=3)),
        st.tuples(st.just("continue"), BEATS, LENGTHS),
        st.tuples(st.just("pick"), BEATS, LENGTHS),
        st.tuples(st.just("settings"), SEEDS),
        st.sampled_from([("undo",), ("redo",), ("accept",), ("discard",), ("quantize",)]),
    ),
    max_size=14,
)


def _state(song: Song):
    return sorted(song.notes(), key=lambda note: note.id), song.meta()


def _edit(song: Song, edit) -> None:
    """One edit as the studio makes it, through the song's commands (the roll's gestures, paste and duplicate,
    the tempo box, Import, a variation picked, the panel's seed, Undo)."""
    kind, *args = edit
    notes = song.notes()
    if kind == "add":
        song.add_notes([song.new_note(p, 90, start, length) for p, start, length in args[0]], "Paste notes")
    elif kind == "move" and notes:
        note = notes[args[0] % len(notes)]
        song.replace_notes([note.with_(start=args[1])], "Move notes")
    elif kind == "remove" and notes:
        song.remove_notes([notes[args[0] % len(notes)].id])
    elif kind == "tempo":
        song.set_tempo(args[0])
    elif kind == "import":
        song.replace_motif([song.new_note(p, 90, start, length) for p, start, length in args[0]], tempo=None)
    elif kind == "continue":  # a continuation written as the worker reports it (its notes anywhere)
        song.add_notes([song.new_note(60, 90, args[0], args[1], CONTINUATION)], "Continue")
    elif kind == "pick":  # the variations of the continuation kept, then another one picked
        owned = frozenset(note.id for note in song.notes(CONTINUATION))
        written = (WrittenVariation(0, 1, (VariationNote(60, 90, 0.0, 1.0),)),
                   WrittenVariation(1, 2, (VariationNote(62, 90, args[0], args[1]),)))  # fmt: skip
        song.set_variations(VariationSet("continue", 0.0, 2, GenerationSettings(), written, 0, owned))
        VariationKeeper(song).choose(1)
    elif kind == "settings":
        song.set_settings(dataclasses.replace(song.settings, seed=args[0]))
    elif kind == "undo":
        song.undo_stack.undo()
    elif kind == "redo":
        song.undo_stack.redo()
    elif kind == "accept":
        song.accept_continuation()
    elif kind == "discard":
        song.discard_continuation()
    elif kind == "quantize":
        song.quantize([note.id for note in notes], 0.25, ends=True)


@FUZZ
@given(edits=EDITS)
def test_every_edit_sequence_saves_a_song_that_reopens_and_restores_the_same(qapp, tmp_path_factory, edits):
    """Each edit lands whole or is refused in words (EditRefusedError) with nothing changed; then the song saved
    reads back exactly, exports as MIDI, and its autosave (snapshot and journal) restores it exactly."""
    folder = tmp_path_factory.mktemp("edits")
    song = Song()
    song.add_notes([song.new_note(60, 90, 0.0, 1.0), song.new_note(64, 90, 1.0, 1.0)])
    (folder / "a.json").write_text(snapshot_text(song, {}, 0, None, True))  # the autosave's: the song as it starts
    lines: list[str] = []
    seq = iter(range(1, 10**6))
    song.applied.connect(lambda diff: lines.append(journal_line(next(seq), diff)))
    for edit in edits:
        before = _state(song)
        try:
            with bounded(f"the edit {edit[0]}"):
                _edit(song, edit)
        except EditRefusedError as error:
            assert str(error) and "\n" not in str(error)
            assert _state(song)[0] == before[0]  # nothing changed (a refused pick leaves its set as it was)
    assert_song_within_limits(song.notes(), song.meta())
    assert song.end_beat() <= limits.beat_limit(song.tempo) + 1e-6
    path = folder / "saved.continuo"
    write_session(song, path)
    read = read_session(path)
    assert sorted(read.notes, key=lambda note: note.id) == _state(song)[0]
    assert {key: read.meta[key] for key in ("tempo", "time_signature", "settings")} == {
        key: song.meta()[key] for key in ("tempo", "time_signature", "settings")
    }
    if len(song):
        export_midi(song, folder / "saved.mid")  # within two hours at its tempo: the library writes it
    (folder / "a.journal").write_text("".join(line + "\n" for line in lines))
    found = scan(folder)
    assert len(found.orphans) == 1 and not found.damaged
    restored_song = Song()
    restored = restore.restore(found.orphans[0], restored_song)
    assert restored.skipped == 0 and not restored.journal_unreadable
    assert _state(restored_song)[0] == _state(song)[0]
    assert restored_song.tempo == song.tempo and restored_song.settings == song.settings
    found.orphans[0].release()
