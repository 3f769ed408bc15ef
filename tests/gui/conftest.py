"""Fixtures of the desktop app's tests (the Qt loop they run in is chosen in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.embedded_server import Demo
from app.gui.main_window import MainWindow
from tests.helpers.gui import demo_windows


@pytest.fixture
async def windows(qtbot: QtBot, tmp_path: Path) -> AsyncIterator[tuple[Demo, MainWindow, MainWindow]]:
    """Alice's and Bob's signed-in windows on the demo's server (closed by `demo_windows`, not qtbot: they
    sign out first)."""
    async with demo_windows(tmp_path) as (demo, made):
        yield demo, made[0], made[1]
