"""The window at 900x600 and up: every control inside the window (the Continue panel may scroll, but only
vertically), the toolbar's Continue, Accept and Discard always in view; and `continuo --screenshot` at both
sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QScrollArea,
    QToolBar,
    QWidget,
)

ROOT = Path(__file__).resolve().parents[2]
SIZES = [(900, 600), (1600, 1000)]
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractItemView)


def _scroll_area(widget: QWidget) -> QScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea) and parent.widget() is not None and parent.widget().isAncestorOf(widget):
            return parent
        parent = parent.parentWidget()
    return None


def controls_outside(window) -> list[str]:
    """The visible controls that do not lie inside the window (or, in a scrolling panel, across its width)."""
    outside = []
    area = window.rect()
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, CONTROLS) or not widget.isVisibleTo(window) or widget.width() <= 0:
            continue
        if widget.window() is not window:  # a menu or a popup: not part of the layout
            continue
        top_left = widget.mapTo(window, widget.rect().topLeft())
        rect = QRect(top_left, widget.size())
        scroller = _scroll_area(widget)
        if scroller is not None:  # reachable by scrolling up and down, never cut at the sides
            viewport = scroller.viewport()
            left = viewport.mapTo(window, viewport.rect().topLeft()).x()
            if (
                rect.left() < left
                or rect.right() > left + viewport.width()
                or not area.contains(QRect(scroller.mapTo(window, scroller.rect().topLeft()), scroller.size()))
            ):
                outside.append(f"{type(widget).__name__} {widget.objectName() or _text(widget)} {rect}")
        elif not area.contains(rect):
            outside.append(f"{type(widget).__name__} {widget.objectName() or _text(widget)} {rect}")
    return outside


def _text(widget: QWidget) -> str:
    return getattr(widget, "text", lambda: "")() if callable(getattr(widget, "text", None)) else ""


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_every_control_is_inside_the_window_and_the_toolbar_keeps_continue_accept_discard(qtbot, window, size):
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size, timeout=3000)
    qtbot.wait(50)
    assert controls_outside(window) == []
    bar = window.findChild(QToolBar, "tools")
    actions = window.studio_actions
    for action in (actions.continue_action, actions.accept_action, actions.discard_action):
        button = bar.widgetForAction(action)
        assert button is not None and button.isVisible(), f"{action.text()} went into the toolbar's overflow"
        assert window.rect().contains(QRect(button.mapTo(window, button.rect().topLeft()), button.size()))
    # Writing does not push them out either (the "writing" words are in the status bar).
    window.song.begin_stream("continuation")
    try:
        qtbot.wait(50)
        assert bar.widgetForAction(actions.discard_action).isVisible()
        assert controls_outside(window) == []
    finally:
        window.song.abort()


@pytest.mark.timeout(180)
def test_screenshots_from_the_command_line_at_both_sizes(tmp_path, home):
    env = dict(os.environ, CONTINUO_HOME=str(home))
    env.pop("QT_QPA_PLATFORM", None)
    for width, height in SIZES:
        out = tmp_path / f"studio-{width}x{height}.png"
        result = subprocess.run(
            [sys.executable, "-m", "continuo.main", "--screenshot", str(out), "--size", f"{width}x{height}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        image = QImage(str(out))
        assert (image.width(), image.height()) == (width, height)  # the window was not forced wider or taller
