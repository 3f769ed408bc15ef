"""RFC 5780 behaviour discovery on the rendezvous server, sans-IO: answers from the socket asked for, and
hostile input that cannot turn the server into a reflector.

Real sockets on two loopback addresses, and coturn's ``turnutils_natdiscovery`` classifying against the
server: tests/integration/test_behaviour_discovery_sockets.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rendezvous.behaviour_discovery import MAX_AMPLIFICATION, DiscoverySockets, Reply, answer_binding
from rendezvous.wire.stun import (
    Address,
    AttributeType,
    ChangeRequest,
    ErrorCode,
    OtherAddress,
    RawAttribute,
    ResponseOrigin,
    ResponsePort,
    StunClass,
    StunMessage,
    UnknownAttributes,
    XorMappedAddress,
    decode,
)
from tests.helpers.stun import binding_request

CLIENT: Address = ("198.51.100.7", 40000)
TWO_IPS = DiscoverySockets(("203.0.113.1", "203.0.113.2"), (3478, 3479))
ONE_IP = DiscoverySockets(("203.0.113.1",), (3478, 3479))


def request(*attributes: object, padding: int = 0) -> bytes:
    """A Binding request with FINGERPRINT; ``padding`` bytes of RFC 5780 PADDING make it bigger."""
    return binding_request(*attributes, fingerprint=True, padding=padding)


def answered(reply: Reply | None) -> StunMessage:
    assert reply is not None
    return decode(reply.data)


def test_a_plain_binding_says_where_it_came_from_and_where_the_other_socket_is() -> None:
    reply = answer_binding(request(), CLIENT, (0, 0), TWO_IPS)
    assert reply is not None
    assert (reply.via, reply.to) == ((0, 0), CLIENT)
    message = answered(reply)
    assert message.find(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert message.find(ResponseOrigin) == ResponseOrigin(("203.0.113.1", 3478))
    assert message.find(OtherAddress) == OtherAddress(("203.0.113.2", 3479))


@pytest.mark.parametrize(
    ("received_on", "change_ip", "change_port", "via"),
    [
        ((0, 0), False, True, (0, 1)),
        ((0, 0), True, False, (1, 0)),
        ((0, 0), True, True, (1, 1)),
        ((1, 1), True, True, (0, 0)),
        ((1, 0), False, True, (1, 1)),
    ],
)
def test_change_request_answers_from_the_other_ip_or_port(
    received_on: tuple[int, int], change_ip: bool, change_port: bool, via: tuple[int, int]
) -> None:
    reply = answer_binding(request(ChangeRequest(change_ip, change_port)), CLIENT, received_on, TWO_IPS)
    assert reply is not None
    assert (reply.via, reply.to) == (via, CLIENT)
    assert answered(reply).find(ResponseOrigin) == ResponseOrigin(TWO_IPS.address(via))


def test_one_ip_cannot_change_ip_and_says_so_but_changes_ports() -> None:
    refused = answered(answer_binding(request(ChangeRequest(True, False)), CLIENT, (0, 0), ONE_IP))
    assert refused.message_class == StunClass.ERROR
    assert refused.find(ErrorCode).code == 420  # type: ignore[union-attr]
    assert refused.find(UnknownAttributes) == UnknownAttributes((AttributeType.CHANGE_REQUEST,))
    moved = answer_binding(request(ChangeRequest(False, True)), CLIENT, (0, 0), ONE_IP)
    assert moved is not None
    assert moved.via == (0, 1)
    assert answered(moved).find(OtherAddress) == OtherAddress(("203.0.113.1", 3479))


def test_without_discovery_the_rfc5780_attributes_are_unknown() -> None:
    reply = answer_binding(request(ChangeRequest(False, True)), CLIENT)
    message = answered(reply)
    assert message.find(ErrorCode).code == 420  # type: ignore[union-attr]
    assert message.find(UnknownAttributes) == UnknownAttributes((AttributeType.CHANGE_REQUEST,))


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        (RawAttribute(AttributeType.CHANGE_REQUEST, b"\0\0\4"), "Bad Request"),
        (RawAttribute(AttributeType.RESPONSE_PORT, b"\x9c\x40"), "Bad Request"),
        (ResponsePort(53), "Privileged RESPONSE-PORT"),
        (ResponsePort(0), "Privileged RESPONSE-PORT"),
        (ResponsePort(40001), "Pad to use RESPONSE-PORT"),  # the answer would be bigger than the request
    ],
)
def test_hostile_attributes_get_an_error_sent_back_to_the_sender_only(attribute: object, reason: str) -> None:
    reply = answer_binding(request(attribute), CLIENT, (0, 0), TWO_IPS)
    assert reply is not None
    assert (reply.via, reply.to) == ((0, 0), CLIENT)
    message = answered(reply)
    assert message.message_class == StunClass.ERROR
    assert message.find(ErrorCode).reason == reason  # type: ignore[union-attr]


def test_response_port_goes_to_the_senders_ip_and_never_grows_the_traffic() -> None:
    data = request(ResponsePort(40001), ChangeRequest(True, True), padding=48)
    reply = answer_binding(data, CLIENT, (0, 0), TWO_IPS)
    assert reply is not None
    assert reply.to == (CLIENT[0], 40001)
    assert reply.via == (1, 1)
    assert len(reply.data) <= len(data)


@given(
    change=st.one_of(st.none(), st.binary(max_size=8)),
    port=st.one_of(st.none(), st.binary(max_size=6)),
    padding=st.integers(0, 200),
    received_on=st.sampled_from(TWO_IPS.sockets),
    source=st.sampled_from([CLIENT, ("2001:db8::7", 5000), ("203.0.113.1", 3478)]),
)
def test_no_input_sends_anything_to_another_address_or_amplifies(
    change: bytes | None, port: bytes | None, padding: int, received_on: tuple[int, int], source: Address
) -> None:
    """Spoofed sources and any CHANGE-REQUEST / RESPONSE-PORT bytes: answers go to the source's IP, are
    at most MAX_AMPLIFICATION larger when they go to the source, and never larger when they go elsewhere."""
    attributes = [RawAttribute(AttributeType.CHANGE_REQUEST, change)] if change is not None else []
    attributes += [RawAttribute(AttributeType.RESPONSE_PORT, port)] if port is not None else []
    data = request(*attributes, padding=padding)
    reply = answer_binding(data, source, received_on, TWO_IPS)
    if reply is None:
        return
    assert reply.to[0] == source[0]
    if reply.to == source:
        assert len(reply.data) <= len(data) + MAX_AMPLIFICATION
    else:
        assert reply.to[1] >= 1024
        assert len(reply.data) <= len(data)
