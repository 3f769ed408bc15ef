"""The TURN client machine (RFC 8656) against computed server answers and a fake clock, no sockets.

`CannedRelay` plays the server's part one answer at a time: the tests read each request the machine sends,
check it, and choose the answer (a success signed with the long-term key, an error, silence, garbage).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.nat.turn_client import (
    AllocationClosed,
    AllocationExpired,
    AllocationFailed,
    AllocationReady,
    AllocationRefreshed,
    AllocationState,
    ChannelBound,
    ChannelFailed,
    DataReceived,
    PermissionFailed,
    PermissionReady,
    TurnAllocation,
    TurnClientConfig,
    TurnEvent,
    describe_error,
)
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ChannelNumber,
    Data,
    Lifetime,
    MessageIntegrity,
    Nonce,
    Realm,
    RequestedTransport,
    StunClass,
    StunMessage,
    StunMethod,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    decode,
    long_term_key,
    verify_integrity,
)
from rendezvous.wire.turn import ChannelData, decode_channel_data, is_channel_data

SERVER: Address = ("203.0.113.1", 3478)
RELAYED: Address = ("203.0.113.1", 50000)
MAPPED: Address = ("198.51.100.7", 40000)
PEER: Address = ("192.0.2.9", 6000)
USER, PASSWORD, REALM = "1800000000:alice", "s3cret", "punchline.test"
KEY = long_term_key(USER, REALM, PASSWORD)
CONFIG = TurnClientConfig()


@dataclass
class Sent:
    """One request the machine sent, decoded, with its bytes."""

    message: StunMessage
    data: bytes

    def ok(self, *attributes: Attribute, key: bytes | None = KEY) -> bytes:
        """A success response, signed like a real server's."""
        return self.message.success_response(*attributes).encode(integrity_key=key, fingerprint=True)

    def error(self, code: int, reason: str, *attributes: Attribute, key: bytes | None = None) -> bytes:
        """An error response (unsigned unless given a key, as for 401 and 438)."""
        return self.message.error_response(code, reason, *attributes).encode(
            integrity_key=key, fingerprint=True
        )


def requests(machine: TurnAllocation, now: float) -> list[Sent]:
    """Everything the machine sends now, decoded as STUN (fails on anything else)."""
    out = []
    for data, addr in machine.datagrams_to_send(now):
        assert addr == SERVER
        out.append(Sent(decode(data), data))
    return out


def one_request(machine: TurnAllocation, now: float) -> Sent:
    """Exactly one datagram is due now: return it."""
    sent = requests(machine, now)
    assert len(sent) == 1, sent
    return sent[0]


def events(machine: TurnAllocation) -> list[TurnEvent]:
    """Drain the machine's events."""
    out = []
    while (event := machine.next_event()) is not None:
        out.append(event)
    return out


def feed(machine: TurnAllocation, data: bytes, now: float) -> None:
    """Deliver a datagram from the server; it must be recognised as TURN traffic."""
    assert machine.receive_datagram(data, SERVER, now)


def allocated(config: TurnClientConfig = CONFIG, lifetime: int = 600) -> TurnAllocation:
    """A machine that went through the 401 dance and holds an allocation at t=0."""
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=config)
    first = one_request(machine, 0.0)
    feed(machine, first.error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    second = one_request(machine, 0.0)
    feed(machine, second.ok(XorRelayedAddress(RELAYED), XorMappedAddress(MAPPED), Lifetime(lifetime)), 0.0)
    assert events(machine) == [AllocationReady(RELAYED, MAPPED, lifetime)]
    return machine


def with_peer(machine: TurnAllocation, now: float = 0.0) -> tuple[Sent, Sent]:
    """add_peer and answer nothing yet: return the (CreatePermission, ChannelBind) requests."""
    machine.add_peer(PEER, now)
    permission, bind = requests(machine, now)
    assert permission.message.method == StunMethod.CREATE_PERMISSION
    assert bind.message.method == StunMethod.CHANNEL_BIND
    return permission, bind


# --- allocation and credentials -------------------------------------------------------------------------


def test_the_401_dance_then_allocation_ready() -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    assert machine.get_timer() is None  # nothing happens until the first datagrams_to_send
    first = one_request(machine, 10.0)
    assert (first.message.method, first.message.message_class) == (StunMethod.ALLOCATE, StunClass.REQUEST)
    assert first.message.find(RequestedTransport) == RequestedTransport(17)
    assert first.message.find(Lifetime) == Lifetime(600)
    assert first.message.find(MessageIntegrity) is None  # RFC 8489 §9.2.3: first without credentials
    assert int.from_bytes(first.data[-8:-4], "big") == 0x80280004  # FINGERPRINT, the socket is shared

    feed(machine, first.error(401, "Unauthorized", Realm(REALM), Nonce("nonce-1")), 10.1)
    second = one_request(machine, 10.1)
    assert second.message.transaction_id != first.message.transaction_id
    assert second.message.find(Username) == Username(USER)
    assert second.message.find(Realm) == Realm(REALM)
    assert second.message.find(Nonce) == Nonce("nonce-1")
    assert verify_integrity(second.data, KEY)  # signed with MD5(user:realm:password)

    feed(machine, second.ok(XorRelayedAddress(RELAYED), XorMappedAddress(MAPPED), Lifetime(300)), 10.2)
    assert events(machine) == [AllocationReady(RELAYED, MAPPED, 300)]
    assert machine.state == AllocationState.READY
    assert machine.relayed_address == RELAYED
    assert machine.get_timer() == pytest.approx(10.2 + 0.8 * 300)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (401, "the relay refused the credentials (401)"),
        (486, "the relay is full (486)"),
        (442, "the relay does not relay UDP (442)"),
        (599, "the relay answered an error: Odd (599)"),
    ],
)
def test_refusals_become_a_readable_failure(code: int, reason: str) -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    first = one_request(machine, 0.0)
    feed(machine, first.error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    second = one_request(machine, 0.0)
    # A real server signs errors to signed requests; 401 to bad credentials it cannot sign.
    feed(machine, second.error(code, "Odd", key=None if code == 401 else KEY), 0.0)
    assert events(machine) == [AllocationFailed(reason, code)]
    assert machine.done
    assert machine.get_timer() is None
    assert requests(machine, 100.0) == []


def test_401_without_a_challenge_fails() -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    feed(machine, one_request(machine, 0.0).error(401, "Unauthorized"), 0.0)
    [failed] = events(machine)
    assert isinstance(failed, AllocationFailed)
    assert failed.code == 401


def test_stale_nonce_is_retried_with_the_new_nonce_a_few_times() -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=TurnClientConfig(max_stale_nonce_retries=2))
    feed(machine, one_request(machine, 0.0).error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    signed = one_request(machine, 0.0)
    feed(machine, signed.error(438, "Stale Nonce", Realm(REALM), Nonce("n2")), 0.1)
    retry = one_request(machine, 0.1)
    assert retry.message.find(Nonce) == Nonce("n2")
    assert retry.message.transaction_id != signed.message.transaction_id
    assert verify_integrity(retry.data, KEY)
    # A late answer to the replaced transaction is ignored.
    feed(machine, signed.ok(XorRelayedAddress(RELAYED)), 0.2)
    assert events(machine) == []
    feed(machine, retry.error(438, "Stale Nonce", Nonce("n3")), 0.3)
    again = one_request(machine, 0.3)
    feed(machine, again.error(438, "Stale Nonce", Nonce("n4")), 0.4)
    assert events(machine) == [AllocationFailed("the relay kept rejecting our nonce (438)", 438)]


def test_a_new_realm_in_438_changes_the_key() -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    feed(machine, one_request(machine, 0.0).error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    signed = one_request(machine, 0.0)
    feed(machine, signed.error(438, "Stale Nonce", Realm("other.realm"), Nonce("n2")), 0.0)
    retry = one_request(machine, 0.0)
    other_key = long_term_key(USER, "other.realm", PASSWORD)
    assert verify_integrity(retry.data, other_key)
    feed(machine, retry.ok(XorRelayedAddress(RELAYED), key=other_key), 0.0)
    assert events(machine) == [AllocationReady(RELAYED, None, 600)]


def test_answers_to_signed_requests_must_carry_a_valid_integrity() -> None:
    """RFC 8489 §9.2.5: an unsigned or wrongly signed answer is discarded; retransmissions carry on."""
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    feed(machine, one_request(machine, 0.0).error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    signed = one_request(machine, 0.0)
    feed(machine, signed.ok(XorRelayedAddress(("6.6.6.6", 1)), key=None), 0.01)
    feed(machine, signed.ok(XorRelayedAddress(("6.6.6.6", 1)), key=b"wrong key"), 0.02)
    feed(machine, signed.error(486, "Full", key=b"wrong key"), 0.03)
    assert events(machine) == []
    assert one_request(machine, 0.25).data == signed.data  # the same request again, same transaction id
    feed(machine, signed.ok(XorRelayedAddress(RELAYED)), 0.3)
    assert events(machine) == [AllocationReady(RELAYED, None, 600)]


def test_retransmission_schedule_and_giving_up() -> None:
    config = TurnClientConfig(initial_rto=0.1, max_requests=4, final_wait_factor=8)
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=config)
    sent_at = []
    now = 0.0
    while not machine.done:
        sent = requests(machine, now)
        if sent:
            sent_at.append(now)
            assert {s.message.transaction_id for s in sent} == {sent[0].message.transaction_id}
        timer = machine.get_timer()
        assert timer is not None
        now = timer
        machine.handle_timer(now)
    # RFC 8489 §6.2.1: at 0, RTO, 3 RTO, 7 RTO, then wait Rm x RTO.
    assert sent_at == pytest.approx([0.0, 0.1, 0.3, 0.7])
    assert now == pytest.approx(0.7 + 0.8)
    assert config.transaction_time == pytest.approx(1.5)
    [failed] = events(machine)
    assert isinstance(failed, AllocationFailed)
    assert failed.code is None
    assert failed.reason == "no answer from the relay to Allocate within 1.5 s"


def test_unknown_comprehension_required_attribute_fails_the_allocation() -> None:
    from rendezvous.wire.stun import RawAttribute

    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    feed(machine, one_request(machine, 0.0).error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    signed = one_request(machine, 0.0)
    feed(machine, signed.ok(XorRelayedAddress(RELAYED), RawAttribute(0x0031, b"x")), 0.0)
    [failed] = events(machine)
    assert isinstance(failed, AllocationFailed)
    assert "0x0031" in failed.reason


# --- refreshes --------------------------------------------------------------------------------------------


def test_allocation_is_refreshed_at_eighty_percent_of_its_lifetime() -> None:
    machine = allocated(lifetime=100)
    assert machine.get_timer() == pytest.approx(80.0)
    machine.handle_timer(79.9)
    assert requests(machine, 79.9) == []
    machine.handle_timer(80.0)
    refresh = one_request(machine, 80.0)
    assert refresh.message.method == StunMethod.REFRESH
    assert refresh.message.find(Lifetime) == Lifetime(600)
    assert verify_integrity(refresh.data, KEY)
    feed(machine, refresh.ok(Lifetime(50)), 80.1)
    assert events(machine) == [AllocationRefreshed(50)]
    assert machine.get_timer() == pytest.approx(80.1 + 40)


def test_failed_refreshes_are_retried_until_the_allocation_expires() -> None:
    config = TurnClientConfig(retry_interval=5.0, initial_rto=0.5, max_requests=2, final_wait_factor=2)
    machine = allocated(config, lifetime=60)
    now = 0.0
    started: dict[bytes, float] = {}
    while not machine.done:
        timer = machine.get_timer()
        assert timer is not None
        now = timer
        machine.handle_timer(now)
        for sent in requests(machine, now):
            assert sent.message.method == StunMethod.REFRESH
            started.setdefault(sent.message.transaction_id, now)
    # Refresh at 48 s; it fails 1.5 s later; again 5 s after that; the next retry would be past expiry.
    assert sorted(started.values()) == pytest.approx([48.0, 54.5])
    assert now == pytest.approx(60.0)
    assert events(machine) == [AllocationExpired("the relay allocation expired: refreshing it failed")]


def test_437_on_refresh_means_the_allocation_is_gone() -> None:
    machine = allocated(lifetime=100)
    machine.handle_timer(80.0)
    refresh = one_request(machine, 80.0)
    feed(machine, refresh.error(437, "Allocation Mismatch", key=KEY), 80.0)
    assert events(machine) == [AllocationExpired("the relay has no matching allocation (437)")]
    assert machine.state == AllocationState.EXPIRED
    assert machine.send_to_peer(PEER, b"x", 81.0) is False


def test_stale_nonce_on_refresh_retries_with_the_new_nonce() -> None:
    machine = allocated(lifetime=100)
    machine.handle_timer(80.0)
    refresh = one_request(machine, 80.0)
    feed(machine, refresh.error(438, "Stale Nonce", Realm(REALM), Nonce("fresh")), 80.0)
    retry = one_request(machine, 80.0)
    assert retry.message.find(Nonce) == Nonce("fresh")
    feed(machine, retry.ok(Lifetime(100)), 80.0)
    assert events(machine) == [AllocationRefreshed(100)]


# --- permissions, channels and data ---------------------------------------------------------------------


def test_peer_added_early_is_installed_once_allocated() -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    machine.add_peer(PEER, 0.0)
    assert machine.send_to_peer(PEER, b"too early", 0.0) is False
    feed(machine, one_request(machine, 0.0).error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.0)
    feed(machine, one_request(machine, 0.0).ok(XorRelayedAddress(RELAYED)), 0.0)
    permission, bind = requests(machine, 0.0)
    assert permission.message.method == StunMethod.CREATE_PERMISSION
    assert permission.message.find(XorPeerAddress) == XorPeerAddress(PEER)  # only the IP counts (§9.1)
    assert bind.message.find(ChannelNumber) == ChannelNumber(0x4000)
    assert bind.message.find(XorPeerAddress) == XorPeerAddress(PEER)
    assert verify_integrity(permission.data, KEY)
    assert verify_integrity(bind.data, KEY)


def test_send_indications_until_the_channel_is_bound_then_channel_data() -> None:
    machine = allocated()
    permission, bind = with_peer(machine)
    assert machine.send_to_peer(PEER, b"hello", 0.1)
    [(data, addr)] = machine.datagrams_to_send(0.1)
    assert addr == SERVER
    send = decode(data)
    assert (send.method, send.message_class) == (StunMethod.SEND, StunClass.INDICATION)
    assert send.find(XorPeerAddress) == XorPeerAddress(PEER)
    assert send.find(Data) == Data(b"hello")
    assert send.find(MessageIntegrity) is None  # RFC 8656 §11.1: indications are not signed

    feed(machine, permission.ok(), 0.2)
    feed(machine, bind.ok(), 0.2)
    assert events(machine) == [PermissionReady(PEER[0]), ChannelBound(PEER, 0x4000)]
    assert machine.channel_for(PEER) == 0x4000
    machine.send_to_peer(PEER, b"hello again", 0.3)
    [(data, _)] = machine.datagrams_to_send(0.3)
    assert is_channel_data(data)
    assert decode_channel_data(data) == ChannelData(0x4000, b"hello again")
    assert len(data) == 4 + len(b"hello again")


def test_permission_and_channel_refresh_timing() -> None:
    machine = allocated(lifetime=3600)
    permission, bind = with_peer(machine, 10.0)
    feed(machine, permission.ok(), 10.0)
    feed(machine, bind.ok(), 10.0)
    events(machine)
    # Permissions last 300 s, refreshed at 240 s; channels last 600 s, refreshed at 540 s (RFC 8656 §9, §12).
    assert machine.get_timer() == pytest.approx(250.0)
    machine.handle_timer(250.0)
    refresh = one_request(machine, 250.0)
    assert refresh.message.method == StunMethod.CREATE_PERMISSION
    feed(machine, refresh.ok(), 250.0)
    assert machine.get_timer() == pytest.approx(490.0)
    machine.handle_timer(490.0)
    feed(machine, one_request(machine, 490.0).ok(), 490.0)
    assert machine.get_timer() == pytest.approx(550.0)
    machine.handle_timer(550.0)
    rebind = one_request(machine, 550.0)
    assert rebind.message.method == StunMethod.CHANNEL_BIND
    assert rebind.message.find(ChannelNumber) == ChannelNumber(0x4000)  # the same number for the same peer
    feed(machine, rebind.ok(), 550.0)
    assert events(machine) == []  # refreshes are quiet
    assert machine.channel_for(PEER) == 0x4000


def test_channel_lapses_back_to_send_indications_when_refreshes_fail() -> None:
    config = TurnClientConfig(initial_rto=0.5, max_requests=1, final_wait_factor=1)
    machine = allocated(config, lifetime=3600)
    permission, bind = with_peer(machine)
    feed(machine, permission.ok(), 0.0)
    feed(machine, bind.ok(), 0.0)
    now = 0.0
    while now < 601.0:  # nothing answers any more
        timer = machine.get_timer()
        assert timer is not None
        now = timer
        machine.handle_timer(now)
        machine.datagrams_to_send(now)
    assert machine.channel_for(PEER) is None
    machine.send_to_peer(PEER, b"x", now)
    [(data, _)] = machine.datagrams_to_send(now)
    assert decode(data).method == StunMethod.SEND


def test_refused_permission_and_channel_are_reported() -> None:
    machine = allocated()
    permission, bind = with_peer(machine)
    feed(machine, permission.error(403, "Forbidden IP", key=KEY), 0.0)
    feed(machine, bind.error(403, "Forbidden IP", key=KEY), 0.0)
    assert events(machine) == [
        PermissionFailed(PEER[0], "the relay forbids this (403)", 403),
        ChannelFailed(PEER, "the relay forbids this (403)", 403),
    ]
    machine.add_peer(PEER, 1.0)  # asking again is allowed
    assert {s.message.method for s in requests(machine, 1.0)} == {
        StunMethod.CREATE_PERMISSION,
        StunMethod.CHANNEL_BIND,
    }


def test_incoming_data_indications_and_channel_data() -> None:
    machine = allocated()
    _, bind = with_peer(machine)
    indication = StunMessage(
        StunMethod.DATA, StunClass.INDICATION, attributes=(XorPeerAddress(PEER), Data(b"a"))
    )
    feed(machine, indication.encode(), 0.0)
    feed(machine, bind.ok(), 0.0)
    assert events(machine) == [DataReceived(PEER, b"a"), ChannelBound(PEER, 0x4000)]
    feed(machine, ChannelData(0x4000, b"b").encode(), 0.0)
    feed(machine, ChannelData(0x4000, b"c").encode() + b"\0\0", 0.0)  # padded as over TCP: allowed
    feed(machine, ChannelData(0x4001, b"unbound channel").encode(), 0.0)
    stranger = (XorPeerAddress(("192.0.2.99", 1)), Data(b"no permission"))
    feed(machine, StunMessage(StunMethod.DATA, StunClass.INDICATION, attributes=stranger).encode(), 0.0)
    feed(machine, StunMessage(StunMethod.DATA, StunClass.INDICATION, attributes=(Data(b"?"),)).encode(), 0.0)
    assert events(machine) == [DataReceived(PEER, b"b"), DataReceived(PEER, b"c")]


def test_demultiplexing_on_a_shared_socket() -> None:
    """RFC 7983 §7: TURN takes STUN with TURN methods and ChannelData from its server, nothing else."""
    machine = allocated()
    with_peer(machine)
    binding = StunMessage(StunMethod.BINDING, StunClass.SUCCESS, attributes=(XorMappedAddress(MAPPED),))
    channel_data = ChannelData(0x4000, b"x").encode()
    assert not machine.receive_datagram(binding.encode(), SERVER, 0.0)  # a Binding transaction's answer
    assert not machine.receive_datagram(b"\xc0quic long header", SERVER, 0.0)
    assert not machine.receive_datagram(channel_data, PEER, 0.0)  # not from the server
    assert not machine.receive_datagram(channel_data, ("203.0.113.1", 3479), 0.0)
    assert machine.receive_datagram(channel_data, ("::ffff:203.0.113.1", 3478, 0, 0), 0.0)
    assert events(machine) == [DataReceived(PEER, b"x")]  # the channel's request is out: its data counts
    assert machine.receive_datagram(b"\x40\x00\xff\xff", SERVER, 0.0)  # ChannelData, malformed: dropped
    stale = StunMessage(StunMethod.ALLOCATE, StunClass.SUCCESS).encode()
    assert machine.receive_datagram(stale, SERVER, 0.0)  # TURN, unknown transaction: dropped
    assert events(machine) == []


# --- closing ----------------------------------------------------------------------------------------------


def test_close_deallocates_with_lifetime_zero() -> None:
    machine = allocated()
    permission, _ = with_peer(machine)
    machine.close(5.0)
    assert machine.state == AllocationState.CLOSING
    dealloc = one_request(machine, 5.0)  # pending permission/channel requests are dropped
    assert dealloc.message.method == StunMethod.REFRESH
    assert dealloc.message.find(Lifetime) == Lifetime(0)
    assert verify_integrity(dealloc.data, KEY)
    assert machine.send_to_peer(PEER, b"x", 5.0) is False
    feed(machine, permission.ok(), 5.1)  # a late answer changes nothing
    feed(machine, dealloc.ok(Lifetime(0)), 5.1)
    assert events(machine) == [AllocationClosed()]
    assert machine.done
    machine.close(6.0)  # idempotent
    assert events(machine) == []
    assert machine.get_timer() is None


def test_close_without_an_answer_still_finishes() -> None:
    machine = allocated(TurnClientConfig(initial_rto=0.1, max_requests=2, final_wait_factor=2))
    machine.close(1.0)
    while not machine.done:
        timer = machine.get_timer()
        assert timer is not None
        machine.handle_timer(timer)
        machine.datagrams_to_send(timer)
    assert events(machine) == [AllocationClosed()]


def test_close_while_allocating() -> None:
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    first = one_request(machine, 0.0)
    machine.close(0.1)
    assert events(machine) == [AllocationClosed()]
    feed(machine, first.error(401, "Unauthorized", Realm(REALM), Nonce("n1")), 0.2)
    assert requests(machine, 0.3) == []


def test_misuse_raises_value_error() -> None:
    with pytest.raises(ValueError, match="numeric"):
        TurnAllocation(("turn.example.org", 3478), USER, PASSWORD)
    machine = allocated()
    with pytest.raises(ValueError, match="numeric"):
        machine.add_peer(("peer.example.org", 1), 0.0)
    with pytest.raises(ValueError, match="invalid TURN client settings"):
        TurnClientConfig(refresh_fraction=1.5)


def test_describe_error() -> None:
    assert describe_error(486) == "the relay is full (486)"
    assert describe_error(401, "Unauthorized") == "the relay refused the credentials (401)"
    assert describe_error(499) == "the relay answered an error (499)"


# --- bad input from the network -------------------------------------------------------------------------


def _machines() -> list[TurnAllocation]:
    fresh = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    fresh.datagrams_to_send(0.0)
    ready = allocated()
    with_peer(ready)
    return [fresh, ready]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    for machine in _machines():
        machine.receive_datagram(data, SERVER, 1.0)
        machine.receive_datagram(b"\x00\x01" + data, SERVER, 1.0)
        machine.receive_datagram(b"\x40\x00" + data, SERVER, 1.0)
        machine.handle_timer(2.0)
        machine.datagrams_to_send(2.0)
        events(machine)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), value=st.integers(0, 255), cut=st.booleans())
def test_mutated_answers_never_raise(position: int, value: int, cut: bool) -> None:
    """Valid answers (401 challenge, signed success, Data indication) with one byte changed or cut short."""
    machine = TurnAllocation(SERVER, USER, PASSWORD, config=CONFIG)
    first = one_request(machine, 0.0)
    challenge = first.error(401, "Unauthorized", Realm(REALM), Nonce("n" * 700))
    ready = allocated()
    permission, _ = with_peer(ready)
    success = permission.ok()
    indication = StunMessage(
        StunMethod.DATA, StunClass.INDICATION, attributes=(XorPeerAddress(PEER), Data(b"payload"))
    ).encode()
    for target, original in [(machine, challenge), (ready, success), (ready, indication)]:
        mutated = bytearray(original)
        index = position % len(mutated)
        if cut:
            del mutated[index:]
        else:
            mutated[index] = value
        target.receive_datagram(bytes(mutated), SERVER, 0.5)
        target.handle_timer(1.0)
        target.datagrams_to_send(1.0)
        events(target)
