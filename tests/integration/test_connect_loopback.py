"""Two signed-in contacts connect on one machine through a real server: direct, and through its TURN relay.

The NAT lab (tests/natlab/test_connect_nat.py) proves the punch through real routers; these run everywhere and
check the plumbing: offer/answer over signalling, gathering on the session socket, echo over the path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.nat.connect import Connection, ConnectOptions, Connector, NoPath
from app.signalling import events as ev
from app.signalling.client import SignallingClient
from rendezvous.config import TurnConfig
from rendezvous.server import RendezvousServer
from tests.helpers.server import MakeClient, next_matching, server_config


@pytest.fixture
async def relay_server(tmp_path: Path) -> AsyncIterator[RendezvousServer]:
    """A real server whose TURN relay may relay to loopback peers (everything here is on 127.0.0.1)."""
    config = replace(server_config(tmp_path / "server"), turn=TurnConfig(allow_loopback_peers=True))
    async with await RendezvousServer.start(config) as running:
        yield running


async def befriend(make: MakeClient, url: str) -> tuple[SignallingClient, SignallingClient]:
    alice = await make("alice", url=url)
    bob = await make("bob", url=url)
    await alice.add_contact("bob")
    await bob.accept_contact("alice")
    await next_matching(alice, lambda e: isinstance(e, ev.ContactChanged) and e.contact.relation == "mutual")
    return alice, bob


async def route(client: SignallingClient, connector: Connector) -> None:
    while True:
        event = await client.next_event()
        if isinstance(event, ev.SignalReceived):
            connector.handle_signal(event)


async def connect_pair(
    alice: SignallingClient, bob: SignallingClient, options: ConnectOptions
) -> tuple[Connection, Connection]:
    dialer = Connector(alice.send_signal, alice.get_ice_servers, options)
    answerer = Connector(bob.send_signal, bob.get_ice_servers, options)
    routers = [asyncio.create_task(route(alice, dialer)), asyncio.create_task(route(bob, answerer))]
    try:
        mine, theirs = await asyncio.gather(dialer.dial("bob"), answerer.accept())
    finally:
        for task in routers:
            task.cancel()
    return mine, theirs


async def echo_once(a: Connection, b: Connection) -> None:
    assert a.link.send(b"~ping")
    async with asyncio.timeout(3):
        assert await b.link.receive() == b"~ping"
    await b.link.wait_for_path()
    assert b.link.send(b"~pong")
    async with asyncio.timeout(3):
        assert await a.link.receive() == b"~pong"


@pytest.mark.parametrize("force_relay", [False, True], ids=["direct", "relayed"])
async def test_contacts_connect_and_exchange_datagrams(
    relay_server: RendezvousServer, make_client: MakeClient, force_relay: bool
) -> None:
    alice, bob = await befriend(make_client, relay_server.url)
    options = ConnectOptions(force_relay=force_relay)
    mine, theirs = await connect_pair(alice, bob, options)
    try:
        assert (mine.peer, theirs.peer) == ("bob", "alice")
        assert mine.controlling
        assert not theirs.controlling
        assert mine.gather_problems == theirs.gather_problems == ()
        path = mine.link.selected_path
        assert path is not None
        if force_relay:
            assert path.kind == "relayed"
            assert path.reason_if_relayed == "relay forced by settings"
            assert mine.link.relayed_address is not None
        else:
            assert path.kind == "lan"  # both host candidates on 127.0.0.1
        await echo_once(mine, theirs)
    finally:
        mine.close()
        theirs.close()


async def test_dialling_an_offline_contact_fails_with_the_servers_reason(
    relay_server: RendezvousServer, make_client: MakeClient
) -> None:
    alice, bob = await befriend(make_client, relay_server.url)
    await bob.close()
    dialer = Connector(alice.send_signal, alice.get_ice_servers, ConnectOptions())
    with pytest.raises(Exception, match=r"offline|not online"):
        await dialer.dial("bob")


async def test_a_contact_that_never_answers_times_out_with_a_clear_message(
    relay_server: RendezvousServer, make_client: MakeClient
) -> None:
    alice, _bob = await befriend(make_client, relay_server.url)  # bob runs no Connector
    options = ConnectOptions(answer_timeout=0.5)
    dialer = Connector(alice.send_signal, alice.get_ice_servers, options)
    with pytest.raises(NoPath, match="bob did not answer the connection offer"):
        await dialer.dial("bob")
