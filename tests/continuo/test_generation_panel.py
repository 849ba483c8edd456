"""The Continue panel: its widgets edit the song's generation settings, undoably, and show a session's."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QApplication, QComboBox, QDockWidget, QDoubleSpinBox, QWidget

from continuo.song import CONTINUATION, GenerationSettings
from music_transformer import limits
from music_transformer.events import NUM_EVENTS, STYLES, STYLES_VOCAB_SIZE
from tests.continuo.helpers import small_checkpoint


def set_length(window, beats: float, **changes) -> None:
    """A length of `beats` quarter notes: bars of the test song's 4/4."""
    song = window.song
    song.set_settings(dataclasses.replace(song.settings, length=beats / 4, **changes))


def test_panel_edits_the_generation_settings_undoably(qtbot, window):
    panel, song = window.generation_panel, window.song
    panel.unit_box.setCurrentText("seconds")
    panel.length_box.setValue(300)  # five minutes
    panel.temperature_box.setValue(0.9)
    panel.fixed_seed.setChecked(True)
    panel.seed_box.setValue(42)
    panel.variations_box.setValue(4)
    settings = song.settings
    assert settings.length_unit == "seconds" and settings.length == pytest.approx(300)
    assert (settings.temperature, settings.seed, settings.variations) == (0.9, 42, 4)
    panel.unit_box.setCurrentText("bars")
    assert panel.length_box.value() == pytest.approx(150)  # 600 beats of 4/4 at 120 BPM
    song.undo_stack.undo()  # the panel's edits in a row are one undo step, as with a dragged spin box
    assert song.settings == GenerationSettings()
    assert panel.unit_box.currentText() == "bars" and panel.variations_box.value() == 1


def test_the_sampling_boxes_take_the_librarys_bounds(window):
    """One set of bounds: the panel offers what generate() accepts, temperature from 0 (the likeliest event every
    step), top-k up to every event a model may draw, and top-p, which must be more than 0, from one step above it."""
    panel = window.generation_panel
    temperature, top_k, top_p = panel.temperature_box, panel.top_k_box, panel.top_p_box
    assert temperature.minimum() == limits.MIN_TEMPERATURE == 0
    assert temperature.specialValueText().startswith("0")
    assert temperature.maximum() == limits.MAX_TEMPERATURE
    assert (top_k.minimum(), top_k.maximum()) == (limits.MIN_TOP_K, limits.MAX_TOP_K) == (0, 400)
    assert top_k.maximum() >= NUM_EVENTS  # every event a model may draw
    assert top_k.specialValueText() == "off"  # its lowest, 0, turns top-k off
    assert top_p.minimum() == pytest.approx(limits.MIN_TOP_P + top_p.singleStep()) and top_p.minimum() > 0
    assert top_p.maximum() == limits.MAX_TOP_P
    assert (panel.variations_box.minimum(), panel.variations_box.maximum()) == (1, limits.MAX_VARIATIONS)
    for extreme in (limits.MIN_TEMPERATURE, limits.MAX_TEMPERATURE):
        for box, value in ((temperature, extreme), (top_k, limits.MAX_TOP_K), (top_p, top_p.minimum())):
            box.setValue(value)  # the panel's extremes are settings a session keeps
        settings = window.song.settings
        assert (settings.temperature, settings.top_k) == (extreme, limits.MAX_TOP_K)
        assert settings.top_p == pytest.approx(top_p.minimum())
        assert GenerationSettings.from_dict(settings.to_dict()) == settings


def test_avoid_loops_takes_the_librarys_bounds_and_an_older_session_opens_with_it_on(window):
    """The repetition penalty is generate()'s, on by default; "Most likely" (beam search) left the panel, and a
    session that chose it opens as a sampled one."""
    panel = window.generation_panel
    box = panel.repetition_box
    assert (box.minimum(), box.maximum()) == (limits.MIN_REPETITION_PENALTY, limits.MAX_REPETITION_PENALTY)
    assert box.specialValueText() == "off" and box.value() == limits.DEFAULT_REPETITION_PENALTY
    assert box.toolTip() and not hasattr(panel, "decoding_box")
    assert not any(box.findText("Most likely") >= 0 for box in panel.findChildren(QComboBox))
    box.setValue(limits.MAX_REPETITION_PENALTY)
    settings = window.song.settings
    assert settings.repetition_penalty == limits.MAX_REPETITION_PENALTY
    assert GenerationSettings.from_dict(settings.to_dict()) == settings
    older = {key: value for key, value in GenerationSettings().to_dict().items() if key != "repetition_penalty"}
    assert GenerationSettings.from_dict({**older, "most_likely": True}) == GenerationSettings()
    for bad in (-0.5, limits.MAX_REPETITION_PENALTY + 0.5, float("nan"), "1", True, None):
        with pytest.raises(ValueError, match="repetition penalty"):
            GenerationSettings.from_dict({**older, "repetition_penalty": bad})


def test_generation_settings_travel_with_the_session(window, tmp_path):
    song = window.song
    changes = {"length": 24.0, "variations": 3, "seed": 9, "length_unit": "seconds", "temperature": 0.8}
    song.set_settings(dataclasses.replace(song.settings, **changes))
    path = tmp_path / "song.continuo"
    assert window.document.save_to(path)
    song.load([])
    assert song.settings == GenerationSettings()
    assert window.open_path(path, ask_to_save=False)
    assert song.settings == GenerationSettings(
        temperature=0.8, length=24.0, seed=9, variations=3, length_unit="seconds"
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


def test_a_style_newer_than_the_model_is_listed_but_cannot_be_chosen(qtbot, window, tmp_path):
    panel, generation = window.generation_panel, window.generation
    box, items = panel.style_box, panel.style_box.model()
    classical = box.findData("classical")
    v2 = small_checkpoint(tmp_path / "v2.pt", vocab_size=STYLES_VOCAB_SIZE)  # the five styles of the model v2
    generation.choose_model(v2)
    qtbot.waitUntil(lambda: generation.model_source == str(v2) and box.isEnabled(), timeout=20000)
    assert not items.item(classical).isEnabled() and "made before this style" in items.item(classical).toolTip()
    assert items.item(box.findData("chorale")).isEnabled()
    new = small_checkpoint(tmp_path / "new.pt")
    generation.choose_model(new)
    qtbot.waitUntil(lambda: generation.model_source == str(new), timeout=20000)
    assert items.item(classical).isEnabled()
    box.setCurrentIndex(classical)
    assert window.song.settings.style == "classical"


# --- typing numbers: a value counts when it is complete ------------------------------------------------------


def type_into(qtbot, box, text: str, enter: bool = True) -> None:
    """Types over a spin box's value, as a hand does: select it all, type, then Enter (or not)."""
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    if enter:
        qtbot.keyClick(box, Qt.Key_Return)


def test_every_numeric_box_of_the_panel_takes_the_value_typed_not_its_first_digits(qtbot, window):
    panel, song = window.generation_panel, window.song
    panel.fixed_seed.setChecked(True)
    typed = [
        (panel.temperature_box, "1.3", "temperature", 1.3),  # the case: 1.00 was left
        (panel.top_p_box, "0.85", "top_p", 0.85),
        (panel.top_k_box, "40", "top_k", 40),
        (panel.seed_box, "12345", "seed", 12345),
        (panel.variations_box, "6", "variations", 6),
        (panel.length_box, "12.5", "length", 12.5),  # bars
    ]
    if panel.lowest_box.isEnabled():
        typed += [(panel.lowest_box, "C2", "lowest", 36), (panel.highest_box, "100", "highest", 100)]
    for box, text, name, value in typed:
        before = getattr(song.settings, name)
        type_into(qtbot, box, text[:-1], enter=False)  # half typed: nothing is taken yet
        assert getattr(song.settings, name) == before, f"{name} took {text[:-1]!r} while it was typed"
        qtbot.keyClicks(box, text[-1])
        qtbot.keyClick(box, Qt.Key_Return)
        assert getattr(song.settings, name) == pytest.approx(value), name
        assert box.value() == pytest.approx(box.valueFromText(text)), name
    type_into(qtbot, panel.temperature_box, "0.95", enter=False)
    panel.top_k_box.setFocus()  # leaving the box takes what was typed too
    assert song.settings.temperature == pytest.approx(0.95)


def test_a_value_typed_when_continue_is_pressed_is_the_one_used(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    song.add_notes([song.new_note(60, 90, 0, 1)])
    window.generation.listen = False
    requests = []
    worker = window.generation.worker
    generate = worker.generate
    worker.generate = lambda request: (requests.append(request), generate(request))  # watches, then runs it
    type_into(qtbot, panel.temperature_box, "0.95", enter=False)  # the cursor is still in the box
    type_into(qtbot, panel.length_box, "1", enter=False)
    qtbot.mouseClick(panel.continue_button, Qt.LeftButton)  # a tool button: the box keeps the focus
    qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=60000)
    assert requests and requests[0].temperature == pytest.approx(0.95)
    assert requests[0].seconds == pytest.approx(3.5)  # 1 bar at 120 BPM after beat 1, on to the bar line at beat 8
    assert song.settings.temperature == pytest.approx(0.95)


def test_the_toolbar_and_the_duet_pause_take_the_value_typed(qtbot, window):
    song, state = window.song, window.roll.state
    type_into(qtbot, window.tempo_box, "96.", enter=False)
    assert song.tempo == 120.0
    qtbot.keyClicks(window.tempo_box, "5")
    qtbot.keyClick(window.tempo_box, Qt.Key_Return)
    assert song.tempo == 96.5
    type_into(qtbot, window.velocity_box, "6", enter=False)
    assert state.velocity == 100
    qtbot.keyClicks(window.velocity_box, "4")
    qtbot.keyClick(window.velocity_box, Qt.Key_Return)
    assert state.velocity == 64

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is None or dialog.objectName() != "duet_pause_dialog":
            QTimer.singleShot(20, answer)
            return
        box = dialog.findChild(QDoubleSpinBox)
        assert not box.keyboardTracking()
        type_into(qtbot, box, "1.25")  # Enter takes the value and closes the dialog

    QTimer.singleShot(20, answer)
    window.studio_actions.duet_pause_dialog()
    assert window.duet.pause == 1.25


# --- the key lock, the pitch range and how notes are written -------------------------------------------------


def test_the_key_lock_shows_the_motifs_key_and_a_chosen_one_each_change_one_undo_step(qtbot, window):
    panel, song = window.generation_panel, window.song
    song.add_notes([song.new_note(pitch, 90, beat, 1) for beat, pitch in enumerate((57, 60, 64, 57, 69, 72, 64, 57))])
    qtbot.waitUntil(lambda: panel.detected_key is not None, timeout=2000)
    assert panel.detected_key.name == "A minor"
    assert panel.key_mode_box.itemText(1) == "From motif: A minor"
    if not panel.key_mode_box.isEnabled():
        pytest.skip("this music_transformer cannot mask pitches yet (no allowed_pitches)")
    panel.key_mode_box.setCurrentIndex(1)
    assert song.settings.key_mode == "motif"
    assert (panel.tonic_box.currentText(), panel.scale_box.currentText()) == ("A", "minor")
    assert not panel.tonic_box.isEnabled()  # it shows the detected key, it is not a choice
    panel.key_mode_box.setCurrentIndex(2)
    panel.tonic_box.setCurrentText("D")
    panel.scale_box.setCurrentText("dorian")
    assert (song.settings.key_mode, song.settings.key_tonic, song.settings.key_scale) == ("chosen", 2, "dorian")
    song.undo_stack.undo()  # settings edits in a row merge into one step, as with a dragged spin box
    assert song.settings == GenerationSettings()
    assert panel.key_mode_box.currentIndex() == 0


def test_output_options_snap_to_the_rolls_grid_and_match_the_motifs_dynamics(qtbot, studio, roll):
    window, song, panel = studio, studio.song, studio.generation_panel
    song.add_notes([song.new_note(60 + 2 * i, 70 + 5 * i, i * 0.5, 0.5) for i in range(8)])  # velocities 70..105
    roll.state.set_snap("1/8")
    assert panel.snap_box.text() == "Snap to grid (1/8)"
    panel.snap_box.setChecked(True)
    panel.dynamics_box.setCurrentIndex(1)
    assert song.settings.snap and song.settings.dynamics == "motif"
    set_length(window, 16.0, seed=3)
    window.recorder.clear()
    qtbot.mouseClick(panel.continue_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.generation.generating and not song.is_writing, timeout=60000)
    written = song.notes(CONTINUATION)
    assert len(written) >= 5
    for note in written:
        assert note.start / 0.5 == pytest.approx(round(note.start / 0.5), abs=1e-6)
        assert note.end / 0.5 == pytest.approx(round(note.end / 0.5), abs=1e-6)
        assert note.length >= 0.5 - 1e-6 and 70 <= note.velocity <= 105
    by_pitch = {}
    for note in written:
        by_pitch.setdefault(note.pitch, []).append(note)
    for notes in by_pitch.values():  # no two notes of a pitch overlap once on the grid
        assert all(a.end <= b.start + 1e-6 for a, b in zip(notes, notes[1:], strict=False))
    heard = sorted(velocity for _, kind, _, velocity in window.recorder.notes() if kind == "on")
    assert heard and min(heard) >= 70 and max(heard) <= 105  # heard as written


def test_the_panel_narrows_and_scrolls_only_downwards(qtbot, window):
    window.resize(900, 600)
    dock = window.findChild(QDockWidget, "continue_dock")
    scroller = dock.widget()
    assert scroller.horizontalScrollBarPolicy() == Qt.ScrollBarAlwaysOff
    widths = []
    for width in (None, 120):  # as it opens, then narrowed as far as it goes
        if width is not None:
            window.resizeDocks([dock], [width], Qt.Horizontal)
        QApplication.processEvents()
        widths.append(dock.width())
        panel = window.generation_panel
        viewport = scroller.viewport().width()
        assert panel.width() <= viewport
        for control in panel.findChildren(QWidget):
            if not control.isVisibleTo(panel) or control.parent() is not panel:
                continue
            right = control.mapTo(panel, QPoint(control.width(), 0)).x()
            assert right <= viewport + 1, f"{control.objectName() or type(control).__name__} is cut at {width}"
        right_edge = dock.mapTo(window, QPoint(dock.width(), 0)).x()
        assert right_edge <= window.width()
    assert widths[1] < widths[0] and widths[1] <= 230  # it narrows
