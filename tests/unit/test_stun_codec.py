"""The STUN codec against RFC 5769's test vectors, round trips, and one test per malformation."""

from __future__ import annotations

import binascii
import struct

import pytest
from aioice import stun as aioice_stun

from rendezvous.wire.stun import (
    Attribute,
    ErrorCode,
    IceControlled,
    MappedAddress,
    MessageIntegrity,
    Priority,
    RawAttribute,
    Software,
    StunClass,
    StunDecodeError,
    StunError,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    canonical_address,
    decode,
    is_stun,
    short_term_key,
    verify_integrity,
)
from tests.helpers.stun import hex_bytes

# RFC 5769 §2.1-2.3 (short-term credential "VOkJxbRl1RmTxUk/WvJxBt"; padding there is 0x20, not zero).
SAMPLE_REQUEST = hex_bytes("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
""")
SAMPLE_IPV4_RESPONSE = hex_bytes("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
""")
SAMPLE_IPV6_RESPONSE = hex_bytes("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
""")
VECTOR_KEY = short_term_key("VOkJxbRl1RmTxUk/WvJxBt")
VECTOR_TRANSACTION_ID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
TID = bytes(range(12))


def raw_message(message_type: int, body: bytes, length: int | None = None) -> bytes:
    """A header (with any type and length, right or wrong) followed by ``body``."""
    length = len(body) if length is None else length
    return struct.pack("!HHI12s", message_type, length, 0x2112A442, TID) + body


def raw_attribute(attr_type: int, value: bytes, padding: bytes | None = None) -> bytes:
    """One attribute with zero padding, or the given padding bytes."""
    pad = bytes(-len(value) % 4) if padding is None else padding
    return struct.pack("!HH", attr_type, len(value)) + value + pad


def with_fingerprint(message: bytes) -> bytes:
    """Append a correct FINGERPRINT to a message (fixing the header length)."""
    length = len(message) - 20 + 8
    prefix = message[:2] + length.to_bytes(2, "big") + message[4:]
    crc = binascii.crc32(prefix) ^ 0x5354554E
    return prefix + raw_attribute(0x8028, crc.to_bytes(4, "big"))


# --- RFC 5769 ------------------------------------------------------------------------------------------


def test_rfc5769_sample_request_decodes_and_its_integrity_checks() -> None:
    message = decode(SAMPLE_REQUEST)  # FINGERPRINT e57a3bcf is verified by decode
    assert (message.method, message.message_class) == (StunMethod.BINDING, StunClass.REQUEST)
    assert message.transaction_id == VECTOR_TRANSACTION_ID
    assert message.find(Software) == Software("STUN test client")
    assert message.find(Username) == Username("evtj:h6vY")
    assert message.attributes[1:3] == (Priority(0x6E0001FF), IceControlled(0x932FF9B151263B36))
    assert message.unknown_comprehension_required() == ()
    assert isinstance(message.attributes[-1], MessageIntegrity)
    assert verify_integrity(SAMPLE_REQUEST, VECTOR_KEY)
    assert not verify_integrity(SAMPLE_REQUEST, b"VOkJxbRl1RmTxUk/WvJxBT")


@pytest.mark.parametrize(
    ("vector", "mapped", "xor_value"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853), "0001a147e112a643"),
        (
            SAMPLE_IPV6_RESPONSE,
            ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
            "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9",
        ),
    ],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_sample_responses(vector: bytes, mapped: tuple[str, int], xor_value: str) -> None:
    message = decode(vector)
    assert (message.method, message.message_class) == (StunMethod.BINDING, StunClass.SUCCESS)
    assert message.find(Software) == Software("test vector")
    assert message.find(XorMappedAddress) == XorMappedAddress(mapped)
    assert verify_integrity(vector, VECTOR_KEY)
    assert not verify_integrity(vector, b"wrong")
    # Encoding the address gives the vector's bytes (the IPv6 XOR mixes in the transaction id).
    assert XorMappedAddress(mapped).encode_value(VECTOR_TRANSACTION_ID) == bytes.fromhex(xor_value)


@pytest.mark.parametrize(
    "vector", [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE], ids=["request", "ipv4", "ipv6"]
)
def test_rfc5769_any_changed_byte_breaks_the_fingerprint(vector: bytes) -> None:
    for index in range(len(vector) - 8):  # every byte the CRC covers
        mutated = bytearray(vector)
        mutated[index] ^= 0x01
        with pytest.raises(StunDecodeError):
            decode(bytes(mutated))


def test_rfc5769_response_rebuilt_by_our_encoder_checks() -> None:
    """Same content as §2.2 (our padding is zero, so the bytes differ): our MI and FINGERPRINT verify."""
    original = decode(SAMPLE_IPV4_RESPONSE)
    rebuilt = StunMessage(
        StunMethod.BINDING,
        StunClass.SUCCESS,
        VECTOR_TRANSACTION_ID,
        (Software("test vector"), XorMappedAddress(("192.0.2.1", 32853))),
    ).encode(integrity_key=VECTOR_KEY, fingerprint=True)
    assert len(rebuilt) == len(SAMPLE_IPV4_RESPONSE)
    assert rebuilt[:40] == SAMPLE_IPV4_RESPONSE[:35] + b"\x00" + SAMPLE_IPV4_RESPONSE[36:40]
    assert decode(rebuilt).attributes[:2] == original.attributes[:2]
    assert verify_integrity(rebuilt, VECTOR_KEY)


def test_our_encoding_is_accepted_by_an_independent_implementation() -> None:
    """aioice parses our bytes, checks our FINGERPRINT (it raises on a mismatch) and our MI."""
    data = StunMessage(
        StunMethod.BINDING,
        StunClass.REQUEST,
        TID,
        (Username("evtj:h6vY"), Software("punchline")),
    ).encode(integrity_key=VECTOR_KEY, fingerprint=True)
    parsed = aioice_stun.parse_message(data)
    assert parsed.attributes["USERNAME"] == "evtj:h6vY"
    assert parsed.check_message_integrity(VECTOR_KEY)
    assert not parsed.check_message_integrity(b"other key")


# --- message type, round trips, helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "message_class", "wire_type"),
    [
        (StunMethod.BINDING, StunClass.REQUEST, 0x0001),
        (StunMethod.BINDING, StunClass.INDICATION, 0x0011),
        (StunMethod.BINDING, StunClass.SUCCESS, 0x0101),
        (StunMethod.BINDING, StunClass.ERROR, 0x0111),
        (StunMethod.ALLOCATE, StunClass.ERROR, 0x0113),
        (StunMethod.SEND, StunClass.INDICATION, 0x0016),
        (StunMethod.CHANNEL_BIND, StunClass.SUCCESS, 0x0109),
        (0xFFF, StunClass.ERROR, 0x3FFF),
    ],
)
def test_message_type_interleaves_method_and_class(
    method: int, message_class: StunClass, wire_type: int
) -> None:
    data = StunMessage(method, message_class, TID).encode()
    assert int.from_bytes(data[:2], "big") == wire_type
    decoded = decode(data)
    assert (decoded.method, decoded.message_class) == (method, message_class)


ALL_ATTRIBUTES: tuple[Attribute, ...] = (
    Software("punchline 0.1 \N{SNOWMAN}"),
    Username("alice:bob"),
    XorMappedAddress(("203.0.113.7", 50000)),
    XorMappedAddress(("2001:db8::42", 1)),
    MappedAddress(("198.51.100.1", 65535)),
    MappedAddress(("::1", 0)),
    ErrorCode(420, "Unknown Attribute"),
    ErrorCode(300, ""),
    UnknownAttributes((0x0003, 0x7FFF, 0x0024)),
    UnknownAttributes(()),
    RawAttribute(0x0031, b"\x01\x02\x03"),
    RawAttribute(0xC001, b""),
)


@pytest.mark.parametrize("fingerprint", [False, True])
@pytest.mark.parametrize("message_class", list(StunClass))
def test_round_trip_every_attribute(message_class: StunClass, fingerprint: bool) -> None:
    message = StunMessage(StunMethod.BINDING, message_class, TID, ALL_ATTRIBUTES)
    data = message.encode(fingerprint=fingerprint)
    assert len(data) % 4 == 0
    assert is_stun(data)
    assert decode(data) == message


def test_round_trip_with_integrity() -> None:
    message = StunMessage(StunMethod.BINDING, StunClass.REQUEST, TID, (Username("u:v"),))
    key = short_term_key("secret password")
    data = message.encode(integrity_key=key, fingerprint=True)
    decoded = decode(data)
    assert decoded.attributes[0] == Username("u:v")
    integrity = decoded.find(MessageIntegrity)
    assert integrity is not None
    assert verify_integrity(data, key)
    assert not verify_integrity(data, key + b"x")
    assert not verify_integrity(message.encode(fingerprint=True), key)  # no MI at all
    # Re-encoding the decoded message (MI as received) gives the same bytes.
    assert decoded.encode(fingerprint=True) == data


def test_attributes_after_message_integrity_are_ignored() -> None:
    """RFC 8489 §14.5: only FINGERPRINT (and MESSAGE-INTEGRITY-SHA256) may follow MESSAGE-INTEGRITY."""
    body = raw_attribute(0x0006, b"user") + raw_attribute(0x0008, bytes(20)) + raw_attribute(0x8022, b"late")
    decoded = decode(with_fingerprint(raw_message(0x0001, body)))
    assert decoded.attributes == (Username("user"), MessageIntegrity(bytes(20)))


def test_ipv4_mapped_ipv6_is_encoded_as_ipv4() -> None:
    data = StunMessage(1, StunClass.SUCCESS, TID, (XorMappedAddress(("::ffff:192.0.2.9", 4000)),)).encode()
    assert decode(data).find(XorMappedAddress) == XorMappedAddress(("192.0.2.9", 4000))


def test_find_returns_the_first_and_helpers_build_responses() -> None:
    request = StunMessage(
        StunMethod.BINDING,
        StunClass.REQUEST,
        TID,
        (Software("a"), Software("b"), RawAttribute(0x0003, b"\0\0\0\0"), RawAttribute(0x0003, b"")),
    )
    assert request.find(Software) == Software("a")
    assert request.find(ErrorCode) is None
    assert request.unknown_comprehension_required() == (0x0003,)
    error = request.error_response(420, "Unknown", UnknownAttributes((3,)))
    assert (error.message_class, error.transaction_id) == (StunClass.ERROR, TID)
    assert error.attributes == (ErrorCode(420, "Unknown"), UnknownAttributes((3,)))
    success = request.success_response(XorMappedAddress(("127.0.0.1", 9)))
    assert (success.method, success.message_class) == (StunMethod.BINDING, StunClass.SUCCESS)


def test_new_messages_get_random_transaction_ids() -> None:
    ids = {StunMessage(StunMethod.BINDING, StunClass.REQUEST).transaction_id for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 12 for i in ids)


def test_is_stun_demultiplexes_by_first_byte_and_cookie() -> None:
    valid = StunMessage(StunMethod.BINDING, StunClass.REQUEST, TID).encode()
    assert is_stun(valid)
    assert not is_stun(valid[:19])
    assert not is_stun(b"\x40" + valid[1:])  # RFC 7983: 64-79 is TURN ChannelData, 128-191 RTP, ...
    assert not is_stun(b"\xc0" + valid[1:])  # ... and QUIC long headers start at 192
    assert not is_stun(valid[:4] + b"\x21\x12\xa4\x43" + valid[8:])
    assert not is_stun(b"")


def test_short_term_key_applies_opaque_string() -> None:
    assert short_term_key("VOkJxbRl1RmTxUk/WvJxBt") == b"VOkJxbRl1RmTxUk/WvJxBt"
    assert short_term_key("a\N{NO-BREAK SPACE}b") == b"a b"  # non-ASCII space → U+0020
    assert short_term_key("e\N{COMBINING ACUTE ACCENT}") == "\N{LATIN SMALL LETTER E WITH ACUTE}".encode()


@pytest.mark.parametrize(
    "build",
    [
        lambda: StunMessage(StunMethod.BINDING, StunClass.REQUEST, b"short"),
        lambda: StunMessage(0x1000, StunClass.REQUEST, TID),
        lambda: StunMessage(1, StunClass.SUCCESS, TID, (XorMappedAddress(("127.0.0.1", 70000)),)).encode(),
        lambda: StunMessage(1, StunClass.SUCCESS, TID, (XorMappedAddress(("example.org", 1)),)).encode(),
        lambda: StunMessage(1, StunClass.ERROR, TID, (ErrorCode(200, "OK"),)).encode(),
        lambda: StunMessage(1, StunClass.ERROR, TID, (ErrorCode(400, "x" * 800),)).encode(),
        lambda: StunMessage(1, StunClass.REQUEST, TID, (Username("u" * 509),)).encode(),
        lambda: StunMessage(1, StunClass.REQUEST, TID, (MessageIntegrity(b"short"),)).encode(),
        lambda: StunMessage(1, StunClass.REQUEST, TID, (MessageIntegrity(bytes(20)),)).encode(
            integrity_key=b"k"
        ),
        lambda: StunMessage(1, StunClass.REQUEST, TID, (RawAttribute(0x10000, b""),)),
        lambda: StunMessage(1, StunClass.REQUEST, TID, (RawAttribute(0x8000, bytes(70_000)),)).encode(),
    ],
    ids=[
        "short-transaction-id",
        "13-bit-method",
        "port-out-of-range",
        "host-name",
        "error-code-200",
        "long-reason",
        "long-username",
        "short-integrity",
        "integrity-twice",
        "17-bit-type",
        "huge-attribute",
    ],
)
def test_encoding_misuse_raises_value_error(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies; the type is the contract
        build()


# --- malformations: each raises StunDecodeError -------------------------------------------------------

GOOD_BODY = raw_attribute(0x8022, b"x")

MALFORMED = {
    "empty": b"",
    "shorter-than-header": raw_message(0x0001, b"")[:19],
    "top-bits-set": raw_message(0x4001, b""),
    "top-bit-set": raw_message(0x8001, b""),
    "wrong-cookie": raw_message(0x0001, b"")[:4] + b"\x21\x12\xa4\x43" + bytes(12),
    "length-not-multiple-of-4": raw_message(0x0001, GOOD_BODY + b"\0\0", length=len(GOOD_BODY) + 2),
    "length-longer-than-datagram": raw_message(0x0001, GOOD_BODY, length=len(GOOD_BODY) + 4),
    "length-shorter-than-datagram": raw_message(0x0001, GOOD_BODY + bytes(4), length=len(GOOD_BODY)),
    "attribute-past-the-end": raw_message(0x0001, struct.pack("!HH", 0x8022, 8) + b"abcd"),
    "padding-missing": raw_message(0x0001, raw_attribute(0x8022, b"abcde", padding=b"")[:-1] + b"\0\0\0"),
    "fingerprint-not-last": raw_message(0x0001, raw_attribute(0x8028, bytes(4)) + GOOD_BODY),
    "fingerprint-wrong-length": raw_message(0x0001, raw_attribute(0x8028, bytes(8))),
    "fingerprint-mismatch": raw_message(0x0001, raw_attribute(0x8028, bytes(4))),
    "xor-address-unknown-family": raw_message(0x0101, raw_attribute(0x0020, b"\x00\x03" + bytes(6))),
    "xor-address-ipv4-too-long": raw_message(0x0101, raw_attribute(0x0020, b"\x00\x01" + bytes(10))),
    "xor-address-ipv6-too-short": raw_message(0x0101, raw_attribute(0x0020, b"\x00\x02" + bytes(6))),
    "xor-address-too-short": raw_message(0x0101, raw_attribute(0x0020, b"\x00")),
    "mapped-address-unknown-family": raw_message(0x0101, raw_attribute(0x0001, b"\x00\x00" + bytes(6))),
    "integrity-wrong-length": raw_message(0x0001, raw_attribute(0x0008, bytes(16))),
    "error-code-too-short": raw_message(0x0111, raw_attribute(0x0009, b"\0\0\4")),
    "error-code-class-2": raw_message(0x0111, raw_attribute(0x0009, b"\0\0\2\0OK")),
    "error-code-class-7": raw_message(0x0111, raw_attribute(0x0009, b"\0\0\7\0")),
    "error-code-number-100": raw_message(0x0111, raw_attribute(0x0009, b"\0\0\4\x64")),
    "unknown-attributes-odd": raw_message(0x0111, raw_attribute(0x000A, b"\0\3\0")),
    "username-not-utf8": raw_message(0x0001, raw_attribute(0x0006, b"\xff\xfe")),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_messages_raise_stun_decode_error(data: bytes) -> None:
    with pytest.raises(StunDecodeError) as caught:
        decode(data)
    assert isinstance(caught.value, StunError)
    assert str(caught.value)  # a readable reason


def test_the_malformations_differ_from_valid_messages_only_in_the_flaw() -> None:
    """Controls for the table above: the same shapes, done right, decode."""
    assert decode(raw_message(0x0001, GOOD_BODY)).find(Software) == Software("x")
    assert decode(with_fingerprint(raw_message(0x0001, GOOD_BODY))).find(Software) == Software("x")
    assert decode(raw_message(0x0111, raw_attribute(0x0009, b"\0\0\6\x63"))).find(ErrorCode) == ErrorCode(
        699, ""
    )
    padded = raw_message(0x0001, raw_attribute(0x0006, b"abcde", padding=b"\xff\xff\xff"))
    assert decode(padded).find(Username) == Username("abcde")  # padding content is ignored (§14)


def test_lenient_text_attributes_replace_invalid_utf8() -> None:
    """SOFTWARE and the ERROR-CODE reason are for people: bad UTF-8 is shown, not refused."""
    data = raw_message(0x0111, raw_attribute(0x0009, b"\0\0\4\0bad \xff") + raw_attribute(0x8022, b"\xc3"))
    decoded = decode(data)
    assert decoded.find(ErrorCode) == ErrorCode(400, "bad \N{REPLACEMENT CHARACTER}")
    assert decoded.find(Software) == Software("\N{REPLACEMENT CHARACTER}")


@pytest.mark.parametrize(
    ("address", "canonical"),
    [
        (("127.0.0.1", 3478), ("127.0.0.1", 3478)),
        (("::ffff:127.0.0.1", 3478), ("127.0.0.1", 3478)),
        (("0:0::1", 1, 0, 0), ("::1", 1)),  # an IPv6 sockaddr with flow info and scope id
        (("example.org", 3478), None),
        (("127.0.0.1", 65536), None),
        (("127.0.0.1", "3478"), None),
        (("127.0.0.1",), None),
    ],
)
def test_canonical_address(address: tuple[object, ...], canonical: tuple[str, int] | None) -> None:
    assert canonical_address(address) == canonical
