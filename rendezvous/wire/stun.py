"""STUN messages (RFC 8489), sans-IO: bytes in, a `StunMessage` out, and back. No sockets, no clock.

Everything that speaks STUN builds on it: the server's binding service and behaviour discovery
(``rendezvous.stun_server``, ``rendezvous.behaviour_discovery``), the TURN relay (``rendezvous.turn_server``),
and on the client the binding transaction (``app.nat.stun_client``), the hole punch's connectivity and
consent checks (``app.nat.hole_punch``) and the TURN client (``app.nat.turn_client``, RFC 8656).

Wire format (RFC 8489 §5-6), all integers big-endian::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0 0|     STUN Message Type     |         Message Length        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                   Magic Cookie = 0x2112A442                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Transaction ID (96 bits) ...                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | attributes: Type (16) | Length (16) | Value, padded to 4 bytes |

The message type interleaves a 12-bit method with a 2-bit class (§5). The length counts the attributes
only, so it is a multiple of 4. Each attribute (§14) is type-length-value; types below 0x8000 are
*comprehension-required* (an agent that does not know one must reject the message, §6.3.1.1).

Attributes this codec understands (one frozen dataclass each, registered by type):

=======  =========================  ==========  =============================================
type     name                       RFC 8489    notes
=======  =========================  ==========  =============================================
0x0001   MAPPED-ADDRESS             §14.1       RFC 3489 servers; decode-only in practice
0x0006   USERNAME                   §14.3       short- and long-term credentials
0x0008   MESSAGE-INTEGRITY          §14.5       HMAC-SHA1; ``encode(integrity_key=...)``
0x0009   ERROR-CODE                 §14.8       class 3-6 x 100 + number 0-99, reason phrase
0x000A   UNKNOWN-ATTRIBUTES         §14.9       answer to a 420 error
0x0020   XOR-MAPPED-ADDRESS         §14.2       IPv4 and IPv6
0x8022   SOFTWARE                   §14.14
0x8028   FINGERPRINT                §14.7       ``encode(fingerprint=True)``; checked on decode
0x0014   REALM                      §14.9       long-term credentials (401 challenge)
0x0015   NONCE                      §14.10      long-term credentials (401/438 challenge)
=======  =========================  ==========  =============================================

TURN (RFC 8656 §18) and ICE (RFC 8445 §16.1) attributes, for the relay and the connectivity checks:

=======  =========================  ==========  =============================================
0x000C   CHANNEL-NUMBER             8656 §18.1  0x4000-0x4FFF
0x000D   LIFETIME                   8656 §18.2  seconds
0x0012   XOR-PEER-ADDRESS           8656 §18.3  same encoding as XOR-MAPPED-ADDRESS
0x0013   DATA                       8656 §18.4  the application datagram
0x0016   XOR-RELAYED-ADDRESS        8656 §18.5
0x0017   REQUESTED-ADDRESS-FAMILY   8656 §18.6
0x0018   EVEN-PORT                  8656 §18.7
0x0019   REQUESTED-TRANSPORT        8656 §18.8  17 = UDP
0x001A   DONT-FRAGMENT              8656 §18.9  no value
0x0022   RESERVATION-TOKEN          8656 §18.10 8 bytes
0x0024   PRIORITY                   8445 §16.1
0x0025   USE-CANDIDATE              8445 §16.1  no value
0x8029   ICE-CONTROLLED             8445 §16.1  64-bit tie-breaker
0x802A   ICE-CONTROLLING            8445 §16.1  64-bit tie-breaker
=======  =========================  ==========  =============================================

Any other attribute decodes to a `RawAttribute` so callers can tell which comprehension-required ones they
did not understand. To add one (MESSAGE-INTEGRITY-SHA256, PASSWORD-ALGORITHMS...), write a frozen dataclass
subclass of `Attribute` with ``TYPE``, ``encode_value`` and ``decode_value``, and decorate it with
``@_register``.

FINGERPRINT is a transport check, not content: `decode` verifies it and leaves it out of the attribute
list, `StunMessage.encode` adds it when asked. MESSAGE-INTEGRITY needs a key, so `decode` keeps it as an
attribute and `verify_integrity` checks it against the raw bytes.

`decode` returns a message or raises `StunDecodeError`; it raises nothing else, whatever the input.
Misusing the encoding side (a bad port, a 13-byte transaction id) is a bug and raises `ValueError`.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import secrets
import struct
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

#: An (IP address, port) pair, as the socket layer spells it.
Address = tuple[str, int]

HEADER_LENGTH = 20
MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
TRANSACTION_ID_LENGTH = 12
FINGERPRINT_XOR = 0x5354554E  # RFC 8489 §14.7: "STUN" in ASCII, so FINGERPRINT differs from other CRCs
_INTEGRITY_LENGTH = 20  # HMAC-SHA1 digest
_MAX_BODY_LENGTH = 0xFFFC  # the length field is 16 bits and a multiple of 4
_MAX_REASON_BYTES = 763  # RFC 8489 §14.8: fewer than 128 characters, at most 763 bytes
_MAX_SOFTWARE_BYTES = 763  # RFC 8489 §14.14
_MAX_USERNAME_BYTES = 508  # RFC 8489 §14.3: fewer than 509 bytes
_MAX_REALM_BYTES = 763  # RFC 8489 §14.9
_MAX_NONCE_BYTES = 763  # RFC 8489 §14.10

_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE_HEADER = struct.Struct("!HH")


class StunError(Exception):
    """Base class of the STUN codec's errors."""


class StunDecodeError(StunError):
    """The bytes are not a well-formed STUN message (the only exception `decode` raises)."""


class StunMethod(IntEnum):
    """STUN methods (RFC 8489 §18.2, RFC 8656 §17); a decoded message may carry any 12-bit value."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class StunClass(IntEnum):
    """The two class bits of the message type (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class AttributeType(IntEnum):
    """Attribute types with a meaning in this codec (RFC 8489 §18.3)."""

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003  # RFC 5780 §7.2
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    MESSAGE_INTEGRITY_SHA256 = 0x001C  # not decoded yet; only its place after MESSAGE-INTEGRITY matters
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    PADDING = 0x0026  # RFC 5780 §7.6
    RESPONSE_PORT = 0x0027  # RFC 5780 §7.5
    SOFTWARE = 0x8022
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A
    RESPONSE_ORIGIN = 0x802B  # RFC 5780 §7.3
    OTHER_ADDRESS = 0x802C  # RFC 5780 §7.4


def canonical_address(address: tuple[object, ...]) -> Address | None:
    """(ip, port) spelled one way per endpoint, or None if ``address`` is not an IP endpoint.

    IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) becomes IPv4; extra IPv6 sockaddr fields
    (flow info, scope id) are dropped, so addresses from the socket layer compare equal to configured ones.
    """
    if len(address) < 2:
        return None
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (str(ip), port)


def is_comprehension_required(attr_type: int) -> bool:
    """RFC 8489 §14: types 0x0000-0x7FFF must be understood, or the message is rejected."""
    return attr_type < 0x8000


# --- attributes ----------------------------------------------------------------------------------------


class Attribute(ABC):
    """One STUN attribute (RFC 8489 §14). Subclasses are frozen dataclasses registered by ``TYPE``."""

    TYPE: ClassVar[int]

    @property
    def attr_type(self) -> int:
        """The attribute's 16-bit type on the wire."""
        return self.TYPE

    @abstractmethod
    def encode_value(self, transaction_id: bytes) -> bytes:
        """The value bytes, unpadded (XOR-encoded attributes need the transaction id)."""

    @classmethod
    @abstractmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Parse the value bytes (unpadded); raise `StunDecodeError` when they are malformed."""


#: Attribute classes by wire type: what `decode` turns each known type into.
ATTRIBUTE_CLASSES: dict[int, type[Attribute]] = {}
_A = TypeVar("_A", bound=Attribute)


def _register(cls: type[_A]) -> type[_A]:
    """Class decorator: `decode` turns attributes of ``cls.TYPE`` into ``cls``."""
    assert cls.TYPE not in ATTRIBUTE_CLASSES, f"attribute type {cls.TYPE:#06x} registered twice"
    ATTRIBUTE_CLASSES[cls.TYPE] = cls
    return cls


def _utf8(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StunDecodeError(f"{what} is not UTF-8") from exc


def _encode_text(text: str, limit: int, what: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > limit:
        raise ValueError(f"{what} is {len(data)} bytes of UTF-8, more than {limit}")
    return data


# RFC 8489 §14.1-14.2: reserved byte, family (0x01 IPv4, 0x02 IPv6), port, address.
_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02


def _pack_address(address: Address, xor: Callable[[bytes], bytes]) -> bytes:
    host, port = address[0], address[1]
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    ip = ipaddress.ip_address(host)  # raises ValueError for a name: resolve first
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    return bytes((0, family)) + xor(port.to_bytes(2, "big") + ip.packed)


def _unpack_address(value: bytes, xor: Callable[[bytes], bytes], what: str) -> Address:
    if len(value) < 4:
        raise StunDecodeError(f"{what} is {len(value)} bytes, too short")
    family = value[1]  # value[0] is reserved: ignored on receipt
    expected = {_FAMILY_IPV4: 8, _FAMILY_IPV6: 20}.get(family)
    if expected is None:
        raise StunDecodeError(f"{what} has unknown address family {family:#04x}")
    if len(value) != expected:
        raise StunDecodeError(f"{what} is {len(value)} bytes, expected {expected} for its family")
    plain = xor(value[2:])
    port = int.from_bytes(plain[:2], "big")
    ip = ipaddress.IPv4Address(plain[2:]) if family == _FAMILY_IPV4 else ipaddress.IPv6Address(plain[2:])
    return (str(ip), port)


def _xor_mask(transaction_id: bytes) -> Callable[[bytes], bytes]:
    """RFC 8489 §14.2: port XOR the cookie's top 16 bits, address XOR cookie (|| transaction id for IPv6)."""
    pad = MAGIC_COOKIE_BYTES[:2] + MAGIC_COOKIE_BYTES + transaction_id

    def xor(data: bytes) -> bytes:
        return bytes(a ^ b for a, b in zip(data, pad, strict=False))

    return xor


def _no_xor(data: bytes) -> bytes:
    return data


@_register
@dataclass(frozen=True)
class MappedAddress(Attribute):
    """MAPPED-ADDRESS (RFC 8489 §14.1): the reflexive address in clear, as RFC 3489 servers send it."""

    TYPE: ClassVar[int] = AttributeType.MAPPED_ADDRESS
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Family, port and address in clear."""
        return _pack_address(self.address, _no_xor)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Parse family, port and address."""
        return cls(_unpack_address(value, _no_xor, "MAPPED-ADDRESS"))


@_register
@dataclass(frozen=True)
class XorMappedAddress(Attribute):
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the reflexive address, obfuscated against NATs that rewrite it."""

    TYPE: ClassVar[int] = AttributeType.XOR_MAPPED_ADDRESS
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Family, then port and address XOR the cookie (and transaction id for IPv6)."""
        return _pack_address(self.address, _xor_mask(transaction_id))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Undo the XOR and parse."""
        return cls(_unpack_address(value, _xor_mask(transaction_id), "XOR-MAPPED-ADDRESS"))


@_register
@dataclass(frozen=True)
class ResponseOrigin(Attribute):
    """RESPONSE-ORIGIN (RFC 5780 §7.3): the address the response was sent from."""

    TYPE: ClassVar[int] = AttributeType.RESPONSE_ORIGIN
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        """As MAPPED-ADDRESS: family, port and address in clear."""
        return _pack_address(self.address, _no_xor)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Parse family, port and address."""
        return cls(_unpack_address(value, _no_xor, "RESPONSE-ORIGIN"))


@_register
@dataclass(frozen=True)
class OtherAddress(Attribute):
    """OTHER-ADDRESS (RFC 5780 §7.4): where the server would answer from for "change IP and port"."""

    TYPE: ClassVar[int] = AttributeType.OTHER_ADDRESS
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        """As MAPPED-ADDRESS: family, port and address in clear."""
        return _pack_address(self.address, _no_xor)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Parse family, port and address."""
        return cls(_unpack_address(value, _no_xor, "OTHER-ADDRESS"))


# CHANGE-REQUEST and RESPONSE-PORT are comprehension-required but deliberately not registered: `decode`
# leaves them as `RawAttribute`s, so that a server without RFC 5780 behaviour discovery answers 420 as RFC
# 5780 §6.1 asks. The discovery responder parses them with `decode_value`.


@dataclass(frozen=True)
class ChangeRequest(Attribute):
    """CHANGE-REQUEST (RFC 5780 §7.2): answer from the other IP address and/or the other port."""

    TYPE: ClassVar[int] = AttributeType.CHANGE_REQUEST
    change_ip: bool
    change_port: bool

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Four bytes; flag A (0x04) changes the IP, flag B (0x02) the port."""
        return bytes((0, 0, 0, (0x04 if self.change_ip else 0) | (0x02 if self.change_port else 0)))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly four bytes; other bits are ignored."""
        flags = _fixed(value, 4, "CHANGE-REQUEST")[3]
        return cls(bool(flags & 0x04), bool(flags & 0x02))


@dataclass(frozen=True)
class ResponsePort(Attribute):
    """RESPONSE-PORT (RFC 5780 §7.5): send the response to this port of the request's source address."""

    TYPE: ClassVar[int] = AttributeType.RESPONSE_PORT
    port: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """The port, then two bytes of padding."""
        return self.port.to_bytes(2, "big") + b"\0\0"

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly four bytes."""
        return cls(int.from_bytes(_fixed(value, 4, "RESPONSE-PORT")[:2], "big"))


@_register
@dataclass(frozen=True)
class Username(Attribute):
    """USERNAME (RFC 8489 §14.3): who signs the message with MESSAGE-INTEGRITY."""

    TYPE: ClassVar[int] = AttributeType.USERNAME
    name: str

    def encode_value(self, transaction_id: bytes) -> bytes:
        """UTF-8, fewer than 509 bytes."""
        return _encode_text(self.name, _MAX_USERNAME_BYTES, "USERNAME")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Strict UTF-8: the name selects a key, so no replacement characters."""
        return cls(_utf8(value, "USERNAME"))


@_register
@dataclass(frozen=True)
class MessageIntegrity(Attribute):
    """MESSAGE-INTEGRITY (RFC 8489 §14.5) as received; to sign, pass ``integrity_key`` to ``encode``."""

    TYPE: ClassVar[int] = AttributeType.MESSAGE_INTEGRITY
    digest: bytes

    def encode_value(self, transaction_id: bytes) -> bytes:
        """The 20-byte HMAC-SHA1, as is."""
        if len(self.digest) != _INTEGRITY_LENGTH:
            raise ValueError("MESSAGE-INTEGRITY is a 20-byte HMAC-SHA1")
        return self.digest

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly 20 bytes."""
        if len(value) != _INTEGRITY_LENGTH:
            raise StunDecodeError(f"MESSAGE-INTEGRITY is {len(value)} bytes, expected 20")
        return cls(value)


@_register
@dataclass(frozen=True)
class ErrorCode(Attribute):
    """ERROR-CODE (RFC 8489 §14.8): a code 300-699 and a reason phrase for people."""

    TYPE: ClassVar[int] = AttributeType.ERROR_CODE
    code: int
    reason: str

    def encode_value(self, transaction_id: bytes) -> bytes:
        """21 reserved bits, the class (hundreds, 3 bits), the number (0-99, 8 bits), the reason."""
        if not 300 <= self.code <= 699:
            raise ValueError(f"STUN error code {self.code} outside 300-699")
        reason = _encode_text(self.reason, _MAX_REASON_BYTES, "ERROR-CODE reason")
        return bytes((0, 0, self.code // 100, self.code % 100)) + reason

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Class 3-6, number 0-99; a reason that is not UTF-8 is shown with replacement characters."""
        if len(value) < 4:
            raise StunDecodeError(f"ERROR-CODE is {len(value)} bytes, too short")
        klass, number = value[2] & 0x07, value[3]
        if not 3 <= klass <= 6 or number > 99:
            raise StunDecodeError(f"ERROR-CODE class {klass} number {number} is not a valid code")
        return cls(klass * 100 + number, value[4:].decode("utf-8", errors="replace"))


@_register
@dataclass(frozen=True)
class UnknownAttributes(Attribute):
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): the comprehension-required types a 420 error refused."""

    TYPE: ClassVar[int] = AttributeType.UNKNOWN_ATTRIBUTES
    types: tuple[int, ...]

    def encode_value(self, transaction_id: bytes) -> bytes:
        """A list of 16-bit types."""
        return b"".join(t.to_bytes(2, "big") for t in self.types)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """An even number of bytes."""
        if len(value) % 2:
            raise StunDecodeError("UNKNOWN-ATTRIBUTES has an odd length")
        return cls(tuple(int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value), 2)))


@_register
@dataclass(frozen=True)
class Software(Attribute):
    """SOFTWARE (RFC 8489 §14.14): the agent's name and version, informational only."""

    TYPE: ClassVar[int] = AttributeType.SOFTWARE
    description: str

    def encode_value(self, transaction_id: bytes) -> bytes:
        """UTF-8, at most 763 bytes."""
        return _encode_text(self.description, _MAX_SOFTWARE_BYTES, "SOFTWARE")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Informational, so invalid UTF-8 is replaced rather than refused."""
        return cls(value.decode("utf-8", errors="replace"))


@_register
@dataclass(frozen=True)
class Realm(Attribute):
    """REALM (RFC 8489 §14.9): the long-term credential's realm, from a 401 challenge, echoed back."""

    TYPE: ClassVar[int] = AttributeType.REALM
    realm: str

    def encode_value(self, transaction_id: bytes) -> bytes:
        """UTF-8, at most 763 bytes."""
        return _encode_text(self.realm, _MAX_REALM_BYTES, "REALM")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Strict UTF-8: it is part of the key."""
        return cls(_utf8(value, "REALM"))


@_register
@dataclass(frozen=True)
class Nonce(Attribute):
    """NONCE (RFC 8489 §14.10): the server's challenge, echoed back until it answers 438 Stale Nonce."""

    TYPE: ClassVar[int] = AttributeType.NONCE
    nonce: str

    def encode_value(self, transaction_id: bytes) -> bytes:
        """UTF-8, at most 763 bytes."""
        return _encode_text(self.nonce, _MAX_NONCE_BYTES, "NONCE")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Strict UTF-8: it is compared byte for byte."""
        return cls(_utf8(value, "NONCE"))


def _fixed(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise StunDecodeError(f"{what} is {len(value)} bytes, expected {size}")
    return value


@_register
@dataclass(frozen=True)
class ChannelNumber(Attribute):
    """CHANNEL-NUMBER (RFC 8656 §18.1): the channel a ChannelBind binds, then 16 reserved bits."""

    TYPE: ClassVar[int] = AttributeType.CHANNEL_NUMBER
    number: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Number and two zero bytes."""
        return self.number.to_bytes(2, "big") + bytes(2)

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Any 16-bit number: whether it is in 0x4000-0x4FFF is the server's question (400 Bad Request)."""
        return cls(int.from_bytes(_fixed(value, 4, "CHANNEL-NUMBER")[:2], "big"))


@_register
@dataclass(frozen=True)
class Lifetime(Attribute):
    """LIFETIME (RFC 8656 §18.2): seconds an allocation should live (0 in a Refresh deletes it)."""

    TYPE: ClassVar[int] = AttributeType.LIFETIME
    seconds: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """32-bit seconds."""
        return self.seconds.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly 4 bytes."""
        return cls(int.from_bytes(_fixed(value, 4, "LIFETIME"), "big"))


@_register
@dataclass(frozen=True)
class XorPeerAddress(Attribute):
    """XOR-PEER-ADDRESS (RFC 8656 §18.3): the peer a permission, channel, Send or Data is about."""

    TYPE: ClassVar[int] = AttributeType.XOR_PEER_ADDRESS
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        """As XOR-MAPPED-ADDRESS."""
        return _pack_address(self.address, _xor_mask(transaction_id))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """As XOR-MAPPED-ADDRESS."""
        return cls(_unpack_address(value, _xor_mask(transaction_id), "XOR-PEER-ADDRESS"))


@_register
@dataclass(frozen=True)
class XorRelayedAddress(Attribute):
    """XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the address the server allocated for the client."""

    TYPE: ClassVar[int] = AttributeType.XOR_RELAYED_ADDRESS
    address: Address

    def encode_value(self, transaction_id: bytes) -> bytes:
        """As XOR-MAPPED-ADDRESS."""
        return _pack_address(self.address, _xor_mask(transaction_id))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """As XOR-MAPPED-ADDRESS."""
        return cls(_unpack_address(value, _xor_mask(transaction_id), "XOR-RELAYED-ADDRESS"))


@_register
@dataclass(frozen=True)
class Data(Attribute):
    """DATA (RFC 8656 §18.4): the application datagram inside a Send or Data indication."""

    TYPE: ClassVar[int] = AttributeType.DATA
    data: bytes

    def encode_value(self, transaction_id: bytes) -> bytes:
        """The bytes as they are."""
        return self.data

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Any length."""
        return cls(value)


@_register
@dataclass(frozen=True)
class RequestedAddressFamily(Attribute):
    """REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6): 0x01 IPv4 or 0x02 IPv6 for the relayed address."""

    TYPE: ClassVar[int] = AttributeType.REQUESTED_ADDRESS_FAMILY
    family: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Family byte, three reserved bytes."""
        return bytes((self.family, 0, 0, 0))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Any family byte: the server answers 440 to one it does not support."""
        return cls(_fixed(value, 4, "REQUESTED-ADDRESS-FAMILY")[0])


@_register
@dataclass(frozen=True)
class EvenPort(Attribute):
    """EVEN-PORT (RFC 8656 §18.7): ask for an even relayed port, and maybe reserve the next one."""

    TYPE: ClassVar[int] = AttributeType.EVEN_PORT
    reserve: bool

    def encode_value(self, transaction_id: bytes) -> bytes:
        """The R bit, then seven reserved bits."""
        return bytes((0x80 if self.reserve else 0,))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """One byte."""
        return cls(bool(_fixed(value, 1, "EVEN-PORT")[0] & 0x80))


@_register
@dataclass(frozen=True)
class RequestedTransport(Attribute):
    """REQUESTED-TRANSPORT (RFC 8656 §18.8): the relayed transport, an IP protocol number (17 = UDP)."""

    TYPE: ClassVar[int] = AttributeType.REQUESTED_TRANSPORT
    protocol: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Protocol byte, three reserved bytes."""
        return bytes((self.protocol, 0, 0, 0))

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Any protocol: the server answers 442 to one it does not relay."""
        return cls(_fixed(value, 4, "REQUESTED-TRANSPORT")[0])


@_register
@dataclass(frozen=True)
class DontFragment(Attribute):
    """DONT-FRAGMENT (RFC 8656 §18.9): set DF on the relayed packets. No value."""

    TYPE: ClassVar[int] = AttributeType.DONT_FRAGMENT

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Empty."""
        return b""

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Empty."""
        _fixed(value, 0, "DONT-FRAGMENT")
        return cls()


@_register
@dataclass(frozen=True)
class ReservationToken(Attribute):
    """RESERVATION-TOKEN (RFC 8656 §18.10): names a relayed port reserved by an earlier EVEN-PORT."""

    TYPE: ClassVar[int] = AttributeType.RESERVATION_TOKEN
    token: bytes

    def encode_value(self, transaction_id: bytes) -> bytes:
        """8 bytes."""
        if len(self.token) != 8:
            raise ValueError("RESERVATION-TOKEN is 8 bytes")
        return self.token

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """8 bytes."""
        return cls(_fixed(value, 8, "RESERVATION-TOKEN"))


@_register
@dataclass(frozen=True)
class Priority(Attribute):
    """PRIORITY (RFC 8445 §7.1.1): the peer-reflexive priority the checking agent would give this path."""

    TYPE: ClassVar[int] = AttributeType.PRIORITY
    priority: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """32 bits."""
        return self.priority.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly 4 bytes."""
        return cls(int.from_bytes(_fixed(value, 4, "PRIORITY"), "big"))


@_register
@dataclass(frozen=True)
class UseCandidate(Attribute):
    """USE-CANDIDATE (RFC 8445 §7.1.2): the controlling agent nominates this pair. No value."""

    TYPE: ClassVar[int] = AttributeType.USE_CANDIDATE

    def encode_value(self, transaction_id: bytes) -> bytes:
        """Empty."""
        return b""

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Empty."""
        _fixed(value, 0, "USE-CANDIDATE")
        return cls()


@_register
@dataclass(frozen=True)
class IceControlled(Attribute):
    """ICE-CONTROLLED (RFC 8445 §7.1.3): the sender thinks it is controlled; its role-conflict tie-breaker."""

    TYPE: ClassVar[int] = AttributeType.ICE_CONTROLLED
    tie_breaker: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """64 bits."""
        return self.tie_breaker.to_bytes(8, "big")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly 8 bytes."""
        return cls(int.from_bytes(_fixed(value, 8, "ICE-CONTROLLED"), "big"))


@_register
@dataclass(frozen=True)
class IceControlling(Attribute):
    """ICE-CONTROLLING (RFC 8445 §7.1.3): the sender thinks it is controlling; its tie-breaker."""

    TYPE: ClassVar[int] = AttributeType.ICE_CONTROLLING
    tie_breaker: int

    def encode_value(self, transaction_id: bytes) -> bytes:
        """64 bits."""
        return self.tie_breaker.to_bytes(8, "big")

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Exactly 8 bytes."""
        return cls(int.from_bytes(_fixed(value, 8, "ICE-CONTROLLING"), "big"))


@dataclass(frozen=True)
class RawAttribute(Attribute):
    """An attribute this codec does not know, kept as (type, value) so it can be reported or forwarded."""

    TYPE: ClassVar[int] = -1  # per instance: see ``type``
    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFFFF:
            raise ValueError(f"attribute type {self.type:#x} is not 16 bits")

    @property
    def attr_type(self) -> int:
        """The type as received."""
        return self.type

    def encode_value(self, transaction_id: bytes) -> bytes:
        """The value, unchanged."""
        return self.value

    @classmethod
    def decode_value(cls, value: bytes, transaction_id: bytes) -> Self:
        """Not used: `decode` builds raw attributes itself, since the type is per instance."""
        raise NotImplementedError("RawAttribute is built by decode()")


# --- messages ------------------------------------------------------------------------------------------


_KNOWN_METHODS = frozenset(m.value for m in StunMethod)


def _message_type(method: int, message_class: int) -> int:
    """RFC 8489 §5: M11..M7 C1 M6..M4 C0 M3..M0."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((message_class & 0b01) << 4)
        | ((message_class & 0b10) << 7)
    )


def _split_message_type(message_type: int) -> tuple[int, StunClass]:
    method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
    message_class = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10)
    if method in _KNOWN_METHODS:
        method = StunMethod(method)  # the same int, with a readable repr
    return method, StunClass(message_class)


def new_transaction_id() -> bytes:
    """96 random bits (RFC 8489 §6: uniformly and randomly chosen, so off-path attackers cannot guess it)."""
    return secrets.token_bytes(TRANSACTION_ID_LENGTH)


def _attribute_bytes(attr_type: int, value: bytes) -> bytes:
    """Type, length, value and zero padding to a multiple of 4 (RFC 8489 §14)."""
    if len(value) > _MAX_BODY_LENGTH:
        raise ValueError(f"attribute {attr_type:#06x} value of {len(value)} bytes is too long")
    return _ATTRIBUTE_HEADER.pack(attr_type, len(value)) + value + bytes(-len(value) % 4)


@dataclass(frozen=True)
class StunMessage:
    """One STUN message: method, class, transaction id and attributes in wire order (FINGERPRINT aside)."""

    method: int
    message_class: StunClass
    transaction_id: bytes = field(default_factory=new_transaction_id)
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.method <= 0xFFF:
            raise ValueError(f"STUN method {self.method:#x} is not 12 bits")
        if len(self.transaction_id) != TRANSACTION_ID_LENGTH:
            raise ValueError("a STUN transaction id is 12 bytes")

    def find(self, kind: type[_A]) -> _A | None:
        """The first attribute of this kind, or None (RFC 8489 §14: later duplicates may be ignored)."""
        for attribute in self.attributes:
            if isinstance(attribute, kind):
                return attribute
        return None

    def unknown_comprehension_required(self) -> tuple[int, ...]:
        """Types of comprehension-required attributes this codec does not know, each once, in order."""
        seen: dict[int, None] = {}
        for attribute in self.attributes:
            if isinstance(attribute, RawAttribute) and is_comprehension_required(attribute.type):
                seen.setdefault(attribute.type, None)
        return tuple(seen)

    def success_response(self, *attributes: Attribute) -> StunMessage:
        """A success response to this request: same method and transaction id (RFC 8489 §6.3.1)."""
        return StunMessage(self.method, StunClass.SUCCESS, self.transaction_id, attributes)

    def error_response(self, code: int, reason: str, *attributes: Attribute) -> StunMessage:
        """An error response to this request with ERROR-CODE first (RFC 8489 §6.3.1.1)."""
        return StunMessage(
            self.method, StunClass.ERROR, self.transaction_id, (ErrorCode(code, reason), *attributes)
        )

    def encode(self, *, integrity_key: bytes | None = None, fingerprint: bool = False) -> bytes:
        """The message's bytes; with a key, MESSAGE-INTEGRITY is appended (§14.5), then FINGERPRINT (§14.7).

        FINGERPRINT is recommended whenever STUN shares a socket with other protocols (RFC 8489 §7).
        """
        body = b"".join(
            _attribute_bytes(a.attr_type, a.encode_value(self.transaction_id)) for a in self.attributes
        )
        message_type = _message_type(self.method, self.message_class)

        def header(length: int) -> bytes:
            return _HEADER.pack(message_type, length, MAGIC_COOKIE, self.transaction_id)

        if integrity_key is not None:
            if any(isinstance(a, MessageIntegrity) for a in self.attributes):
                raise ValueError("the message already has MESSAGE-INTEGRITY; do not also pass a key")
            # §14.5: the HMAC covers the header, with a length that already counts MESSAGE-INTEGRITY.
            digest = _hmac_sha1(integrity_key, header(len(body) + 4 + _INTEGRITY_LENGTH) + body)
            body += _attribute_bytes(AttributeType.MESSAGE_INTEGRITY, digest)
        if fingerprint:
            # §14.7: the CRC covers everything before FINGERPRINT, with a length that counts FINGERPRINT.
            crc = _fingerprint(header(len(body) + 8) + body)
            body += _attribute_bytes(AttributeType.FINGERPRINT, crc.to_bytes(4, "big"))
        if len(body) > _MAX_BODY_LENGTH:
            raise ValueError(f"STUN message body of {len(body)} bytes does not fit the length field")
        return header(len(body)) + body


def _fingerprint(data: bytes) -> int:
    return binascii.crc32(data) ^ FINGERPRINT_XOR


def _hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


def is_stun(data: bytes) -> bool:
    """Quick demultiplexing test (RFC 7983 §7, RFC 8489 §5): first byte 0-3 and the magic cookie.

    Cheap enough for every datagram on a socket shared with QUIC or media; `decode` still decides.
    """
    return len(data) >= HEADER_LENGTH and data[0] < 4 and data[4:8] == MAGIC_COOKIE_BYTES


def decode(data: bytes) -> StunMessage:
    """Parse one datagram; raise `StunDecodeError` (and nothing else) if it is not a valid STUN message.

    Checks RFC 8489 §5-6: the top two bits are zero, the magic cookie, a length that is a multiple of 4 and
    matches the datagram, attributes and their padding inside the message, FINGERPRINT last and correct.
    """
    if len(data) < HEADER_LENGTH:
        raise StunDecodeError(f"{len(data)} bytes is shorter than a STUN header")
    message_type, length, cookie, transaction_id = _HEADER.unpack_from(data)
    if message_type & 0xC000:
        raise StunDecodeError("the top two bits of a STUN message are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunDecodeError("no STUN magic cookie")
    if length % 4:
        raise StunDecodeError(f"STUN length {length} is not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise StunDecodeError(f"STUN length {length} does not match the {len(data)}-byte datagram")
    method, message_class = _split_message_type(message_type)

    attributes: list[Attribute] = []
    after_integrity = False
    offset = HEADER_LENGTH
    while offset < len(data):
        attr_type, attr_length = _ATTRIBUTE_HEADER.unpack_from(data, offset)
        start = offset + 4
        end = start + attr_length
        padded_end = end + (-attr_length % 4)
        if padded_end > len(data):
            raise StunDecodeError(f"attribute {attr_type:#06x} runs past the end of the message")
        value = data[start:end]
        if attr_type == AttributeType.FINGERPRINT:
            if attr_length != 4:
                raise StunDecodeError("FINGERPRINT is not 4 bytes")
            if padded_end != len(data):
                raise StunDecodeError("FINGERPRINT is not the last attribute")  # RFC 8489 §14.7
            if int.from_bytes(value, "big") != _fingerprint(data[:offset]):
                raise StunDecodeError("FINGERPRINT does not match")
        elif after_integrity and attr_type != AttributeType.MESSAGE_INTEGRITY_SHA256:
            pass  # RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY are not authenticated: ignore them
        else:
            attribute_class = ATTRIBUTE_CLASSES.get(attr_type)
            if attribute_class is None:
                attributes.append(RawAttribute(attr_type, value))
            else:
                attributes.append(attribute_class.decode_value(value, transaction_id))
            after_integrity = after_integrity or attr_type == AttributeType.MESSAGE_INTEGRITY
        offset = padded_end
    return StunMessage(method, message_class, transaction_id, tuple(attributes))


def verify_integrity(data: bytes, key: bytes) -> bool:
    """True if the datagram's first MESSAGE-INTEGRITY is the HMAC-SHA1 of what precedes it under ``key``.

    RFC 8489 §14.5: the HMAC covers the header and the attributes before MESSAGE-INTEGRITY, with the header's
    length set as if MESSAGE-INTEGRITY were the last attribute. False when absent or malformed.
    """
    if not is_stun(data):
        return False
    offset = HEADER_LENGTH
    while offset + 4 <= len(data):
        attr_type, attr_length = _ATTRIBUTE_HEADER.unpack_from(data, offset)
        if attr_type == AttributeType.MESSAGE_INTEGRITY:
            end = offset + 4 + _INTEGRITY_LENGTH
            if attr_length != _INTEGRITY_LENGTH or end > len(data):
                return False
            header = data[:2] + (end - HEADER_LENGTH).to_bytes(2, "big") + data[4:HEADER_LENGTH]
            expected = _hmac_sha1(key, header + data[HEADER_LENGTH:offset])
            return hmac.compare_digest(expected, data[offset + 4 : end])
        offset += 4 + attr_length + (-attr_length % 4)
    return False


def short_term_key(password: str) -> bytes:
    """The HMAC key for short-term credentials (RFC 8489 §9.1.1): the password after OpaqueString.

    OpaqueString (RFC 8265 §4.2) here maps non-ASCII spaces to U+0020 and normalises to NFC; it does not
    reject the code points the profile disallows (ICE passwords are random ASCII anyway).
    """
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in password)
    return unicodedata.normalize("NFC", mapped).encode("utf-8")


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The HMAC key for long-term credentials (RFC 8489 §9.2.2): MD5(username ":" realm ":" password).

    TURN servers (RFC 8656 §9) use this; with the TURN REST API convention, ``password`` is itself
    base64(HMAC-SHA1(shared secret, username)) (see ``rendezvous.wire.turn``).
    """
    text = f"{username}:{realm}:{short_term_key(password).decode('utf-8')}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
