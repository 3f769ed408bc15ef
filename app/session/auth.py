"""How the dialling side proves its identity key inside the QUIC session.

TLS already authenticates the answering side: its certificate carries its identity key and the handshake's
CertificateVerify proves it holds the private half (`app.session.credentials`). Our QUIC library does not
ask clients for certificates, so the dialling side proves its key in the first control message instead::

    auth     dialler → answerer   {"type": "auth", "version": 1, "key": b64, "signature": b64}
    welcome  answerer → dialler   {"type": "welcome"}            (or a close with a reason)

The signature covers a context string, the exact certificate the answerer presented in *this* handshake,
and the dialler's key. The answerer makes a new certificate (with a random 159-bit serial) for every
session, so a signature is good for one session only: a relay or server in the middle can neither read the
session (it would have to hold the answerer's key) nor replay a proof into a session of its own.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.account.identity import DeviceIdentity

AUTH_VERSION = 1
_CONTEXT = b"punchline session auth v1\0"


class AuthFailed(Exception):
    """The dialler's proof is missing, malformed or does not verify."""


def _signed_bytes(server_certificate: bytes, client_key: bytes) -> bytes:
    return _CONTEXT + len(server_certificate).to_bytes(4, "big") + server_certificate + client_key


def auth_message(identity: DeviceIdentity, server_certificate: bytes) -> dict[str, Any]:
    """The dialler's ``auth`` message for a session whose answerer presented ``server_certificate``."""
    signature = identity.private_key.sign(_signed_bytes(server_certificate, identity.public_key_bytes))
    return {
        "type": "auth",
        "version": AUTH_VERSION,
        "key": identity.public_key_b64,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def verify_auth(message: dict[str, Any], server_certificate: bytes) -> bytes:
    """The dialler's raw public key, if ``message`` proves it for this session; else `AuthFailed`."""
    if message.get("type") != "auth" or message.get("version") != AUTH_VERSION:
        raise AuthFailed("the peer did not start the session with an identity proof")
    try:
        key = base64.b64decode(str(message.get("key")), validate=True)
        signature = base64.b64decode(str(message.get("signature")), validate=True)
        Ed25519PublicKey.from_public_bytes(key).verify(signature, _signed_bytes(server_certificate, key))
    except (binascii.Error, ValueError, InvalidSignature):
        raise AuthFailed("the peer's identity proof does not verify") from None
    return key
