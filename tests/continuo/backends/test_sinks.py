"""The output sinks with real components: the studio's JACK port read by another JACK client, a port that goes
away, FluidSynth playing through JACK, and what is said when a part of the sound system is missing."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from continuo.backends.base import SinkError
from continuo.backends.fluidsynth import FluidSynthSink, find_soundfont, load_fluidsynth
from continuo.backends.rtmidi import MidiPortSink, midi_output_names
from continuo.playback import Scheduler, note_events
from music_transformer import Note
from tests.continuo.helpers import MELODY, JackProbe, onsets, require_fluidsynth, require_jack, wait_until

pytestmark = pytest.mark.timeout(60)


def test_jack_client_reads_the_studio_virtual_port_notes_order_and_timing():
    require_jack()
    client = f"Continuo-test-{os.getpid()}"  # unique: other studios may share this JACK server
    sink = MidiPortSink(virtual=True, client_name=client)
    probe = JackProbe("probe-virtual")
    scheduler = Scheduler([sink])
    try:
        probe.connect_to(f"{client}:Continuo out")  # returns once JACK has made the connection
        scheduler.play(note_events(MELODY), 0.0)
        assert probe.wait_for(lambda p: len(p.notes()) == 8, 10), probe.received
        received = probe.notes()
        assert [(kind, pitch) for _, kind, pitch, _ in received] == [
            ("on", 60),
            ("off", 60),
            ("on", 64),
            ("off", 64),
            ("on", 67),
            ("off", 67),
            ("on", 72),
            ("off", 72),
        ]
        assert [velocity for _, kind, _, velocity in received if kind == "on"] == [90, 80, 70, 100]
        # JACK's dummy driver delivers MIDI once a period (1024 frames, 23 ms): the tolerance allows for it.
        for (at, pitch), note in zip(onsets(received), MELODY, strict=True):
            assert at == pytest.approx(note.start, abs=0.05), (pitch, at)
    finally:
        scheduler.close()
        sink.close()
        probe.close()


def test_a_port_that_goes_away_mid_playback_stops_with_notes_off_and_says_so():
    require_jack()
    probe = JackProbe("probe-vanishing")
    port = probe.open_virtual("in")
    errors = []
    got_error = threading.Event()
    assert port in midi_output_names()
    sink = MidiPortSink(port)
    scheduler = Scheduler([sink], on_error=lambda s, e: (errors.append((s, e)), got_error.set()))
    try:
        scheduler.play(note_events([Note(60 + i % 12, 90, i * 0.1, i * 0.1 + 0.3) for i in range(100)]), 0.0)
        assert probe.wait_for(lambda p: len(p.notes()) >= 4, 5)
        probe.close()  # the device is unplugged
        assert got_error.wait(5)
        sink_lost, error = errors[0]
        assert sink_lost is sink and "went away" in str(error) and port in str(error)
        assert sink not in scheduler.sinks and not sink.sounding()
    finally:
        scheduler.close()
        sink.close()


def test_no_midi_system_and_no_ports_are_said_plainly(monkeypatch):
    monkeypatch.setenv("CONTINUO_MIDI_API", "jack")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "no-such-server")
    assert midi_output_names() == []
    with pytest.raises(SinkError, match="No MIDI system.*JACK"):
        MidiPortSink(virtual=True)
    with pytest.raises(SinkError, match="Choose a MIDI port"):
        MidiPortSink(None)


def test_a_missing_port_is_named():
    require_jack()
    with pytest.raises(SinkError, match="“nobody:in” is not there"):
        MidiPortSink("nobody:in")


def voices(sink: FluidSynthSink) -> int:
    """How many voices the synth is sounding now (0 when silent)."""
    return int(sink.synth.get_active_voice_count())


def test_fluidsynth_sink_plays_through_jack_and_stops_every_voice():
    require_fluidsynth()
    require_jack()
    sink = FluidSynthSink(driver="jack", program=0)
    try:
        assert sink.driver == "jack"
        sink.note_on(60, 100)
        sink.note_on(64, 100)
        assert wait_until(lambda: voices(sink) > 0, 2)
        sink.set_program(40)  # violin: the instrument choice reaches the synth
        sink.reset()
        assert wait_until(lambda: voices(sink) == 0, 5) and not sink.sounding()
    finally:
        sink.close()
    assert sink.closed
    with pytest.raises(SinkError, match="closed"):
        sink.note_on(60, 100)


def test_no_soundfont_and_a_bad_soundfont_say_what_to_install(tmp_path, monkeypatch):
    require_fluidsynth()
    monkeypatch.delenv("CONTINUO_SOUNDFONT", raising=False)
    assert find_soundfont([tmp_path]) is None
    with pytest.raises(SinkError, match="apt install fluid-soundfont-gm"):
        FluidSynthSink(tmp_path / "missing.sf2", driver="none")
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF not really a soundfont")
    with pytest.raises(SinkError, match="not a soundfont"):
        FluidSynthSink(bad, driver="none")
    (tmp_path / "TimGM6mb.sf2").write_bytes(b"x")
    (tmp_path / "FluidR3_GM.sf2").write_bytes(b"x")
    assert find_soundfont([tmp_path]).name == "FluidR3_GM.sf2"  # the better bank first


def test_no_fluidsynth_library_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # what `import fluidsynth` does without libfluidsynth
    with pytest.raises(SinkError, match="FluidSynth library.*apt install libfluidsynth3"):
        load_fluidsynth()
    with pytest.raises(SinkError, match="FluidSynth"):
        FluidSynthSink(driver="none")
