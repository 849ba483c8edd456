"""The Continue panel: its widgets edit the song's generation settings, undoably, and show a session's."""

from __future__ import annotations

import dataclasses

import pytest

from app.song import GenerationSettings


def set_length(window, beats: float, **changes) -> None:
    song = window.song
    song.set_settings(dataclasses.replace(song.settings, length_beats=beats, **changes))


def test_panel_edits_the_generation_settings_undoably(qtbot, window):
    panel, song = window.generation_panel, window.song
    panel.unit_box.setCurrentText("seconds")
    panel.length_box.setValue(300)  # five minutes
    panel.temperature_box.setValue(0.9)
    panel.fixed_seed.setChecked(True)
    panel.seed_box.setValue(42)
    panel.variations_box.setValue(4)
    settings = song.settings
    assert settings.length_unit == "seconds" and song.to_seconds(settings.length_beats) == pytest.approx(300)
    assert (settings.temperature, settings.seed, settings.variations) == (0.9, 42, 4)
    panel.unit_box.setCurrentText("bars")
    assert panel.length_box.value() == pytest.approx(150)  # 600 beats of 4/4 at 120 BPM
    song.undo_stack.undo()  # the panel's edits in a row are one undo step, as with a dragged spin box
    assert song.settings == GenerationSettings()
    assert panel.unit_box.currentText() == "bars" and panel.variations_box.value() == 1


def test_generation_settings_travel_with_the_session(window, tmp_path):
    song = window.song
    set_length(window, 48.0, variations=3, seed=9, length_unit="seconds", temperature=0.8)
    path = tmp_path / "song.continuo"
    assert window.document.save_to(path)
    song.load([])
    assert song.settings == GenerationSettings()
    assert window.open_path(path, ask_to_save=False)
    assert song.settings == GenerationSettings(
        temperature=0.8, length_beats=48.0, seed=9, variations=3, length_unit="seconds"
    )
    panel = window.generation_panel
    assert panel.unit_box.currentText() == "seconds" and panel.length_box.value() == pytest.approx(24.0)
    assert panel.variations_box.value() == 3 and panel.fixed_seed.isChecked() and panel.seed_box.value() == 9
