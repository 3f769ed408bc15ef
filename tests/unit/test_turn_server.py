"""The sans-IO TURN machine (RFC 8656) with a fake clock: credentials, allocations, permissions, channels."""

from __future__ import annotations

import pytest

from rendezvous.config import TurnQuotas
from rendezvous.turn_server import (
    AllocationCreated,
    AllocationEnded,
    CloseRelay,
    OpenRelay,
    RelayTransmit,
    Transmit,
)
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ChannelNumber,
    Data,
    DontFragment,
    EvenPort,
    Lifetime,
    MessageIntegrity,
    Nonce,
    RawAttribute,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    StunClass,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    decode,
    verify_integrity,
)
from rendezvous.wire.turn import ChannelData, decode_channel_data, make_rest_credentials
from tests.helpers.turn import (
    CLIENT,
    PEER,
    REALM,
    SECRET,
    UDP,
    MachineHarness,
    TurnClientState,
    error_code,
    relayed,
    transmits,
    turn_config,
)


def request(
    h: MachineHarness, state: TurnClientState, method: int, *attrs: Attribute, source: Address = CLIENT
) -> StunMessage:
    """Send a request; on a 401/438 challenge, sign and send it again (once). Return the final answer."""
    for _ in range(2):
        answers = transmits(h.receive(state.build(method, *attrs), source), source)
        assert len(answers) == 1, answers
        message = state.learn(answers[0])
        if error_code(message) not in (401, 438) or message.find(MessageIntegrity) is not None:
            return message
    return message


def allocate(h: MachineHarness, state: TurnClientState, source: Address = CLIENT, *attrs: Attribute) -> int:
    """Allocate and return the relay port."""
    answer = request(h, state, StunMethod.ALLOCATE, UDP, *attrs, source=source)
    assert error_code(answer) is None, answer
    relayed_address = answer.find(XorRelayedAddress)
    assert relayed_address is not None
    return relayed_address.address[1]


@pytest.fixture
def h() -> MachineHarness:
    return MachineHarness()


@pytest.fixture
def alice(h: MachineHarness) -> TurnClientState:
    return TurnClientState.for_user("alice", h.now)


# --- credentials (RFC 8489 §9.2) ------------------------------------------------------------------------


def test_allocate_with_the_401_dance(h: MachineHarness, alice: TurnClientState) -> None:
    first = transmits(h.receive(alice.build(StunMethod.ALLOCATE, UDP), CLIENT))
    challenge = alice.learn(first[0])
    assert error_code(challenge) == 401
    assert challenge.find(Realm) == Realm(REALM)
    assert challenge.find(Nonce) is not None
    assert challenge.find(MessageIntegrity) is None

    actions = h.receive(alice.build(StunMethod.ALLOCATE, UDP, Lifetime(1200)), CLIENT)
    opened = [a for a in actions if isinstance(a, OpenRelay)]
    assert len(opened) == 1
    port = opened[0].relay_port
    assert 50000 <= port <= 50009
    assert AllocationCreated(port, CLIENT, "alice", 1200) in actions
    raw = transmits(actions, CLIENT)[0]
    assert verify_integrity(raw, alice.key)  # RFC 8489 §9.2.4: answers are signed with the same key
    answer = decode(raw)
    assert answer.message_class == StunClass.SUCCESS
    assert answer.find(XorRelayedAddress) == XorRelayedAddress(("127.0.0.1", port))
    assert answer.find(XorMappedAddress) == XorMappedAddress(CLIENT)
    assert answer.find(Lifetime) == Lifetime(1200)
    assert h.server.allocation_count == 1
    assert h.open_ports == {port}


def test_retransmitted_allocate_gets_the_same_answer_and_a_new_one_437(
    h: MachineHarness, alice: TurnClientState
) -> None:
    alice.learn(transmits(h.receive(alice.build(StunMethod.ALLOCATE, UDP), CLIENT))[0])  # 401
    signed = alice.build(StunMethod.ALLOCATE, UDP)
    first = transmits(h.receive(signed, CLIENT))
    again = transmits(h.receive(signed, CLIENT))  # the same transaction: the answer was lost
    assert first == again
    assert h.server.allocation_count == 1
    assert error_code(request(h, alice, StunMethod.ALLOCATE, UDP)) == 437  # a new transaction


def test_wrong_password_and_expired_username_are_refused_401(h: MachineHarness) -> None:
    wrong = TurnClientState(make_rest_credentials("another secret", "mallory", now=h.now, ttl=3600))
    assert error_code(request(h, wrong, StunMethod.ALLOCATE, UDP)) == 401
    expired = TurnClientState(make_rest_credentials(SECRET, "bob", now=h.now - 7200, ttl=3600))
    assert error_code(request(h, expired, StunMethod.ALLOCATE, UDP)) == 401
    not_rest = TurnClientState.for_user("carol", h.now)
    not_rest.credentials = type(not_rest.credentials)("carol", "pw", 0)
    assert error_code(request(h, not_rest, StunMethod.ALLOCATE, UDP)) == 401
    assert h.server.allocation_count == 0
    assert not any(isinstance(a, OpenRelay) for a in h.log)


def test_missing_username_realm_or_nonce_is_400(h: MachineHarness, alice: TurnClientState) -> None:
    message = StunMessage(StunMethod.ALLOCATE, StunClass.REQUEST, attributes=(UDP,))
    answer = decode(transmits(h.receive(message.encode(integrity_key=b"k" * 16), CLIENT))[0])
    assert error_code(answer) == 400


def test_nonce_goes_stale_and_the_client_recovers(h: MachineHarness, alice: TurnClientState) -> None:
    allocate(h, alice, CLIENT, Lifetime(3600))
    h.advance(h.config.nonce_lifetime + 1)
    stale = alice.learn(transmits(h.receive(alice.build(StunMethod.REFRESH), CLIENT))[0])
    assert error_code(stale) == 438
    assert stale.find(Realm) == Realm(REALM)
    assert stale.find(MessageIntegrity) is None
    answer = alice.learn(transmits(h.receive(alice.build(StunMethod.REFRESH), CLIENT))[0])
    assert error_code(answer) is None


def test_nonce_from_another_client_ip_is_stale(h: MachineHarness, alice: TurnClientState) -> None:
    allocate(h, alice)
    other = ("198.51.100.99", 40001)
    stolen = alice.build(StunMethod.ALLOCATE, UDP)
    assert error_code(decode(transmits(h.receive(stolen, other))[0])) == 438


def test_other_credentials_on_the_allocation_get_441(h: MachineHarness, alice: TurnClientState) -> None:
    allocate(h, alice)
    bob = TurnClientState.for_user("bob", h.now)
    assert error_code(request(h, bob, StunMethod.REFRESH)) == 441


# --- allocate options (RFC 8656 §7.2) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "code"),
    [
        ((), 400),
        ((RequestedTransport(6),), 442),
        ((UDP, RequestedAddressFamily(0x02)), 440),
        ((UDP, RequestedAddressFamily(0x07)), 440),
        ((UDP, DontFragment()), 420),
        ((UDP, EvenPort(reserve=True)), 508),
        ((UDP, ReservationToken(b"12345678")), 508),
        ((UDP, EvenPort(reserve=False), ReservationToken(b"12345678")), 400),
        ((UDP, RawAttribute(0x7ABC, b"x")), 420),
    ],
)
def test_allocate_refusals(
    h: MachineHarness, alice: TurnClientState, attrs: tuple[Attribute, ...], code: int
) -> None:
    answer = request(h, alice, StunMethod.ALLOCATE, *attrs)
    assert error_code(answer) == code
    assert answer.find(MessageIntegrity) is not None  # errors after authentication are signed
    if code == 420:
        assert answer.find(UnknownAttributes) is not None
    assert h.server.allocation_count == 0


def test_even_port_without_reservation_gets_an_even_port(h: MachineHarness, alice: TurnClientState) -> None:
    assert allocate(h, alice, CLIENT, EvenPort(reserve=False)) % 2 == 0


def test_lifetime_is_clamped(h: MachineHarness) -> None:
    for asked, granted in [(30, 600), (1000, 1000), (99999, 3600)]:
        state = TurnClientState.for_user("dave", h.now)
        source = ("198.51.100.8", 41000 + asked % 1000)
        answer = request(h, state, StunMethod.ALLOCATE, UDP, Lifetime(asked), source=source)
        assert answer.find(Lifetime) == Lifetime(granted)


def test_a_taken_port_is_skipped_and_a_full_range_is_508(alice: TurnClientState) -> None:
    h = MachineHarness(taken={50000, 50001, 50002, 50003})
    port = allocate(h, alice)
    assert port not in h.taken
    full = MachineHarness(taken=set(range(50000, 50010)))
    assert error_code(request(full, TurnClientState.for_user("x", full.now), StunMethod.ALLOCATE, UDP)) == 508


# --- refresh and expiry (RFC 8656 §8) -------------------------------------------------------------------


def test_refresh_extends_and_expiry_closes_the_relay(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    h.advance(500)
    assert request(h, alice, StunMethod.REFRESH, Lifetime(600)).find(Lifetime) == Lifetime(600)
    assert h.advance(550) == []  # 1050 s after the Allocate, 550 after the Refresh
    assert h.server.get_timer() == pytest.approx(h.now + 50)
    ended = h.advance(60)
    assert CloseRelay(port) in ended
    assert any(isinstance(a, AllocationEnded) and a.reason == "expired" for a in ended)
    assert h.server.allocation_count == 0
    assert h.open_ports == set()
    assert error_code(request(h, alice, StunMethod.REFRESH)) == 437


def test_refresh_lifetime_zero_deletes(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    answer = request(h, alice, StunMethod.REFRESH, Lifetime(0))
    assert error_code(answer) is None
    assert answer.find(Lifetime) == Lifetime(0)
    assert CloseRelay(port) in h.log
    assert h.server.allocation_count == 0
    assert h.server.get_timer() is None
    assert allocate(h, alice) in range(50000, 50010)  # the 5-tuple is free again


def test_requests_without_an_allocation_get_437(h: MachineHarness, alice: TurnClientState) -> None:
    for method, attrs in [
        (StunMethod.REFRESH, ()),
        (StunMethod.CREATE_PERMISSION, (XorPeerAddress(PEER),)),
        (StunMethod.CHANNEL_BIND, (ChannelNumber(0x4000), XorPeerAddress(PEER))),
    ]:
        assert error_code(request(h, alice, method, *attrs)) == 437


# --- permissions, Send and Data indications (RFC 8656 §9-11) ---------------------------------------------


def send_indication(peer: Address, data: bytes) -> bytes:
    return StunMessage(
        StunMethod.SEND, StunClass.INDICATION, attributes=(XorPeerAddress(peer), Data(data))
    ).encode(fingerprint=True)


def test_send_and_data_indications_need_a_permission(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    assert h.receive(send_indication(PEER, b"early"), CLIENT) == []
    assert h.from_peer(port, b"unsolicited", PEER) == []

    assert error_code(request(h, alice, StunMethod.CREATE_PERMISSION, XorPeerAddress(PEER))) is None
    assert relayed(h.receive(send_indication(PEER, b"hello"), CLIENT)) == [
        RelayTransmit(port, b"hello", PEER)
    ]
    other_port = (PEER[0], 7777)  # permissions are per IP address (§9)
    assert relayed(h.receive(send_indication(other_port, b"hi"), CLIENT)) == [
        RelayTransmit(port, b"hi", other_port)
    ]

    data = transmits(h.from_peer(port, b"back", other_port), CLIENT)
    indication = decode(data[0])
    assert (indication.method, indication.message_class) == (StunMethod.DATA, StunClass.INDICATION)
    assert indication.find(XorPeerAddress) == XorPeerAddress(other_port)
    assert indication.find(Data) == Data(b"back")
    assert h.from_peer(port, b"stranger", ("203.0.113.10", 6000)) == []


def test_permissions_expire_after_300_seconds(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    request(h, alice, StunMethod.CREATE_PERMISSION, XorPeerAddress(PEER))
    h.advance(299)
    assert h.from_peer(port, b"x", PEER) != []
    h.advance(2)
    assert h.from_peer(port, b"x", PEER) == []
    assert h.receive(send_indication(PEER, b"x"), CLIENT) == []


@pytest.mark.parametrize(
    ("peer", "code"),
    [
        (("0.0.0.0", 5000), 403),
        (("224.0.0.1", 5000), 403),
        (("255.255.255.255", 5000), 403),
        (("203.0.113.9", 0), 403),
        (("127.0.0.1", 3478), 403),  # our own listening port
        (("2001:db8::1", 5000), 443),
    ],
)
def test_forbidden_peers(h: MachineHarness, alice: TurnClientState, peer: Address, code: int) -> None:
    allocate(h, alice)
    assert error_code(request(h, alice, StunMethod.CREATE_PERMISSION, XorPeerAddress(peer))) == code


def test_loopback_peers_only_when_allowed(alice: TurnClientState) -> None:
    h = MachineHarness(config=turn_config(allow_loopback_peers=False))
    allocate(h, alice)
    loopback = XorPeerAddress(("127.0.0.1", 6000))
    assert error_code(request(h, alice, StunMethod.CREATE_PERMISSION, loopback)) == 403


def test_permission_quota(alice: TurnClientState) -> None:
    h = MachineHarness(config=turn_config(quotas=TurnQuotas(max_permissions_per_allocation=2)))
    allocate(h, alice)
    two = [XorPeerAddress(("203.0.113.1", 1)), XorPeerAddress(("203.0.113.2", 1))]
    assert error_code(request(h, alice, StunMethod.CREATE_PERMISSION, *two)) is None
    third = XorPeerAddress(("203.0.113.3", 1))
    assert error_code(request(h, alice, StunMethod.CREATE_PERMISSION, third)) == 508
    h.advance(301)
    assert error_code(request(h, alice, StunMethod.CREATE_PERMISSION, third)) is None


# --- channels (RFC 8656 §11-12) -------------------------------------------------------------------------


def test_channel_bind_and_channel_data_both_ways(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    assert (
        error_code(request(h, alice, StunMethod.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress(PEER)))
        is None
    )
    out = relayed(h.receive(ChannelData(0x4001, b"ping").encode(), CLIENT))
    assert out == [RelayTransmit(port, b"ping", PEER)]
    back = transmits(h.from_peer(port, b"pong", PEER), CLIENT)
    assert decode_channel_data(back[0]) == ChannelData(0x4001, b"pong")
    # Another port of the same IP has a permission (the channel made one) but no channel: Data indication.
    assert decode(transmits(h.from_peer(port, b"x", (PEER[0], 9)), CLIENT)[0]).method == StunMethod.DATA
    assert h.receive(ChannelData(0x4002, b"unbound").encode(), CLIENT) == []
    assert h.receive(ChannelData(0x4001, b"not yours").encode(), ("198.51.100.7", 1)) == []


def test_channel_bind_rules(h: MachineHarness, alice: TurnClientState) -> None:
    allocate(h, alice)
    other = ("203.0.113.50", 6000)

    def bind(number: int, peer: Address) -> int | None:
        return error_code(
            request(h, alice, StunMethod.CHANNEL_BIND, ChannelNumber(number), XorPeerAddress(peer))
        )

    assert bind(0x3FFF, PEER) == 400
    assert bind(0x5000, PEER) == 400
    assert bind(0x4000, PEER) is None
    assert bind(0x4000, PEER) is None  # a refresh
    assert bind(0x4000, other) == 400  # the channel is bound to another peer
    assert bind(0x4001, PEER) == 400  # the peer is bound to another channel
    assert bind(0x4001, other) is None
    assert error_code(request(h, alice, StunMethod.CHANNEL_BIND, ChannelNumber(0x4002))) == 400


def test_channels_expire(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    request(h, alice, StunMethod.CHANNEL_BIND, ChannelNumber(0x4000), XorPeerAddress(PEER))
    request(h, alice, StunMethod.REFRESH, Lifetime(3600))
    h.advance(290)
    request(h, alice, StunMethod.CREATE_PERMISSION, XorPeerAddress(PEER))  # keep the permission alive
    h.advance(290)
    request(h, alice, StunMethod.CREATE_PERMISSION, XorPeerAddress(PEER))
    h.advance(30)  # 610 s: the channel expired, the permission did not
    assert h.receive(ChannelData(0x4000, b"late").encode(), CLIENT) == []
    assert decode(transmits(h.from_peer(port, b"x", PEER))[0]).method == StunMethod.DATA
    other = ("203.0.113.50", 6000)
    answer = request(h, alice, StunMethod.CHANNEL_BIND, ChannelNumber(0x4000), XorPeerAddress(other))
    assert error_code(answer) is None  # an expired channel may be bound again


# --- quotas ---------------------------------------------------------------------------------------------


def test_allocation_quotas_per_user_and_total(h: MachineHarness) -> None:
    quotas = TurnQuotas(max_allocations_per_user=2, max_allocations=3)
    h = MachineHarness(config=turn_config(quotas=quotas))
    alice = TurnClientState.for_user("alice", h.now)
    allocate(h, alice, ("198.51.100.1", 1))
    # Fresh credentials for the same user do not reset the quota: it counts the part after ':'.
    alice2 = TurnClientState.for_user("alice", h.now, ttl=7200)
    allocate(h, alice2, ("198.51.100.1", 2))
    third = request(h, alice2, StunMethod.ALLOCATE, UDP, source=("198.51.100.1", 3))
    assert error_code(third) == 486
    bob = TurnClientState.for_user("bob", h.now)
    allocate(h, bob, ("198.51.100.2", 1))
    assert error_code(request(h, bob, StunMethod.ALLOCATE, UDP, source=("198.51.100.2", 2))) == 508


def test_bandwidth_excess_is_dropped(alice: TurnClientState) -> None:
    quotas = TurnQuotas(bytes_per_second=10_000, burst_bytes=5_000)
    h = MachineHarness(config=turn_config(quotas=quotas))
    port = allocate(h, alice)
    request(h, alice, StunMethod.CHANNEL_BIND, ChannelNumber(0x4000), XorPeerAddress(PEER))
    frame = ChannelData(0x4000, bytes(1000)).encode()
    sent = sum(len(relayed(h.receive(frame, CLIENT))) for _ in range(10))
    assert sent == 5  # the burst
    h.advance(0.301)  # +3010 bytes of budget
    sent = sum(len(relayed(h.receive(frame, CLIENT))) for _ in range(5))
    sent += sum(len(transmits(h.from_peer(port, bytes(1000), PEER))) for _ in range(5))
    assert sent == 3
    h.advance(10)
    assert len(relayed(h.receive(frame, CLIENT))) == 1


# --- odds and ends --------------------------------------------------------------------------------------


def test_binding_is_answered_on_the_turn_port(h: MachineHarness) -> None:
    binding = StunMessage(StunMethod.BINDING, StunClass.REQUEST).encode()
    answer = decode(transmits(h.receive(binding, CLIENT))[0])
    assert answer.find(XorMappedAddress) == XorMappedAddress(CLIENT)


def test_responses_indications_and_garbage_are_dropped(h: MachineHarness, alice: TurnClientState) -> None:
    allocate(h, alice)
    for data in [
        b"",
        b"hello",
        StunMessage(StunMethod.ALLOCATE, StunClass.SUCCESS).encode(),
        StunMessage(StunMethod.DATA, StunClass.INDICATION).encode(),
        StunMessage(0x0ABC, StunClass.REQUEST).encode(),
        StunMessage(StunMethod.SEND, StunClass.INDICATION, attributes=(Data(b"x"),)).encode(),
        b"\x40\x00\x00\x10short",
    ]:
        assert h.receive(data, CLIENT) == [], data


def test_shutdown_ends_every_allocation(h: MachineHarness, alice: TurnClientState) -> None:
    port = allocate(h, alice)
    actions = h.run(h.server.close())
    assert CloseRelay(port) in actions
    assert [a.reason for a in actions if isinstance(a, AllocationEnded)] == ["shutdown"]
    assert not any(isinstance(a, Transmit) for a in actions)
