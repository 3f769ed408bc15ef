"""The desktop app's composition root: one event loop for Qt and asyncio (qasync), sign in, main window.

Thread rule: everything runs on the one thread of this loop; only PortAudio's callbacks run elsewhere,
and they hand frames over through thread-safe queues (`app.voice.sound_devices`).
"""

from __future__ import annotations

import asyncio
import sys

import qasync
from PySide6.QtWidgets import QApplication

from app.account import AccountError, register, sign_in
from app.gui.contacts_window import ContactsWindow
from app.gui.sign_in_dialog import SignInDialog
from app.identity import load_or_create_identity
from app.remembered import RememberedSignIn
from app.signalling.client import Credentials, SignallingClient
from rendezvous.config import DEFAULT_PORT

DEFAULT_SERVER = f"ws://localhost:{DEFAULT_PORT}"


def run(argv: list[str]) -> int:
    """Show the sign-in window, then the main window; return when the last window closes."""
    import platformdirs  # noqa: PLC0415 - only the app needs the user's config folder

    app = QApplication(argv)
    app.setApplicationName("Punchline")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    config = platformdirs.user_config_path("punchline", appauthor=False)
    identity = load_or_create_identity(config)
    remembered = RememberedSignIn(config)
    last_server, last_user = remembered.last()
    windows: list[ContactsWindow] = []

    async def signing_in(server: str, name: str, password: str) -> SignallingClient:
        return await sign_in(server, Credentials(name, password=password), identity)

    dialog = SignInDialog(
        signing_in, register, server=last_server or DEFAULT_SERVER, username=last_user or ""
    )

    def signed_in(client: SignallingClient) -> None:
        server = dialog.server.text().strip() or last_server or DEFAULT_SERVER
        if dialog.remember.isChecked() and client.token:
            remembered.remember(server, client.username, client.token)
        else:
            remembered.forget(server, client.username)
        window = ContactsWindow(client)
        windows.append(window)
        window.show()
        dialog.accept()

    dialog.signed_in.connect(signed_in)

    async def start() -> None:
        # Remembered: sign in with the saved token; the window only shows if that fails.
        token = remembered.token(last_server, last_user) if last_server and last_user else None
        if token and last_server and last_user:
            try:
                client = await sign_in(last_server, Credentials(last_user, token=token), identity)
            except AccountError as exc:
                if exc.code == "auth_failed":
                    remembered.forget(last_server, last_user)
                dialog.message.setText(exc.message)
            else:
                signed_in(client)
                return
        dialog.show()

    closed = asyncio.Event()
    app.lastWindowClosed.connect(closed.set)
    with loop:
        loop.run_until_complete(start())
        loop.run_until_complete(closed.wait())
        for window in windows:
            loop.run_until_complete(window.sign_out())
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv))
