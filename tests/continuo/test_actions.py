"""The window's actions, driven as a musician drives them: shortcuts, menus and what they enable."""

from __future__ import annotations

import pytest

from continuo.song import CONTINUATION, MOTIF
from tests.continuo.helpers import key, off, on

pytestmark = pytest.mark.timeout(60)


def test_accept_and_discard_from_the_keyboard_and_undo_them(qtbot, roll, window):

    song = roll.song
    song.add_notes([song.new_note(60, 100, 0, 1), song.new_note(64, 100, 1, 1, CONTINUATION)])
    assert window.studio_actions.accept_action.isEnabled()
    key(qtbot, roll, "Ctrl+Shift+Return")
    assert {n.part for n in song.notes()} == {MOTIF} and not window.studio_actions.accept_action.isEnabled()
    key(qtbot, roll, "Ctrl+Z")
    key(qtbot, roll, "Ctrl+Backspace")
    assert [n.part for n in song.notes()] == [MOTIF]
    key(qtbot, roll, "Ctrl+Z")
    assert [n.part for n in song.notes()] == [MOTIF, CONTINUATION]


def test_the_record_menu_lists_the_keyboard_and_opens_it(qtbot, graph):
    window, keyboard, probe = graph
    midi = window.midi
    midi.open_input("", wait=True)
    qtbot.waitUntil(lambda: midi.input is None, timeout=5000)
    window.studio_actions.fill_midi_input_menu()
    actions = {action.text(): action for action in window.studio_actions.midi_input_menu.actions()}
    assert "None" in actions and "The Studio's Own Input Port" in actions
    actions[keyboard.port_name].trigger()
    qtbot.waitUntil(lambda: midi.input is not None and midi.input.port_name == keyboard.port_name, timeout=5000)
    assert window.preferences.get("midi_input") == keyboard.port_name  # remembered for the next start
    window.studio_actions.record_action.trigger()
    assert midi.recorder.recording and window.studio_actions.record_action.isChecked()
    keyboard.play([(0.0, on(70, 100)), (0.1, off(70))])
    qtbot.waitUntil(lambda: len(window.song.notes()) == 1, timeout=5000)
    window.studio_actions.record_action.trigger()
    assert not midi.recorder.recording and not window.studio_actions.record_action.isChecked()
