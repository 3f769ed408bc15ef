"""The app's icons, drawn from the SVG files in ``resources/icons`` (sharp at any screen scale)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"


@cache
def icon(name: str) -> QIcon:
    """``resources/icons/<name>.svg`` as a QIcon (an empty icon if the file is missing)."""
    return QIcon(str(ICONS / f"{name}.svg"))
