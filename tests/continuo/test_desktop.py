"""The launcher's files (menu entry, icon, file type) and the window's icon, in the checkout; the same from an
installed wheel is tests/test_install.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import QApplication

from continuo import desktop
from continuo.main import _application, main

CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
ICON_BLUE = QColor("#3d8fe0")  # the motif's notes in the icon


def validate(entry: Path) -> None:
    """desktop-file-validate finds no error in the entry (a failure under CI=true when it is not installed)."""
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        message = "desktop-file-validate is not installed (Debian: desktop-file-utils; make system installs it)"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = subprocess.run([validator, str(entry)], capture_output=True, text=True)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("word", "written"),
    [
        ("/usr/bin/continuo", "/usr/bin/continuo"),
        ("/home/ann/My Music/bin/continuo", '"/home/ann/My Music/bin/continuo"'),
        ("/opt/100%/continuo", "/opt/100%%/continuo"),
        ('/a"b/$x`y', r'"/a\\"b/\\$x\\`y"'),  # escaped inside the quotes, the backslashes escaped once more
        ("C:\\tools\\continuo", r'"C:\\\\tools\\\\continuo"'),
    ],
)
def test_exec_arguments_are_quoted_as_the_spec_says(word, written):
    assert desktop.exec_argument(word) == written


def test_a_control_character_in_the_path_is_refused():
    with pytest.raises(ValueError, match="control character"):
        desktop.exec_argument("/tmp/a\nb")


def test_the_data_home_follows_xdg_data_home():
    assert desktop.data_home({"XDG_DATA_HOME": "/srv/data"}) == Path("/srv/data")
    for unset in ({}, {"XDG_DATA_HOME": ""}, {"XDG_DATA_HOME": "relative/path"}):
        assert desktop.data_home(unset) == Path.home() / ".local" / "share"


def test_the_packaged_entry_and_the_written_one_validate(tmp_path):
    validate(desktop.resource(desktop.ENTRY))
    entry = tmp_path / "continuo.desktop"
    entry.write_text(desktop.desktop_entry([sys.executable, "-m", "continuo.main"]), "utf-8")
    validate(entry)
    command = tmp_path / "odd $folder's" / "continuo"
    entry.write_text(desktop.desktop_entry([str(command)]), "utf-8")
    validate(entry)
    exec_line = next(line for line in entry.read_text("utf-8").splitlines() if line.startswith("Exec="))
    assert exec_line == f'Exec="{tmp_path}/odd \\\\$folder\'s/continuo" %f'


def test_install_and_uninstall_write_and_remove_only_their_files(tmp_path, monkeypatch, capsys):
    data_home = tmp_path / "share"
    (data_home / "applications").mkdir(parents=True)
    neighbour = data_home / "applications" / "other.desktop"
    neighbour.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    assert main(["--install-desktop"]) == 0
    said = capsys.readouterr().out
    assert str(data_home) in said
    for path in desktop.targets(data_home).values():
        assert path.is_file() and str(path) in said
        assert path.stat().st_mode & 0o777 == 0o644
    assert desktop.targets(data_home)["icon"].read_bytes() == desktop.icon_file().read_bytes()
    assert main(["--uninstall-desktop"]) == 0
    said = capsys.readouterr().out
    assert all(not path.exists() and str(path) in said for path in desktop.targets(data_home).values())
    assert neighbour.is_file()  # nothing else is touched
    assert main(["--uninstall-desktop"]) == 0 and "Nothing to remove" in capsys.readouterr().out


def test_version_is_the_package_metadata(capsys):
    from importlib import metadata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"continuo {metadata.version('continuo')}"


def test_the_window_and_task_bar_show_the_icon(window):
    app = QApplication.instance()
    kept = (app.applicationName(), app.organizationName(), app.windowIcon(), QGuiApplication.desktopFileName())
    try:
        assert _application("continuo") is app
        assert QGuiApplication.desktopFileName() == desktop.APP_ID  # the task bar links the window to the entry
        for icon in (app.windowIcon(), window.windowIcon()):
            assert not icon.isNull()
            image = icon.pixmap(64, 64).toImage()
            assert image.width() == 64
            colours = {image.pixelColor(x, y).name() for x in range(64) for y in range(64)}
            assert ICON_BLUE.name() in colours  # drawn from our SVG, not a blank or a theme's stand-in
    finally:
        app.setApplicationName(kept[0])
        app.setOrganizationName(kept[1])
        app.setWindowIcon(kept[2])
        QGuiApplication.setDesktopFileName(kept[3])
