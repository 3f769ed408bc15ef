"""Property tests: whatever bytes arrive, the codec raises only StunDecodeError, the server only answers
valid Binding requests (never more than 32 bytes larger), and the client machine never raises."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.nat.stun_client import BindingFailed, BindingSucceeded, BindingTransaction
from rendezvous.stun_server import MAX_AMPLIFICATION, answer
from rendezvous.wire.stun import (
    ATTRIBUTE_CLASSES,
    MAGIC_COOKIE_BYTES,
    Attribute,
    AttributeType,
    ErrorCode,
    MappedAddress,
    RawAttribute,
    Software,
    StunClass,
    StunDecodeError,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    decode,
    is_stun,
)

SERVER = ("203.0.113.1", 3478)
SOURCE = ("198.51.100.7", 40000)
TID = bytes(range(12))
KNOWN_TYPES = {*ATTRIBUTE_CLASSES, AttributeType.FINGERPRINT}

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ports = st.integers(0, 0xFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str).filter(lambda ip: ipaddress.IPv6Address(ip).ipv4_mapped is None)
addresses = st.tuples(st.one_of(ipv4, ipv6), ports)

attributes: st.SearchStrategy[Attribute] = st.one_of(
    st.builds(XorMappedAddress, addresses),
    st.builds(MappedAddress, addresses),
    st.builds(Software, st.text(max_size=30)),
    st.builds(Username, st.text(max_size=20)),
    st.builds(ErrorCode, st.integers(300, 699), st.text(max_size=20)),
    st.builds(UnknownAttributes, st.lists(st.integers(0, 0xFFFF), max_size=4).map(tuple)),
    st.builds(
        RawAttribute, st.integers(0, 0xFFFF).filter(lambda t: t not in KNOWN_TYPES), st.binary(max_size=24)
    ),
)


ANY_METHOD = st.integers(0, 0xFFF)
ANY_CLASS = st.sampled_from(StunClass)
ANY_TRANSACTION_ID = st.binary(min_size=12, max_size=12)


def messages(
    methods: st.SearchStrategy[int] = ANY_METHOD,
    classes: st.SearchStrategy[StunClass] = ANY_CLASS,
    transaction_ids: st.SearchStrategy[bytes] = ANY_TRANSACTION_ID,
) -> st.SearchStrategy[StunMessage]:
    """STUN messages with any mix of the attributes above."""
    return st.builds(
        StunMessage,
        method=methods,
        message_class=classes,
        transaction_id=transaction_ids,
        attributes=st.lists(attributes, max_size=5).map(tuple),
    )


@st.composite
def encoded(draw: st.DrawFn, strategy: st.SearchStrategy[StunMessage]) -> bytes:
    """A message's bytes, with or without MESSAGE-INTEGRITY and FINGERPRINT."""
    message = draw(strategy)
    key = draw(st.one_of(st.none(), st.binary(min_size=1, max_size=16)))
    return message.encode(integrity_key=key, fingerprint=draw(st.booleans()))


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """Valid bytes with a few bit flips, truncations, length edits, insertions or overwrites."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["flip", "truncate", "length", "insert", "overwrite", "append"]))
        if operation == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif operation == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif operation == "length" and len(data) >= 4:
            data[2:4] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif operation == "insert":
            index = draw(st.integers(0, len(data)))
            data[index:index] = draw(st.binary(min_size=1, max_size=8))
        elif operation == "overwrite" and data:
            index = draw(st.integers(0, len(data) - 1))
            patch = draw(st.binary(min_size=1, max_size=8))
            data[index : index + len(patch)] = patch
        elif operation == "append":
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


# Random bytes, and random bytes that look like STUN at first glance (first byte 0-3, cookie).
stun_looking = st.builds(
    lambda first, rest1, rest2: bytes([first]) + rest1 + MAGIC_COOKIE_BYTES + rest2,
    st.integers(0, 3),
    st.binary(min_size=3, max_size=3),
    st.binary(max_size=80),
)
any_valid = encoded(messages())
binding_requests = encoded(messages(st.just(StunMethod.BINDING), st.just(StunClass.REQUEST)))
our_responses = encoded(
    messages(
        st.just(StunMethod.BINDING),
        st.sampled_from([StunClass.SUCCESS, StunClass.ERROR]),
        st.just(TID),
    )
)
hostile = st.one_of(
    st.binary(max_size=120),
    stun_looking,
    mutated(any_valid),
    mutated(binding_requests),
    mutated(our_responses),
)


def decode_or_error(data: bytes) -> StunMessage | None:
    """Decode; only StunDecodeError may escape, and it becomes None."""
    try:
        return decode(data)
    except StunDecodeError:
        return None


@FAST
@given(st.one_of(hostile, any_valid))
def test_decode_returns_a_message_or_raises_stun_decode_error(data: bytes) -> None:
    message = decode_or_error(data)
    if message is not None:
        # is_stun (RFC 7983: first byte 0-3) is narrower than RFC 8489 (top two bits zero): methods >= 0x80.
        assert data[0] < 64
        assert data[4:8] == MAGIC_COOKIE_BYTES
        assert len(data) % 4 == 0
        assert is_stun(data) or message.method >= 0x80


@FAST
@given(messages())
def test_round_trip(message: StunMessage) -> None:
    assert decode(message.encode()) == message
    assert decode(message.encode(fingerprint=True)) == message


@FAST
@given(st.one_of(hostile, binding_requests), st.one_of(st.just(SOURCE), addresses))
def test_answer_never_raises_and_never_amplifies(data: bytes, source: tuple[str, int]) -> None:
    reply = answer(data, source)
    if reply is None:
        return
    assert len(reply) <= len(data) + MAX_AMPLIFICATION
    request = decode(data)  # only valid Binding requests get an answer...
    assert (request.method, request.message_class) == (StunMethod.BINDING, StunClass.REQUEST)
    response = decode(reply)  # ...and the answer itself decodes
    assert response.transaction_id == request.transaction_id
    mapped = response.find(XorMappedAddress)
    if response.message_class == StunClass.SUCCESS:
        assert mapped is not None
        host = ipaddress.ip_address(source[0])
        assert ipaddress.ip_address(mapped.address[0]) in {host, getattr(host, "ipv4_mapped", None)}
    else:
        assert response.find(ErrorCode) == ErrorCode(420, "Unknown")


@FAST
@given(st.lists(st.one_of(hostile, our_responses), min_size=1, max_size=4))
def test_client_transaction_never_raises(datagrams: list[bytes]) -> None:
    transaction = BindingTransaction(SERVER, 0.0, transaction_id=TID)
    transaction.datagrams_to_send(0.0)
    for data in datagrams:
        transaction.receive_datagram(data, SERVER, 0.1)
    event = transaction.next_event()
    assert event is None or isinstance(event, BindingSucceeded | BindingFailed)
    assert transaction.done == (event is not None)
