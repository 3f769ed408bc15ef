"""Calls end to end on loopback: signalling over real QUIC sessions, audio from WAV files, busy, transfers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from app.session.peer_session import PeerSession, SessionConfig
from app.transfer.endpoint import TransferEndpoint
from app.transfer.inbox import Inbox
from app.transfer.outbox import collect_files
from app.voice.audio_io import WavMicrophone, WavSpeaker
from app.voice.call import CallDesk, CallLink
from app.voice.call_media import CallMedia
from app.voice.call_messages import CALL_MESSAGES
from app.voice.call_signalling import CallEnded, CallEvent, CallRinging, CallSignalling, CallStarted
from tests.helpers.sessions import Peer, session_pair, start_sessions
from tests.helpers.tone import pitch, segment, write_tone


class Recorder:
    """Media from WAV files, and every call event kept."""

    def __init__(self, folder: Path, name: str, hz: float) -> None:
        self.mic = folder / f"{name}.wav"
        self.record = folder / f"{name}-hears.wav"
        write_tone(self.mic, hz, 6)
        self.speakers: list[WavSpeaker] = []
        self.events: list[CallEvent] = []
        self.rang = asyncio.Event()
        self.started = asyncio.Event()
        self.ended = asyncio.Event()

    def media(self, session: PeerSession) -> CallMedia:
        speaker = WavSpeaker(self.record)
        self.speakers.append(speaker)
        return CallMedia(session, WavMicrophone(self.mic), speaker)

    def event(self, _link: CallLink, event: CallEvent) -> None:
        self.events.append(event)
        if isinstance(event, CallRinging):
            self.rang.set()
        elif isinstance(event, CallStarted):
            self.started.set()
        elif isinstance(event, CallEnded):
            self.ended.set()

    def close(self) -> None:
        for speaker in self.speakers:
            speaker.close()


def dial(session: PeerSession, recorder: Recorder) -> CallLink:
    loop = asyncio.get_running_loop()
    link = CallLink(session, CallSignalling.start("bob", loop.time()), recorder.media, recorder.event)
    session.set_message_receiver(CALL_MESSAGES.types, lambda raw: link.receive(CALL_MESSAGES.decode(raw)))
    return link


async def test_a_call_is_answered_carries_audio_and_is_hung_up(tmp_path: Path) -> None:
    alice, bob = Recorder(tmp_path, "alice", 440), Recorder(tmp_path, "bob", 1000)
    async with session_pair(Peer("alice", tmp_path), Peer("bob", tmp_path)) as (ours, theirs):
        CallDesk(bob.media, bob.event, answer=True).attach(theirs)
        link = dial(ours, alice)
        calling = asyncio.create_task(link.run())
        await asyncio.sleep(2.0)
        link.hangup()
        ended = await asyncio.wait_for(calling, 5)
        await asyncio.sleep(0.2)
    alice.close()
    bob.close()
    assert ended.text == "You hung up."
    assert [type(e).__name__ for e in alice.events] == ["CallRinging", "CallStarted", "CallEnded"]
    assert isinstance(bob.events[-1], CallEnded)
    assert bob.events[-1].text == "alice hung up."
    assert 950 < pitch(segment(alice.record, 0.6, 1.6)) < 1050
    assert 420 < pitch(segment(bob.record, 0.6, 1.6)) < 460


async def test_a_second_caller_hears_busy(tmp_path: Path) -> None:
    alice, bob, carol = (
        Recorder(tmp_path, n, hz) for n, hz in (("alice", 440), ("bob", 1000), ("carol", 600))
    )
    # Carol's session with Bob has keys of its own (the in-memory link names every dialler "alice").
    peers = Peer("alice", tmp_path), Peer("bob", tmp_path), Peer("carol", tmp_path / "2")
    async with session_pair(peers[0], peers[1]) as (ours, theirs):
        desk = CallDesk(bob.media, bob.event, answer=True)
        desk.attach(theirs)
        first = dial(ours, alice)
        first_call = asyncio.create_task(first.run())
        await asyncio.wait_for(alice.started.wait(), 5)
        carols, bobs = await start_sessions(peers[2], Peer("bob", tmp_path / "2"))
        try:
            desk.attach(bobs)
            second = dial(carols, carol)
            ended = await asyncio.wait_for(second.run(), 5)
            assert ended.text == "bob is in another call."
        finally:
            await asyncio.gather(carols.close(linger=0.1), bobs.close(linger=0.1))
        first.hangup()
        await first_call
    for recorder in (alice, bob, carol):
        recorder.close()


async def test_a_call_and_a_file_transfer_share_one_session(tmp_path: Path) -> None:
    alice, bob = Recorder(tmp_path, "alice", 440), Recorder(tmp_path, "bob", 1000)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(40 * 1024 * 1024))
    async with session_pair(Peer("alice", tmp_path), Peer("bob", tmp_path)) as (ours, theirs):
        CallDesk(bob.media, bob.event, answer=True).attach(theirs)
        receiving = TransferEndpoint(theirs, inbox=Inbox(tmp_path / "downloads"), on_event=lambda e: None)
        sending = TransferEndpoint(ours, on_event=lambda e: None)
        runners = [asyncio.create_task(receiving.run()), asyncio.create_task(sending.run())]
        link = dial(ours, alice)
        calling = asyncio.create_task(link.run())
        await asyncio.wait_for(alice.started.wait(), 5)
        assert link.media is not None
        finished = await asyncio.wait_for(sending.send("c" * 32, collect_files([source])), 60)
        await asyncio.sleep(0.5)
        stats = link.media.stats()
        link.hangup()
        await calling
        for runner in runners:
            runner.cancel()
    alice.close()
    bob.close()
    assert finished.completed == 1
    assert (tmp_path / "downloads" / "big.bin").read_bytes() == source.read_bytes()
    assert 950 < pitch(segment(alice.record, 0.6, 1.6)) < 1050  # the call went on during the transfer
    assert stats.concealed < 10


def ringing_desk(recorder: Recorder, session: PeerSession) -> CallDesk:
    """Bob's phone line on ``session``, ringing until someone ends the call (nobody answers)."""
    desk = CallDesk(recorder.media, recorder.event, answer=False)
    desk.attach(session)
    return desk


async def test_a_call_nobody_answers_rings_on_an_idle_session_until_no_answer(tmp_path: Path) -> None:
    # The session's idle timeout is a third of the ringing time: keepalives, not the call, hold it open.
    alice, bob = Recorder(tmp_path, "alice", 440), Recorder(tmp_path, "bob", 1000)
    config = SessionConfig(idle_timeout=2.0)
    async with session_pair(Peer("alice", tmp_path), Peer("bob", tmp_path), config) as (ours, theirs):
        desk = ringing_desk(bob, theirs)
        loop = asyncio.get_running_loop()
        machine = CallSignalling.start("bob", loop.time(), no_answer_after=6.0)
        link = CallLink(ours, machine, alice.media, alice.event)
        ours.set_message_receiver(CALL_MESSAGES.types, lambda raw: link.receive(CALL_MESSAGES.decode(raw)))
        started = loop.time()
        ended = await asyncio.wait_for(link.run(), 10)
        assert loop.time() - started >= 6.0
        await asyncio.wait_for(bob.ended.wait(), 5)
        assert desk.current is None
        assert not ours.is_closed
        assert not theirs.is_closed
    assert (ended.reason, ended.text, ended.missed) == ("no answer", "bob did not answer.", False)
    assert isinstance(bob.events[0], CallRinging)
    missed = bob.events[-1]
    assert isinstance(missed, CallEnded)
    assert (missed.reason, missed.text, missed.missed) == ("no answer", "You missed a call from alice.", True)


async def test_the_caller_cancelling_stops_the_ringing_as_a_missed_call(tmp_path: Path) -> None:
    alice, bob = Recorder(tmp_path, "alice", 440), Recorder(tmp_path, "bob", 1000)
    async with session_pair(Peer("alice", tmp_path), Peer("bob", tmp_path)) as (ours, theirs):
        desk = ringing_desk(bob, theirs)
        link = dial(ours, alice)
        calling = asyncio.create_task(link.run())
        await asyncio.wait_for(alice.rang.wait(), 5)  # bob's phone rings
        ringing = desk.current
        link.hangup()
        ended = await asyncio.wait_for(calling, 5)
        await asyncio.wait_for(bob.ended.wait(), 5)
    assert ringing is not None
    assert desk.current is None
    assert ended.text == "You cancelled the call."
    missed = bob.events[-1]
    assert isinstance(missed, CallEnded)
    assert (missed.text, missed.missed) == ("alice cancelled the call.", True)


async def test_the_session_ending_while_it_rings_is_a_missed_call(tmp_path: Path) -> None:
    alice, bob = Recorder(tmp_path, "alice", 440), Recorder(tmp_path, "bob", 1000)
    ours, theirs = await start_sessions(Peer("alice", tmp_path), Peer("bob", tmp_path))
    try:
        desk = ringing_desk(bob, theirs)
        link = dial(ours, alice)
        calling = asyncio.create_task(link.run())
        await asyncio.wait_for(alice.rang.wait(), 5)  # bob's phone rings
        await ours.close("signed out")  # alice's app quits without cancelling first
        ended = await asyncio.wait_for(calling, 5)
        await asyncio.wait_for(bob.ended.wait(), 5)
        assert desk.current is None
    finally:
        await asyncio.gather(ours.close(linger=0.1), theirs.close(linger=0.1))
    assert ended.reason == "closed"
    missed = bob.events[-1]
    assert isinstance(missed, CallEnded)
    assert (missed.reason, missed.missed) == ("closed", True)
    assert missed.text == "You missed a call from alice: the session ended."
