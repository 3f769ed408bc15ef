"""Control messages on the session: JSON objects, each preceded by its length (4 bytes, big-endian).

The control stream is the first bidirectional stream the dialling side opens (stream 0). Both directions
carry messages; a message is a JSON object with a ``type``. The session layer uses ``auth`` and
``welcome`` (`app.session.auth`); the file transfer layer its own (`app.transfer.protocol`).
"""

from __future__ import annotations

import json
from typing import Any

#: Largest control message accepted, in bytes: an offer of thousands of files fits; a flood does not.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ControlProtocolError(Exception):
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
            except (UnicodeDecodeError, ValueError) as exc:
                raise ControlProtocolError(f"control message is not JSON: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ControlProtocolError("control message is not an object with a type")
            messages.append(message)
        return messages
