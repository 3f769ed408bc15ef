"""Which identity key each contact's app must present: pinned on first contact, changed only by the user.

The rendezvous server says which key a contact's device has, but a server that lies could then sit in the
middle. So the first key seen for a contact is pinned (trust on first use, as SSH and Signal do), and a
session whose peer presents any other key is refused with `KeyChanged` until the user accepts the new key
(``punchline-cli trust NAME``, or the app's warning dialog) — ideally after comparing the `safety_number`
aloud with the contact. The store is a small JSON file in the config directory, written atomically and
readable by the owner only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.account.identity import write_private_file

KNOWN_KEYS_FILE = "known_keys.json"
#: Digits in a safety number (in groups of five): about 66 bits, far beyond guessing a matching key.
SAFETY_DIGITS = 20


class KeyChanged(Exception):
    """A contact presented a key other than the pinned one; the session must not go on."""

    def __init__(self, contact: str, pinned: bytes, presented: bytes, ours: bytes) -> None:
        self.contact = contact
        self.pinned = pinned
        self.presented = presented
        self.safety_number = safety_number(ours, presented)
        super().__init__(
            f"{contact}'s identity key has changed. This happens when they reinstall the app or use a new "
            f"computer, but it could also mean someone is intercepting the connection. Compare the safety "
            f"number {self.safety_number} with {contact} (by phone or in person), then accept the new key "
            f"with 'punchline-cli trust {contact}'."
        )


TrustOutcome = Literal["pinned", "first-contact"]


@dataclass(frozen=True)
class PinnedKey:
    """A contact's accepted key and, if a different one turned up since, that key (awaiting the user)."""

    key: bytes
    pending: bytes | None
    pinned_at: float


def safety_number(key_a: bytes, key_b: bytes) -> str:
    """Digits two people can read to each other; the same on both sides (the keys are sorted)."""
    low, high = sorted((key_a, key_b))
    digest = hashlib.sha512(b"punchline safety number v1\0" + low + high).digest()
    digits = str(int.from_bytes(digest[:16], "big") % 10**SAFETY_DIGITS).zfill(SAFETY_DIGITS)
    return " ".join(digits[i : i + 5] for i in range(0, SAFETY_DIGITS, 5))


class TrustStore:
    """Pinned identity keys per contact, kept in ``directory``/known_keys.json."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / KNOWN_KEYS_FILE

    def get(self, contact: str) -> PinnedKey | None:
        """The pinned key for ``contact``, if any."""
        entry = self._load().get(contact)
        if entry is None:
            return None
        pending = entry.get("pending")
        return PinnedKey(_decode(entry["key"]), _decode(pending) if pending else None, entry["pinned_at"])

    def check(self, contact: str, presented: bytes, ours: bytes) -> TrustOutcome:
        """Accept ``presented`` for ``contact`` (pinning it on first contact) or raise `KeyChanged`."""
        data = self._load()
        entry = data.get(contact)
        if entry is None:
            data[contact] = {"key": _encode(presented), "pending": None, "pinned_at": time.time()}
            self._store(data)
            return "first-contact"
        pinned = _decode(entry["key"])
        if pinned == presented:
            return "pinned"
        if entry.get("pending") != _encode(presented):
            entry["pending"] = _encode(presented)
            self._store(data)
        raise KeyChanged(contact, pinned, presented, ours)

    def accept_pending(self, contact: str) -> bytes | None:
        """Pin the key ``contact`` presented last time instead of the old one; None if there is none."""
        data = self._load()
        entry = data.get(contact)
        if entry is None or not entry.get("pending"):
            return None
        entry["key"], entry["pending"], entry["pinned_at"] = entry["pending"], None, time.time()
        self._store(data)
        return _decode(entry["key"])

    def forget(self, contact: str) -> None:
        """Drop ``contact``'s pin: the next key they present is pinned as on first contact."""
        data = self._load()
        if data.pop(contact, None) is not None:
            self._store(data)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A damaged store must not silently become "trust everyone again".
            raise OSError(f"Cannot read the pinned keys in {self._path}: {exc}") from exc
        contacts = data.get("contacts") if isinstance(data, dict) else None
        if not isinstance(contacts, dict):
            raise OSError(f"The pinned keys file {self._path} is damaged.")
        return contacts

    def _store(self, contacts: dict[str, Any]) -> None:
        text = json.dumps({"version": 1, "contacts": contacts}, indent=1, sort_keys=True)
        write_private_file(self._path, text.encode("utf-8"))


def _encode(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OSError(f"a pinned key is damaged: {exc}") from exc
