"""File transfer over real QUIC sessions on loopback: folders, resume, damage, refusals and cancels."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

from app.session.peer_session import PeerSession, SessionConfig, SessionError
from app.transfer import events as ev
from app.transfer.endpoint import TransferEndpoint, TransferRefused
from app.transfer.inbox import FINISHED_RETENTION, STATE_FOLDER, Inbox
from app.transfer.outbox import OutgoingTransfers, collect_files
from app.transfer.protocol import encode_header
from tests.helpers.files import tree_digest
from tests.helpers.poll import until
from tests.helpers.sessions import Peer, start_sessions

E = TypeVar("E")


class Side:
    """One session's endpoint with its events recorded and its dispatcher running."""

    def __init__(self, session: PeerSession, inbox: Inbox | None = None) -> None:
        self.session = session
        self.events: list[ev.TransferEvent] = []
        self.endpoint = TransferEndpoint(session, inbox=inbox, on_event=self.events.append)
        self.runner = asyncio.create_task(self.endpoint.run())

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def stop(self) -> None:
        await self.session.close(linger=0.1)
        async with asyncio.timeout(5):
            await self.runner


@pytest.fixture
def peers(tmp_path: Path) -> tuple[Peer, Peer]:
    return Peer("alice", tmp_path / "keys"), Peer("bob", tmp_path / "keys")


async def connect(peers: tuple[Peer, Peer], inbox: Inbox) -> tuple[Side, Side]:
    ours, theirs = await start_sessions(*peers)
    return Side(ours), Side(theirs, inbox)


@pytest.fixture
async def pair(peers: tuple[Peer, Peer], tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    sender, receiver = await connect(peers, Inbox(tmp_path / "downloads"))
    yield sender, receiver
    await asyncio.gather(sender.stop(), receiver.stop())


def make_tree(root: Path) -> Path:
    folder = root / "photos"
    (folder / "2024" / "summer").mkdir(parents=True)
    (folder / "2024" / "summer" / "beach.jpg").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (folder / "2024" / "notes.txt").write_text("sunny\n")
    (folder / "empty.dat").write_bytes(b"")
    (folder / "ünïcødé name.txt").write_text("names survive\n")
    return folder


async def test_a_folder_arrives_byte_identical(pair: tuple[Side, Side], tmp_path: Path) -> None:
    sender, receiver = pair
    folder = make_tree(tmp_path / "source")
    files = collect_files([folder])
    async with asyncio.timeout(30):
        finished = await sender.endpoint.send("a" * 32, files)
    assert (finished.completed, finished.failed) == (4, 0)
    downloads = tmp_path / "downloads"
    await until(lambda: bool(receiver.of(ev.TransferFinished)), 2)
    assert tree_digest(downloads / "photos") == tree_digest(folder)
    assert not list((downloads / STATE_FOLDER).rglob("*.part"))  # only the finished record stays
    received = {e.path: e for e in receiver.of(ev.FileCompleted)}
    sent = {e.path: e for e in sender.of(ev.FileCompleted)}
    assert set(received) == set(sent) == {f.name for f in files}
    for name, event in received.items():
        assert event.saved_as is not None
        assert event.sha256 == sent[name].sha256 == hashlib.sha256(event.saved_as.read_bytes()).hexdigest()
    assert receiver.of(ev.TransferFinished)
    progress = sender.of(ev.TransferProgress)
    assert progress
    assert progress[-1].bytes_done == progress[-1].total == sum(f.size for f in files)


async def test_existing_files_are_never_overwritten(pair: tuple[Side, Side], tmp_path: Path) -> None:
    sender, _ = pair
    downloads = tmp_path / "downloads"
    (downloads / "photos").mkdir(parents=True)
    (downloads / "report.pdf").write_text("mine")
    source = tmp_path / "source"
    folder = make_tree(source)
    (source / "report.pdf").write_text("theirs")
    async with asyncio.timeout(30):
        await sender.endpoint.send("b" * 32, collect_files([folder, source / "report.pdf"]))
    assert (downloads / "report.pdf").read_text() == "mine"
    assert (downloads / "report (2).pdf").read_text() == "theirs"
    assert tree_digest(downloads / "photos (2)") == tree_digest(folder)
    assert list((downloads / "photos").iterdir()) == []


async def test_offers_from_others_are_declined(peers: tuple[Peer, Peer], tmp_path: Path) -> None:
    sender, receiver = await connect(peers, Inbox(tmp_path / "downloads", accept_from={"carol"}))
    try:
        (tmp_path / "a.txt").write_text("x")
        with pytest.raises(TransferRefused, match="not accepting files from alice"):
            await sender.endpoint.send("c" * 32, collect_files([tmp_path / "a.txt"]))
        assert receiver.of(ev.TransferDeclined)
    finally:
        await asyncio.gather(sender.stop(), receiver.stop())


async def test_an_offer_bigger_than_the_free_space_is_declined(pair: tuple[Side, Side]) -> None:
    sender, receiver = pair
    sender.session.send_message(
        {"type": "offer", "transfer": "d" * 32, "files": [{"index": 0, "path": "big.iso", "size": 1 << 43}]}
    )
    await until(lambda: bool(receiver.of(ev.TransferDeclined)), 5)
    assert "not enough free disk space" in receiver.of(ev.TransferDeclined)[0].reason


async def test_a_corrupted_chunk_is_detected_and_nothing_is_saved(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    sender, receiver = pair
    transfer = "e" * 32
    payload = os.urandom(200_000)
    sender.session.send_message(
        {
            "type": "offer",
            "transfer": transfer,
            "files": [{"index": 0, "path": "data.bin", "size": len(payload)}],
        }
    )
    await until(lambda: bool(receiver.of(ev.TransferAccepted)), 5)
    damaged = bytearray(payload)
    damaged[100_000] ^= 0x01  # one flipped bit in the middle
    stream = sender.session.open_stream()
    await sender.session.write(stream, encode_header(transfer, 0, 0) + bytes(damaged))
    await sender.session.write(stream, hashlib.sha256(payload).digest(), end=True)
    await until(lambda: bool(receiver.of(ev.FileFailed)), 5)
    failure = receiver.of(ev.FileFailed)[0]
    assert "content hash mismatch" in failure.reason
    downloads = tmp_path / "downloads"
    assert not (downloads / "data.bin").exists()
    assert not list(downloads.rglob("*.part"))


async def test_a_failed_file_does_not_stop_the_others(pair: tuple[Side, Side], tmp_path: Path) -> None:
    sender, _ = pair
    source = tmp_path / "source"
    folder = make_tree(source)
    files = collect_files([folder])
    (folder / "2024" / "notes.txt").unlink()  # gone between listing and sending
    async with asyncio.timeout(30):
        finished = await sender.endpoint.send("f" * 32, files)
    assert (finished.completed, finished.failed) == (3, 1)
    failed = sender.of(ev.FileFailed)
    assert [e.path for e in failed] == ["photos/2024/notes.txt"]
    downloads = tmp_path / "downloads"
    assert (downloads / "photos" / "2024" / "summer" / "beach.jpg").read_bytes() == (
        folder / "2024" / "summer" / "beach.jpg"
    ).read_bytes()
    assert not (downloads / "photos" / "2024" / "notes.txt").exists()


async def test_hostile_names_stay_inside_the_download_folder(pair: tuple[Side, Side], tmp_path: Path) -> None:
    sender, receiver = pair
    names = [
        "../escape.txt",
        "/etc/passwd",
        "C:\\Windows\\x.txt",
        "ok/../../up.txt",
        "NUL",
        "a\u202etxt.exe",
        "fine.txt",
    ]
    transfer = "0" * 32
    sender.session.send_message(
        {
            "type": "offer",
            "transfer": transfer,
            "files": [{"index": i, "path": n, "size": 4} for i, n in enumerate(names)],
        }
    )
    await until(lambda: bool(receiver.of(ev.TransferAccepted)), 5)
    offer = receiver.of(ev.OfferReceived)[0]
    refused = {name for name, _ in offer.refused}
    assert refused == {"../escape.txt", "/etc/passwd", "C:\\Windows\\x.txt", "ok/../../up.txt"}
    for entry in offer.files:
        stream = sender.session.open_stream()
        await sender.session.write(stream, encode_header(transfer, entry.index, 0) + b"data")
        await sender.session.write(stream, hashlib.sha256(b"data").digest(), end=True)
    await until(lambda: bool(receiver.of(ev.TransferFinished)), 5)
    downloads = tmp_path / "downloads"
    saved = sorted(p.relative_to(downloads).as_posix() for p in downloads.rglob("*") if p.is_file())
    assert [p for p in saved if not p.startswith(STATE_FOLDER)] == sorted(["_NUL", "a_txt.exe", "fine.txt"])
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "up.txt").exists()


async def interrupted_transfer(
    peers: tuple[Peer, Peer], tmp_path: Path, transfer: str, inbox: Inbox | None = None
) -> tuple[Path, int]:
    """Start sending a 40 MB file, cut the session abruptly after 12 MB arrived; the source and that count."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(40 * 1024 * 1024))
    inbox = inbox or Inbox(tmp_path / "downloads")
    ours, theirs = await start_sessions(*peers, config=SessionConfig(idle_timeout=1.0))
    sender, receiver = Side(ours), Side(theirs, inbox)
    sending = asyncio.create_task(sender.endpoint.send(transfer, collect_files([source])))
    await until(
        lambda: bool(any(e.bytes_done > 12 * 1024 * 1024 for e in receiver.of(ev.TransferProgress))), 20
    )
    ours.connection.close()  # the path dies: no goodbye reaches the receiver
    with pytest.raises(SessionError):
        await sending
    async with asyncio.timeout(10):
        await receiver.runner
    assert receiver.of(ev.TransferInterrupted)
    await asyncio.gather(ours.close(linger=0), theirs.close(linger=0))
    return source, max(e.bytes_done for e in receiver.of(ev.TransferProgress))


async def resume(
    peers: tuple[Peer, Peer], tmp_path: Path, source: Path, transfer: str, inbox: Inbox | None = None
) -> tuple[Side, Side]:
    sender, receiver = await connect(
        peers, inbox or Inbox(tmp_path / "downloads")
    )  # a new session, a new inbox object
    async with asyncio.timeout(30):
        await sender.endpoint.send(transfer, collect_files([source]))
    await asyncio.gather(sender.stop(), receiver.stop())
    return sender, receiver


async def test_a_dropped_session_resumes_from_the_verified_offset(
    peers: tuple[Peer, Peer], tmp_path: Path
) -> None:
    transfer = "1" * 32
    source, _ = await interrupted_transfer(peers, tmp_path, transfer)
    sender, receiver = await resume(peers, tmp_path, source, transfer)
    accepted = sender.of(ev.TransferAccepted)[0]
    assert accepted.resume_bytes >= 12 * 1024 * 1024
    finished = sender.of(ev.TransferFinished)[0]
    assert finished.bytes_sent == source.stat().st_size - accepted.resume_bytes
    assert (tmp_path / "downloads" / "big.bin").read_bytes() == source.read_bytes()
    assert receiver.of(ev.OfferReceived)[0].resumed
    assert not list((tmp_path / "downloads" / STATE_FOLDER).rglob("*.part"))


async def test_a_damaged_partial_file_is_sent_again_from_the_start(
    peers: tuple[Peer, Peer], tmp_path: Path
) -> None:
    transfer = "2" * 32
    source, _ = await interrupted_transfer(peers, tmp_path, transfer)
    partial = next((tmp_path / "downloads" / STATE_FOLDER).rglob("*.part"))
    with partial.open("r+b") as file:  # one byte changed on disk while nobody was looking
        file.seek(1000)
        byte = file.read(1)
        file.seek(1000)
        file.write(bytes([byte[0] ^ 0xFF]))
    sender, _ = await resume(peers, tmp_path, source, transfer)
    assert sender.of(ev.TransferFinished)[0].bytes_sent == source.stat().st_size
    assert (tmp_path / "downloads" / "big.bin").read_bytes() == source.read_bytes()


async def test_a_transfer_the_user_accepted_resumes_where_they_chose_without_asking_again(
    peers: tuple[Peer, Peer], tmp_path: Path
) -> None:
    transfer = "4" * 32
    chosen = tmp_path / "elsewhere"
    questions: list[ev.OfferReceived] = []

    async def ask(offer: ev.OfferReceived) -> Path | str:
        questions.append(offer)
        return chosen

    def inbox() -> Inbox:  # each session's app start: a new inbox object over the same folder
        return Inbox(tmp_path / "downloads", accept_from=(), ask=ask)

    source, _ = await interrupted_transfer(peers, tmp_path, transfer, inbox())
    assert len(questions) == 1
    sender, receiver = await resume(peers, tmp_path, source, transfer, inbox())
    assert len(questions) == 1  # accepted before: not asked a second time
    assert receiver.of(ev.OfferReceived)[0].resumed
    assert sender.of(ev.TransferAccepted)[0].resume_bytes >= 12 * 1024 * 1024
    assert (chosen / "big.bin").read_bytes() == source.read_bytes()


async def test_an_offer_never_accepted_is_asked_about_again(peers: tuple[Peer, Peer], tmp_path: Path) -> None:
    questions: list[ev.OfferReceived] = []
    answers: asyncio.Queue[Path | str] = asyncio.Queue()

    async def ask(offer: ev.OfferReceived) -> Path | str:
        questions.append(offer)
        return await answers.get()

    sender, receiver = await connect(peers, Inbox(tmp_path / "downloads", accept_from=(), ask=ask))
    try:
        (tmp_path / "a.txt").write_text("hello")
        files = collect_files([tmp_path / "a.txt"])
        transfer = "5" * 32
        sending = asyncio.create_task(sender.endpoint.send(transfer, files))
        await until(lambda: len(questions) == 1, 5)
        await sender.endpoint.cancel(transfer, "wrong file")  # the question is withdrawn
        with pytest.raises(TransferRefused, match="wrong file"):
            await sending
        await until(lambda: bool(receiver.of(ev.TransferCancelled)), 5)
        sending = asyncio.create_task(sender.endpoint.send(transfer, files))
        await until(lambda: len(questions) == 2, 5)  # the same transfer: asked again
        assert not questions[1].resumed
        answers.put_nowait("no, thanks")
        with pytest.raises(TransferRefused, match="no, thanks"):
            await sending
        sending = asyncio.create_task(sender.endpoint.send(transfer, files))
        await until(lambda: len(questions) == 3, 5)  # declined is not accepted either
        answers.put_nowait(tmp_path / "downloads")
        async with asyncio.timeout(10):
            finished = await sending
        assert finished.completed == 1
        assert (tmp_path / "downloads" / "a.txt").read_text() == "hello"
    finally:
        await asyncio.gather(sender.stop(), receiver.stop())


async def test_a_control_message_no_layer_reads_is_dropped_and_the_session_goes_on(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    sender, receiver = pair
    sender.session.send_message({"type": "from-a-newer-version", "transfer": "a" * 32})
    (tmp_path / "a.txt").write_text("still fine")
    async with asyncio.timeout(10):
        finished = await sender.endpoint.send("6" * 32, collect_files([tmp_path / "a.txt"]))
    assert finished.completed == 1
    assert not receiver.session.is_closed


async def test_cancel_by_the_receiver_stops_the_sender_and_deletes_the_partial(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    sender, receiver = pair
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(40 * 1024 * 1024))
    transfer = "3" * 32
    sending = asyncio.create_task(sender.endpoint.send(transfer, collect_files([source])))
    await until(lambda: bool(receiver.of(ev.TransferProgress)), 20)
    await receiver.endpoint.cancel(transfer, "changed my mind")
    with pytest.raises(TransferRefused, match="changed my mind"):
        async with asyncio.timeout(10):
            await sending
    assert sender.of(ev.TransferCancelled)[0].by == "peer"
    await until(lambda: not (tmp_path / "downloads" / STATE_FOLDER).exists(), 2)
    assert not (tmp_path / "downloads" / "big.bin").exists()


async def test_a_finished_transfer_offered_again_is_not_received_twice(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    # The sender's connection dropped after the last file was saved but before it heard so: it offers again.
    sender, receiver = pair
    folder = make_tree(tmp_path / "source")
    files = collect_files([folder])
    async with asyncio.timeout(30):
        await sender.endpoint.send("9" * 32, files)
        again = await sender.endpoint.send("9" * 32, files)
    assert (again.completed, again.failed, again.bytes_sent) == (4, 0, 0)
    downloads = tmp_path / "downloads"
    assert sorted(p.name for p in downloads.iterdir()) == [STATE_FOLDER, "photos"]
    await until(lambda: len(receiver.of(ev.TransferFinished)) == 2, 2)
    assert receiver.of(ev.OfferReceived)[1].resumed


def test_finished_records_are_pruned_after_a_week_and_unfinished_ones_kept(tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    for transfer, status in (("old-done", "done"), ("old-partial", "partial"), ("new-done", "failed")):
        state = downloads / STATE_FOLDER / transfer / "state.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"files": {"0": {"status": status}}}))
        if transfer.startswith("old"):
            week_ago = time.time() - FINISHED_RETENTION - 60
            os.utime(state, (week_ago, week_ago))
    Inbox(downloads)
    assert sorted(p.name for p in (downloads / STATE_FOLDER).iterdir()) == ["new-done", "old-partial"]


def test_sending_the_same_files_again_reuses_the_transfer_id(tmp_path: Path) -> None:
    store = OutgoingTransfers(tmp_path / "config")
    (tmp_path / "a.txt").write_text("a")
    files = collect_files([tmp_path / "a.txt"])
    first, resumed = store.transfer_id("bob", files)
    assert not resumed
    assert store.transfer_id("bob", files) == (first, True)
    assert store.transfer_id("carol", files)[0] != first
    (tmp_path / "a.txt").write_text("changed")
    assert store.transfer_id("bob", collect_files([tmp_path / "a.txt"]))[0] != first
    store.finished("bob", files)
    assert store.transfer_id("bob", files)[0] != first


@pytest.mark.parametrize(
    "offer",
    [
        {"type": "offer", "transfer": "not-hex"},
        {"type": "offer", "transfer": "a" * 32, "files": []},
        {"type": "offer", "transfer": "a" * 32, "files": [{"index": 0, "path": "x", "size": -1}]},
        {"type": "offer", "transfer": "a" * 32, "files": [{"index": 0, "path": 7, "size": 1}]},
        {"type": "offer", "transfer": "a" * 32, "files": [{"index": 0, "path": "x", "size": 1}] * 2},
    ],
    ids=["bad-id", "no-files", "negative-size", "name-not-text", "repeated-index"],
)
async def test_a_malformed_offer_ends_the_session_with_a_reason(
    pair: tuple[Side, Side], offer: dict[str, object]
) -> None:
    sender, receiver = pair
    sender.session.send_message(offer)
    async with asyncio.timeout(5):
        reason = await sender.session.wait_closed()
    assert "protocol error" in reason
    assert not receiver.of(ev.TransferAccepted)
