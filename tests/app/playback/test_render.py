"""Audio export: FluidSynth renders a WAV file, read back, with sound where the notes are and silence elsewhere."""

from __future__ import annotations

import threading

import pytest

from app.playback.render import RenderCancelled, render_wav
from music_transformer import Note
from tests.app.helpers import read_wav, require_fluidsynth, rms

pytestmark = pytest.mark.timeout(60)


def test_fluidsynth_renders_sound_where_notes_are_and_silence_where_none(tmp_path):
    soundfont = require_fluidsynth()
    notes = [Note(60, 100, 0.5, 1.0), Note(64, 100, 0.5, 1.0), Note(67, 90, 2.5, 3.0)]
    path = tmp_path / "render.wav"
    reported = []
    seconds = render_wav(notes, path, soundfont, progress=reported.append)
    samples, rate = read_wav(path)
    assert rate == 44100 and len(samples) / rate == pytest.approx(seconds)
    assert reported[-1] == 1.0 and reported == sorted(reported)
    assert rms(samples, rate, 0.0, 0.45) < 1e-4  # nothing before the first note
    assert rms(samples, rate, 0.55, 0.95) > 0.01  # the chord
    assert rms(samples, rate, 2.0, 2.45) < 0.002  # the chord has died away before the next note
    assert rms(samples, rate, 2.55, 2.95) > 0.01
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RenderCancelled):
        render_wav(notes, tmp_path / "cancelled.wav", soundfont, cancel=cancel)
    assert not (tmp_path / "cancelled.wav").exists()
