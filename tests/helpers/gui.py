"""The demo with a window per user, as the GUI tests and the screenshot script use it, and a file drop on
a contact (imports Qt)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.embedded_server import Demo, start_demo
from app.gui.main_window import MainWindow, open_main_window
from app.voice.audio_backend import FileAudio
from tests.helpers.tone import write_tone


@contextlib.asynccontextmanager
async def demo_windows(
    folder: Path, tones: tuple[float, float] = (440, 1000), seconds: float = 10
) -> AsyncIterator[tuple[Demo, list[MainWindow]]]:
    """The demo (a server, alice and bob as contacts), a shown main window each; tones as microphones."""
    demo = await start_demo(folder / "demo")
    windows: list[MainWindow] = []
    try:
        for user, hz in zip(demo.users, tones, strict=True):
            mic = folder / f"{user.client.username}.wav"
            write_tone(mic, hz, seconds)
            window = open_main_window(
                user.client,
                user.identity,
                user.config_dir,
                downloads=user.downloads,
                audio=FileAudio(mic, folder / f"{user.client.username}-heard"),
            )
            window.show()
            windows.append(window)
        yield demo, windows
    finally:
        for window in windows:
            for call in list(window.calls.values()):
                call.close()
            await window.sign_out()
            window.close()
        await demo.close()


def drop_files(window: MainWindow, contact: str, paths: list[Path]) -> None:
    """A real drop event with file URLs, on ``contact``'s row of the list."""
    listing = window.contact_list
    row = listing.row_of(contact)
    assert row is not None
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    where = listing.visualItemRect(row).center()
    drag = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    # As a drag from a file manager arrives: enter, move over the row, drop (Qt delivers a drop only to a
    # widget that accepted the drag's enter and move).
    for kind in (QDragEnterEvent, QDragMoveEvent):
        moving = kind(where, *drag)
        assert QApplication.sendEvent(listing.viewport(), moving)
        assert moving.isAccepted()
    assert QApplication.sendEvent(listing.viewport(), QDropEvent(QPointF(where), *drag))
