"""The studio's MIDI port “Continuo”, for a DAW to record what the studio plays, through JACK's dummy driver: a
second JACK client (the DAW) connects to it and hears the song as played, while the chosen output plays on."""

from __future__ import annotations

import pytest

from continuo.playback import RecorderSink
from tests.continuo.helpers import MELODY, JackProbe, onsets, require_jack, unique, wait_until

pytestmark = pytest.mark.timeout(60)


def test_the_continuo_port_carries_what_the_studio_plays_to_a_daw_beside_the_output(qtbot, window):
    require_jack()
    player, song, action = window.player, window.song, window.studio_actions.daw_port_action
    output = RecorderSink()
    player.use_sinks([output])  # the output the musician hears
    client = player.daw_client_name = unique("Continuo daw")
    assert not action.isChecked() and action.isEnabled()
    action.trigger()  # Playback ▸ MIDI Port “Continuo” for a DAW
    qtbot.waitUntil(lambda: player.daw_port is not None, timeout=10000)
    assert action.isChecked() and window.preferences.get("daw_port") is True
    indicator = window.output_indicator  # it still names the output heard, and says where else the music goes
    assert indicator.full_text == "♪ recorder" and "MIDI port “Continuo” too" in indicator.toolTip()
    daw = JackProbe("daw")
    try:
        daw.connect_to(f"{client}:Continuo")  # the port's name, as a DAW lists it
        song.add_notes([song.new_note(n.pitch, n.velocity, song.to_beats(n.start), song.to_beats(n.end - n.start))
                        for n in MELODY])  # fmt: skip
        window.transport.set_playing(True)
        assert daw.wait_for(lambda probe: len(probe.notes()) == 8, 10), daw.received
        assert [(kind, pitch) for _, kind, pitch, _ in daw.notes()] == [
            (kind, note.pitch) for note in MELODY for kind in ("on", "off")
        ], daw.received
        assert [velocity for _, kind, _, velocity in daw.notes() if kind == "on"] == [90, 80, 70, 100]
        for (at, pitch), note in zip(onsets(daw.notes()), MELODY, strict=True):
            # a DAW stamps what arrives: the studio's timing, within JACK's periods and a busy machine's slack
            assert at == pytest.approx(note.start, abs=0.08), (pitch, at)
        qtbot.waitUntil(lambda: not window.transport.playing, timeout=5000)
        assert [pitch for _, kind, pitch, _ in output.notes() if kind == "on"] == [60, 64, 67, 72]  # heard too
        window.transport.audition(55, 70)  # a key clicked is heard and recorded alike
        window.transport.end_audition(55)
        assert daw.wait_for(lambda probe: any(pitch == 55 for _, _, pitch, _ in probe.notes()), 5)
        action.trigger()  # off: the port goes
        assert player.daw_port is None and not action.isChecked() and window.preferences.get("daw_port") is False
        assert wait_until(lambda: not any(f"{client}:Continuo" in name for name in daw.port.get_ports()), 5)
        assert output in player.scheduler.sinks and len(player.scheduler.sinks) == 1
    finally:
        daw.close()


def test_a_port_that_cannot_open_unticks_the_option_and_says_why(qtbot, window, monkeypatch):
    monkeypatch.setenv("CONTINUO_MIDI_API", "jack")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "no-such-server")  # no MIDI system at all
    action = window.studio_actions.daw_port_action
    action.trigger()
    qtbot.waitUntil(lambda: not action.isChecked(), timeout=10000)
    assert window.player.daw_port is None and window.preferences.get("daw_port") is False
    said = window.message_line.history()  # (the output's own words may follow)
    assert any("“Continuo” for a DAW cannot open: No MIDI system" in line for line in said), said
