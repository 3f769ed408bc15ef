"""The app's sign-in lifecycle, through its composition root (`app.gui.app.run_signed_in`), offscreen.

``--server`` naming the remembered server keeps the remembered sign-in, another server asks; Sign out
revokes the token and shows the sign-in window; Quit (closing the sign-in window) quits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.account.identity import load_or_create_identity
from app.account.remembered import RememberedSignIn
from app.account.signing_in import AccountError, sign_in
from app.desktop_options import parse_args
from app.gui import app as gui_app
from app.gui.main_window import MainWindow
from app.gui.sign_in_dialog import SignInDialog
from app.signalling.client import Credentials
from rendezvous.server import RendezvousServer
from tests.helpers.poll import until
from tests.helpers.server import PASSWORD, register

W = TypeVar("W", bound=QWidget)


def shown(kind: type[W]) -> Callable[[], W | None]:
    """The visible top-level window of ``kind``, if there is one."""

    def find() -> W | None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, kind) and widget.isVisible():
                return widget
        return None

    return find


@pytest.fixture
def remembered_alice(server: RendezvousServer, tmp_path: Path) -> Callable[[], asyncio.Future[str]]:
    """Register alice and remember her sign-in in ``tmp_path/config`` (as 'Remember me' does)."""

    async def make() -> str:
        await register(server.url, "alice")
        config = tmp_path / "config"
        client = await sign_in(
            server.url, Credentials("alice", password=PASSWORD), load_or_create_identity(config)
        )
        assert client.token is not None
        RememberedSignIn(config).remember(server.url, "alice", client.token)
        token = client.token
        await client.close()
        return token

    return lambda: asyncio.ensure_future(make())


async def test_sign_out_shows_the_sign_in_window_and_quit_quits(
    qtbot: QtBot,
    server: RendezvousServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    remembered_alice: Callable[[], asyncio.Future[str]],
) -> None:
    monkeypatch.setattr(gui_app, "_quit_on_signals", lambda event: None)  # pytest keeps its own signals
    token = await remembered_alice()
    args = parse_args(
        [
            "--config-dir",
            str(tmp_path / "config"),
            "--downloads",
            str(tmp_path / "dl"),
            "--server",
            server.url,
        ]
    )
    running = asyncio.ensure_future(gui_app.run_signed_in(args))
    try:
        # The same --server as remembered: straight to the main window, no password asked.
        await until(lambda: shown(MainWindow)() is not None, 15, "the main window")
        assert shown(SignInDialog)() is None
        window = shown(MainWindow)()
        assert window is not None
        window.sign_out_requested.emit()  # Punchline ▸ Sign out
        await until(lambda: shown(SignInDialog)() is not None, 15, "the sign-in window")
        assert shown(MainWindow)() is None
        assert not running.done()  # signed out, not quit
        dialog = shown(SignInDialog)()
        assert dialog is not None
        assert dialog.message.text() == "Signed out."
        with pytest.raises(AccountError):  # the token is revoked on the server
            await sign_in(
                server.url, Credentials("alice", token=token), load_or_create_identity(tmp_path / "x")
            )
        assert RememberedSignIn(tmp_path / "config").token(server.url, "alice") is None
        dialog.reject()  # closing the sign-in window: Quit
        assert await asyncio.wait_for(running, 10) == 0
    finally:
        if not running.done():
            running.cancel()


async def test_another_server_asks_for_the_password(
    qtbot: QtBot,
    server: RendezvousServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    remembered_alice: Callable[[], asyncio.Future[str]],
) -> None:
    monkeypatch.setattr(gui_app, "_quit_on_signals", lambda event: None)
    await remembered_alice()
    other = "ws://127.0.0.1:9"  # nobody there; the app must not use alice's token for it
    args = parse_args(["--config-dir", str(tmp_path / "config"), "--server", other])
    running = asyncio.ensure_future(gui_app.run_signed_in(args))
    try:
        await until(lambda: shown(SignInDialog)() is not None, 15, "the sign-in window")
        dialog = shown(SignInDialog)()
        assert dialog is not None
        assert dialog.server.text() == other
        assert shown(MainWindow)() is None
        dialog.reject()
        assert await asyncio.wait_for(running, 10) == 0
    finally:
        if not running.done():
            running.cancel()
