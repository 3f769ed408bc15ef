"""The STUN server and our client: sans-IO first (fake clock, in-memory link), then real UDP sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from app.nat.stun_client import (
    BindingConfig,
    BindingFailed,
    BindingSucceeded,
    BindingTransaction,
    PublicAddress,
    StunClientError,
    StunTimeout,
    discover_public_address,
)
from rendezvous.stun_server import MAX_AMPLIFICATION, StunServer, answer, start_stun_server
from rendezvous.wire.stun import (
    Address,
    ErrorCode,
    MappedAddress,
    RawAttribute,
    Software,
    StunClass,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    XorMappedAddress,
    decode,
)

CLIENT: Address = ("198.51.100.7", 40000)
SERVER: Address = ("203.0.113.1", 3478)
TID = bytes(range(12))


def binding_request(*attributes: Any, fingerprint: bool = False, tid: bytes = TID) -> bytes:
    """A Binding request's bytes."""
    return StunMessage(StunMethod.BINDING, StunClass.REQUEST, tid, attributes).encode(fingerprint=fingerprint)


def ipv6_available() -> bool:
    """True when a UDP socket can bind ::1 here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# --- the responder, sans-IO ----------------------------------------------------------------------------


@pytest.mark.parametrize("fingerprint", [False, True])
@pytest.mark.parametrize(
    "source", [CLIENT, ("2001:db8::5", 1), ("::ffff:192.0.2.3", 65535)], ids=["ipv4", "ipv6", "v4-mapped"]
)
def test_binding_request_gets_the_source_address(source: Address, fingerprint: bool) -> None:
    reply = answer(binding_request(fingerprint=fingerprint), source)
    assert reply is not None
    message = decode(reply)  # decode checks the FINGERPRINT the server adds
    assert message.transaction_id == TID
    assert (message.method, message.message_class) == (StunMethod.BINDING, StunClass.SUCCESS)
    expected = ("192.0.2.3", 65535) if source[0].startswith("::ffff:") else source
    assert message.attributes == (XorMappedAddress(expected),)  # and no SOFTWARE
    assert int.from_bytes(reply[-8:-4], "big") == 0x80280004  # FINGERPRINT last


def test_unknown_comprehension_required_attributes_get_420() -> None:
    """RFC 8489 §6.3.1.1, e.g. RFC 5780's CHANGE-REQUEST (0x0003) sent to a server without it."""
    request = binding_request(
        RawAttribute(0x0003, bytes(4)), RawAttribute(0xC000, b"optional"), RawAttribute(0x0003, bytes(4))
    )
    reply = answer(request, CLIENT)
    assert reply is not None
    message = decode(reply)
    assert message.message_class == StunClass.ERROR
    assert message.transaction_id == TID
    assert message.find(ErrorCode) == ErrorCode(420, "Unknown")
    assert message.find(UnknownAttributes) == UnknownAttributes((0x0003,))


def test_comprehension_optional_unknown_attributes_are_ignored() -> None:
    reply = answer(binding_request(RawAttribute(0x8030, b"x"), Software("someone")), CLIENT)
    assert reply is not None
    assert decode(reply).find(XorMappedAddress) == XorMappedAddress(CLIENT)


DROPPED = {
    "empty": b"",
    "garbage": b"hello, is this STUN?" * 3,
    "quic-like": b"\xc3\x00\x00\x00\x01" + bytes(40),
    "truncated": binding_request(Software("x"))[:-4],
    "binding-indication-keepalive": StunMessage(StunMethod.BINDING, StunClass.INDICATION, TID).encode(),
    "binding-success": StunMessage(StunMethod.BINDING, StunClass.SUCCESS, TID).encode(),
    "binding-error": StunMessage(
        StunMethod.BINDING, StunClass.ERROR, TID, (ErrorCode(400, "Bad Request"),)
    ).encode(),
    "allocate-request": StunMessage(StunMethod.ALLOCATE, StunClass.REQUEST, TID).encode(),
    "unknown-method": StunMessage(0x0ABC, StunClass.REQUEST, TID).encode(),
    "bad-fingerprint": binding_request(fingerprint=True)[:-1] + b"\x00",
    "rfc3489-no-cookie": struct.pack("!HH16s", 0x0001, 0, bytes(16)),
}


@pytest.mark.parametrize("data", DROPPED.values(), ids=DROPPED.keys())
def test_everything_but_a_binding_request_is_dropped(data: bytes) -> None:
    assert answer(data, CLIENT) is None


def test_a_source_that_is_not_an_ip_endpoint_is_dropped() -> None:
    assert answer(binding_request(), ("not-an-ip", 1)) is None
    assert answer(binding_request(), ("127.0.0.1", 70000)) is None


AMPLIFICATION_CASES = {
    "bare-request-ipv4": (binding_request(), ("192.0.2.1", 1)),
    "bare-request-ipv6": (binding_request(), ("2001:db8::1", 1)),
    "one-unknown-empty": (binding_request(RawAttribute(0x0003, b"")), ("2001:db8::1", 1)),
    "two-unknown-empty": (binding_request(RawAttribute(0x0003, b""), RawAttribute(0x0004, b"")), CLIENT),
    "many-unknown-empty": (binding_request(*(RawAttribute(t, b"") for t in range(0x7F00, 0x7F80))), CLIENT),
    "repeated-unknown": (binding_request(*(RawAttribute(0x0003, b"") for _ in range(50))), CLIENT),
}


@pytest.mark.parametrize("case", AMPLIFICATION_CASES.values(), ids=AMPLIFICATION_CASES.keys())
def test_no_answer_is_more_than_32_bytes_larger_than_its_request(case: tuple[bytes, Address]) -> None:
    request, source = case
    reply = answer(request, source)
    assert reply is not None
    assert len(reply) <= len(request) + MAX_AMPLIFICATION == len(request) + 32


# --- the client transaction, sans-IO with a fake clock ----------------------------------------------


def run_over_link(
    transaction: BindingTransaction, lose: int, start: float = 0.0, step: float = 0.01
) -> float:
    """Drive ``transaction`` against `answer` over an in-memory link that loses the first ``lose`` requests.

    Time advances only when nothing is due; answers take ``step`` seconds. Returns the final time.
    """
    now = start
    lost = 0
    while True:
        for data, addr in transaction.datagrams_to_send(now):
            assert addr == SERVER
            if lost < lose:
                lost += 1
                continue
            reply = answer(data, CLIENT)
            assert reply is not None
            transaction.receive_datagram(reply, SERVER, now + step)
        timer = transaction.get_timer()
        if timer is None:
            assert transaction.done
            return now
        assert timer >= now
        now = timer
        transaction.handle_timer(now)


def test_first_two_requests_lost_then_answered() -> None:
    sent_at: list[float] = []
    transaction = BindingTransaction(SERVER, 100.0, transaction_id=TID)
    assert transaction.get_timer() == 100.0  # the first request is due at once
    for now in (100.0, 100.2, 100.5, 101.0, 101.5):
        transaction.handle_timer(now)
        if transaction.datagrams_to_send(now):
            sent_at.append(now)
    assert sent_at == [100.0, 100.5, 101.5]  # RTO 0.5 s, then 1 s (RFC 8489 §6.2.1)
    assert transaction.next_event() is None
    reply = answer(binding_request(tid=TID), CLIENT)
    assert reply is not None
    transaction.receive_datagram(reply, SERVER, 101.52)
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded)
    assert (event.mapped, event.server) == (CLIENT, SERVER)
    assert event.rtt == pytest.approx(0.02)  # from the last transmission
    assert transaction.done
    assert transaction.get_timer() is None
    assert transaction.next_event() is None
    assert transaction.datagrams_to_send(200.0) == []


def test_lossy_link_end_to_end_with_fake_clock() -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    end = run_over_link(transaction, lose=2)
    assert transaction.requests_sent == 3
    assert end == pytest.approx(1.5)
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded)
    assert event.mapped == CLIENT


def test_gives_up_after_rc_requests_and_rm_times_rto() -> None:
    """RFC 8489 §6.2.1's example: requests at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; failure at 39.5 s."""
    transaction = BindingTransaction(SERVER, 0.0)
    sent_at: list[float] = []
    now = 0.0
    while not transaction.done:
        transaction.handle_timer(now)
        sent_at.extend(now for _ in transaction.datagrams_to_send(now))
        timer = transaction.get_timer()
        if timer is None:
            break
        now = timer
    assert sent_at == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert now == 39.5 == BindingConfig().total_time
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert event.timed_out
    assert event.error_code is None
    assert event.reason == "no answer to 7 requests in 39.5 s"


def test_config_shortens_the_schedule() -> None:
    config = BindingConfig(initial_rto=0.01, max_requests=3, final_wait_factor=2)
    assert config.total_time == pytest.approx(0.05)
    transaction = BindingTransaction(SERVER, 0.0, config=config)
    assert run_over_link(transaction, lose=99) == pytest.approx(0.05)
    assert transaction.requests_sent == 3
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert event.timed_out
    with pytest.raises(ValueError):  # noqa: PT011
        BindingConfig(max_requests=0)


def test_ignores_what_is_not_its_response() -> None:
    transaction = BindingTransaction(SERVER, 0.0, transaction_id=TID)
    [(request, _)] = transaction.datagrams_to_send(0.0)
    good = answer(request, CLIENT)
    assert good is not None
    other_tid = answer(binding_request(tid=bytes(12)), CLIENT)
    assert other_tid is not None
    ignored = [
        (good, ("203.0.113.2", 3478)),  # right answer, wrong host
        (good, (SERVER[0], 3479)),  # wrong port
        (other_tid, SERVER),  # another transaction
        (request, SERVER),  # our own request reflected back
        (b"\x00\x01garbage", SERVER),
        (good[:-1], SERVER),  # truncated
        (StunMessage(StunMethod.ALLOCATE, StunClass.SUCCESS, TID).encode(), SERVER),
        (StunMessage(StunMethod.BINDING, StunClass.INDICATION, TID).encode(), SERVER),
    ]
    for data, addr in ignored:
        transaction.receive_datagram(data, addr, 0.1)
        assert transaction.next_event() is None
        assert not transaction.done
    transaction.receive_datagram(good, (SERVER[0], SERVER[1], 0, 0), 0.1)  # IPv6-style 4-tuples are fine
    assert isinstance(transaction.next_event(), BindingSucceeded)


def responses(transaction: BindingTransaction, message_class: StunClass, *attributes: Any) -> bytes:
    """A response to ``transaction`` with the given class and attributes."""
    return StunMessage(StunMethod.BINDING, message_class, transaction.transaction_id, attributes).encode()


def test_error_response_becomes_a_failure_with_code_and_reason() -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    transaction.datagrams_to_send(0.0)
    transaction.receive_datagram(
        responses(transaction, StunClass.ERROR, ErrorCode(420, "Unknown"), UnknownAttributes((3,))),
        SERVER,
        0.1,
    )
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert (event.error_code, event.timed_out) == (420, False)
    assert event.reason == "the STUN server answered 420 Unknown"


@pytest.mark.parametrize(
    ("message_class", "attributes", "reason"),
    [
        (StunClass.ERROR, (), "an error without a code"),
        (StunClass.SUCCESS, (), "no mapped address"),
        (
            StunClass.SUCCESS,
            (XorMappedAddress(CLIENT), RawAttribute(0x0003, b"")),
            "unknown attributes 0x0003",
        ),
    ],
)
def test_malformed_answers_fail_the_transaction(
    message_class: StunClass, attributes: tuple[Any, ...], reason: str
) -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    transaction.receive_datagram(responses(transaction, message_class, *attributes), SERVER, 0.1)
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert reason in event.reason
    assert event.error_code is None


def test_mapped_address_from_an_old_server_is_accepted() -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    transaction.receive_datagram(
        responses(transaction, StunClass.SUCCESS, MappedAddress(CLIENT)), SERVER, 0.1
    )
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded)
    assert event.mapped == CLIENT


def test_the_transaction_needs_a_numeric_server_address() -> None:
    with pytest.raises(ValueError, match="resolve names first"):
        BindingTransaction(("stun.example.org", 3478), 0.0)
    assert BindingTransaction(("::ffff:203.0.113.1", 3478), 0.0).server == SERVER


# --- real sockets ----------------------------------------------------------------------------------


class UdpPeer(asyncio.DatagramProtocol):
    """A bare UDP socket for tests: send anything, collect what comes back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # CPython's lacks the base class

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    @property
    def address(self) -> Address:
        """Our bound (host, port)."""
        assert self.transport is not None
        sockname = self.transport.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram."""
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def next(self, timeout: float = 2.0) -> tuple[bytes, Address]:
        """The next datagram received."""
        async with asyncio.timeout(timeout):
            return await self.received.get()

    def close(self) -> None:
        """Close the socket."""
        assert self.transport is not None
        self.transport.close()


async def open_udp_peer(host: str = "127.0.0.1") -> UdpPeer:
    """A `UdpPeer` bound to an ephemeral port on ``host``."""
    _, peer = await asyncio.get_running_loop().create_datagram_endpoint(UdpPeer, local_addr=(host, 0))
    return peer


@pytest.fixture
async def stun_server() -> AsyncIterator[StunServer]:
    """Our STUN server on an ephemeral port of 127.0.0.1."""
    server = await start_stun_server("127.0.0.1", 0)
    yield server
    server.close()


async def test_our_client_gets_its_own_address_back(stun_server: StunServer) -> None:
    host, port = stun_server.address
    assert host == "127.0.0.1"
    assert 0 < port < 65536
    found = await discover_public_address(stun_server.address, timeout=2.0)
    assert isinstance(found, PublicAddress)
    assert found.public == found.local  # no NAT on loopback
    assert found.public[0] == "127.0.0.1"
    assert 0 < found.public[1] < 65536
    assert found.server == stun_server.address
    assert 0 <= found.rtt < 1.0
    assert stun_server.answered == 1


async def test_client_on_a_chosen_local_port_and_a_host_name(stun_server: StunServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()
    found = await discover_public_address(
        ("localhost", stun_server.address[1]), local_addr=local, timeout=2.0
    )
    assert found.public == found.local == local


@pytest.mark.skipif(not ipv6_available(), reason="IPv6 loopback (::1) is not available on this machine")
async def test_ipv6_server_and_client() -> None:
    server = await start_stun_server("::1", 0)
    try:
        assert server.address[0] == "::1"
        found = await discover_public_address(server.address, timeout=2.0)
        assert found.public == found.local
        assert found.public[0] == "::1"
        peer = await open_udp_peer("::1")
        peer.send(binding_request(), server.address)
        reply, _ = await peer.next()
        assert len(reply) == 20 + 32  # the largest success answer: IPv6 XOR-MAPPED-ADDRESS and FINGERPRINT
        assert decode(reply).find(XorMappedAddress) == XorMappedAddress(peer.address)
        peer.close()
    finally:
        server.close()


async def test_server_drops_what_it_should_not_answer(stun_server: StunServer) -> None:
    peer = await open_udp_peer()
    junk = [data for data in DROPPED.values() if data]  # asyncio does not send empty datagrams
    for data in junk:
        peer.send(data, stun_server.address)
    peer.send(binding_request(RawAttribute(0x0003, bytes(4))), stun_server.address)  # 420
    peer.send(binding_request(tid=b"last request"), stun_server.address)
    # The loop reads datagrams in order, so once these answers are in, all the junk was read and dropped.
    first, _ = await peer.next()
    second, _ = await peer.next()
    assert decode(first).find(ErrorCode) == ErrorCode(420, "Unknown")
    assert decode(second).transaction_id == b"last request"
    assert decode(second).find(XorMappedAddress) == XorMappedAddress(peer.address)
    assert peer.received.empty()
    assert (stun_server.answered, stun_server.dropped) == (2, len(junk))
    peer.close()


async def test_no_answer_means_a_clear_timeout() -> None:
    """A bound socket that never reads: no answer and no ICMP error either."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StunTimeout) as caught:
            await discover_public_address(("127.0.0.1", port), timeout=0.5)
        elapsed = loop.time() - started
    assert str(caught.value) == f"No answer from STUN server 127.0.0.1:{port} after 0.5 s"
    assert isinstance(caught.value, StunClientError)
    assert 0.5 <= elapsed < 1.5


async def test_short_retransmission_config_times_out_first() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        config = BindingConfig(initial_rto=0.02, max_requests=3, final_wait_factor=4)  # 0.14 s in all
        with pytest.raises(StunTimeout, match=r"^No answer from STUN server 127\.0\.0\.1:\d+ after 0\.1 s$"):
            await discover_public_address(silent.getsockname(), timeout=5.0, config=config)
        # All three requests reached the socket.
        silent.setblocking(False)
        received = []
        while True:
            try:
                received.append(silent.recv(2048))
            except BlockingIOError:
                break
    assert len(received) == 3
    assert len(set(received)) == 1  # retransmissions are the same bytes


async def test_unresolvable_server_name_is_a_client_error() -> None:
    with pytest.raises(StunClientError, match=r"^Cannot resolve STUN server no-such-host\.invalid"):
        await discover_public_address(("no-such-host.invalid", 3478), timeout=1.0)


async def test_start_is_logged_and_packets_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="punchline.stun")
    server = await start_stun_server("127.0.0.1", 0)
    port = server.address[1]
    try:
        await discover_public_address(server.address, timeout=2.0)
        peer = await open_udp_peer()
        peer.send(b"junk", server.address)
        peer.send(binding_request(), server.address)
        await peer.next()
        peer.close()
    finally:
        server.close()
    events = [(r.getMessage(), r.levelno, getattr(r, "fields", {})) for r in caplog.records]
    assert events[0] == ("stun_listening", logging.INFO, {"host": "127.0.0.1", "port": port})
    assert [e[0] for e in events] == ["stun_listening", "stun_stopped"]
    assert events[1][2] == {"answered": 2, "dropped": 1}


async def test_close_releases_the_port() -> None:
    server = await start_stun_server("127.0.0.1", 0)
    address = server.address
    server.close()
    server.close()  # idempotent
    await asyncio.sleep(0)
    again = await start_stun_server(*address)
    assert again.address == address
    again.close()
