"""The launcher: `continuo --install-desktop` puts a menu entry, the icon and the `.continuo` file type where
freedesktop.org desktops (GNOME, KDE, Xfce...) look for them, under `$XDG_DATA_HOME` (default ~/.local/share);
`continuo --uninstall-desktop` takes them away again. Only the user's own data folder is written, never a
system one, so no root. No Qt in here: the files are copied from `continuo/resources/`, which the wheel carries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

APP_ID = "continuo"  # the desktop entry's name (continuo.desktop), the icon's, and the window's desktop file name
MIME_TYPE = "application/x-continuo"
RESOURCES = "resources"
ICON = "continuo.svg"
ENTRY = "continuo.desktop"
MIME_XML = "continuo-mime.xml"
# Characters an Exec argument may hold only inside double quotes (the Desktop Entry spec, "The Exec key")
RESERVED = set(" \t\"'\\><~|&;$*?#()`")


@dataclass
class DesktopFiles:
    """What was written or removed, and what the desktop's databases said about it."""

    home: Path
    files: list[Path] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)  # the database tools that ran
    missing_tools: list[str] = field(default_factory=list)  # the ones this system lacks (nothing is wrong then)


def resource(name: str) -> Path:
    """A file of continuo/resources/ on disk (the package is installed as files, never from a zip)."""
    return Path(str(resources.files(__package__) / RESOURCES / name))


def icon_file() -> Path:
    """The application's icon, an SVG."""
    return resource(ICON)


def data_home(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """$XDG_DATA_HOME, or ~/.local/share when it is unset, empty or not absolute (as the Base Directory spec
    says to treat a relative one)."""
    value = environ.get("XDG_DATA_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".local" / "share"


def targets(home: Path) -> dict[str, Path]:
    """Where each file goes under the data home."""
    return {
        "menu entry": home / "applications" / ENTRY,
        "icon": home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg",
        "file type icon": home / "icons" / "hicolor" / "scalable" / "mimetypes" / f"{MIME_TYPE.replace('/', '-')}.svg",
        "file type": home / "mime" / "packages" / f"{APP_ID}.xml",
    }


def launch_command() -> list[str]:
    """How the menu starts this Continuo: the `continuo` script that is running, by its absolute path (pipx's
    link in ~/.local/bin stays a link, so an upgrade keeps the entry working, and a menu whose PATH lacks
    ~/.local/bin still finds it), else this Python running the studio's module."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.stem == APP_ID and script.is_file():
        return [os.path.abspath(script)]
    found = shutil.which(APP_ID)
    if found and Path(sys.executable).parent == Path(found).parent:  # this environment's own script
        return [found]
    return [sys.executable, "-m", "continuo.main"]


def exec_argument(word: str) -> str:
    """One argument as the Desktop Entry spec's Exec key wants it: quoted when it holds a reserved character
    (with ", `, $ and \\ escaped inside), % doubled, then backslashes escaped once more for the string value."""
    if any(ord(character) < 32 for character in word):
        raise ValueError(f"a launcher cannot start a program whose path holds a control character: {word!r}")
    word = word.replace("%", "%%")
    if any(character in RESERVED for character in word):
        word = '"' + "".join("\\" + c if c in '"`$\\' else c for c in word) + '"'
    return word.replace("\\", "\\\\")


def desktop_entry(command: list[str]) -> str:
    """The menu entry's text: continuo/resources/continuo.desktop with its Exec line starting `command`."""
    lines = resource(ENTRY).read_text("utf-8").splitlines()
    exec_line = "Exec=" + " ".join(exec_argument(word) for word in command) + " %f"
    return "\n".join(exec_line if line.startswith("Exec=") else line for line in lines) + "\n"


def install(home: Path | None = None, command: list[str] | None = None) -> DesktopFiles:
    """Writes the menu entry, the icons and the file type under `home` (default: the data home) and refreshes
    the desktop's databases where their tools are installed. Returns what it wrote."""
    home = data_home() if home is None else home
    result = DesktopFiles(home)
    places = targets(home)
    contents = {
        "menu entry": desktop_entry(command or launch_command()).encode("utf-8"),
        "icon": icon_file().read_bytes(),
        "file type icon": icon_file().read_bytes(),
        "file type": resource(MIME_XML).read_bytes(),
    }
    for name, path in places.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(contents[name])
        temporary.chmod(0o644)
        os.replace(temporary, path)  # a desktop watching the folder never reads half a file
        result.files.append(path)
    _refresh(home, result)
    return result


def uninstall(home: Path | None = None) -> DesktopFiles:
    """Removes what `install` wrote under `home` (default: the data home), nothing else, and refreshes the
    desktop's databases. Returns what it removed."""
    home = data_home() if home is None else home
    result = DesktopFiles(home)
    for path in targets(home).values():
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        result.files.append(path)
    _refresh(home, result)
    return result


def _refresh(home: Path, result: DesktopFiles) -> None:
    """Runs update-desktop-database and update-mime-database over the user's folders, where installed; a tool
    that is missing or fails never fails the install (the desktop rereads the folders itself, later)."""
    for tool, folder in (("update-desktop-database", home / "applications"), ("update-mime-database", home / "mime")):
        executable = shutil.which(tool)
        if executable is None:
            result.missing_tools.append(tool)
            continue
        if not folder.is_dir():
            continue
        try:
            done = subprocess.run([executable, str(folder)], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            result.refreshed.append(tool)


def report(result: DesktopFiles, installed: bool) -> str:
    """What `continuo --install-desktop` / `--uninstall-desktop` say: where the files are, in a few lines."""
    if installed:
        lines = [f"Installed Continuo's menu entry, icon and file type under {result.home}:"]
        lines += [f"  {path}" for path in result.files]
        lines.append("It shows in the applications menu as Continuo (Music sketchpad); .continuo files open in it.")
    elif result.files:
        lines = [f"Removed Continuo's menu entry, icon and file type from {result.home}:"]
        lines += [f"  {path}" for path in result.files]
    else:
        lines = [f"Nothing to remove: Continuo's menu entry is not installed under {result.home}."]
    if result.refreshed:
        lines.append("Refreshed: " + ", ".join(result.refreshed) + ".")
    if result.missing_tools:
        lines.append("Not found (the desktop rereads the folders itself): " + ", ".join(result.missing_tools) + ".")
    return "\n".join(lines)
