"""The `continuo` command: `continuo [FILE]` opens the studio; `--screenshot out.png` renders it and exits."""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="continuo", description="Sketch a motif; a Music Transformer continues it.")
    parser.add_argument("file", nargs="?", help="a session (.continuo) or MIDI file to open")
    parser.add_argument("--screenshot", metavar="PNG", help="render the window offscreen to a PNG and exit")
    parser.add_argument("--size", default="1280x800", help="window size for --screenshot (default 1280x800)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Starts the studio (or renders a screenshot); returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot needs no display
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Continuo")
    app.setOrganizationName("Continuo")
    if args.screenshot:
        return _screenshot(app, args)
    window = MainWindow()
    window.show()
    if os.environ.get("CONTINUO_SCRIPT"):  # end-to-end tests drive the studio through its widgets
        from .scripting import script_from_environment

        script = script_from_environment(window)
        if script is not None:
            script.start()
    try:
        restored = window.offer_restore()
    except Exception as error:  # noqa: BLE001 - crash restore never blocks a start; the autosaves stay on disk
        restored = False
        print(f"continuo: crash restore failed ({type(error).__name__}: {error})", file=sys.stderr)
        window.show_message("Crash restore failed; the autosaves are kept for the next launch", 20000)
    if args.file and not restored:
        window.open_path(args.file, ask_to_save=False, wait=False)  # read in the background, the window shown
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
