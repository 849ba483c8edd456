"""Audio export: FluidSynth renders a WAV file, read back, with sound where the notes are and silence elsewhere."""

from __future__ import annotations

import math
import threading
import wave

import numpy as np
import pytest

from continuo.playback.render import RenderCancelled, render_wav
from music_transformer import Note
from tests.continuo.helpers import read_wav, require_fluidsynth, rms

pytestmark = pytest.mark.timeout(60)


def test_fluidsynth_renders_sound_where_notes_are_and_silence_where_none(tmp_path):
    soundfont = require_fluidsynth()
    notes = [Note(60, 100, 0.5, 1.0), Note(64, 100, 0.5, 1.0), Note(67, 90, 2.5, 3.0)]
    path = tmp_path / "render.wav"
    reported = []
    seconds = render_wav(notes, path, soundfont, progress=reported.append, normalize=False).seconds
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


def _peak_db(path) -> float:
    """The loudest sample of either channel, in dB below full scale."""
    with wave.open(str(path), "rb") as audio:
        samples = np.frombuffer(audio.readframes(audio.getnframes()), "<i2")
    return 20 * math.log10(float(np.abs(samples.astype(np.int32)).max()) / 32767)


def test_an_export_is_normalised_to_minus_1_dbfs_and_a_gain_moves_it(tmp_path):
    soundfont = require_fluidsynth()
    quiet = [Note(60, 25, 0.1, 0.6), Note(67, 30, 0.4, 0.9)]  # a soft phrase: the synth alone renders it quiet
    raw = render_wav(quiet, tmp_path / "raw.wav", soundfont, normalize=False)
    assert raw.peak_db < -15 and _peak_db(tmp_path / "raw.wav") == pytest.approx(raw.peak_db, abs=0.01)
    normalised = render_wav(quiet, tmp_path / "normalised.wav", soundfont)  # the default
    assert normalised.peak_db == pytest.approx(-1.0, abs=1e-6)
    assert _peak_db(tmp_path / "normalised.wav") == pytest.approx(-1.0, abs=0.01)
    assert render_wav(quiet, tmp_path / "softer.wav", soundfont, gain_db=-6.0).peak_db == pytest.approx(-7.0)
    assert _peak_db(tmp_path / "softer.wav") == pytest.approx(-7.0, abs=0.01)
    louder = render_wav(quiet, tmp_path / "louder.wav", soundfont, normalize=False, gain_db=12.0)
    assert _peak_db(tmp_path / "louder.wav") == pytest.approx(raw.peak_db + 12, abs=0.05) and louder.clipped == 0
    clipped = render_wav(quiet, tmp_path / "clipped.wav", soundfont, gain_db=6.0)  # past full scale: counted
    assert clipped.clipped > 0 and clipped.peak_db == 0.0
    for gain in (float("nan"), 30.0, -1e9):
        with pytest.raises(ValueError, match="gain"):
            render_wav(quiet, tmp_path / "bad.wav", soundfont, gain_db=gain)
