"""Control messages on the session: JSON objects, each preceded by its length (4 bytes, big-endian).

The control stream is the first bidirectional stream the dialling side opens (stream 0). Both directions
carry messages; a message is a JSON object with a ``type``. The session layer uses ``auth`` and
``welcome`` (`app.session.auth`); the layers above theirs: file transfer (`app.transfer.messages`) and
calls (``call-*``, `app.voice.call_signalling`). The session hands each message to the layer that
registered its type (`PeerSession.set_message_receiver`); a type nobody registered is logged and dropped.

Two parts live here:

* the framing: `encode_message` and `MessageDecoder` (length-prefixed JSON; `ControlProtocolError` for
  anything else);
* typed messages for any layer: a layer declares its messages as frozen dataclasses derived from
  `ControlMessage` (``TYPE`` is the wire ``type``; the fields are the JSON fields, same names) and lists
  them in a `MessageSet`, which decodes a JSON object into one of them, checking every field against its
  type hint (`rendezvous.wire.typed_json`, the converter signalling uses too), or raises the layer's own
  error type, never anything else. Unknown fields are ignored, so that a newer peer may add optional
  ones; fields with a default may be missing; ``None`` fields are left out when encoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from app.errors import FinalError
from rendezvous.wire.typed_json import FieldError, from_json, short, to_json, type_hints

#: Largest control message accepted, in bytes: an offer of thousands of files fits; a flood does not.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ControlProtocolError(FinalError):
    """The peer sent bytes that are not a control message; the session ends with this reason."""


def encode_message(message: dict[str, Any]) -> bytes:
    """One framed message."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"control message of {len(body)} bytes is too large")
    return len(body).to_bytes(4, "big") + body


class MessageDecoder:
    """Cuts the control stream into messages; raises `ControlProtocolError` on anything else."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The complete messages ``data`` finished (the rest is kept for the next call)."""
        self._buffer += data
        messages: list[dict[str, Any]] = []
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:4], "big")
            if length > MAX_MESSAGE_BYTES:
                raise ControlProtocolError(f"control message of {length} bytes is too large")
            if len(self._buffer) < 4 + length:
                break
            body = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            try:
                message = json.loads(body.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                raise ControlProtocolError(f"control message is not JSON: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ControlProtocolError("control message is not an object with a type")
            messages.append(message)
        return messages


# ------------------------------------------------------------------------------------------ typed messages


@dataclass(frozen=True)
class ControlMessage:
    """The base of a layer's typed control messages: a frozen dataclass whose ``TYPE`` is its wire type."""

    TYPE: ClassVar[str]


M = TypeVar("M", bound=ControlMessage)


class MessageSet(Generic[M]):
    """The control messages one layer speaks: JSON objects in and out, by their ``type``.

    `decode` raises ``error`` (the layer's protocol error type, built from one sentence) for anything that
    is not one of ``classes`` with well-typed fields, and never anything else. Field types may be ``str``,
    ``int``, ``bool``, ``float``, a ``Literal`` of strings, ``X | None``, ``tuple[X, ...]`` and nested
    frozen dataclasses of those.
    """

    def __init__(self, classes: Iterable[type[M]], error: type[Exception] = ControlProtocolError) -> None:
        self._classes: dict[str, type[M]] = {}
        for cls in classes:
            if cls.TYPE in self._classes:
                raise ValueError(f"two messages with the type {cls.TYPE!r}")
            type_hints(cls)  # a schema mistake shows at import, not at the first message
            self._classes[cls.TYPE] = cls
        self._error = error

    @property
    def types(self) -> frozenset[str]:
        """The wire types of this set (what the layer registers for on the session)."""
        return frozenset(self._classes)

    def decode(self, message: Mapping[str, Any]) -> M:
        """The typed message for ``message`` (a JSON object with a ``type``); raise ``error`` otherwise."""
        kind = message.get("type")
        cls = self._classes.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise self._error(f"not a message of this layer: type {short(kind)}")
        try:
            decoded: M = from_json(cls, message, str(kind))
        except FieldError as exc:
            raise self._error(str(exc)) from None
        return decoded

    def encode(self, message: M) -> dict[str, Any]:
        """The JSON object for ``message`` (``type`` first, then its fields; ``None`` fields left out)."""
        if self._classes.get(message.TYPE) is not type(message):
            raise TypeError(f"{type(message).__name__} is not in this message set")  # our bug
        body: dict[str, Any] = {"type": message.TYPE}
        body.update(to_json(message, omit_none=True))
        return body
