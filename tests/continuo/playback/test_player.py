"""The studio's player: Space plays the song from the playhead, keys sound when clicked, the output can be
another program's JACK port (and may go away), and a studio without any sound output still works."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from PySide6.QtCore import Qt

from continuo.playback.player import NONE, PORT_PREFIX
from continuo.song import CONTINUATION
from tests.continuo.helpers import JackProbe, key, require_fluidsynth, require_jack, wait_done

pytestmark = pytest.mark.timeout(90)


def set_length(window, beats: float, **changes) -> None:
    """A length of `beats` quarter notes: bars of the test song's 4/4."""
    song = window.song
    song.set_settings(dataclasses.replace(song.settings, length=beats / 4, **changes))


def test_space_plays_from_the_playhead_the_playhead_follows_and_stop_silences(qtbot, studio, roll):
    window, song = studio, studio.song
    song.set_tempo(240)  # four beats a second
    song.add_notes([song.new_note(60 + i, 90, i, 0.5) for i in range(8)])
    window.transport.set_playhead(4.0)
    key(qtbot, roll, "Space")
    assert window.transport.playing
    qtbot.waitUntil(lambda: window.transport.playhead > 5.0, timeout=5000)
    key(qtbot, roll, "Space")
    assert not window.transport.playing
    heard = [pitch for _, kind, pitch, _ in window.recorder.notes() if kind == "on"]
    assert heard[:1] == [64]  # from the playhead, not from the start
    assert not window.recorder.sounding()
    # Looping: the loop region plays again and again.
    window.recorder.clear()
    window.transport.set_loop(0.0, 2.0, enabled=True)
    window.transport.set_playhead(0.0)
    window.transport.set_playing(True)
    assert window.recorder.wait_for(lambda m: sum(x.type == "note_on" for _, x in m) >= 5, 5)
    window.transport.set_playing(False)
    assert [p for _, kind, p, _ in window.recorder.notes() if kind == "on"][:5] == [60, 61, 60, 61, 60]


def test_clicked_keys_sound_on_the_output(qtbot, studio, roll):
    window = studio
    window.transport.audition(67, 80)
    window.transport.end_audition(67)
    assert [(kind, pitch) for _, kind, pitch, _ in window.recorder.notes()] == [("on", 67), ("off", 67)]


def test_studio_output_through_jack_reaches_another_client(qtbot, studio, roll):
    require_jack()
    window, song = studio, studio.song
    probe = JackProbe("probe-studio")
    try:
        port = probe.open_virtual("in")  # a unique name: other studios may share this JACK server
        with qtbot.waitSignal(window.player.output_changed, timeout=10000):
            window.player.open_output(PORT_PREFIX + port)
        assert window.player.output is not None and port in window.player.output.name
        song.add_notes([song.new_note(pitch, 90, index, 1) for index, pitch in enumerate((60, 64, 67, 72))])
        set_length(window, 6.0, seed=3)
        assert window.generation.continue_song()
        wait_done(qtbot, window)
        qtbot.waitUntil(lambda: not window.transport.playing, timeout=20000)
        continuation = song.notes(CONTINUATION)
        # JACK delivers MIDI a period later: wait for the last note-offs too.
        assert probe.wait_for(lambda p: sum(k == "off" for _, k, _, _ in p.notes()) >= len(continuation), 5)
        ons = [pitch for _, kind, pitch, _ in probe.notes() if kind == "on"]
        assert sorted(ons) == sorted(note.pitch for note in continuation)
    finally:
        probe.close()


def test_output_port_lost_in_the_studio_stops_playback_and_says_so(qtbot, studio):
    require_jack()
    window, song = studio, studio.song
    probe = JackProbe("probe-unplugged")
    port = probe.open_virtual("in")
    with qtbot.waitSignal(window.player.output_changed, timeout=10000):
        window.player.open_output(PORT_PREFIX + port)
    song.add_notes([song.new_note(60 + i % 12, 90, i * 0.25, 0.5) for i in range(200)])
    window.transport.set_playing(True)
    assert probe.wait_for(lambda p: len(p.notes()) >= 3, 5)
    probe.close()
    qtbot.waitUntil(lambda: not window.transport.playing, timeout=5000)
    assert "went away" in window.statusBar().currentMessage() and port in window.statusBar().currentMessage()
    assert window.player.output is None and len(song) == 200  # nothing lost


def test_no_sound_at_all_the_studio_still_runs_and_continues(qtbot, home, monkeypatch, model_path):

    from continuo.main_window import MainWindow

    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # no FluidSynth library
    monkeypatch.setenv("CONTINUO_MIDI_API", "jack")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "no-such-server")  # and no MIDI system
    window = MainWindow(home=home, use_autosave=False)
    window.show()
    try:
        qtbot.waitUntil(lambda: not window.player.opening, timeout=10000)
        assert window.player.output is None
        assert "FluidSynth" in window.player.output_error and "JACK" in window.player.output_error
        indicator = window.output_indicator
        assert indicator.full_text.startswith("⚠ No sound: the built-in synth needs FluidSynth")
        assert "no JACK server" in indicator.full_text or "JACK" in indicator.full_text
        window.generation.choose_model(model_path)
        qtbot.waitUntil(lambda: window.generation.has_model, timeout=20000)
        song = window.song
        song.add_notes([song.new_note(60, 90, 0, 1)])
        set_length(window, 16.0, seed=1)
        assert window.generation.continue_song()
        wait_done(qtbot, window)
        assert song.notes(CONTINUATION)
        window.player.open_output(NONE)
    finally:
        window.song.undo_stack.setClean()
        window.close()


def _hide_sound_servers(monkeypatch) -> list[bool]:
    """Makes the studio see no sound server (and no JACK for MIDI) until the returned flag is set to False."""
    from continuo.backends import servers

    hidden = [True]
    real_present, real_jack = servers.server_present, servers.jack_server_running
    monkeypatch.setattr(servers, "server_present", lambda driver: not hidden[0] and real_present(driver))
    monkeypatch.setattr(servers, "jack_server_running", lambda: not hidden[0] and real_jack())
    return hidden


def test_the_sound_indicator_says_what_is_wrong_in_one_line_and_opens_playback_output(qtbot, home, monkeypatch):
    from continuo.main_window import MainWindow

    require_fluidsynth()
    _hide_sound_servers(monkeypatch)
    monkeypatch.setenv("CONTINUO_MIDI_API", "jack")
    window = MainWindow(home=home, use_autosave=False)
    window.resize(900, 600)
    window.show()
    try:
        qtbot.waitUntil(lambda: not window.player.opening, timeout=10000)
        indicator = window.output_indicator
        text = indicator.full_text
        assert text.startswith("⚠ No sound: the built-in synth found no audio output")
        assert "looked for PipeWire, PulseAudio, JACK and ALSA: none is running" in text
        assert "no JACK server is running" in text and "()" not in text and "\n" not in text
        assert "Playback ▸ Output" in indicator.toolTip() and "start PipeWire" in indicator.toolTip()
        window.show_message("Something else happened")  # a passing message does not hide it
        qtbot.wait(50)
        area = window.rect()
        corner = indicator.mapTo(window, indicator.rect().bottomRight())
        assert indicator.isVisible() and area.contains(indicator.mapTo(window, indicator.rect().topLeft()))
        assert area.contains(corner) and indicator.text()  # shown, shortened to its room if need be
        qtbot.mouseClick(indicator, Qt.LeftButton)
        menu = window.studio_actions.output_menu
        qtbot.waitUntil(menu.isVisible, timeout=3000)
        assert any("Automatic" in action.text() for action in menu.actions())
        menu.close()
    finally:
        window.close()


@pytest.mark.timeout(60)
def test_automatic_output_chooses_again_when_a_sound_server_appears_or_goes(qtbot, home, monkeypatch):
    from continuo.backends.fluidsynth import FluidSynthSink
    from continuo.main_window import MainWindow

    require_jack()
    require_fluidsynth()
    hidden = _hide_sound_servers(monkeypatch)
    monkeypatch.setenv("CONTINUO_MIDI_API", "jack")
    window = MainWindow(home=home, use_autosave=False)
    window.show()
    try:
        qtbot.waitUntil(lambda: not window.player.opening, timeout=10000)
        assert window.player.output is None and "No sound" in window.output_indicator.full_text
        hidden[0] = False  # a JACK server "starts" (the test's own): the port watcher notices it
        qtbot.waitUntil(lambda: isinstance(window.player.output, FluidSynthSink), timeout=10000)
        assert window.player.output.driver == "jack" and window.output_indicator.full_text.startswith("♪ built-in")
        hidden[0] = True  # and goes away: Automatic chooses again, and says so
        qtbot.waitUntil(lambda: window.player.output is None and not window.player.opening, timeout=10000)
        assert "No sound" in window.output_indicator.full_text
    finally:
        window.close()
