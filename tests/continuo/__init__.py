"""The studio's tests, one module per module of continuo/ (and one folder per package).

Pytest imports this package before the fixtures in conftest.py, so Qt is told here, before it is first
imported, that it needs no display.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
