"""The `continuo` command: opens the studio window."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Starts the Qt application and shows the main window."""
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    window = QMainWindow()
    window.setWindowTitle("Continuo")
    window.setCentralWidget(QLabel("Continuo"))
    window.resize(1200, 760)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
