"""TURN pieces that are not STUN messages (RFC 8656), sans-IO: ChannelData framing and REST credentials.

TURN's requests and indications (Allocate, Refresh, CreatePermission, ChannelBind, Send, Data) are STUN
messages: their methods and attributes live in ``rendezvous.wire.stun``. This module adds:

* **ChannelData** (RFC 8656 §12.4), the 4-byte-header framing for data on a bound channel::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
     |         Channel Number        |            Length             |
     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
     |                     Application Data (Length bytes)           |

  Channel numbers are 0x4000-0x4FFF, so the first byte (64-79) tells ChannelData apart from STUN (0-3)
  and QUIC (128-191) on one socket (RFC 7983 §7).

* **Stream framing** (RFC 8656 §12.5, RFC 8489 §6.2.2) for TURN over TCP, where the client reaches the
  relay over a TCP connection (networks that block outbound UDP) and the relay still talks UDP to peers.
  STUN messages carry their own length; ChannelData is padded to a multiple of four bytes on a stream.
  `StreamFramer` cuts the byte stream back into messages; `stream_frame` pads one for writing.

* **Time-limited credentials** in the "TURN REST API" style (draft-uberti-behave-turn-rest-00), which
  coturn implements as ``use-auth-secret``: the username is ``"<unix expiry>:<user>"`` and the password is
  base64(HMAC-SHA1(shared secret, username)). The rendezvous server hands these to signed-in users; any TURN
  server that knows the secret can check them without a database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from rendezvous.wire.stun import HEADER_LENGTH as STUN_HEADER_LENGTH
from rendezvous.wire.stun import MAGIC_COOKIE_BYTES

CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x4FFF  # RFC 8656 §12: 0x5000-0x7FFF are reserved
CHANNEL_DATA_HEADER_LENGTH = 4
REQUESTED_TRANSPORT_UDP = 17  # the IP protocol number, RFC 8656 §18.8
_CHANNEL_HEADER = struct.Struct("!HH")


class TurnErrorCode(IntEnum):
    """TURN's error codes (RFC 8656 §19) and the STUN ones a TURN server answers with (RFC 8489 §14.8)."""

    BAD_REQUEST = 400
    UNAUTHENTICATED = 401
    FORBIDDEN = 403
    UNKNOWN_ATTRIBUTE = 420
    ALLOCATION_MISMATCH = 437
    STALE_NONCE = 438
    ADDRESS_FAMILY_NOT_SUPPORTED = 440
    WRONG_CREDENTIALS = 441
    UNSUPPORTED_TRANSPORT_PROTOCOL = 442
    PEER_ADDRESS_FAMILY_MISMATCH = 443
    ALLOCATION_QUOTA_REACHED = 486
    SERVER_ERROR = 500
    INSUFFICIENT_CAPACITY = 508


class ChannelDataError(Exception):
    """Not a well-formed ChannelData message (the only exception `decode_channel_data` raises)."""


@dataclass(frozen=True)
class ChannelData:
    """One ChannelData message: application data on a channel bound to one peer."""

    channel: int
    data: bytes

    def encode(self) -> bytes:
        """Header and data; over UDP no padding is needed (RFC 8656 §12.5)."""
        if not CHANNEL_MIN <= self.channel <= CHANNEL_MAX:
            raise ValueError(f"channel {self.channel:#06x} outside 0x4000-0x4FFF")
        if len(self.data) > 0xFFFF:
            raise ValueError(f"{len(self.data)} bytes do not fit one ChannelData message")
        return _CHANNEL_HEADER.pack(self.channel, len(self.data)) + self.data


def is_channel_data(data: bytes) -> bool:
    """Quick demultiplexing test (RFC 7983 §7): first byte 64-79 and at least a header."""
    return len(data) >= CHANNEL_DATA_HEADER_LENGTH and 0x40 <= data[0] <= 0x4F


def channel_data_header(channel: int, length: int) -> bytes:
    """The 4-byte ChannelData header alone, for relays that prepend it to data they already hold."""
    return _CHANNEL_HEADER.pack(channel, length)


def parse_channel_data(data: bytes) -> tuple[int, bytes]:
    """(channel, application data) of one datagram; raise `ChannelDataError` (only) if it is malformed.

    RFC 8656 §12.5: the length may be shorter than the datagram by up to 3 bytes of padding (a sender that
    pads as over TCP); anything else that disagrees is malformed and dropped.
    """
    if len(data) < CHANNEL_DATA_HEADER_LENGTH:
        raise ChannelDataError(f"{len(data)} bytes is shorter than a ChannelData header")
    channel, length = _CHANNEL_HEADER.unpack_from(data)
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ChannelDataError(f"channel {channel:#06x} outside 0x4000-0x4FFF")
    spare = len(data) - CHANNEL_DATA_HEADER_LENGTH - length
    if not 0 <= spare <= 3:
        raise ChannelDataError(f"ChannelData length {length} does not match the {len(data)}-byte datagram")
    return channel, data[CHANNEL_DATA_HEADER_LENGTH : CHANNEL_DATA_HEADER_LENGTH + length]


def decode_channel_data(data: bytes) -> ChannelData:
    """Parse one datagram into a `ChannelData`; raise `ChannelDataError` (only) if it is malformed."""
    return ChannelData(*parse_channel_data(data))


class FramingError(Exception):
    """The TCP stream holds something that is neither STUN nor ChannelData: the connection must close."""


def stream_frame(message: bytes) -> bytes:
    """``message`` as written to a TCP stream: ChannelData padded to a multiple of 4 (RFC 8656 §12.5)."""
    if is_channel_data(message) and len(message) % 4:
        return message + bytes(4 - len(message) % 4)
    return message


class StreamFramer:
    """Splits a TURN-over-TCP byte stream into STUN messages and ChannelData frames, sans-IO.

    `feed` takes whatever the socket read and returns the complete frames so far (ChannelData with its
    padding, which `parse_channel_data` accepts). Anything that starts with neither a STUN header (first two
    bits 0, magic cookie) nor a channel number 0x4000-0x4FFF raises `FramingError`: with no way to find the
    next frame, the connection is unusable. The buffer never holds more than one frame's worth.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete frame it finished."""
        self._buffer += data
        frames: list[bytes] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= CHANNEL_DATA_HEADER_LENGTH:
            first = buffer[offset]
            length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
            if 0x40 <= first <= 0x4F:
                size = CHANNEL_DATA_HEADER_LENGTH + length + (-length % 4)
            elif first < 4:
                if length % 4:
                    raise FramingError(f"a STUN length of {length} is not a multiple of 4")
                size = STUN_HEADER_LENGTH + length
                if len(buffer) - offset >= 8 and buffer[offset + 4 : offset + 8] != MAGIC_COOKIE_BYTES:
                    raise FramingError("a STUN header without the magic cookie")
            else:
                raise FramingError(f"a frame starting with byte {first:#04x} is neither STUN nor ChannelData")
            if len(buffer) - offset < size:
                break
            frames.append(bytes(buffer[offset : offset + size]))
            offset += size
        del buffer[:offset]
        return frames


@dataclass(frozen=True)
class RestCredentials:
    """A TURN username and password that expire at ``expires`` (unix seconds)."""

    username: str
    password: str
    expires: int


def rest_password(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)): what coturn's ``use-auth-secret`` expects."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def make_rest_credentials(secret: str, user: str, *, now: float, ttl: int) -> RestCredentials:
    """Credentials for ``user`` valid for ``ttl`` seconds from ``now``."""
    if ":" in user:
        raise ValueError("the user part of a TURN REST username may not contain ':'")
    expires = int(now) + ttl
    username = f"{expires}:{user}"
    return RestCredentials(username, rest_password(secret, username), expires)


def rest_username_expiry(username: str) -> int | None:
    """The expiry in a ``"<unix expiry>:<user>"`` username, or None if it is not one."""
    expiry, colon, _user = username.partition(":")
    if not colon or not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
        return None
    return int(expiry)
