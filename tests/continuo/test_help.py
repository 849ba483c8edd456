"""Help: F1 opens a searchable sheet of every key, made from the actions themselves; Getting Started; About with
the version, the model's card (its metadata and assets/README.md) and the licences; tooltips in a musician's
words."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QDialog, QLabel, QTextBrowser, QToolBar, QWidget, QWidgetAction

from continuo.help import AboutDialog, ShortcutsDialog, version
from music_transformer import events
from music_transformer.checkpoint import read_checkpoint
from tests.continuo.helpers import key

JARGON = ("token", "event", "beam", "logit", "sampl", "epoch", "trained on", "inference", "softmax")


def menu_actions(window) -> list[QAction]:
    """Every action reachable through the menu bar."""
    found, menus = [], [action.menu() for action in window.menuBar().actions()]
    while menus:
        menu = menus.pop()
        for action in menu.actions():
            if action.menu() is not None:
                menus.append(action.menu())
            elif not action.isSeparator():
                found.append(action)
    return found


def test_f1_opens_every_key_searchable_and_made_from_the_actions(qtbot, window, roll):
    key(qtbot, roll, "F1")
    sheet = window.findChild(ShortcutsDialog, "shortcuts_dialog")
    assert sheet is not None and sheet.isVisible()
    rows = sheet.shown()
    keys_shown = {keys for _, keys, _ in rows}
    for action in menu_actions(window) + list(roll.actions_by_name.values()):  # none left out, none invented
        keys = ", ".join(k.toString(QKeySequence.NativeText) for k in action.shortcuts())
        if keys:
            assert keys in keys_shown, f"{action.text()} ({keys}) is not on the sheet"
    assert len(rows) == len({(command, keys) for command, keys, _ in rows})
    assert ("Undo", "Ctrl+Z", "Edit") in rows and ("Keyboard Shortcuts", "F1", "Help") in rows
    assert "Follow Playhead" not in {command for command, _, _ in rows}  # no keys: not a shortcut
    qtbot.keyClicks(sheet.search, "loop")
    assert {command for command, _, _ in sheet.shown()} == {"Loop On/Off", "Loop Selection"}
    sheet.search.clear()
    qtbot.keyClicks(sheet.search, "home")
    assert [command for command, _, _ in sheet.shown()] == ["Go to Start"]
    sheet.search.clear()
    qtbot.keyClicks(sheet.search, "piano shift")  # every word: the roll's own keys with Shift
    assert sheet.shown() and all("Shift" in keys and where == "Piano roll" for _, keys, where in sheet.shown())
    sheet.close()


def test_the_help_menu_has_getting_started_and_about_with_the_models_card_and_licences(qtbot, studio):
    window = studio
    help_menu = next(action.menu() for action in window.menuBar().actions() if action.text() == "&Help")
    entries = [action.text().replace("&", "") for action in help_menu.actions() if not action.isSeparator()]
    assert entries == ["Keyboard Shortcuts", "Getting Started", "About Continuo"]
    window.studio_actions.getting_started_action.trigger()
    started = window.findChild(QDialog, "getting_started")
    steps = started.findChild(QTextBrowser).toPlainText()
    assert started.isVisible() and "Press Continue (Ctrl+Enter)" in steps and "Accept" in steps
    started.close()
    window.studio_actions.about_action.trigger()
    about = window.findChild(AboutDialog, "about_dialog")
    assert about is not None and about.isVisible()
    qtbot.waitUntil(lambda: about.card_read, timeout=20000)
    about.tabs.setCurrentIndex(1)  # Model: what a musician wants to know, in words
    checkpoint = read_checkpoint(window.generation.model_source)
    metadata, config = checkpoint.get("metadata") or {}, checkpoint["config"]
    summary = about.model_summary.toPlainText()
    assert about.model_summary.isVisible() and not about.model_text.isVisible()
    assert f"What it learned from: {metadata.get('data_subset') or metadata['data']}" in summary
    window = metadata.get("decode_window") or config["train_length"]  # what it decodes with
    seconds = round(window / 24)  # its window at pop piano's 24 steps a second
    assert f"the last {window:,} steps of music" in summary
    assert f"about {seconds} seconds of pop piano" in summary and "Pop piano, Chorale" in summary
    knows_classical = config["vocab_size"] > events.STYLE_TOKENS["classical"]
    assert ("Classical" in summary) == knows_classical  # only the styles it knows
    for developer in ("nll", "NLL", "git show", "--steps", "valid"):  # losses, commits, commands: behind Details
        assert developer not in summary, developer
    qtbot.mouseClick(about.details_button, Qt.LeftButton)
    assert about.model_text.isVisible() and about.details_button.text() == "Hide Details"
    card = about.model_text.toPlainText()
    for value in (metadata.get("name"), metadata.get("data"), metadata.get("license")):  # what the model says
        if value:
            assert str(value) in card
    assert "valid nll" in card and "git show" in card  # the developers' figures and the card, assets/README.md
    assert "the bundled Continuo model" in card
    licences = about.licences.toPlainText()
    assert "POP909" in licences and "MIT" in licences and "ISMIR 2020" in licences
    assert "music21" in licences and "public domain" in licences
    assert f"Continuo {version()}" in about.tabs.widget(0).text()
    about.close()


def test_tooltips_speak_a_musicians_words_and_name_their_keys(qtbot, window):
    bar = window.findChild(QToolBar, "tools")
    for action in bar.actions():
        if action.isSeparator():
            continue
        widget = bar.widgetForAction(action)
        if isinstance(action, QWidgetAction):  # a box or its label: the box speaks
            tip = widget.toolTip()
            if isinstance(widget, QLabel):
                continue
        else:
            tip = action.toolTip()
            keys = [k.toString(QKeySequence.NativeText) for k in action.shortcuts()]
            if keys:
                assert tip.endswith(f"({keys[0]})"), tip
        assert tip and not any(word in tip.lower() for word in JARGON), tip
    assert window.tempo_box.toolTip().startswith("Tempo") and window.signature_box.toolTip().startswith("Time")


def test_the_continue_panel_and_its_model_line_speak_a_musicians_words(qtbot, studio):
    panel = studio.generation_panel
    tips = [widget.toolTip() for widget in panel.findChildren(QWidget) if widget.toolTip()]
    assert len(tips) >= 10  # every setting explains itself
    texts = [box.itemText(i) for box in panel.findChildren(QComboBox) for i in range(box.count())]
    for text in tips + texts + [panel.model_label.text()]:
        assert not any(word in text.lower() for word in JARGON), text
    assert "M parameters" in panel.model_label.text() and " s of pop piano" in panel.model_label.text()


def test_a_models_card_is_read_only_from_beside_it_a_regular_file_and_capped(tmp_path):
    """Issue 48: a checkpoint whose metadata names "/etc/passwd" as its card made About ▸ Model show that file."""
    import os

    from continuo.help import MAX_CARD_BYTES, model_card
    from music_transformer import save_checkpoint
    from tests.music_transformer.helpers import small_model

    secret = tmp_path / "secret.txt"
    secret.write_text("not the model's to show")
    folder = tmp_path / "model"
    folder.mkdir()
    model = small_model()
    for card in ("/etc/passwd", str(secret), "../secret.txt"):
        save_checkpoint(model, folder / "named.pt", card=card)
        meta, text = model_card(folder / "named.pt")
        assert meta["card"] == card and text == "", card  # a path is not a card, and nothing beside it is named so
    (folder / "README.md").write_text("The model's own card")
    (folder / "fifo.md").unlink(missing_ok=True)
    os.mkfifo(folder / "fifo.md")  # a FIFO would block the reading thread for ever
    (folder / "link.md").symlink_to(secret)
    (folder / "huge.md").write_bytes(b"x" * (MAX_CARD_BYTES * 3))
    for card, expected in (
        ("fifo.md", "The model's own card"),
        ("link.md", "The model's own card"),
        ("/etc/passwd", "The model's own card"),
        ("assets/README.md", "The model's own card"),
    ):
        save_checkpoint(model, folder / "named.pt", card=card)
        assert model_card(folder / "named.pt")[1] == expected, card
    save_checkpoint(model, folder / "named.pt", card="huge.md")
    assert model_card(folder / "named.pt")[1] == "x" * MAX_CARD_BYTES
