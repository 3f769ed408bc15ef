"""The self-test's Qt part (`app.self_test.check_qt`): a window drawn offscreen, the SVG icons loaded."""

from __future__ import annotations

from PySide6 import __version__ as pyside_version
from PySide6.QtWidgets import QApplication, QLabel

from app.gui.icons import ICONS, icon


def draw_a_window() -> str:
    """Draw a small window into an image and render the app icon; raise RuntimeError if either fails."""
    app = QApplication.instance() or QApplication(["punchline-self-test"])
    assert isinstance(app, QApplication)
    label = QLabel("Punchline self-test")
    label.resize(200, 40)
    image = label.grab().toImage()
    if image.isNull() or image.width() < 200:
        raise RuntimeError("Qt could not draw a window offscreen")
    pixmap = icon("punchline").pixmap(64, 64)
    if pixmap.isNull():
        raise RuntimeError(f"the app icon did not load from {ICONS} (is Qt's SVG plugin bundled?)")
    label.deleteLater()
    return f"PySide6 {pyside_version} on {QApplication.platformName()}: a window drawn, the SVG icon rendered"
