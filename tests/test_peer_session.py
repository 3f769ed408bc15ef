"""The peer session: real QUIC over real `PeerLink`s on loopback, with both identities checked."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from app.identity import DeviceIdentity
from app.session.loss_repair import RepairConfig
from app.session.peer_session import PeerSession, SessionConfig, SessionError, SessionRefused
from app.session.trust import KeyChanged
from tests.session_helpers import Peer, linked_connections, session_pair, start_sessions


@pytest.fixture
def alice(tmp_path: Path) -> Peer:
    return Peer("alice", tmp_path)


@pytest.fixture
def bob(tmp_path: Path) -> Peer:
    return Peer("bob", tmp_path)


async def test_both_sides_learn_the_key_the_other_proved(alice: Peer, bob: Peer) -> None:
    async with session_pair(alice, bob) as (ours, theirs):
        assert ours.peer is not None
        assert theirs.peer is not None
        assert ours.peer.key == bob.identity.public_key_bytes
        assert theirs.peer.key == alice.identity.public_key_bytes
        assert (ours.peer.trust, theirs.peer.trust) == ("first-contact", "first-contact")
    async with session_pair(alice, bob) as (ours, theirs):
        assert ours.peer is not None
        assert theirs.peer is not None
        assert (ours.peer.trust, theirs.peer.trust) == ("pinned", "pinned")


async def test_messages_streams_and_datagrams_cross_intact(alice: Peer, bob: Peer) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    async with session_pair(alice, bob) as (ours, theirs):
        ours.send_message({"type": "hello", "n": 1})
        theirs.send_message({"type": "hello", "n": 2})
        async with asyncio.timeout(5):
            assert await theirs.next_message() == {"type": "hello", "n": 1}
            assert await ours.next_message() == {"type": "hello", "n": 2}

        stream_id = ours.open_stream()

        async def send() -> None:
            for start in range(0, len(payload), 100_000):
                await ours.write(stream_id, payload[start : start + 100_000])
            await ours.write(stream_id, b"", end=True)

        sender = asyncio.create_task(send())
        async with asyncio.timeout(20):
            incoming = await theirs.accept_stream()
            received = bytearray()
            while chunk := await incoming.read():
                received += chunk
            await sender
        assert bytes(received) == payload

        ours.send_datagram(b"audio-frame")
        async with asyncio.timeout(5):
            assert await theirs.receive_datagram() == b"audio-frame"


async def test_close_reason_reaches_the_peer(alice: Peer, bob: Peer) -> None:
    ours, theirs = await start_sessions(alice, bob)
    await ours.close("hung up")
    async with asyncio.timeout(5):
        reason = await theirs.wait_closed()
    assert "hung up" in reason
    assert theirs.is_closed
    with pytest.raises(SessionError):
        await theirs.next_message()
    await theirs.close()


async def test_a_changed_key_is_refused_on_the_answering_side(alice: Peer, bob: Peer, tmp_path: Path) -> None:
    async with session_pair(alice, bob):
        pass  # both pin each other
    impostor = Peer("alice", tmp_path / "elsewhere")  # "alice" with a new key
    with pytest.raises(SessionError) as raised:
        await start_sessions(impostor, bob)
    assert isinstance(raised.value, SessionRefused)
    pinned = bob.trust.get("alice")
    assert pinned is not None
    assert pinned.key == alice.identity.public_key_bytes  # the old key stays pinned
    assert pinned.pending == impostor.identity.public_key_bytes  # the new one waits for the user


async def test_answerer_says_why_dialler_sees_refusal(alice: Peer, bob: Peer, tmp_path: Path) -> None:
    async with session_pair(alice, bob):
        pass
    impostor = Peer("alice", tmp_path / "elsewhere")
    dialler, answerer = await linked_connections()
    results = await asyncio.gather(
        PeerSession.start(dialler, impostor.identity, impostor.trust),
        PeerSession.start(answerer, bob.identity, bob.trust),
        return_exceptions=True,
    )
    dialler_error, answerer_error = results
    assert isinstance(answerer_error, SessionRefused)
    assert isinstance(answerer_error.__cause__, KeyChanged)
    assert "alice's identity key has changed" in str(answerer_error)
    assert answerer_error.__cause__.safety_number in str(answerer_error)
    assert isinstance(dialler_error, SessionRefused)
    assert "bob refused the session" in str(dialler_error)
    # Once Bob accepts the new key, the same impostor-or-new-laptop gets in.
    assert bob.trust.accept_pending("alice") == impostor.identity.public_key_bytes
    async with session_pair(impostor, bob) as (_, theirs):
        assert theirs.peer is not None
        assert theirs.peer.trust == "pinned"


async def test_a_changed_key_is_refused_on_the_dialling_side(alice: Peer, bob: Peer, tmp_path: Path) -> None:
    async with session_pair(alice, bob):
        pass
    new_bob = Peer("bob", tmp_path / "elsewhere")
    with pytest.raises(SessionRefused):
        await start_sessions(alice, new_bob)
    pinned = alice.trust.get("bob")
    assert pinned is not None
    assert pinned.pending == new_bob.identity.public_key_bytes


async def test_a_key_other_than_the_registered_one_is_refused(alice: Peer, bob: Peer) -> None:
    dialler, answerer = await linked_connections()
    someone_else = DeviceIdentity.generate().public_key_bytes
    results = await asyncio.gather(
        PeerSession.start(dialler, alice.identity, alice.trust, expected_key=someone_else),
        PeerSession.start(answerer, bob.identity, bob.trust),
        return_exceptions=True,
    )
    assert isinstance(results[0], SessionRefused)
    assert "other than the one the server lists" in str(results[0])
    assert isinstance(results[1], SessionError)
    assert alice.trust.get("bob") is None  # nothing was pinned


async def test_a_peer_that_sends_no_repair_still_talks_to_one_that_does(alice: Peer, bob: Peer) -> None:
    dialler, answerer = await linked_connections()
    ours, theirs = await asyncio.gather(
        PeerSession.start(
            dialler, alice.identity, alice.trust, config=SessionConfig(repair=RepairConfig.OFF)
        ),
        PeerSession.start(answerer, bob.identity, bob.trust),
    )
    try:
        stream = ours.open_stream()
        payload = os.urandom(300_000)
        await ours.write(stream, payload, end=True)
        incoming = await theirs.accept_stream()
        received = b""
        while chunk := await asyncio.wait_for(incoming.read(), 10):
            received += chunk
        assert received == payload
    finally:
        await asyncio.gather(ours.close(linger=0.1), theirs.close(linger=0.1))


async def test_random_loss_on_the_path_is_repaired_under_quic(alice: Peer, bob: Peer) -> None:
    config = SessionConfig(repair=RepairConfig(report_interval=0.02))
    async with session_pair(alice, bob, config) as (ours, theirs):
        # The network drops 3 % of what alice sends (a fault on the wire, not in our code).
        link = ours.connection.link
        send = link.send
        rng = random.Random(5)
        link.send = lambda data: True if rng.random() < 0.03 else send(data)  # type: ignore[method-assign]
        stream = ours.open_stream()
        payload = os.urandom(4_000_000)
        await ours.write(stream, payload, end=True)
        incoming = await theirs.accept_stream()
        received = bytearray()
        while chunk := await asyncio.wait_for(incoming.read(), 10):
            received += chunk
        assert received == payload
        assert 0.015 < ours.repair_stats.peer_loss < 0.06
        assert theirs.repair_stats.repaired > 50
        assert theirs.repair_stats.given_up < theirs.repair_stats.repaired / 10
