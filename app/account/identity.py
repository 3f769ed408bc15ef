"""This installation's long-term identity: an Ed25519 key pair kept in the user's config directory.

The public key is registered with the rendezvous server at sign-in and reaches contacts with presence; the
peer session (a later layer) proves possession of the private key. The device id is derived from the public
key, so a new key is, to everyone else, a new device.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.errors import FinalError

IDENTITY_FILE = "identity.pem"


class IdentityError(FinalError):
    """The identity file exists but cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class DeviceIdentity:
    """A device's key pair."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> DeviceIdentity:
        """A fresh random identity."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_key_b64(self) -> str:
        """The public key as the signalling protocol carries it (standard base64)."""
        return base64.b64encode(self.public_key_bytes).decode("ascii")

    @property
    def device_id(self) -> str:
        """A short stable name for this device: the first 16 hex digits of SHA-256(public key)."""
        return hashlib.sha256(self.public_key_bytes).hexdigest()[:16]


def load_or_create_identity(directory: Path) -> DeviceIdentity:
    """Load the identity from ``directory``, creating it (owner-only permissions) on first run."""
    path = directory / IDENTITY_FILE
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise IdentityError(f"Cannot read the identity key {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"The identity key {path} is not an Ed25519 key.")
        return DeviceIdentity(key)
    identity = DeviceIdentity.generate()
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(path, pem)
    return identity


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path``, readable by the owner only (0600) from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
