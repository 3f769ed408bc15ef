"""'Remember me' storage: the system keyring when there is one, an owner-only file when not."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.account.remembered import RememberedSignIn


class MemoryKeyring(KeyringBackend):
    """Stands in for a desktop's keyring service (none runs on this machine)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


def test_without_a_keyring_the_token_goes_to_a_private_file(tmp_path: Path) -> None:
    from keyring.backends.fail import Keyring as NoKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())  # type: ignore[no-untyped-call]
    try:
        store = RememberedSignIn(tmp_path)
        store.remember("ws://example:8765", "alice", "secret-token")
        assert store.stored_in == "file"
        assert RememberedSignIn(tmp_path).token("ws://example:8765", "alice") == "secret-token"
        assert RememberedSignIn(tmp_path).last() == ("ws://example:8765", "alice")
        for path in tmp_path.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        store.forget("ws://example:8765", "alice")
        assert store.token("ws://example:8765", "alice") is None
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_with_a_keyring_the_token_never_touches_the_disk(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    store = RememberedSignIn(tmp_path)
    store.remember("ws://example:8765", "alice", "secret-token")
    assert store.stored_in == "keyring"
    assert memory_keyring.secrets == {("punchline", "alice@ws://example:8765"): "secret-token"}
    assert not any("secret-token" in p.read_text() for p in tmp_path.iterdir())
    assert store.token("ws://example:8765", "alice") == "secret-token"
    store.forget("ws://example:8765", "alice")
    assert memory_keyring.secrets == {}
