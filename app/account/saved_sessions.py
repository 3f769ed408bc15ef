"""Session tokens the CLI keeps between runs: one per (server, user), in an owner-only JSON file.

A token lets later commands sign in without the password; ``logout`` revokes it on the server and here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.account.identity import write_private_file

SESSIONS_FILE = "cli-sessions.json"


class SavedSessions:
    """Read and update the saved tokens; a missing or damaged file counts as empty, never as an error."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / SESSIONS_FILE

    def token(self, server: str, user: str) -> str | None:
        """The saved token for ``user`` on ``server``, if any."""
        entry = self._load().get(server, {}).get("users", {}).get(user)
        return entry if isinstance(entry, str) else None

    def last_user(self, server: str) -> str | None:
        """Who last signed in to ``server`` from here."""
        user = self._load().get(server, {}).get("last_user")
        return user if isinstance(user, str) else None

    def save(self, server: str, user: str, token: str) -> None:
        """Remember ``token`` for ``user`` on ``server`` (and ``user`` as the default there)."""
        data = self._load()
        entry = data.setdefault(server, {})
        entry.setdefault("users", {})[user] = token
        entry["last_user"] = user
        self._store(data)

    def forget(self, server: str, user: str) -> None:
        """Drop the saved token of ``user`` on ``server``."""
        data = self._load()
        entry = data.get(server, {})
        entry.get("users", {}).pop(user, None)
        if entry.get("last_user") == user:
            entry.pop("last_user")
        self._store(data)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, data: dict[str, Any]) -> None:
        write_private_file(self._path, json.dumps(data, indent=2).encode("utf-8"))
