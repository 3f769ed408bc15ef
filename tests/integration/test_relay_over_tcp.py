"""The session socket falls back to TURN over TCP when the relay does not answer over UDP (on 127.0.0.1).

UDP to the relay is "blocked" by pointing the UDP relay entry at a socket that never answers; the TCP entry
is our real relay. The NAT lab (tests/natlab/test_connect_nat.py) shows the same through a router that
drops UDP.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Iterator

import pytest

from app.nat.hole_punch import HolePunchConfig
from app.nat.peer_link import GatherConfig, GatherResult, PeerLink, RelayServer
from rendezvous.turn_relay import TurnRelay
from rendezvous.wire.stun import Address
from rendezvous.wire.turn import make_rest_credentials
from tests.helpers.poll import until
from tests.helpers.turn import SECRET

FALLBACK = "the relay is reached over TCP: UDP to it got no answer"


@pytest.fixture
def black_hole() -> Iterator[Address]:
    """A bound UDP port that reads nothing and answers nothing (UDP to the relay is lost)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield ("127.0.0.1", sock.getsockname()[1])


def relay_servers(udp: Address, tcp: Address, user: str) -> tuple[RelayServer, RelayServer]:
    creds = make_rest_credentials(SECRET, user, now=time.time(), ttl=600)
    return (
        RelayServer(udp, creds.username, creds.password),
        RelayServer(tcp, creds.username, creds.password, "tcp"),
    )


async def gather(udp: Address | None, tcp: Address, user: str) -> tuple[PeerLink, GatherResult]:
    """Gather with ``udp`` (None: no UDP relay entry) and ``tcp`` as the relay's two transports."""
    link = await PeerLink.open("127.0.0.1")
    udp_relay, tcp_relay = relay_servers(udp or tcp, tcp, user)
    config = GatherConfig(
        relay=udp_relay if udp else None,
        tcp_relay=tcp_relay,
        tcp_fallback_delay=0.2,
        timeout=3.0,
        allow_loopback=True,
    )
    return link, await link.gather(config)


def start(link: PeerLink, mine: GatherResult, theirs: GatherResult, *, controlling: bool) -> None:
    """Hand each side the other's candidates, as the connector does over signalling."""
    ufrags, passwords = ("aaaa", "bbbb"), ("a" * 22, "b" * 22)
    me = 0 if controlling else 1
    punch = PeerLink.new_punch(
        controlling=controlling,
        ufrag=ufrags[me],
        password=passwords[me],
        tie_breaker=secrets.randbits(64),
        config=HolePunchConfig(
            force_relay=controlling, relay_grace=0.2, relay_transport=link.relay_transport
        ),
    )
    for candidate in mine.candidates:
        punch.add_local_candidate(candidate)
    punch.end_of_local_candidates()
    punch.set_remote_parameters(ufrags[1 - me], passwords[1 - me])
    punch.add_remote_candidates(theirs.candidates)
    punch.end_of_remote_candidates()
    link.start(punch)


async def test_gathering_falls_back_to_tcp_and_data_flows_through_it(
    relay: TurnRelay, black_hole: Address
) -> None:
    alice, alice_found = await gather(black_hole, relay.address, "alice")
    bob, bob_found = await gather(relay.address, relay.address, "bob")  # bob's UDP works
    try:
        assert alice.relay_transport == "tcp"
        assert alice_found.problems == (FALLBACK,)
        assert [c.kind for c in alice_found.candidates] == ["host", "relay"]
        assert bob.relay_transport == "udp"
        assert bob_found.problems == ()
        assert relay.tcp_clients == 1  # bob never opened one: UDP answered first

        start(alice, alice_found, bob_found, controlling=True)  # alice forces her relay
        start(bob, bob_found, alice_found, controlling=False)
        async with asyncio.timeout(5):
            path = await alice.wait_for_path()
        assert path.kind == "relayed"
        assert path.relayed_by in ("us", "both")
        assert path.relay_transport == "tcp"
        for i in range(20):
            assert alice.send(b"~over tcp %d" % i)
            async with asyncio.timeout(3):
                assert await bob.receive() == b"~over tcp %d" % i
        await bob.wait_for_path()
        assert bob.send(b"~and back")
        async with asyncio.timeout(3):
            assert await alice.receive() == b"~and back"
    finally:
        alice.close()
        bob.close()
    await until(lambda: not relay.tcp_clients and not relay.machine.allocation_count, 3)


async def test_no_tcp_connection_when_udp_answers(relay: TurnRelay) -> None:
    link, found = await gather(relay.address, relay.address, "carol")
    try:
        assert link.relay_transport == "udp"
        assert "relay" in [c.kind for c in found.candidates]
        assert relay.tcp_clients == 0
    finally:
        link.close()


async def test_a_relay_offered_over_tcp_only_is_used_at_once(relay: TurnRelay) -> None:
    started = time.monotonic()
    link, found = await gather(None, relay.address, "erin")
    try:
        assert link.relay_transport == "tcp"
        assert "relay" in [c.kind for c in found.candidates]
        assert time.monotonic() - started < 1.0  # no fallback delay: there was no UDP entry to wait for
    finally:
        link.close()


async def test_both_transports_failing_is_reported(black_hole: Address) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        link, found = await gather(black_hole, ("127.0.0.1", closed.getsockname()[1]), "dave")
    try:
        assert [c.kind for c in found.candidates] == ["host"]
        assert any(p.startswith("no relay") for p in found.problems), found.problems
    finally:
        link.close()
