"""The desktop app's core without Qt: two `PeerHub`s signed in to a real server (the demo's), on loopback.

Files offered, asked about, accepted into a chosen folder and resumed there; cancelled while asked; a send
to an offline contact waiting; a call placed, answered and hung up with WAV audio; the link state.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from app.embedded_server import Demo, DemoUser, start_demo
from app.peers import events as pe
from app.peers.hub import Event, PeerHub
from app.transfer import events as tev
from app.transfer.inbox import Inbox
from app.voice.audio_backend import FileAudio, call_media_for
from app.voice.call_signalling import CallEnded, CallRinging, CallStarted
from tests.helpers.poll import until
from tests.helpers.tone import pitch, segment, write_tone


@dataclass
class Side:
    """One user's hub and everything it said."""

    user: DemoUser
    hub: PeerHub
    audio: FileAudio
    events: list[Event] = field(default_factory=list)
    answers: asyncio.Queue[Path | str] = field(default_factory=asyncio.Queue)
    asked: list[tev.OfferReceived] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, check: Callable[[Event], bool], timeout: float = 15.0) -> Any:
        """The first event ``check`` accepts, once there is one."""
        return await until(lambda: next(filter(check, self.events), None), timeout, "the event")


def make_side(user: DemoUser, tmp: Path, hz: float) -> Side:
    mic = tmp / f"{user.client.username}.wav"
    write_tone(mic, hz, 8)
    audio = FileAudio(mic, tmp / f"{user.client.username}-heard")
    events: list[Event] = []
    answers: asyncio.Queue[Path | str] = asyncio.Queue()
    asked: list[tev.OfferReceived] = []

    async def ask(offer: tev.OfferReceived) -> Path | str:
        asked.append(offer)
        return await answers.get()

    hub = PeerHub(
        user.client,
        user.identity,
        user.config_dir,
        inbox=Inbox(user.downloads, accept_from=(), ask=ask),
        media=call_media_for(audio),
        on_event=events.append,
    )
    hub.start()
    return Side(user, hub, audio, events, answers, asked)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[Demo, Side, Side]]:
    running = await start_demo(tmp_path / "demo")
    alice = make_side(running.users[0], tmp_path, 440)
    bob = make_side(running.users[1], tmp_path, 1000)
    try:
        yield running, alice, bob
    finally:
        await asyncio.gather(alice.hub.close(), bob.hub.close())
        await running.close()


async def test_files_are_asked_about_saved_where_chosen_and_the_link_is_described(
    demo: tuple[Demo, Side, Side], tmp_path: Path
) -> None:
    _, alice, bob = demo
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.bin").write_bytes(os.urandom(300_000))
    (folder / "b.txt").write_text("hello")
    transfer = alice.hub.send_files("bob", [folder])
    queued = alice.of(pe.SendQueued)[0]
    assert (queued.transfer, queued.total, len(queued.files)) == (transfer, 300_005, 2)
    await bob.wait_for(lambda e: isinstance(e, tev.OfferReceived))
    assert [f.path for f in bob.asked[0].files] == ["photos/a.bin", "photos/b.txt"]
    chosen = tmp_path / "elsewhere"
    bob.answers.put_nowait(chosen)
    done = await alice.wait_for(lambda e: isinstance(e, tev.TransferFinished))
    assert (done.completed, done.failed) == (2, 0)
    await bob.wait_for(lambda e: isinstance(e, tev.TransferFinished))
    assert (chosen / "photos" / "a.bin").read_bytes() == (folder / "a.bin").read_bytes()
    state = alice.hub.state("bob")
    assert state.state == "connected"
    assert state.path is not None
    assert state.path.kind in ("lan", "direct")
    assert state.safety_number == bob.hub.state("alice").safety_number
    assert state.encryption is not None
    assert "encrypted" in state.encryption
    # The same files again: a new offer (the first finished), declined this time.
    alice.hub.send_files("bob", [folder])
    await bob.wait_for(lambda e: isinstance(e, tev.OfferReceived) and e.transfer != transfer)
    bob.answers.put_nowait("not now, thanks")
    declined = await alice.wait_for(lambda e: isinstance(e, tev.TransferDeclined))
    assert declined.reason == "not now, thanks"


async def test_a_cancelled_offer_withdraws_the_question(
    demo: tuple[Demo, Side, Side], tmp_path: Path
) -> None:
    _, alice, bob = demo
    (tmp_path / "x.bin").write_bytes(b"x" * 1000)
    transfer = alice.hub.send_files("bob", [tmp_path / "x.bin"])
    await bob.wait_for(lambda e: isinstance(e, tev.OfferReceived))
    await alice.hub.cancel(transfer)
    cancelled = await bob.wait_for(lambda e: isinstance(e, tev.TransferCancelled))
    assert (cancelled.by, cancelled.direction) == ("peer", "receive")
    assert not (bob.user.downloads / "x.bin").exists()


async def test_a_send_to_an_offline_contact_waits_for_them(
    demo: tuple[Demo, Side, Side], tmp_path: Path
) -> None:
    _, alice, bob = demo
    await bob.hub.close()
    await bob.user.client.close()
    (tmp_path / "x.bin").write_bytes(b"x" * 1000)
    alice.hub.send_files("bob", [tmp_path / "x.bin"])
    retrying = await alice.wait_for(lambda e: isinstance(e, pe.SendRetrying))
    assert retrying.reason == "bob is offline"
    assert alice.hub.state("bob").problem == "bob is offline"
    await alice.hub.cancel(retrying.transfer)  # the user gives up waiting
    cancelled = await alice.wait_for(lambda e: isinstance(e, tev.TransferCancelled))
    assert (cancelled.transfer, cancelled.by) == (retrying.transfer, "us")


async def test_a_call_rings_is_answered_carries_sound_and_is_hung_up(demo: tuple[Demo, Side, Side]) -> None:
    _, alice, bob = demo
    link = await alice.hub.call("bob")
    ringing = await bob.wait_for(lambda e: isinstance(e, pe.CallUpdate) and isinstance(e.event, CallRinging))
    await alice.wait_for(lambda e: isinstance(e, pe.CallUpdate) and isinstance(e.event, CallRinging))
    with pytest.raises(RuntimeError, match="Hang up"):
        await alice.hub.call("bob")
    ringing.link.accept()
    await alice.wait_for(lambda e: isinstance(e, pe.CallUpdate) and isinstance(e.event, CallStarted))
    await asyncio.sleep(2.5)
    assert link.media is not None
    assert link.media.stats().rtt_ms is not None
    link.hangup()
    ended = await bob.wait_for(lambda e: isinstance(e, pe.CallUpdate) and isinstance(e.event, CallEnded))
    assert ended.event.reason == "hung up"
    assert ended.event.by == "peer"
    await asyncio.sleep(0.3)
    heard = bob.audio.record_dir / "heard-1.wav"
    assert abs(pitch(segment(heard, 1.0, 2.0)) - 440) < 20
