"""'Remember me': the desktop app's last server and name, and the session token, kept between runs.

The token goes to the system keyring (the ``keyring`` library: Secret Service, macOS Keychain, Windows
Credential Locker). Where there is none (a bare Linux session, a CI machine), it goes to an owner-only
file in the config folder instead, and `stored_in` says so, so the window can tell the user. Settings
(server, name, remember or not) are a small JSON file beside it. Qt-free.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Literal

import keyring
import keyring.errors

from app.account.identity import write_private_file
from app.account.saved_sessions import SavedSessions

SETTINGS_FILE = "desktop-settings.json"
KEYRING_SERVICE = "punchline"


class RememberedSignIn:
    """Where the app signed in last, and its token (keyring first, a private file otherwise)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._settings_path = directory / SETTINGS_FILE
        self._fallback = SavedSessions(directory)
        #: Where the last token saved went: "keyring" or "file" (no keyring on this system).
        self.stored_in: Literal["keyring", "file"] | None = None

    # --- settings ----------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The saved settings (empty when there are none or the file is damaged)."""
        try:
            data = json.loads(self._settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def option(self, name: str, default: Any = None) -> Any:
        """A saved preference (close to tray, download folder…), or ``default``."""
        return self.settings().get("options", {}).get(name, default)

    def set_option(self, name: str, value: Any) -> None:
        """Save a preference."""
        options = dict(self.settings().get("options", {}))
        options[name] = value
        self._update_settings(options=options)

    def last(self) -> tuple[str | None, str | None]:
        """The server and name of the last sign-in."""
        data = self.settings()
        server, user = data.get("server"), data.get("user")
        return (server if isinstance(server, str) else None, user if isinstance(user, str) else None)

    # --- tokens ------------------------------------------------------------------------------------------

    def remember(self, server: str, user: str, token: str) -> None:
        """Keep the token for next time."""
        self._update_settings(server=server, user=user)
        try:
            keyring.set_password(KEYRING_SERVICE, _key(server, user), token)
            self.stored_in = "keyring"
        except keyring.errors.KeyringError:
            self._fallback.save(server, user, token)
            self.stored_in = "file"

    def token(self, server: str, user: str) -> str | None:
        """The kept token, if any."""
        try:
            token = keyring.get_password(KEYRING_SERVICE, _key(server, user))
        except keyring.errors.KeyringError:
            token = None
        return token or self._fallback.token(server, user)

    def forget(self, server: str, user: str) -> None:
        """Drop the token (signing out, or it no longer works); the server and name stay as defaults."""
        with contextlib.suppress(keyring.errors.KeyringError):
            keyring.delete_password(KEYRING_SERVICE, _key(server, user))
        self._fallback.forget(server, user)

    def _update_settings(self, **values: Any) -> None:
        data = self.settings()
        data.update(values)
        self._directory.mkdir(parents=True, exist_ok=True)
        write_private_file(self._settings_path, json.dumps(data, indent=2).encode())


def _key(server: str, user: str) -> str:
    return f"{user}@{server}"
