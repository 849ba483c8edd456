"""The Continue panel: its widgets edit the song's generation settings, undoably, and show a session's."""

from __future__ import annotations

import dataclasses

import pytest

from app.song import GenerationSettings
from music_transformer.events import STYLES
from tests.app.helpers import small_checkpoint


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


def test_style_is_chosen_in_musicians_words_kept_with_the_session_and_waits_for_a_model_with_styles(
    qtbot, window, tmp_path
):
    panel, song, generation = window.generation_panel, window.song, window.generation
    box = panel.style_box
    assert [box.itemData(index) for index in range(box.count())] == list(STYLES)
    assert box.itemText(0) == "Auto" and "Chorale" in [box.itemText(index) for index in range(box.count())]
    old = small_checkpoint(tmp_path / "old.pt", styles=False)
    generation.choose_model(old)
    qtbot.waitUntil(lambda: generation.model_source == str(old), timeout=20000)
    assert not box.isEnabled() and "made before styles" in box.toolTip()
    qtbot.keyClicks(box, "Ch")  # a model without styles: the box takes no choice
    assert song.settings.style == "any"
    new = small_checkpoint(tmp_path / "new.pt")
    generation.choose_model(new)
    qtbot.waitUntil(lambda: box.isEnabled(), timeout=20000)
    assert "Auto lets the model tell" in box.toolTip()
    qtbot.keyClicks(box, "Ch")
    assert box.currentText() == "Chorale" and song.settings.style == "chorale"
    song.undo_stack.undo()
    assert song.settings.style == "any" and box.currentText() == "Auto"
    song.undo_stack.redo()
    path = tmp_path / "song.continuo"
    assert window.document.save_to(path)
    song.load([])
    assert box.currentText() == "Auto"
    assert window.document.open_path(path, ask_to_save=False)
    assert song.settings.style == "chorale" and box.currentText() == "Chorale"
