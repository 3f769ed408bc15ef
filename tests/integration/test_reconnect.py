"""Clients ride out server restarts: state survives on disk, clients reconnect and re-announce presence."""

from __future__ import annotations

from pathlib import Path

from app.account.identity import DeviceIdentity
from app.signalling import events as ev
from app.signalling.client import Credentials, SignallingClient
from rendezvous.config import ServerConfig
from rendezvous.server import RendezvousServer
from tests.helpers.server import PASSWORD, fast_backoff, next_matching, register, server_config


def same_port(config: ServerConfig, server: RendezvousServer) -> ServerConfig:
    from dataclasses import replace

    return replace(config, port=server.port, stun_port=server.stun_port)


async def test_reconnect_after_server_restart_keeps_accounts_contacts_and_presence(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data")
    server = await RendezvousServer.start(config)
    config = same_port(config, server)
    await register(server.url, "alice")
    await register(server.url, "bob")
    alice = SignallingClient(
        server.url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate(), backoff=fast_backoff()
    )
    bob = SignallingClient(
        server.url, Credentials("bob", password=PASSWORD), DeviceIdentity.generate(), backoff=fast_backoff()
    )
    await alice.start()
    await bob.start()
    await alice.add_contact("bob")
    await bob.accept_contact("alice")
    await next_matching(alice, lambda e: isinstance(e, ev.ContactChanged) and e.contact.relation == "mutual")
    await bob.set_status("away")
    await next_matching(alice, lambda e: isinstance(e, ev.PresenceChanged) and e.status == "away")

    await server.close()
    gone = await next_matching(alice, lambda e: isinstance(e, ev.Disconnected))
    assert gone.reason == "the server is restarting"
    assert gone.retry_in > 0

    server = await RendezvousServer.start(config)
    try:
        back = await next_matching(alice, lambda e: isinstance(e, ev.SignedIn), timeout=10)
        assert back.reconnected
        assert {c.username: c.relation for c in back.contacts} == {"bob": "mutual"}
        # bob came back too, and re-announced "away" rather than defaulting to online.
        await next_matching(bob, lambda e: isinstance(e, ev.SignedIn), timeout=10)
        # Whoever reconnects first decides how alice learns it: in her sign-in snapshot, or as a push.
        if alice.contacts["bob"].status != "away":
            await next_matching(alice, lambda e: isinstance(e, ev.PresenceChanged) and e.status == "away")
        assert alice.contacts["bob"].status == "away"
        await alice.send_signal("bob", {"after": "restart"})
        got = await next_matching(bob, lambda e: isinstance(e, ev.SignalReceived))
        assert got.payload == {"after": "restart"}
    finally:
        await alice.close()
        await bob.close()
        await server.close()


async def test_backoff_grows_while_the_server_is_down(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data")
    server = await RendezvousServer.start(config)
    await register(server.url, "alice")
    alice = SignallingClient(
        server.url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate(), backoff=fast_backoff()
    )
    await alice.start()
    await server.close()
    delays = []
    for _ in range(4):
        event = await next_matching(alice, lambda e: isinstance(e, ev.Disconnected), timeout=5)
        delays.append(event.retry_in)
    await alice.close()
    # Equal jitter: each delay lies in [ceiling/2, ceiling] with the ceiling doubling from 0.05 s.
    for attempt, delay in enumerate(delays):
        ceiling = min(0.5, 0.05 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert "refused" in event.reason
