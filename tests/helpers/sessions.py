"""Two peers joined on loopback without a server: real sockets, real hole punch, real QUIC sessions.

The signalling round trip is replaced by handing each side's punch parameters to the other in-process;
everything below (`PeerLink`, `HolePunch`, QUIC) is the real code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from app.account.identity import DeviceIdentity
from app.nat.connect import Connection, ConnectOptions, _begin, _new_parameters
from app.nat.peer_link import GatherConfig, PeerLink
from app.session.peer_session import PeerSession, SessionConfig
from app.session.trust import TrustStore

OPTIONS = ConnectOptions()


async def linked_connections(session: str = "s1") -> tuple[Connection, Connection]:
    """A dialler's and an answerer's `Connection` to each other on 127.0.0.1, with a working path."""
    links = [await PeerLink.open("127.0.0.1"), await PeerLink.open("127.0.0.1")]
    gathered = [await link.gather(GatherConfig(allow_loopback=True, timeout=0.5)) for link in links]
    params = [_new_parameters(session, g) for g in gathered]
    _begin(links[0], params[0], params[1], controlling=True, options=OPTIONS)
    _begin(links[1], params[1], params[0], controlling=False, options=OPTIONS)
    async with asyncio.timeout(5):
        await asyncio.gather(*(link.wait_for_path() for link in links))
    return (
        Connection("bob", session, links[0], True, (), "dev-bob"),
        Connection("alice", session, links[1], False, (), "dev-alice"),
    )


class Peer:
    """One side's identity and pinned-key store."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.identity = DeviceIdentity.generate()
        self.trust = TrustStore(directory / name)


async def start_sessions(
    alice: Peer, bob: Peer, config: SessionConfig | None = None
) -> tuple[PeerSession, PeerSession]:
    """Alice dials Bob: both sessions, authenticated."""
    dialler, answerer = await linked_connections()
    try:
        return await asyncio.gather(
            PeerSession.start(dialler, alice.identity, alice.trust, config=config),
            PeerSession.start(answerer, bob.identity, bob.trust, config=config),
        )
    except BaseException:
        dialler.close()
        answerer.close()
        raise


@contextlib.asynccontextmanager
async def session_pair(
    alice: Peer, bob: Peer, config: SessionConfig | None = None
) -> AsyncIterator[tuple[PeerSession, PeerSession]]:
    """`start_sessions`, closed at the end."""
    ours, theirs = await start_sessions(alice, bob, config)
    try:
        yield ours, theirs
    finally:
        await asyncio.gather(ours.close(linger=0.1), theirs.close(linger=0.1))
