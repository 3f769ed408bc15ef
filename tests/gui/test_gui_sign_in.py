"""The sign-in window with the real core and a real rendezvous server (offscreen Qt)."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.account.identity import DeviceIdentity
from app.account.signing_in import register, sign_in
from app.gui.sign_in_dialog import SignInDialog
from app.signalling.client import Credentials, SignallingClient
from rendezvous.server import RendezvousServer
from tests.helpers.poll import until
from tests.helpers.server import PASSWORD


def dialog_for(qtbot: QtBot, url: str) -> tuple[SignInDialog, list[SignallingClient]]:
    identity = DeviceIdentity.generate()

    async def signing_in(server: str, name: str, password: str) -> SignallingClient:
        return await sign_in(server, Credentials(name, password=password), identity)

    dialog = SignInDialog(signing_in, register, server=url)
    qtbot.addWidget(dialog)
    clients: list[SignallingClient] = []
    dialog.signed_in.connect(clients.append)
    return dialog, clients


async def finish(dialog: SignInDialog) -> None:
    await until(lambda: not dialog.busy, 10, "the sign-in to finish")


async def test_create_an_account_and_sign_in(qtbot: QtBot, server: RendezvousServer) -> None:
    dialog, clients = dialog_for(qtbot, server.url)
    dialog.username.setText("alice")
    dialog.password.setText(PASSWORD)
    dialog.register_button.click()
    await finish(dialog)
    assert dialog.message.text() == "Signed in as alice."
    assert [c.username for c in clients] == ["alice"]
    await clients[0].close()


async def test_wrong_password_name_taken_and_server_down_are_said_plainly(
    qtbot: QtBot, server: RendezvousServer, tmp_path: Path
) -> None:
    await register(server.url, "bob", PASSWORD)
    dialog, clients = dialog_for(qtbot, server.url)
    dialog.username.setText("bob")
    dialog.password.setText("not the password")
    dialog.sign_in_button.click()
    await finish(dialog)
    assert "password" in dialog.message.text().lower()
    dialog.register_button.click()
    await finish(dialog)
    assert "taken" in dialog.message.text().lower()
    dialog.server.setText("ws://127.0.0.1:9")
    dialog.sign_in_button.click()
    await finish(dialog)
    assert dialog.message.text().startswith("Cannot reach the server at ws://127.0.0.1:9")
    assert clients == []
    dialog.password.clear()
    dialog.sign_in_button.click()
    assert dialog.message.text() == "Enter your name and password."
