"""The peer session: real QUIC over real `PeerLink`s on loopback, with both identities checked."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from app.account.identity import DeviceIdentity
from app.session.loss_repair import RepairConfig
from app.session.peer_session import PeerSession, SessionConfig, SessionError, SessionRefused
from app.session.trust import KeyChanged
from tests.helpers.sessions import Peer, linked_connections, session_pair, start_sessions


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
        loop = asyncio.get_running_loop()
        theirs_heard: asyncio.Future[dict[str, object]] = loop.create_future()
        ours_heard: asyncio.Future[dict[str, object]] = loop.create_future()
        theirs.set_message_receiver(frozenset({"hello"}), theirs_heard.set_result)  # routed by type
        ours.set_message_receiver("hel", ours_heard.set_result)  # or by a type's prefix
        ours.send_message({"type": "hello", "n": 1})
        theirs.send_message({"type": "hello", "n": 2})
        async with asyncio.timeout(5):
            assert await theirs_heard == {"type": "hello", "n": 1}
            assert await ours_heard == {"type": "hello", "n": 2}

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

        heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        theirs.set_datagram_receiver(0xA1, heard.set_result)  # routed by its first byte
        ours.send_datagram(b"\xa1audio-frame")
        async with asyncio.timeout(5):
            assert await heard == b"\xa1audio-frame"


async def test_a_message_sent_right_before_close_still_arrives(alice: Peer, bob: Peer) -> None:
    ours, theirs = await start_sessions(alice, bob)
    heard: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
    theirs.set_message_receiver(frozenset({"call-cancel"}), heard.set_result)
    ours.send_message({"type": "call-cancel", "call": "c1"})  # Ctrl-C while ringing: cancel, then close
    await ours.close("call ended")
    async with asyncio.timeout(5):
        assert await heard == {"type": "call-cancel", "call": "c1"}


async def test_close_reason_reaches_the_peer(alice: Peer, bob: Peer) -> None:
    ours, theirs = await start_sessions(alice, bob)
    await ours.close("hung up")
    async with asyncio.timeout(5):
        reason = await theirs.wait_closed()
    assert "hung up" in reason
    assert theirs.is_closed
    with pytest.raises(SessionError):
        theirs.send_message({"type": "hello"})
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


async def test_an_idle_session_between_two_apps_that_are_up_stays_open(alice: Peer, bob: Peer) -> None:
    # Nothing to say for several idle timeouts (a ringing call, an open contact): keepalives hold it open.
    config = SessionConfig(idle_timeout=2.0)
    async with session_pair(alice, bob, config) as (ours, theirs):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ours.wait_closed()), 7.0)
        assert not ours.is_closed
        assert not theirs.is_closed
        heard: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        ours.set_message_receiver(frozenset({"still-there"}), heard.set_result)
        theirs.send_message({"type": "still-there"})
        async with asyncio.timeout(5):
            assert await heard == {"type": "still-there"}


async def test_without_keepalives_an_idle_session_expires(alice: Peer, bob: Peer) -> None:
    # What the keepalives prevent: QUIC's idle timeout ends a silent session.
    config = SessionConfig(idle_timeout=1.0, keepalive=False)
    ours, theirs = await start_sessions(alice, bob, config)
    async with asyncio.timeout(5):
        reason = await ours.wait_closed()
    assert reason == "no packets from bob for 1 s"
    await asyncio.gather(ours.close(), theirs.close())


async def test_a_session_whose_peer_vanished_ends_within_the_idle_timeout(alice: Peer, bob: Peer) -> None:
    config = SessionConfig(idle_timeout=2.0)
    ours, theirs = await start_sessions(alice, bob, config)
    loop = asyncio.get_running_loop()
    vanished = loop.time()
    theirs.connection.close()  # bob's socket is gone: nothing of his arrives any more, our pings are lost
    async with asyncio.timeout(8):
        reason = await ours.wait_closed()
    # The idle timer restarts once for our first keepalive after bob's last packet (RFC 9000 §10.1).
    assert loop.time() - vanished < 2.0 + 2.0 / 3 + 1.0
    assert reason == "no packets from bob for 2 s"
    with pytest.raises(SessionError, match="no packets from bob"):
        ours.send_message({"type": "anyone?"})
    await asyncio.gather(ours.close(), theirs.close())
