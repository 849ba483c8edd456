"""The `continuo` command: `continuo [FILE]` opens the studio; `--screenshot out.png` renders it and exits;
`--export OUT.mid|OUT.wav FILE` writes the file as MIDI or audio without a window and exits; `--version` prints
the version; `--install-desktop` / `--uninstall-desktop` add or remove the menu entry."""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="continuo", description="Sketch a motif; a Music Transformer continues it.")
    parser.add_argument("file", nargs="?", help="a session (.continuo) or MIDI file to open")
    parser.add_argument("--screenshot", metavar="PNG", help="render the window offscreen to a PNG and exit")
    parser.add_argument("--size", default="1280x800", help="window size for --screenshot (default 1280x800)")
    parser.add_argument(
        "--export",
        metavar="OUT",
        help="write FILE as a MIDI file (OUT.mid: its tempo map, metre and key) or a recording through the "
        "built-in synth (OUT.wav), without a window, and exit (status 2 and one line on any problem)",
    )
    parser.add_argument("--version", action="store_true", help="print Continuo's version and exit")
    launcher = parser.add_mutually_exclusive_group()
    launcher.add_argument(
        "--install-desktop",
        action="store_true",
        help="add Continuo to the applications menu, with its icon and the .continuo file type "
        "(under $XDG_DATA_HOME, default ~/.local/share; no root needed), and exit",
    )
    launcher.add_argument(
        "--uninstall-desktop", action="store_true", help="remove what --install-desktop added, and exit"
    )
    return parser.parse_args(argv)


def _version() -> int:
    """Prints the version: the installed package's, as `music-transformer --version` prints it."""
    from .help import version

    print(f"continuo {version()}")
    return 0


def _desktop(install: bool) -> int:
    """Installs or removes the menu entry, the icon and the file type, and says where."""
    from . import desktop

    if sys.platform in ("darwin", "win32"):
        print(
            "continuo: the menu entry is for Linux and BSD desktops (freedesktop.org); start Continuo with the "
            "`continuo` command here",
            file=sys.stderr,
        )
        return 2
    try:
        result = desktop.install() if install else desktop.uninstall()
    except (OSError, ValueError) as error:  # a folder the system refuses: one line, status 2 as for every user error
        print(f"continuo: {error}", file=sys.stderr)
        return 2
    print(desktop.report(result, installed=install))
    return 0


def _export(args: argparse.Namespace) -> int:
    """The headless render: FILE written to OUT (.mid or .wav), one line said, no window."""
    if not args.file:
        print("continuo: --export OUT needs the FILE to export (continuo --export OUT.mid FILE)", file=sys.stderr)
        return 2
    if args.screenshot:
        print("continuo: --export and --screenshot are separate runs; give one of them", file=sys.stderr)
        return 2
    from .export import ExportError, export_file

    try:
        print(export_file(args.file, args.export))
    except ExportError as error:
        print(f"continuo: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - whatever goes wrong is one line and status 2, never a traceback
        print(f"continuo: cannot export {args.file} ({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    return 0


def _application(argv0: str):
    """The QApplication, named, with the window and task-bar icon and the desktop entry it belongs to."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from .background import collect_garbage_on_gui_thread
    from .desktop import APP_ID, icon_file

    app = QApplication.instance() or QApplication([argv0])
    app.setApplicationName("Continuo")
    app.setOrganizationName("Continuo")
    app.setDesktopFileName(APP_ID)  # Wayland's app id and the task bar's link to continuo.desktop
    app.setWindowIcon(QIcon(str(icon_file())))
    collect_garbage_on_gui_thread(app)  # the model's thread never destroys a Qt object (continuo/background.py)
    return app


def main(argv: list[str] | None = None) -> int:
    """Starts the studio (or renders a screenshot); returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.version:
        return _version()
    if args.install_desktop or args.uninstall_desktop:
        return _desktop(install=args.install_desktop)
    if args.export is not None:
        return _export(args)
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no display
    from .main_window import MainWindow

    app = _application(sys.argv[0])
    if args.screenshot:
        return _screenshot(app, args)
    window = MainWindow()
    window.show()
    if os.environ.get("CONTINUO_SCRIPT"):  # end-to-end tests drive the studio through its widgets
        from .scripting import script_from_environment

        script = script_from_environment(window)
        if script is not None:
            script.start()

    def restore_offered(restored: bool) -> None:
        if args.file and not restored:
            window.open_path(args.file, ask_to_save=False, wait=False)  # read in the background, the window shown

    # The autosave folder is read on a helper thread (a large journal takes seconds): the window answers at once,
    # and the restore is offered, or the file opened, when it has been read.
    window.offer_restore_later(restore_offered)
    return app.exec()


def _screenshot(app, args: argparse.Namespace) -> int:
    """Opens the file in a window that is never shown on a screen, and saves its picture."""
    from .main_window import MainWindow

    try:
        width, height = (int(value) for value in args.size.lower().split("x"))
    except ValueError:
        print(f"continuo: --size wants WIDTHxHEIGHT, not {args.size!r}", file=sys.stderr)
        return 2
    window = MainWindow(use_autosave=False)
    window.resize(width, height)
    window.show()
    app.processEvents()
    try:
        if args.file and not window.open_path(args.file, ask_to_save=False):
            print(f"continuo: {window.last_error}", file=sys.stderr)
            return 1
        window.roll.zoom_to_fit()
        app.processEvents()
        if not window.grab().save(args.screenshot):
            print(f"continuo: cannot write {args.screenshot}", file=sys.stderr)
            return 1
        return 0
    finally:  # on every path: closing stops the window's threads before the interpreter exits
        window.song.undo_stack.setClean()
        window.close()


if __name__ == "__main__":
    sys.exit(main())
