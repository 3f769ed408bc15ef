"""File transfer on one peer session, both directions: the asyncio side of `app.transfer.protocol`.

`TransferEndpoint.run` reads the session's control messages and data streams until the session ends;
`send` offers files and streams them; an `Inbox` (optional) receives. Progress and outcomes come out as
`app.transfer.events` through ``on_event``. When the session ends mid-transfer, both sides keep what they
have (the receiver flushes and records its offsets) and report `TransferInterrupted`; sending the same
files again on a new session resumes (`app.transfer.outbox`).

File reads and writes run on the event loop thread in chunks of `CHUNK` bytes (page-cache speed); the
fsyncs that make an offset durable run in a worker thread every `CHECKPOINT` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.errors import FinalError
from app.session.peer_session import IncomingStream, PeerSession, SessionError, StreamAborted
from app.transfer import events as ev
from app.transfer.inbox import AskUser, Inbox, IncomingTransfer
from app.transfer.outbox import SourceFile
from app.transfer.progress import RateMeter
from app.transfer.protocol import (
    HEADER_SIZE,
    IncomingFile,
    ResumePoint,
    TransferProtocolError,
    decode_header,
    encode_header,
    file_index,
    offer_message,
    parse_accept,
    parse_offer,
    transfer_id,
)

log = logging.getLogger("punchline.transfer")

CHUNK = 256 * 1024
#: The receiver makes its offset durable (fsync, then state.json) after this many bytes or seconds,
#: whichever comes first: a killed receiver resumes from at most a second before it died.
CHECKPOINT = 16 * 1024 * 1024
CHECKPOINT_SECONDS = 1.0
_STOP_FILE = 1  # stream reset code: the sender stopped this file (read error, cancel)


class TransferRefused(FinalError):
    """The receiver declined the offer, or either side cancelled; the message is their reason."""


@dataclass
class _Outgoing:
    """A transfer we send: replies from the receiver arrive here."""

    transfer: str
    files: list[SourceFile]
    reply: asyncio.Future[dict[str, Any]]
    results: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    cancelled: str | None = None
    stream: int | None = None

    def stopped(self) -> bool:
        """Cancelled by either side (checked after every wait: it changes while we wait)."""
        return self.cancelled is not None


@dataclass
class _Receiving:
    """A transfer we receive: its disk state, and the resume hashes computed at accept."""

    state: IncomingTransfer
    prefix_hashes: dict[int, Any]
    meter: RateMeter
    started: float
    moved: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    dropped: bool = False  # cancelled: its files are deleted, not checkpointed


class TransferEndpoint:
    """Sends and receives files on ``session``; see the module docstring."""

    def __init__(
        self,
        session: PeerSession,
        *,
        inbox: Inbox | None = None,
        on_event: Callable[[ev.TransferEvent], None] = lambda event: None,
    ) -> None:
        self._session = session
        self._peer = session.connection.peer
        self._inbox = inbox
        self._emit = on_event
        self._loop = asyncio.get_running_loop()
        self._outgoing: dict[str, _Outgoing] = {}
        self._receiving: dict[str, _Receiving] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._asking: dict[str, asyncio.Future[Path | str]] = {}

    # --- the dispatcher -------------------------------------------------------------------------------

    async def run(self) -> str:
        """Serve the session until it ends; returns why it ended."""
        streams = asyncio.create_task(self._accept_streams())
        try:
            while True:
                try:
                    message = await self._session.next_message()
                except SessionError:
                    break
                try:
                    self._dispatch(message)
                except TransferProtocolError as exc:
                    log.warning("transfer protocol error from %s: %s", self._peer, exc)
                    await self._session.close(f"file transfer protocol error: {exc}")
                    break
        finally:
            streams.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(streams, *self._tasks, return_exceptions=True)
            reason = await self._session.wait_closed() if self._session.is_closed else "stopped"
            self._interrupted(reason)
        return reason

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "offer":
            self._spawn(self._answer_offer(message))
        elif kind in ("accept", "decline"):
            outgoing = self._outgoing.get(transfer_id(message))
            if outgoing is not None and not outgoing.reply.done():
                outgoing.reply.set_result(message)
        elif kind == "file-result":
            outgoing = self._outgoing.get(transfer_id(message))
            if outgoing is not None:
                future = outgoing.results.get(file_index(message))
                if future is not None and not future.done():
                    future.set_result(message)
        elif kind == "file-failed":
            self._on_file_failed(transfer_id(message), file_index(message), str(message.get("reason"))[:500])
        elif kind == "cancel":
            self._on_cancel(transfer_id(message), str(message.get("reason") or "cancelled")[:500])
        # Unknown types belong to other layers (calls) or newer versions: ignored.

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sending --------------------------------------------------------------------------------------

    async def send(self, transfer: str, files: list[SourceFile]) -> ev.TransferFinished:
        """Offer ``files`` and send what the receiver wants; raise `TransferRefused` or `SessionError`."""
        outgoing = _Outgoing(transfer, files, self._loop.create_future())
        self._outgoing[transfer] = outgoing
        try:
            return await self._send(outgoing)
        finally:
            del self._outgoing[transfer]

    async def _send(self, outgoing: _Outgoing) -> ev.TransferFinished:
        transfer, files = outgoing.transfer, outgoing.files
        entries = tuple(ev.FileEntry(i, f.name, f.size) for i, f in enumerate(files))
        total = sum(f.size for f in files)
        self._session.send_message(offer_message(transfer, [(f.name, f.size) for f in files]))
        self._emit(ev.OfferMade(transfer, self._peer, entries, total))
        reply = await self._session_wait(outgoing.reply)
        if outgoing.stopped():
            raise TransferRefused(outgoing.cancelled)
        if reply["type"] == "decline":
            reason = str(reply.get("reason") or "declined")[:500]
            self._emit(ev.TransferDeclined(transfer, self._peer, "send", reason))
            raise TransferRefused(f"{self._peer} declined: {reason}")
        points, skipped, already = parse_accept(reply)
        wanted = {p.index for p in points}
        if not wanted.union(skipped, already) <= set(range(len(files))):
            raise TransferProtocolError("the accept names files that were not offered")
        resumed = sum(p.offset for p in points) + sum(files[i].size for i in already)
        self._emit(ev.TransferAccepted(transfer, self._peer, "send", resumed))
        started = self._loop.time()
        meter = RateMeter(started)
        completed = len(already)
        failed = 0
        for index, reason in skipped.items():
            failed += 1
            self._emit(ev.FileFailed(transfer, self._peer, "send", index, files[index].name, reason))
        for point in sorted(points, key=lambda p: p.index):
            outgoing.results[point.index] = self._loop.create_future()
        progress = [resumed]
        for point in sorted(points, key=lambda p: p.index):
            if outgoing.stopped():
                break
            error = await self._send_file(outgoing, point, meter, progress, total)
            if error is not None:
                outgoing.results[point.index].set_result({"ok": False, "reason": error, "local": True})
        for index, future in sorted(outgoing.results.items()):
            result = await self._session_wait(future)
            if outgoing.stopped():
                break
            name = files[index].name
            if result.get("ok") is True:
                completed += 1
                digest = str(result.get("sha256", ""))
                self._emit(
                    ev.FileCompleted(
                        transfer, self._peer, "send", index, name, files[index].size, digest, None
                    )
                )
            else:
                failed += 1
                reason = str(result.get("reason") or "failed")[:500]
                self._emit(ev.FileFailed(transfer, self._peer, "send", index, name, reason))
        if outgoing.stopped():
            raise TransferRefused(outgoing.cancelled)
        seconds = self._loop.time() - started
        finished = ev.TransferFinished(transfer, self._peer, "send", completed, failed, meter.count, seconds)
        self._emit(finished)
        return finished

    async def _send_file(
        self, outgoing: _Outgoing, point: ResumePoint, meter: RateMeter, progress: list[int], total: int
    ) -> str | None:
        """Stream one file from its resume point; a reason if it could not be read (the peer is told)."""
        source = outgoing.files[point.index]
        session = self._session
        stream = session.open_stream()
        outgoing.stream = stream

        def report(position: int) -> None:
            self._progress(
                outgoing.transfer,
                "send",
                index=point.index,
                source=source,
                position=position,
                done=progress[0],
                total=total,
                meter=meter,
            )

        try:
            with source.source.open("rb") as file:
                offset, digest = await asyncio.to_thread(_prefix_digest, file, point.offset, point.prefix)
                progress[0] -= point.offset - offset  # a damaged partial file: those bytes come again
                await session.write(stream, encode_header(outgoing.transfer, point.index, offset))
                position = offset
                file.seek(offset)
                while position < source.size:
                    chunk = file.read(min(CHUNK, source.size - position))
                    if not chunk:
                        raise OSError("the file became shorter while it was being sent")
                    digest.update(chunk)
                    await session.write(stream, chunk)
                    if outgoing.stopped():
                        session.reset_stream(stream, _STOP_FILE)
                        return None
                    position += len(chunk)
                    progress[0] += len(chunk)
                    now = self._loop.time()
                    meter.add(now, len(chunk))
                    if meter.due(now):
                        report(position)
                if file.read(1):
                    raise OSError("the file grew while it was being sent")
                await session.write(stream, digest.digest(), end=True)
                report(position)
        except OSError as exc:
            reason = f"cannot read {source.name}: {exc.strerror or exc}"
            session.reset_stream(stream, _STOP_FILE)
            session.send_message(
                {"type": "file-failed", "transfer": outgoing.transfer, "index": point.index, "reason": reason}
            )
            return reason
        finally:
            outgoing.stream = None
        return None

    def _progress(
        self,
        transfer: str,
        direction: ev.Direction,
        *,
        index: int,
        source: SourceFile,
        position: int,
        done: int,
        total: int,
        meter: RateMeter,
    ) -> None:
        now = self._loop.time()
        self._emit(
            ev.TransferProgress(
                transfer,
                self._peer,
                direction,
                index,
                source.name,
                position,
                source.size,
                done,
                total,
                meter.rate(now),
                meter.eta(now, total - done),
            )
        )

    async def cancel(self, transfer: str, reason: str = "cancelled") -> None:
        """Stop a transfer in either direction; the receiver deletes its partial files."""
        if self._session.is_closed:
            return
        with contextlib.suppress(SessionError):
            self._session.send_message({"type": "cancel", "transfer": transfer, "reason": reason})
        outgoing = self._outgoing.get(transfer)
        if outgoing is not None:
            outgoing.cancelled = f"cancelled: {reason}"
            self._wake(outgoing)
            self._emit(ev.TransferCancelled(transfer, self._peer, "send", "us", reason))
        receiving = self._receiving.pop(transfer, None)
        if receiving is not None:
            self._drop(receiving)
            self._emit(ev.TransferCancelled(transfer, self._peer, "receive", "us", reason))

    async def _session_wait(self, future: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        return await self._session.unless_closed(asyncio.shield(future))

    @staticmethod
    def _wake(outgoing: _Outgoing) -> None:
        for future in [outgoing.reply, *outgoing.results.values()]:
            if not future.done():
                future.set_result({"type": "cancel", "ok": False})

    # --- receiving ------------------------------------------------------------------------------------

    async def _answer_offer(self, message: dict[str, Any]) -> None:
        """`_on_offer`, turning a bad offer into a closed session and a local failure into a decline."""
        try:
            await self._on_offer(message)
        except TransferProtocolError as exc:
            log.warning("bad offer from %s: %s", self._peer, exc)
            await self._session.close(f"file transfer protocol error: {exc}")
        except OSError as exc:
            reason = f"the receiving side cannot store the files: {exc.strerror or exc}"
            self._decline(str(message.get("transfer")), reason)

    async def _on_offer(self, message: dict[str, Any]) -> None:
        offer = parse_offer(message)
        transfer = offer.transfer
        inbox = self._inbox
        if inbox is None:
            self._session.send_message(
                {"type": "decline", "transfer": transfer, "reason": "not accepting files"}
            )
            return
        await inbox.claim(transfer, self, self._let_go)
        state = inbox.load(transfer, self._peer)
        resumed = state is not None
        if state is not None and {i: f.size for i, f in state.files.items()} != {
            f.index: f.size for f in offer.files
        }:
            state.remove()  # the same id with other files: not ours to resume
            state, resumed = None, False
        refused = tuple((name, why) for _, name, why in offer.refused)
        entries = tuple(ev.FileEntry(f.index, str(f.path), f.size) for f in offer.files)
        received = ev.OfferReceived(transfer, self._peer, entries, offer.total, refused, resumed)
        self._emit(received)
        if state is None:
            folder = None
            if inbox.ask is not None and inbox.asks(self._peer) and offer.files:
                answer = await self._ask(inbox.ask, received)
                if isinstance(answer, str):
                    self._decline(transfer, answer)
                    inbox.release(transfer, self)
                    return
                folder = answer
            reason = inbox.refusal(self._peer, offer, folder=folder)
            if reason is not None:
                self._decline(transfer, reason)
                return
            state = inbox.create(self._peer, offer, folder)
        points, hashes, done, skipped = [], {}, [], []
        for index, item in sorted(state.files.items()):
            if item.status == "done":
                done.append(index)
            elif item.status == "failed":
                skipped.append({"index": index, "reason": item.reason or "failed"})
            else:
                offset, prefix = await asyncio.to_thread(state.resume_point, index)
                hashes[index] = prefix
                points.append({"index": index, "offset": offset, "prefix": prefix.hexdigest()})
        skipped += [{"index": i, "reason": f"unsafe name: {why}"} for i, _, why in offer.refused]
        resume_bytes = sum(p["offset"] for p in points) + sum(state.files[i].size for i in done)
        if resumed:
            needed = offer.total - resume_bytes
            reason = inbox.refusal(self._peer, offer, needed, state.folder) if points else None
            if reason is not None:
                self._decline(transfer, reason)
                return
        state.save()
        now = self._loop.time()
        receiving = _Receiving(state, hashes, RateMeter(now), now)
        self._receiving[transfer] = receiving
        self._session.send_message(
            {"type": "accept", "transfer": transfer, "files": points, "skipped": skipped, "done": done}
        )
        self._emit(ev.TransferAccepted(transfer, self._peer, "receive", resume_bytes))
        for index, name, why in offer.refused:
            self._emit(ev.FileFailed(transfer, self._peer, "receive", index, name, f"unsafe name: {why}"))
        self._maybe_finished(transfer)

    async def _ask(self, ask: AskUser, received: ev.OfferReceived) -> Path | str:
        """Put the offer to the user; the sender cancelling (or the session ending) withdraws the question."""
        task = asyncio.ensure_future(ask(received))
        self._asking[received.transfer] = task
        try:
            return await task
        finally:
            self._asking.pop(received.transfer, None)

    def _decline(self, transfer: str, reason: str) -> None:
        self._session_send({"type": "decline", "transfer": transfer, "reason": reason})
        self._emit(ev.TransferDeclined(transfer, self._peer, "receive", reason))

    async def _accept_streams(self) -> None:
        while True:
            try:
                stream = await self._session.accept_stream()
            except SessionError:
                return
            self._spawn(self._receive_stream(stream))

    async def _receive_stream(self, stream: IncomingStream) -> None:
        header = b""
        try:
            while len(header) < HEADER_SIZE:
                chunk = await stream.read()
                if not chunk:
                    return
                header += chunk
            transfer, index, offset = decode_header(header)
            receiving = self._receiving.get(transfer)
            if receiving is None or index not in receiving.state.files:
                return  # not a transfer we accepted on this session
            if receiving.state.files[index].status != "partial":
                return
            task = asyncio.current_task()
            assert task is not None
            receiving.tasks.add(task)
            try:
                await self._receive_file(receiving, index, offset, stream, header[HEADER_SIZE:])
            finally:
                receiving.tasks.discard(task)
        except (StreamAborted, SessionError):
            return
        except TransferProtocolError as exc:
            await self._session.close(f"file transfer protocol error: {exc}")

    async def _receive_file(
        self, receiving: _Receiving, index: int, offset: int, stream: IncomingStream, first: bytes
    ) -> None:
        state = receiving.state
        item = state.files[index]
        prefix = receiving.prefix_hashes.pop(index, None)
        if offset == 0:
            incoming = IncomingFile.fresh(item.size)
        elif offset == item.verified and prefix is not None:
            incoming = IncomingFile(item.size, offset, prefix)
        else:
            raise TransferProtocolError(f"file {index} resumes at {offset}, not at the agreed offset")
        path = state.partial_path(index)
        state.directory.mkdir(parents=True, exist_ok=True)
        source = SourceFile(path, item.path, item.size, 0)
        with path.open("r+b" if path.exists() else "wb") as file:
            file.truncate(offset)
            file.seek(offset)
            unsynced = 0
            synced_at = self._loop.time()
            data = first
            try:
                while True:
                    if data:
                        body = incoming.feed(data)
                        file.write(body)
                        unsynced += len(body)
                        receiving.moved += len(body)
                        now = self._loop.time()
                        receiving.meter.add(now, len(body))
                        if unsynced >= CHECKPOINT or now - synced_at >= CHECKPOINT_SECONDS:
                            await self._checkpoint(state, index, file, incoming.position)
                            unsynced, synced_at = 0, self._loop.time()
                        if receiving.meter.due(now):
                            self._receive_progress(receiving, index, source, incoming.position)
                    if incoming.complete:
                        break
                    data = await stream.read()
                    if not data:
                        break
            finally:
                if not incoming.complete and not receiving.dropped:
                    # No await here: this runs while the task is being cancelled (session over).
                    _record_offset(state, index, file, incoming.position)
            if not incoming.complete:
                return  # the sender stopped: file-failed or a new session will say what next
            file.flush()
            await asyncio.to_thread(os.fsync, file.fileno())
        self._receive_progress(receiving, index, source, incoming.position)
        await self._finish_file(receiving, index, incoming)

    async def _checkpoint(self, state: IncomingTransfer, index: int, file: IO[bytes], position: int) -> None:
        """`_record_offset` with the fsync in a worker thread."""
        file.flush()
        await asyncio.to_thread(os.fsync, file.fileno())
        state.files[index].verified = position
        state.save()

    async def _finish_file(self, receiving: _Receiving, index: int, incoming: IncomingFile) -> None:
        state = receiving.state
        item = state.files[index]
        transfer = state.transfer
        result: dict[str, Any] = {"type": "file-result", "transfer": transfer, "index": index}
        if incoming.verified():
            target = state.final_path(index)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.resolve().is_relative_to(state.folder.resolve()):
                    raise OSError(f"{target} would be outside the download folder")
                os.rename(state.partial_path(index), target)  # unique_path: never an existing file
            except OSError as exc:
                self._fail_file(receiving, index, f"cannot save {item.path}: {exc.strerror or exc}", result)
                return
            item.status, item.saved_as, item.verified = "done", str(target), item.size
            state.save()
            self._session_send({**result, "ok": True, "sha256": incoming.digest})
            self._emit(
                ev.FileCompleted(
                    transfer, self._peer, "receive", index, item.path, item.size, incoming.digest, target
                )
            )
        else:
            state.partial_path(index).unlink(missing_ok=True)
            item.verified = 0
            self._fail_file(
                receiving, index, "content hash mismatch: the file was damaged on the way or on disk", result
            )
            return
        self._maybe_finished(transfer)

    def _fail_file(self, receiving: _Receiving, index: int, reason: str, result: dict[str, Any]) -> None:
        item = receiving.state.files[index]
        item.status, item.reason = "failed", reason
        receiving.state.save()
        self._session_send({**result, "ok": False, "reason": reason})
        self._emit(ev.FileFailed(receiving.state.transfer, self._peer, "receive", index, item.path, reason))
        self._maybe_finished(receiving.state.transfer)

    def _on_file_failed(self, transfer: str, index: int, reason: str) -> None:
        receiving = self._receiving.get(transfer)
        if receiving is None or receiving.state.files.get(index) is None:
            return
        if receiving.state.files[index].status == "partial":
            receiving.state.partial_path(index).unlink(missing_ok=True)
            self._fail_file(
                receiving,
                index,
                f"the sender could not send it: {reason}",
                {"type": "file-result", "transfer": transfer, "index": index},
            )

    def _maybe_finished(self, transfer: str) -> None:
        receiving = self._receiving.get(transfer)
        if receiving is None or not receiving.state.finished:
            return
        del self._receiving[transfer]
        if self._inbox is not None:
            self._inbox.release(transfer, self)
        files = receiving.state.files.values()
        completed = sum(1 for f in files if f.status == "done")
        receiving.state.finish()
        self._emit(
            ev.TransferFinished(
                transfer,
                self._peer,
                "receive",
                completed,
                len(files) - completed,
                receiving.moved,
                self._loop.time() - receiving.started,
            )
        )

    def _receive_progress(self, receiving: _Receiving, index: int, source: SourceFile, position: int) -> None:
        state = receiving.state
        total = sum(f.size for f in state.files.values())
        done = sum(
            f.size if f.status == "done" else (position if i == index else f.verified)
            for i, f in state.files.items()
        )
        self._progress(
            state.transfer,
            "receive",
            index=index,
            source=source,
            position=position,
            done=done,
            total=total,
            meter=receiving.meter,
        )

    def _on_cancel(self, transfer: str, reason: str) -> None:
        asking = self._asking.pop(transfer, None)
        if asking is not None:
            asking.cancel()
            if self._inbox is not None:
                self._inbox.release(transfer, self)
            self._emit(ev.TransferCancelled(transfer, self._peer, "receive", "peer", reason))
        outgoing = self._outgoing.get(transfer)
        if outgoing is not None:
            outgoing.cancelled = f"{self._peer} cancelled: {reason}"
            self._wake(outgoing)
            self._emit(ev.TransferCancelled(transfer, self._peer, "send", "peer", reason))
        receiving = self._receiving.pop(transfer, None)
        if receiving is not None:
            self._drop(receiving)
            self._emit(ev.TransferCancelled(transfer, self._peer, "receive", "peer", reason))

    def _drop(self, receiving: _Receiving) -> None:
        """Forget a cancelled incoming transfer: its partial files and state go (finished files stay)."""
        receiving.dropped = True
        for task in receiving.tasks:
            task.cancel()
        receiving.state.remove()
        if self._inbox is not None:
            self._inbox.release(receiving.state.transfer, self)

    async def _let_go(self, transfer: str) -> None:
        """Another session took this transfer over (the sender reconnected before we noticed the old
        session was dead): stop writing, record the offset, and forget it here."""
        receiving = self._receiving.pop(transfer, None)
        if receiving is None:
            return
        for task in receiving.tasks:
            task.cancel()
        await asyncio.gather(*receiving.tasks, return_exceptions=True)

    def _session_send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(SessionError):
            self._session.send_message(message)

    def _interrupted(self, reason: str) -> None:
        for transfer in list(self._receiving):
            if self._inbox is not None:
                self._inbox.release(transfer, self)
            self._emit(ev.TransferInterrupted(transfer, self._peer, "receive", reason))
        self._receiving.clear()
        for transfer in self._outgoing:
            self._emit(ev.TransferInterrupted(transfer, self._peer, "send", reason))


def _record_offset(state: IncomingTransfer, index: int, file: IO[bytes], position: int) -> None:
    """Make the bytes so far durable, then record the offset (never the other way round)."""
    file.flush()
    os.fsync(file.fileno())
    state.files[index].verified = position
    state.save()


def _prefix_digest(file: IO[bytes], offset: int, expected: str) -> tuple[int, Any]:
    """Hash our first ``offset`` bytes: (offset, hash) if they match the receiver's, else (0, empty hash)."""
    digest = hashlib.sha256()
    remaining = offset
    while remaining:
        chunk = file.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    if remaining == 0 and digest.hexdigest() == expected:
        return offset, digest
    if offset:
        log.info("resume point does not match our file: sending it again from the start")
    return 0, hashlib.sha256()
