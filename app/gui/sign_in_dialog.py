"""The first window: server address, name and password; sign in or create an account.

The work is the Qt-free `app.account`; this window only collects the fields, runs it on the shared event
loop (qasync in the app, the test's loop in tests) and shows the outcome in words.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.account.signing_in import AccountError
from app.signalling.client import SignallingClient

#: (server, username, password) → a signed-in client, or `AccountError`.
SignIn = Callable[[str, str, str], Awaitable[SignallingClient]]
#: (server, username, password) → the account exists, or `AccountError`.
Register = Callable[[str, str, str], Awaitable[None]]


class SignInDialog(QDialog):
    """Sign in (or register, then sign in); emits `signed_in` with the client, stays open on errors."""

    signed_in = Signal(object)

    def __init__(
        self,
        sign_in: SignIn,
        register: Register,
        *,
        server: str,
        username: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._sign_in, self._register = sign_in, register
        self._task: asyncio.Task[None] | None = None
        self.setWindowTitle("Sign in to Punchline")
        self.server = QLineEdit(server)
        self.server.setAccessibleName("Server address")
        self.username = QLineEdit(username)
        self.username.setAccessibleName("User name")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setAccessibleName("Password")
        self.remember = QCheckBox("Remember me on this computer")
        self.remember.setChecked(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Message")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sign_in_button = QPushButton("&Sign in")
        self.sign_in_button.setDefault(True)
        self.register_button = QPushButton("&Create account")
        form = QFormLayout()
        form.addRow("Server", self.server)
        form.addRow("Name", self.username)
        form.addRow("Password", self.password)
        buttons = QHBoxLayout()
        buttons.addWidget(self.register_button)
        buttons.addStretch()
        buttons.addWidget(self.sign_in_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.remember)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        self.sign_in_button.clicked.connect(lambda: self._start(register_first=False))
        self.register_button.clicked.connect(lambda: self._start(register_first=True))

    @property
    def busy(self) -> bool:
        """Whether a sign-in is under way (the buttons are disabled meanwhile)."""
        return self._task is not None and not self._task.done()

    def _start(self, *, register_first: bool) -> None:
        if self.busy:
            return
        server, name, password = (
            self.server.text().strip(),
            self.username.text().strip(),
            self.password.text(),
        )
        if not name or not password:
            self._show("Enter your name and password.", error=True)
            return
        self._task = asyncio.ensure_future(self._run(server, name, password, register_first))

    async def _run(self, server: str, name: str, password: str, register_first: bool) -> None:
        self._set_enabled(False)
        try:
            if register_first:
                self._show(f"Creating the account {name}...")
                await self._register(server, name, password)
            self._show("Signing in...")
            client = await self._sign_in(server, name, password)
        except AccountError as exc:
            self._show(exc.message, error=True)
            return
        finally:
            self._set_enabled(True)
        self._show(f"Signed in as {client.username}.")
        self.signed_in.emit(client)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.sign_in_button, self.register_button, self.server, self.username, self.password):
            widget.setEnabled(enabled)

    def _show(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setProperty("error", error)
        self.message.setStyleSheet("color: palette(highlight);" if not error else "color: #c62828;")
