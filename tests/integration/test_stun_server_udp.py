"""The STUN server and our client over real UDP sockets on loopback (IPv4, and IPv6 where ::1 works).

The same machines sans-IO: tests/unit/test_stun_server.py."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from app.nat.stun_client import (
    BindingConfig,
    PublicAddress,
    StunClientError,
    StunTimeout,
    discover_public_address,
)
from rendezvous.stun_server import StunServer, start_stun_server
from rendezvous.wire.stun import ErrorCode, RawAttribute, XorMappedAddress, decode
from tests.helpers.stun import DROPPED, binding_request
from tests.helpers.udp import open_udp_peer


def ipv6_available() -> bool:
    """True when a UDP socket can bind ::1 here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


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
