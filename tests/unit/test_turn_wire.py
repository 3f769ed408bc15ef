"""TURN wire pieces: attributes, the long-term key (RFC 5769 §2.4), ChannelData, REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rendezvous.wire.stun import (
    Attribute,
    ChannelNumber,
    Data,
    DontFragment,
    EvenPort,
    IceControlled,
    IceControlling,
    Lifetime,
    Nonce,
    Priority,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    StunClass,
    StunDecodeError,
    StunMessage,
    StunMethod,
    UseCandidate,
    Username,
    XorPeerAddress,
    XorRelayedAddress,
    decode,
    long_term_key,
    verify_integrity,
)
from rendezvous.wire.turn import (
    ChannelData,
    ChannelDataError,
    FramingError,
    StreamFramer,
    decode_channel_data,
    is_channel_data,
    make_rest_credentials,
    rest_password,
    rest_username_expiry,
    stream_frame,
)
from tests.helpers.stun import hex_bytes

TID = bytes(range(12))

TURN_AND_ICE_ATTRIBUTES: tuple[Attribute, ...] = (
    ChannelNumber(0x4001),
    Lifetime(600),
    XorPeerAddress(("203.0.113.9", 50000)),
    XorPeerAddress(("2001:db8::9", 1)),
    Data(b"\x00hello\xff"),
    Data(b""),
    Realm("punchline"),
    Nonce("abc123"),
    XorRelayedAddress(("198.51.100.2", 49152)),
    RequestedAddressFamily(0x01),
    EvenPort(reserve=True),
    EvenPort(reserve=False),
    RequestedTransport(17),
    DontFragment(),
    ReservationToken(b"12345678"),
    Priority(0x6E0001FF),
    UseCandidate(),
    IceControlled(2**64 - 1),
    IceControlling(0),
)


@pytest.mark.parametrize("fingerprint", [False, True])
def test_turn_and_ice_attributes_round_trip(fingerprint: bool) -> None:
    message = StunMessage(StunMethod.ALLOCATE, StunClass.REQUEST, TID, TURN_AND_ICE_ATTRIBUTES)
    assert decode(message.encode(fingerprint=fingerprint)) == message


# RFC 5769 §2.4: a request with long-term authentication. USERNAME is "マトリックス" (the RFC's SASLprep'd
# form), REALM "example.org", password "TheMatrIX"; padding bytes are as printed in the RFC.
LONG_TERM_REQUEST = hex_bytes("""
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
""")


def test_rfc5769_long_term_vector() -> None:
    message = decode(LONG_TERM_REQUEST)
    assert message.find(Username) == Username("マトリックス")
    assert message.find(Realm) == Realm("example.org")
    assert message.find(Nonce) == Nonce("f//499k954d6OL34oL9FSTvy64sA")
    key = long_term_key("マトリックス", "example.org", "TheMatrIX")
    assert key == hashlib.md5("マトリックス:example.org:TheMatrIX".encode()).digest()
    assert verify_integrity(LONG_TERM_REQUEST, key)
    assert not verify_integrity(LONG_TERM_REQUEST, long_term_key("マトリックス", "example.org", "thematrix"))


@pytest.mark.parametrize("value", [b"", b"\x00\x01\x02", b"\x00" * 5], ids=["empty", "short", "long"])
@pytest.mark.parametrize("attr_type", [0x000C, 0x000D, 0x0019, 0x0024, 0x8029, 0x802A, 0x0022])
def test_fixed_size_attributes_refuse_other_sizes(attr_type: int, value: bytes) -> None:
    body = attr_type.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + bytes(-len(value) % 4)
    data = b"\x00\x01" + len(body).to_bytes(2, "big") + bytes.fromhex("2112a442") + TID + body
    with pytest.raises(StunDecodeError):
        decode(data)


def test_channel_data_round_trip_and_padding() -> None:
    frame = ChannelData(0x4000, b"payload").encode()
    assert frame[:4] == bytes.fromhex("40000007")
    assert is_channel_data(frame)
    assert decode_channel_data(frame) == ChannelData(0x4000, b"payload")
    assert decode_channel_data(frame + b"\x00") == ChannelData(0x4000, b"payload")  # padded as over TCP
    assert decode_channel_data(ChannelData(0x4FFF, b"").encode()) == ChannelData(0x4FFF, b"")


@pytest.mark.parametrize(
    "data",
    [
        b"\x40\x00\x00",  # short header
        bytes.fromhex("3fff0000"),  # below the channel range
        bytes.fromhex("50000000"),  # reserved range
        bytes.fromhex("40000008") + b"1234567",  # length beyond the datagram
        bytes.fromhex("40000001") + b"12345",  # more than 3 bytes past the length
    ],
)
def test_malformed_channel_data_raises_its_own_error(data: bytes) -> None:
    with pytest.raises(ChannelDataError):
        decode_channel_data(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_channel_data_decoder_raises_only_its_own_error(data: bytes) -> None:
    try:
        frame = decode_channel_data(data)
    except ChannelDataError:
        return
    assert frame.encode() == data[: 4 + len(frame.data)]


def test_channel_data_first_bytes_do_not_collide_with_stun_or_quic() -> None:
    assert not is_channel_data(StunMessage(StunMethod.BINDING, StunClass.REQUEST, TID).encode())
    assert not is_channel_data(b"\xc0" + bytes(30))  # a QUIC long header
    assert not is_channel_data(b"\x40\x00")


def test_rest_credentials_match_coturns_formula() -> None:
    creds = make_rest_credentials("s3cret", "alice", now=1_800_000_000.7, ttl=3600)
    assert creds.username == "1800003600:alice"
    assert creds.expires == 1_800_003_600
    expected = base64.b64encode(hmac.new(b"s3cret", b"1800003600:alice", hashlib.sha1).digest()).decode()
    assert creds.password == expected == rest_password("s3cret", creds.username)
    assert rest_username_expiry(creds.username) == 1_800_003_600
    for bad in ("alice", ":alice", "12a:alice", "١٢:alice", "9999999999999:x"):
        assert rest_username_expiry(bad) is None
    with pytest.raises(ValueError, match="':'"):
        make_rest_credentials("s", "a:b", now=0, ttl=1)


# --- TURN over TCP: stream framing (RFC 8656 §12.5) ----------------------------------------------------


def _stream_messages() -> list[bytes]:
    """A Binding request, ChannelData of every padding length, and an empty ChannelData."""
    binding = StunMessage(StunMethod.BINDING, StunClass.REQUEST, bytes(range(12))).encode(fingerprint=True)
    channel = [ChannelData(0x4000 + n, bytes([n]) * n).encode() for n in range(1, 6)]
    return [binding, *channel, ChannelData(0x4FFF, b"").encode()]


def test_stream_frame_pads_channel_data_only() -> None:
    binding, *channel_data = _stream_messages()
    assert stream_frame(binding) == binding
    for message in channel_data:
        framed = stream_frame(message)
        assert len(framed) % 4 == 0
        assert framed[: len(message)] == message
        assert decode_channel_data(framed) == decode_channel_data(message)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_stream_framer_gives_the_same_frames_however_the_stream_is_cut(cuts: list[int]) -> None:
    messages = _stream_messages()
    stream = b"".join(stream_frame(m) for m in messages)
    framer = StreamFramer()
    frames: list[bytes] = []
    offset = 0
    for cut in [*cuts, len(stream)]:
        frames += framer.feed(stream[offset : offset + cut])
        offset += cut
    assert frames == [stream_frame(m) for m in messages]


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"\x16\x03\x01\x02\x00\x01", "neither STUN nor ChannelData"),  # a TLS ClientHello (turns: here)
        (bytes([0x80, 0, 0, 0]), "neither STUN nor ChannelData"),
        (bytes([0, 1, 0, 3]) + bytes(16), "not a multiple of 4"),
        (bytes([0, 1, 0, 0]) + b"\x00\x00\x00\x00" + bytes(12), "magic cookie"),
    ],
)
def test_stream_framer_refuses_what_it_cannot_frame(garbage: bytes, why: str) -> None:
    with pytest.raises(FramingError, match=why):
        StreamFramer().feed(garbage)


@given(st.binary(max_size=200))
def test_stream_framer_raises_only_its_own_error(data: bytes) -> None:
    try:
        frames = StreamFramer().feed(data)
    except FramingError:
        return
    assert sum(len(f) for f in frames) <= len(data)
