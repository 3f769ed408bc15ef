"""Hostile input to the TURN machine: random, truncated and mutated datagrams never raise out of it, and
answers to unauthenticated requests stay small (no amplification of spoofed floods)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rendezvous.turn_server import MAX_UNAUTHENTICATED_ANSWER, RelayTransmit, Transmit, TurnAction
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ChannelNumber,
    Data,
    DontFragment,
    EvenPort,
    Lifetime,
    Nonce,
    RawAttribute,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    StunClass,
    StunMessage,
    StunMethod,
    Username,
    XorPeerAddress,
)
from rendezvous.wire.turn import ChannelData
from tests.helpers.turn import CLIENT, PEER, UDP, MachineHarness, TurnClientState

STRANGER: Address = ("192.0.2.66", 5555)


def ready_harness() -> tuple[MachineHarness, TurnClientState, int]:
    """A machine with one allocation for CLIENT, a permission and channel 0x4000 for PEER."""
    h = MachineHarness()
    state = TurnClientState.for_user("alice", h.now)
    state.learn(_one(h.receive(state.build(StunMethod.ALLOCATE, UDP), CLIENT)))
    h.receive(state.build(StunMethod.ALLOCATE, UDP), CLIENT)
    h.receive(state.build(StunMethod.CHANNEL_BIND, ChannelNumber(0x4000), XorPeerAddress(PEER)), CLIENT)
    (port,) = h.server.relay_ports()
    return h, state, port


def _one(actions: list[TurnAction]) -> bytes:
    (answer,) = [a.data for a in actions if isinstance(a, Transmit)]
    return answer


def check_answers(actions: list[TurnAction], data: bytes, *, authenticated: bool) -> None:
    """At most one answer per datagram; without credentials, a small one; relaying only to the peer."""
    answers = [a for a in actions if isinstance(a, Transmit)]
    assert len(answers) <= 1
    for answer in answers:
        if not authenticated:
            assert len(answer.data) <= max(MAX_UNAUTHENTICATED_ANSWER, len(data) + 32)
    for relay in actions:
        if isinstance(relay, RelayTransmit):
            assert relay.address[0] == PEER[0]


attributes = st.one_of(
    st.builds(Lifetime, st.integers(0, 2**32 - 1)),
    st.builds(RequestedTransport, st.integers(0, 255)),
    st.builds(RequestedAddressFamily, st.integers(0, 255)),
    st.builds(ChannelNumber, st.integers(0, 0xFFFF)),
    st.builds(EvenPort, st.booleans()),
    st.builds(ReservationToken, st.binary(min_size=8, max_size=8)),
    st.builds(DontFragment),
    st.builds(Data, st.binary(max_size=64)),
    st.builds(
        XorPeerAddress,
        st.tuples(
            st.sampled_from(["203.0.113.9", "0.0.0.0", "127.0.0.1", "224.0.0.1", "::1"]),
            st.integers(0, 65535),
        ),
    ),
    st.builds(Username, st.text(max_size=30)),
    st.builds(Realm, st.text(max_size=20)),
    st.builds(Nonce, st.text(max_size=30)),
    st.builds(
        RawAttribute,
        st.integers(0, 0xFFFF).filter(lambda t: t not in (0x0008, 0x8028)),
        st.binary(max_size=12),
    ),
)
methods = st.sampled_from([*StunMethod, 0x000A, 0x0FFF])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_and_never_amplify(data: bytes) -> None:
    h = MachineHarness()
    for source in (CLIENT, STRANGER):
        check_answers(h.receive(data, source), data, authenticated=False)
    assert h.server.allocation_count == 0


def test_channel_data_over_tcp_does_not_reach_the_udp_clients_channel() -> None:
    """Same ip:port, other transport: another 5-tuple, so the UDP client's channel 0x4000 is not its."""
    h, _state, _port = ready_harness()
    assert h.receive(ChannelData(0x4000, b"not yours").encode(), CLIENT, "tcp") == []
    assert [type(a) for a in h.receive(ChannelData(0x4000, b"mine").encode(), CLIENT)] == [RelayTransmit]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=120), max_size=4))
def test_random_frames_over_tcp_never_raise_and_stay_apart_from_udp(frames: list[bytes]) -> None:
    """Frames from a TCP client are its own 5-tuple: whatever it sends, the UDP client's allocation stays."""
    h, _state, _port = ready_harness()
    for frame in frames:
        actions = h.receive(frame, CLIENT, "tcp")
        check_answers(actions, frame, authenticated=False)
        assert not [a for a in actions if isinstance(a, RelayTransmit)]  # it has no allocation to relay from
        assert all(a.address == (*CLIENT, "tcp") for a in actions if isinstance(a, Transmit))
    assert h.server.client_closed(CLIENT, h.now) == []  # it holds nothing: nothing to end
    assert h.server.allocation_count == 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(methods, st.sampled_from(list(StunClass)), st.lists(attributes, max_size=6), st.booleans())
def test_structured_messages_from_a_stranger(
    method: int, klass: StunClass, attrs: list[Attribute], with_key: bool
) -> None:
    """Well-formed messages with any attributes, unsigned or signed with a key the server does not know."""
    h = MachineHarness()
    message = StunMessage(method, klass, attributes=tuple(attrs))
    try:
        data = message.encode(integrity_key=b"not the key" if with_key else None, fingerprint=True)
    except ValueError:
        return  # the codec refuses to build it (too long...): nothing to send
    check_answers(h.receive(data, STRANGER), data, authenticated=False)
    assert h.server.allocation_count == 0


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(methods, st.sampled_from(list(StunClass)), st.lists(attributes, max_size=6), st.floats(0, 4000))
def test_signed_messages_with_any_attributes_from_the_client(
    method: int, klass: StunClass, attrs: list[Attribute], later: float
) -> None:
    """Correctly signed requests and indications with arbitrary attributes, at any later time."""
    h, state, port = ready_harness()
    h.advance(later)
    try:
        data = state.build(method, *attrs, klass=klass)
    except ValueError:
        return
    check_answers(h.receive(data, CLIENT), data, authenticated=True)
    h.from_peer(port, b"x", PEER)  # still consistent afterwards
    h.advance(4000)
    assert h.server.allocation_count == 0


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_and_truncated_valid_datagrams(data: st.DataObject) -> None:
    h, state, port = ready_harness()
    originals = [
        state.build(StunMethod.REFRESH, Lifetime(900)),
        state.build(StunMethod.CREATE_PERMISSION, XorPeerAddress(PEER)),
        state.build(StunMethod.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress(("203.0.113.9", 7))),
        state.build(StunMethod.ALLOCATE, UDP),
        StunMessage(
            StunMethod.SEND, StunClass.INDICATION, attributes=(XorPeerAddress(PEER), Data(b"x"))
        ).encode(),
        StunMessage(StunMethod.BINDING, StunClass.REQUEST).encode(fingerprint=True),
        ChannelData(0x4000, b"hello").encode(),
    ]
    original = bytearray(data.draw(st.sampled_from(originals)))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    mutated = bytes(original[:cut]) + data.draw(st.binary(max_size=8))
    for source in (CLIENT, STRANGER):
        check_answers(h.receive(mutated, source), mutated, authenticated=source == CLIENT)
    check_answers(h.from_peer(port, mutated, PEER), mutated, authenticated=True)


@settings(max_examples=200)
@given(
    st.integers(0, 70000),
    st.binary(max_size=200),
    st.tuples(
        st.sampled_from(["203.0.113.9", "::ffff:203.0.113.9", "not an ip", "fe80::1"]), st.integers(-1, 70000)
    ),
    st.booleans(),
)
def test_relay_side_inputs_never_raise(port: int, payload: bytes, peer: tuple[str, int], ok: bool) -> None:
    h, _, real_port = ready_harness()
    for relay_port in (port, real_port):
        h.server.receive_relayed(relay_port, payload, peer, h.now)
    h.run(h.server.relay_opened(port, ok, h.now))
    h.server.receive(payload, peer, h.now)
