"""STUN bytes for tests: RFC-printed hex, Binding requests, and datagrams a STUN server must not answer."""

from __future__ import annotations

import struct
from typing import Any

from rendezvous.wire.stun import (
    AttributeType,
    ErrorCode,
    RawAttribute,
    Software,
    StunClass,
    StunMessage,
    StunMethod,
)

TID = bytes(range(12))


def hex_bytes(text: str) -> bytes:
    """Hex as the RFC prints it (spaces, line breaks) to bytes."""
    return bytes.fromhex("".join(text.split()))


def binding_request(*attributes: Any, fingerprint: bool = False, tid: bytes = TID, padding: int = 0) -> bytes:
    """A Binding request's bytes; ``padding`` bytes of RFC 5780 PADDING make it bigger."""
    extra = (RawAttribute(AttributeType.PADDING, bytes(padding)),) if padding else ()
    message = StunMessage(StunMethod.BINDING, StunClass.REQUEST, tid, (*attributes, *extra))
    return message.encode(fingerprint=fingerprint)


#: Datagrams a STUN server drops without an answer: everything but a Binding request.
DROPPED = {
    "empty": b"",
    "garbage": b"hello, is this STUN?" * 3,
    "quic-like": b"\xc3\x00\x00\x00\x01" + bytes(40),
    "truncated": binding_request(Software("x"))[:-4],
    "binding-indication-keepalive": StunMessage(StunMethod.BINDING, StunClass.INDICATION, TID).encode(),
    "binding-success": StunMessage(StunMethod.BINDING, StunClass.SUCCESS, TID).encode(),
    "binding-error": StunMessage(
        StunMethod.BINDING, StunClass.ERROR, TID, (ErrorCode(400, "Bad Request"),)
    ).encode(),
    "allocate-request": StunMessage(StunMethod.ALLOCATE, StunClass.REQUEST, TID).encode(),
    "unknown-method": StunMessage(0x0ABC, StunClass.REQUEST, TID).encode(),
    "bad-fingerprint": binding_request(fingerprint=True)[:-1] + b"\x00",
    "rfc3489-no-cookie": struct.pack("!HH16s", 0x0001, 0, bytes(16)),
}
