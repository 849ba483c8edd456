"""Fuzzing every input the model library reads: MIDI bytes (real files mutated, hostile files built with
mido), notes, checkpoints and generation arguments.

Each test asserts the contract: the input is accepted and what comes out is within the limits, or it is
refused with the library's own error (`MidiFileError`, `CheckpointError`, `ValueError` for API
arguments), in bounded time and memory. A few examples each in `make test`; `make fuzz` runs many more
(CONTINUO_FUZZ=long selects the Hypothesis profile).
"""

import io
import json
import math
import os
import struct
import zipfile
from functools import cache

import mido
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from music_transformer import (
    CheckpointError,
    GenerationError,
    MidiFileError,
    ModelConfig,
    MusicTransformer,
    Note,
    continuation_notes,
    decode,
    encode,
    generate,
    infill,
    limits,
    load_checkpoint,
    read_midi,
    write_midi,
)
from music_transformer.events import (
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    NUM_EVENTS,
    canonical_notes,
    is_note_off,
    is_note_on,
    to_ticks,
)
from tests.bounds import bounded

settings.register_profile("continuo-quick", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("continuo-long", max_examples=1500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = os.environ.get("CONTINUO_FUZZ") == "long"
FUZZ = settings.get_profile("continuo-long" if LONG else "continuo-quick")


# --- MIDI -------------------------------------------------------------------------------------------------


def assert_canonical(notes: list[Note]) -> None:
    """What read_midi promises: notes within the limits, canonical, that the codec gives back within 10 ms."""
    assert notes and len(notes) <= limits.MAX_MIDI_NOTES
    for note in notes:
        assert limits.MIN_PITCH <= note.pitch <= limits.MAX_PITCH
        assert limits.MIN_VELOCITY <= note.velocity <= limits.MAX_VELOCITY
        assert math.isfinite(note.start) and math.isfinite(note.end)
        assert 0 <= note.start < note.end <= limits.MAX_PIECE_SECONDS
    assert canonical_notes(notes) == notes
    ends: dict[int, float] = {}
    for note in sorted(notes, key=lambda note: note.start):  # one pitch never sounds twice at once
        assert note.start >= ends.get(note.pitch, 0.0)
        ends[note.pitch] = note.end
    back = decode(encode(notes))
    assert len(back) == len(notes)

    for read, decoded in zip(sorted(notes, key=_key), sorted(back, key=_key), strict=True):
        assert read.pitch == decoded.pitch
        assert abs(read.start - decoded.start) <= 0.01 and abs(read.end - decoded.end) <= 0.01


def read_contract(tmp_path, data: bytes) -> None:
    """read_midi(data) keeps the contract: canonical notes, or a MidiFileError naming the file; bounded."""
    path = tmp_path / "fuzz.mid"
    path.write_bytes(data)
    with bounded(f"reading {len(data):,} bytes"):
        try:
            notes = read_midi(path)
        except MidiFileError as error:
            assert str(error).startswith("fuzz.mid: ")
            return
    assert_canonical(notes)


def _track(*messages, ticks_per_beat=480, tracks=1) -> bytes:
    file = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    for _ in range(tracks):
        file.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    file.save(file=buffer)
    return buffer.getvalue()


@cache
def seed_files() -> tuple[bytes, ...]:
    """Real files to mutate: an export, a pedalled multi-track performance with tempo changes, program
    changes, controllers, text, sysex and running status."""
    notes = [Note(48 + (i * 5) % 36, 30 + i, i * 0.1, i * 0.1 + 0.25) for i in range(60)]
    exported = _exported(notes)
    msg = mido.Message
    performance = _track(
        mido.MetaMessage("set_tempo", tempo=400_000), mido.MetaMessage("track_name", name="piano"),
        msg("program_change", program=3), msg("control_change", control=64, value=127),
        *[message for i in range(30) for message in (
            msg("note_on", note=50 + i % 20, velocity=70, time=60),
            msg("control_change", control=7, value=i, time=5),
            msg("note_on", note=50 + (i + 3) % 20, velocity=0, time=40), msg("pitchwheel", pitch=i * 10),
            msg("sysex", data=[1, 2, 3]))],
        msg("control_change", control=64, value=0, time=100), mido.MetaMessage("set_tempo", tempo=900_000, time=10),
        msg("note_on", channel=9, note=36, velocity=100), msg("note_off", channel=9, note=36, time=30),
        msg("note_on", note=60, velocity=90), msg("note_on", note=60, velocity=80, time=0),  # a unison
        msg("note_off", note=60, time=200), tracks=2)
    return exported, performance


def _exported(notes) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        write_midi(notes, os.path.join(folder, "seed.mid"))
        with open(os.path.join(folder, "seed.mid"), "rb") as handle:
            return handle.read()


INTERESTING = [0x00, 0x01, 0x3C, 0x40, 0x7F, 0x80, 0x81, 0x90, 0xB0, 0xC0, 0xF0, 0xF7, 0xFF]


@st.composite
def mutated_midi(draw) -> bytes:
    """A real MIDI file with bytes overwritten, inserted, deleted, repeated or cut off."""
    data = bytearray(draw(st.sampled_from(seed_files())))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["overwrite", "insert", "delete", "repeat", "truncate", "length"]))
        if action == "overwrite":
            data[where] = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255)))
        elif action == "insert":
            data[where:where] = bytes(draw(st.lists(st.sampled_from(INTERESTING), min_size=1, max_size=8)))
        elif action == "delete":
            del data[where:where + draw(st.integers(1, 16))]
        elif action == "repeat":
            span = data[where:where + draw(st.integers(1, 12))]
            data[where:where] = span * draw(st.integers(1, 2000))
        elif action == "truncate":
            del data[where:]
        else:  # a header or track length, or a big number in a delta time
            data[where:where + 4] = struct.pack(">I", draw(st.sampled_from([0, 1, 6, 2**16, 2**28 - 1, 2**32 - 1])))
    return bytes(data)


@FUZZ
@given(data=mutated_midi())
def test_mutated_midi_files_keep_the_contract(tmp_path_factory, data):
    read_contract(tmp_path_factory.mktemp("midi"), data)


MESSAGES = st.one_of(
    st.builds(lambda note, velocity, time: mido.Message("note_on", note=note, velocity=velocity, time=time),
              st.integers(0, 127), st.integers(0, 127), st.integers(0, 2**28 - 1) | st.integers(0, 50)),
    st.builds(lambda note, time: mido.Message("note_off", note=note, time=time), st.integers(0, 127),
              st.integers(0, 2**28 - 1) | st.integers(0, 50)),
    st.builds(lambda control, value, time: mido.Message("control_change", control=control, value=value, time=time),
              st.sampled_from([64, 64, 7, 1]), st.integers(0, 127), st.integers(0, 50)),
    st.builds(lambda tempo, time: mido.MetaMessage("set_tempo", tempo=tempo, time=time),
              st.integers(1, 0xFFFFFF), st.integers(0, 50)),
    st.builds(lambda program: mido.Message("program_change", program=program), st.integers(0, 127)),
    st.builds(lambda channel, note: mido.Message("note_on", channel=channel, note=note, velocity=100),
              st.integers(0, 15), st.integers(0, 127)),
    st.builds(lambda size: mido.Message("sysex", data=[0x7E] * size), st.integers(0, 3000)),
    st.builds(lambda text: mido.MetaMessage("text", text=text), st.text(alphabet="abc ", max_size=50)),
)


@st.composite
def hostile_midi(draw) -> bytes:
    """A well-formed MIDI file of random events: huge delta times, tempi from 1 µs to 16 s a beat, floods
    of one message, many tracks, 1 to 32767 ticks a beat or SMPTE frames (24 to 30 a second, 1 to 255 ticks each)."""
    messages = draw(st.lists(MESSAGES, min_size=1, max_size=40))
    flood = draw(st.sampled_from([1, 1, 1, 1000, 10_000]))
    if flood > 1:
        messages = messages + [messages[-1].copy(time=0)] * flood
    smpte = [-(frames << 8) + ticks for frames in (24, 29) for ticks in (1, 255)]
    return _track(*messages, ticks_per_beat=draw(st.sampled_from([1, 24, 480, 32767, *smpte])),
                  tracks=draw(st.sampled_from([1, 2, 16])))


@FUZZ
@given(data=hostile_midi())
def test_hostile_midi_files_keep_the_contract(tmp_path_factory, data):
    read_contract(tmp_path_factory.mktemp("midi"), data)


NOTES = st.lists(st.builds(Note, st.integers(0, 127), st.integers(-10, 200),
                           st.floats(-1, 30) | st.sampled_from([0.0, 0.004, 0.005, 0.0051, 1.0]),
                           st.floats(-1, 30) | st.sampled_from([0.0, 0.005, 1.0, 1.004])),
                 max_size=60)


@FUZZ
@given(notes=NOTES)
@example(notes=[Note(0, 0, -0.00390625, 0.0)])  # a start before 0 s that rounds to 0 s
def test_canonical_notes_are_what_the_codec_gives_back(notes):
    canonical = canonical_notes(notes)
    assert encode(canonical) == encode(notes) and canonical_notes(canonical) == canonical
    if canonical:
        assert_canonical(canonical)


def _key(note):
    return note.pitch, to_ticks(note.start)


@FUZZ
@given(notes=NOTES, bpm=st.floats(limits.MIN_BPM, limits.MAX_BPM))
def test_written_files_read_back_canonical(tmp_path_factory, notes, bpm):
    path = tmp_path_factory.mktemp("midi") / "out.mid"
    canonical = canonical_notes(notes)
    write_midi(notes, path, bpm=bpm)
    if not canonical:
        with pytest.raises(MidiFileError, match="no notes"):
            read_midi(path)
        return
    back = read_midi(path)
    assert_canonical(back)
    # Every note comes back, in the 10 ms steps it was written in (a MIDI tick's rounding once moved a strike
    # into the next step, onto the next strike of its pitch, and the two became one).
    assert _steps(back) == _steps(canonical)


def _steps(notes):
    """Each note as the codec's grid sees it: pitch, velocity, and the 10 ms steps it starts and ends in."""
    return sorted((n.pitch, n.velocity, to_ticks(n.start), to_ticks(n.end)) for n in notes)


# Strikes of two pitches close to the edges of 10 ms steps, short and restruck: where a MIDI tick's rounding moved a
# strike into the next step, onto the next strike of its pitch, and the two became one.
EDGY_NOTES = st.lists(st.builds(lambda pitch, velocity, step, edge, length: Note(pitch, velocity, (step + edge) / 100,
                                                                                 (step + edge) / 100 + length),
                                st.sampled_from([60, 61]), st.integers(1, 127), st.integers(0, 400),
                                st.floats(0.45, 0.55), st.floats(0.0001, 0.03)),
                      min_size=1, max_size=40)


@FUZZ
@given(notes=EDGY_NOTES, bpm=st.floats(limits.MIN_BPM, limits.MAX_BPM))
@example(notes=[Note(60, 90, 1.0049, 1.0145), Note(60, 90, 1.0145, 1.2)], bpm=120.0)  # a 9.6 ms note, restruck
def test_export_then_import_never_loses_or_moves_a_note(tmp_path_factory, notes, bpm):
    """1,663 notes came back 1,662: export put a 9.6 ms note's start into the next 10 ms step, onto its restrike."""
    path = tmp_path_factory.mktemp("midi") / "out.mid"
    canonical = canonical_notes(notes)
    write_midi(notes, path, bpm=bpm)
    back = read_midi(path)
    assert len(back) == len(canonical)
    assert _steps(back) == _steps(canonical)
    assert canonical_notes(back) == back


GRID_NOTES = st.lists(st.builds(lambda pitch, velocity, start, length: Note(pitch, velocity, start / 100,
                                                                            (start + length) / 100),
                                st.integers(0, 127), st.integers(1, 127), st.integers(0, 3000), st.integers(1, 500)),
                      min_size=1, max_size=60)


@FUZZ
@given(notes=GRID_NOTES, bpm=st.floats(limits.MIN_BPM, limits.MAX_BPM))
def test_notes_on_the_10_ms_grid_are_exported_and_read_back_within_a_midi_tick(tmp_path_factory, notes, bpm):
    """What the model writes (on its 10 ms grid) survives a MIDI file: every note, each within half a tick."""
    path = tmp_path_factory.mktemp("midi") / "out.mid"
    write_midi(notes, path, bpm=bpm)
    back, canonical = sorted(read_midi(path), key=_key), sorted(canonical_notes(notes), key=_key)
    assert [(n.pitch, n.velocity) for n in back] == [(n.pitch, n.velocity) for n in canonical]
    half_tick = 60 / bpm / 960 / 2 + 1e-9
    for read, written in zip(back, canonical, strict=True):
        assert abs(read.start - written.start) <= half_tick and abs(read.end - written.end) <= half_tick


@FUZZ
@given(notes=st.lists(st.builds(Note, st.integers(-5, 200), st.integers(1, 127),
                                st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e9, 0.5]),
                                st.sampled_from([float("nan"), float("inf"), 1e12, 7201.0, 1.0])), min_size=1))
def test_notes_outside_the_limits_are_a_value_error(notes):
    bad = any(not 0 <= n.pitch <= 127 or not (math.isfinite(n.start) and math.isfinite(n.end))
              or max(n.start, n.end) > limits.MAX_PIECE_SECONDS for n in notes)
    if bad:
        with pytest.raises(ValueError):
            encode(notes)
    else:
        assert_canonical(canonical_notes(notes))


# --- checkpoints ----------------------------------------------------------------------------------------------

TINY = dict(n_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.0, max_relative_distance=16, train_length=16)


@cache
def tiny_state() -> dict:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    model = MusicTransformer(ModelConfig(**TINY))
    torch.save({"format": "continuo-music-transformer", "version": 1, "config": model.config.to_dict(),
                "model": model.state_dict(), "metadata": {"steps": 1}}, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


ODD_VALUES = st.one_of(st.integers(-3, 3), st.sampled_from([0, -1, 10**6, 2**31, 2**63, 2.5, float("nan"), float("inf"),
                                                            True, None, "8", [8], {"n": 8}]))


@st.composite
def mutated_checkpoint(draw) -> dict:
    """A tiny model's checkpoint with settings, versions, metadata and weights of every odd kind."""
    state = dict(tiny_state())
    config = dict(state["config"])
    for key in draw(st.lists(st.sampled_from(sorted(config)), max_size=3, unique=True)):
        config[key] = draw(ODD_VALUES | st.sampled_from(["relative", "absolute", "rotary"]))
    state["config"] = config
    weights = dict(state["model"])
    for name in draw(st.lists(st.sampled_from(sorted(weights)), max_size=2, unique=True)):
        weights[name] = draw(st.sampled_from([
            torch.full_like(weights[name], float("nan")), torch.zeros(3), weights[name].half(),
            weights[name].to(torch.int64), torch.zeros(0), torch.full_like(weights[name], float("inf")),
            weights[name].expand(2, *weights[name].shape)]))
    if draw(st.booleans()) and weights:
        del weights[draw(st.sampled_from(sorted(weights)))]
    state["model"] = weights
    if draw(st.booleans()):
        state[draw(st.sampled_from(["version", "metadata", "format", "config", "model"]))] = draw(ODD_VALUES)
    return state


def load_contract(path) -> None:
    """load_checkpoint(path) keeps the contract: a model within the limits, or a CheckpointError naming the file."""
    with bounded(f"loading {path.name}"):
        try:
            model = load_checkpoint(path, device="cpu")
        except CheckpointError as error:
            assert path.name in str(error)
            return
    assert model.config.parameter_count() <= limits.MAX_PARAMETERS
    assert all(torch.isfinite(weight).all() for weight in model.state_dict().values())


@FUZZ
@given(state=mutated_checkpoint())
def test_mutated_checkpoints_keep_the_contract(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("model") / "fuzz.pt"
    torch.save(state, path)
    load_contract(path)


@FUZZ
@given(mutations=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.floats(0, 1), packed=st.booleans())
def test_damaged_checkpoint_files_keep_the_contract(tmp_path_factory, mutations, cut, packed):
    folder = tmp_path_factory.mktemp("model")
    buffer = io.BytesIO()
    torch.save(tiny_state(), buffer)
    data = bytearray(buffer.getvalue())
    if packed:  # a tensor stored as a deflated zip member: small on disk, big when unpacked
        repacked = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as original, zipfile.ZipFile(repacked, "w") as copy:
            for info in original.infolist():
                body = original.read(info)
                big = info.filename.endswith("/0")
                copy.writestr(info.filename, bytes(2**24) if big else body,
                              compress_type=zipfile.ZIP_DEFLATED if big else zipfile.ZIP_STORED)
        data = bytearray(repacked.getvalue())
    for where, value in mutations:
        data[int(where * (len(data) - 1))] = value
    if cut is not None:
        del data[int(cut * len(data)):]
    (folder / "fuzz.pt").write_bytes(bytes(data))
    load_contract(folder / "fuzz.pt")


def write_shipped(folder, state: dict):
    """`state` in the shipped form: its weights, each in its own dtype and shape, as folder/fuzz.safetensors (the
    tied head left out, as save_checkpoint does), the rest as folder/fuzz.json."""
    import safetensors.torch

    weights = state.get("model")
    weights = {name: tensor.contiguous().clone() for name, tensor in weights.items()
               if name != "head.weight" and isinstance(tensor, torch.Tensor)} if isinstance(weights, dict) else {}
    (folder / "fuzz.safetensors").write_bytes(safetensors.torch.save(weights))
    (folder / "fuzz.json").write_text(json.dumps({key: value for key, value in state.items() if key != "model"}))
    return folder / "fuzz.safetensors"


@FUZZ
@given(state=mutated_checkpoint())
def test_mutated_shipped_models_keep_the_contract(tmp_path_factory, state):
    """The same mutations in the shipped form (safetensors and JSON): the dtypes it refuses (int64), shapes that
    are not the config's, missing weights and odd configs, each a CheckpointError before a weight is read."""
    load_contract(write_shipped(tmp_path_factory.mktemp("model"), state))


@FUZZ
@given(mutations=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.floats(0, 1), in_header=st.booleans(), in_config=st.booleans())
@example(mutations=[(0.0, 255)], cut=None, in_header=False, in_config=False)  # the header's length wrong
def test_damaged_shipped_models_keep_the_contract(tmp_path_factory, mutations, cut, in_header, in_config):
    folder = tmp_path_factory.mktemp("model")
    path = write_shipped(folder, tiny_state())
    assert load_checkpoint(path, device="cpu").config == ModelConfig(**TINY)  # whole, it loads
    target = folder / "fuzz.json" if in_config else path
    data = bytearray(target.read_bytes())
    span = int.from_bytes(data[:8], "little") + 8 if in_header and not in_config else len(data)
    for where, value in mutations:
        data[int(where * (span - 1))] = value
    if cut is not None:
        del data[int(cut * len(data)):]
    target.write_bytes(bytes(data))
    load_contract(path)


# --- generation arguments --------------------------------------------------------------------------------------


@cache
def tiny_model() -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(ModelConfig(**TINY)).eval()


ARGUMENTS = st.fixed_dictionaries({}, optional={
    "temperature": ODD_VALUES | st.floats(0, 3), "top_k": ODD_VALUES | st.integers(0, 500),
    "top_p": ODD_VALUES | st.floats(0, 1), "seed": ODD_VALUES | st.integers(0, 2**40)
    | st.sampled_from([2**63 - 1, 2**64 - 1, 2**64, 10**300, -5]),
    "window": ODD_VALUES | st.integers(1, 64), "max_tokens": ODD_VALUES | st.integers(0, 40),
    "seconds": ODD_VALUES | st.floats(0, 2), "max_note_seconds": ODD_VALUES | st.floats(0, 2),
    "cpu_threads": st.sampled_from([None, 1, 0, -1, 1.5, "1"]), "style": st.sampled_from(["any", "folk", "jazz", 3]),
    "beam_size": st.sampled_from([1, 2, 0, -1]), "repetition_penalty": ODD_VALUES | st.floats(0, 12),
})


@FUZZ
@given(arguments=ARGUMENTS, primer=st.lists(st.integers(-2, 400), max_size=6) | NOTES.map(lambda n: n[:5]))
@example(arguments={"seed": 2**64}, primer=[])  # torch's overflow at the first token, not a ValueError at the call
@example(arguments={"temperature": 8.2e-47}, primer=[])  # 1 / temperature overflowed the scores
def test_generation_arguments_are_checked_when_called(arguments, primer):
    """Every setting is refused with a ValueError at the call, or the stream writes valid music within it."""
    arguments.setdefault("max_tokens", 24)
    if arguments["max_tokens"] is None and arguments.get("seconds") is None:
        arguments["max_tokens"] = 24  # with neither bound a stream goes on until its caller stops it: by design
    try:
        stream = generate(tiny_model(), primer, **arguments)
    except ValueError:
        return
    with bounded("generating"):
        tokens = list(stream)
    budget = arguments["max_tokens"]
    assert budget is None or len(tokens) <= budget
    sounding = set()
    for token in tokens:
        assert 0 <= token < NUM_EVENTS  # performance events only: no control tokens
        if is_note_on(token):
            sounding.add(token - NOTE_ON_OFFSET)
        elif is_note_off(token):
            sounding.discard(token - NOTE_OFF_OFFSET)
    assert not sounding, "a note is left sounding when the stream stops"


@pytest.mark.parametrize("arguments", [dict(beam_size=1.5), dict(beam_size="2"), dict(beam_size=True),
                                       dict(beam_size=2, length_penalty=float("nan")),
                                       dict(beam_size=2, length_penalty="x")])
def test_beam_arguments_are_checked_when_called(arguments):
    with pytest.raises(ValueError):
        generate(tiny_model(), [], max_tokens=4, **arguments)


GAP_TIMES = st.floats(0, 7300) | st.sampled_from([0.0, 1.0, 1.001, 1.004, 1.006, 7190.0, 7200.0, 7201.0, 1e8, 1e308,
                                                   1.7e308, float("inf"), float("nan"), -1.0, True, "1", None])


@FUZZ
@given(start=GAP_TIMES, end=GAP_TIMES, seed=st.integers(0, 3))
def test_gaps_to_fill_are_checked_when_called(start, end, seed):
    """A gap is refused with a ValueError at the call (not a time, past the longest piece, under 10 ms), or it
    is filled within its bounds, in bounded time and memory however late it lies."""
    before = [Note(60 + index % 12, 90, index * 0.5, index * 0.5 + 0.4) for index in range(8)]
    with bounded(f"filling {start!r} to {end!r}"):  # the call too: it reads the music up to the gap
        try:
            stream = infill(tiny_model(), before, [], start, end, seed=seed, max_tokens=24)
        except ValueError:
            return
        tokens = list(stream)
    assert 0 <= start < end <= limits.MAX_PIECE_SECONDS
    assert len(tokens) <= 24
    notes = continuation_notes(tokens, start=start, primer=before)
    assert all(start - 0.01 <= note.start and note.end <= end + 0.01 for note in notes if note.start >= start)


@FUZZ
@given(weight=st.sampled_from([3e38, -3e38, 1e30, 1e-30, 0.0]) | st.floats(-3e38, 3e38), beam=st.sampled_from([1, 3]),
       seed=st.integers(0, 3))
def test_a_model_with_any_finite_weights_writes_music_or_stops_in_words(weight, beam, seed):
    """Weights that load (finite) but make no sense: the stream writes valid music within its seconds, or stops
    with a GenerationError (3e38 everywhere wrote note-ons with no time passing for ever, and beam search raised
    IndexError)."""
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(**TINY)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(weight)
    with bounded(f"generating from weights of {weight:g}"):
        try:
            tokens = list(generate(model, [], seconds=1.0, seed=seed, beam_size=beam))
        except GenerationError as error:
            assert "\n" not in str(error) and "checkpoint may be damaged" in str(error)
            return
    assert all(0 <= token < NUM_EVENTS for token in tokens)
