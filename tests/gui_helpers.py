"""The demo with a window per user, as the GUI tests and the screenshot script use it (imports Qt)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from app.embedded_server import Demo, start_demo
from app.gui.main_window import MainWindow, open_main_window
from app.voice.audio_backend import FileAudio
from tests.test_call_media import write_tone


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
