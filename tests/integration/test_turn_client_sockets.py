"""The TURN client on real UDP sockets against real relays on 127.0.0.1 (coturn, our own), plain UDP peers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from app.nat.turn_client import (
    AllocationClosed,
    AllocationFailed,
    AllocationReady,
    AllocationRefreshed,
    ChannelBound,
    DataReceived,
    PermissionReady,
    TurnClientConfig,
    TurnEvent,
)
from app.nat.turn_socket import TurnDriver, open_turn_socket
from rendezvous.config import TurnConfig, TurnQuotas
from rendezvous.turn_relay import start_turn_relay
from rendezvous.wire.stun import Address
from rendezvous.wire.turn import make_rest_credentials
from tests.helpers.coturn import run_coturn
from tests.helpers.udp import UdpPeer, open_udp_peer

SECRET = "coturn test secret"
LOCAL = ("127.0.0.1", 0)
_E = TypeVar("_E", bound=TurnEvent)


@dataclass(frozen=True)
class Relay:
    """A running TURN server that checks REST credentials made with `SECRET`."""

    name: str
    address: Address


@contextlib.asynccontextmanager
async def run_relay(name: str, directory: Path, *, lifetime: int | None = None) -> AsyncIterator[Relay]:
    """coturn, or our ``rendezvous.turn_relay``, on 127.0.0.1; ``lifetime`` caps allocations (and nonces
    then go stale every 2 s, so refreshes meet 438)."""
    if name == "coturn":
        extra = []
        if lifetime is not None:  # and permissions and channels that lapse within seconds too
            extra = [f"--max-allocate-lifetime={lifetime}", "--permission-lifetime=4", "--channel-lifetime=5"]
            extra.append("--stale-nonce=2")
        async with run_coturn(directory, secret=SECRET, extra_args=extra) as coturn:
            yield Relay(name, coturn.address)
        return
    quotas = (
        TurnQuotas() if lifetime is None else TurnQuotas(default_lifetime=lifetime, max_lifetime=lifetime)
    )
    config = TurnConfig(
        secret=SECRET,
        realm="punchline.test",
        relay_ip="127.0.0.1",
        allow_loopback_peers=True,
        nonce_lifetime=600 if lifetime is None else 2,
        quotas=quotas,
    )
    ours = await start_turn_relay(config, host="127.0.0.1", port=0, secret=SECRET)
    try:
        yield Relay(name, ours.address)
    finally:
        ours.close()


@pytest.fixture(params=["coturn", "punchline"])
async def relay(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Relay]:
    """Each test runs against coturn and against our own relay."""
    async with run_relay(request.param, tmp_path) as running:
        yield running


@pytest.fixture
async def peer() -> AsyncIterator[UdpPeer]:
    """A plain UDP socket on 127.0.0.1: the far end of the relay."""
    udp = await open_udp_peer()
    yield udp
    udp.close()


async def expect(driver: TurnDriver, kind: type[_E], timeout: float = 5.0) -> _E:
    """The next event, which must be a ``kind``."""
    event = await driver.next_event(timeout)
    assert isinstance(event, kind), event
    return event


async def allocate(
    server: Relay, *, secret: str = SECRET, ttl: int = 600, config: TurnClientConfig | None = None
) -> tuple[TurnDriver, asyncio.DatagramTransport]:
    """Open a socket and start an allocation with fresh REST credentials."""
    credentials = make_rest_credentials(secret, "alice", now=time.time(), ttl=ttl)
    return await open_turn_socket(
        server.address, credentials.username, credentials.password, local_addr=LOCAL, config=config
    )


async def test_allocate_relay_both_ways_and_deallocate(relay: Relay, peer: UdpPeer) -> None:
    driver, transport = await allocate(relay)
    try:
        ready = await expect(driver, AllocationReady)
        local = transport.get_extra_info("sockname")
        assert ready.mapped_address == (local[0], local[1])  # no NAT on loopback
        assert ready.relayed_address[0] == "127.0.0.1"
        assert ready.relayed_address[1] != relay.address[1]
        assert ready.lifetime == 600

        driver.add_peer(peer.address)
        assert driver.send_to_peer(peer.address, b"by Send indication")  # before the channel is bound
        assert await expect(driver, PermissionReady) == PermissionReady("127.0.0.1")
        bound = await expect(driver, ChannelBound)
        assert bound == ChannelBound(peer.address, 0x4000)
        assert await peer.next() == (b"by Send indication", ready.relayed_address)

        driver.send_to_peer(peer.address, b"by ChannelData")
        assert await peer.next() == (b"by ChannelData", ready.relayed_address)
        peer.send(b"reply on the channel", ready.relayed_address)
        assert await expect(driver, DataReceived) == DataReceived(peer.address, b"reply on the channel")

        # Another port on the permitted IP, without a channel: the relay uses a Data indication.
        other = await open_udp_peer()
        try:
            other.send(b"reply by Data indication", ready.relayed_address)
            assert await expect(driver, DataReceived) == DataReceived(
                other.address, b"reply by Data indication"
            )
        finally:
            other.close()

        for i in range(50):  # a burst, in order on loopback
            driver.send_to_peer(peer.address, b"%d" % i)
        assert [(await peer.next())[0] for _ in range(50)] == [b"%d" % i for i in range(50)]

        driver.close()
        await expect(driver, AllocationClosed)
        peer.send(b"after the end", ready.relayed_address)
        with pytest.raises(TimeoutError):
            await driver.next_event(0.3)
    finally:
        driver.stop()
        transport.close()


@pytest.mark.parametrize("name", ["coturn", "punchline"])
async def test_short_lifetimes_are_refreshed(name: str, tmp_path: Path, peer: UdpPeer) -> None:
    """3 s allocations and 2 s nonces (coturn: also 4 s permissions, 5 s channels); the client keeps up.

    With nonces going stale every 2 s, refreshes meet 438 Stale Nonce and are retried with the new nonce
    (RFC 8489 §9.2.5); coturn's verbose log shows them.
    """
    config = TurnClientConfig(
        lifetime=700,  # coturn raises anything below 600 to 600, then caps at its maximum
        permission_refresh=2.0,
        permission_lifetime=4.0,
        channel_refresh=2.5,
        channel_lifetime=5.0,
    )
    async with run_relay(name, tmp_path, lifetime=3) as server:
        driver, transport = await allocate(server, config=config)
        try:
            ready = await expect(driver, AllocationReady)
            assert ready.lifetime == 3
            driver.add_peer(peer.address)
            await expect(driver, PermissionReady)
            await expect(driver, ChannelBound)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8.0  # longer than every server-side lifetime
            refreshed = 0
            while loop.time() < deadline:
                try:
                    event = await driver.next_event(deadline - loop.time())
                except TimeoutError:
                    break
                assert isinstance(event, AllocationRefreshed), event
                assert event.lifetime == 3
                refreshed += 1
            assert refreshed >= 2
            assert driver.allocation.channel_for(peer.address) == 0x4000
            driver.send_to_peer(peer.address, b"still here")
            assert await peer.next() == (b"still here", ready.relayed_address)
            peer.send(b"me too", ready.relayed_address)
            assert await expect(driver, DataReceived) == DataReceived(peer.address, b"me too")
            driver.close()
            await expect(driver, AllocationClosed)
        finally:
            driver.stop()
            transport.close()


@pytest.mark.parametrize(
    ("secret", "ttl"), [("not the secret", 600), (SECRET, -60)], ids=["wrong-secret", "expired-username"]
)
async def test_refused_credentials_fail_readably(relay: Relay, secret: str, ttl: int) -> None:
    driver, transport = await allocate(relay, secret=secret, ttl=ttl)
    try:
        failed = await expect(driver, AllocationFailed)
        assert failed == AllocationFailed("the relay refused the credentials (401)", 401)
        assert driver.allocation.done
    finally:
        driver.stop()
        transport.close()


async def test_no_relay_there_times_out() -> None:
    """Nothing listens: the allocation fails after the retransmissions, with a reason and no code."""
    config = TurnClientConfig(initial_rto=0.05, max_requests=3, final_wait_factor=4)
    credentials = make_rest_credentials(SECRET, "alice", now=time.time(), ttl=600)
    silent = await open_udp_peer()  # a socket that never answers
    try:
        driver, transport = await open_turn_socket(
            silent.address, credentials.username, credentials.password, local_addr=LOCAL, config=config
        )
        try:
            failed = await expect(driver, AllocationFailed)
            assert failed.code is None
            assert "no answer from the relay" in failed.reason
            assert silent.received.qsize() == 3
        finally:
            driver.stop()
            transport.close()
    finally:
        silent.close()
