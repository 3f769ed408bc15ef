"""File transfer on one peer session, both directions: the asyncio adapter of `app.transfer.machine`.

`TransferEndpoint` feeds the session's transfer messages (pushed to it by type, `app.session.control`)
and data streams to a `TransferMachine`, and carries out what the machine hands back: messages to the
peer, events to ``on_event`` (`app.transfer.events`), and file work (`app.transfer.file_work`), which
runs in tasks using `app.transfer.file_io` and the `Inbox` (optional: without one, offers are declined).
Every decision (what to accept, resume, send next, when a transfer is finished or cancelled) is the
machine's; this module only moves bytes and answers.

`run` serves the session until it ends; `send` offers files and waits for the outcome; `cancel` stops a
transfer either way. When the session ends mid-transfer, both sides keep what they have (the receiver
flushes and records its offsets) and report `TransferInterrupted`; sending the same files again on a new
session resumes (`app.transfer.outbox`). A peer that breaks the protocol ends the session with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, assert_never

from app.errors import FinalError
from app.session.peer_session import IncomingStream, PeerSession, SessionError, SessionLost, StreamAborted
from app.transfer import events as ev
from app.transfer import file_io
from app.transfer import file_work as work
from app.transfer.file_work import StoredFile
from app.transfer.inbox import Inbox, IncomingTransfer
from app.transfer.machine import InboxMode, TransferMachine
from app.transfer.messages import TRANSFER_MESSAGES, decode, encode
from app.transfer.outbox import SourceFile
from app.transfer.protocol import HEADER_SIZE, IncomingFile, TransferProtocolError, decode_header

log = logging.getLogger("punchline.transfer")


def settle_outcome(
    outcome: asyncio.Future[ev.TransferFinished],
    *,
    result: ev.TransferFinished | None = None,
    error: BaseException | None = None,
) -> None:
    """End a send's outcome once (a later cancel of a finished send changes nothing).

    An error is marked retrieved: whoever awaits the outcome still gets it raised, but one nobody awaits
    any more (a send cancelled by the user, a caller that gave up) is not logged as a lost exception.
    """
    if outcome.done():
        return
    if error is not None:
        outcome.set_exception(error)
        outcome.exception()
    elif result is not None:
        outcome.set_result(result)


class TransferRefused(FinalError):
    """The receiver declined the offer, or either side cancelled; the message is their reason."""


@dataclass
class _Kept:
    """What we receive on disk: an inbox record, and running hashes of resumed files' verified bytes."""

    state: IncomingTransfer
    prefixes: dict[int, Any] = field(default_factory=dict)
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
        mode: InboxMode = "none" if inbox is None else "ask" if inbox.asks(self._peer) else "accept"
        self._machine = TransferMachine(self._peer, inbox=mode)
        self._sends: dict[str, asyncio.Future[ev.TransferFinished]] = {}
        self._sources: dict[str, list[SourceFile]] = {}
        self._kept: dict[str, _Kept] = {}
        self._opened: dict[int, tuple[IncomingStream, bytes]] = {}  # data streams the machine is asked about
        self._tasks: set[asyncio.Task[None]] = set()
        self._work: dict[tuple[ev.Direction, str], set[asyncio.Task[None]]] = {}
        self._broken: TransferProtocolError | None = None
        self._closing: asyncio.Task[None] | None = None
        self._flushing = False
        # Registered at once: a message may arrive before `run` starts.
        session.set_message_receiver(TRANSFER_MESSAGES.types, self._message)

    # --- the public API ---------------------------------------------------------------------------------

    async def run(self) -> str:
        """Serve the session until it ends; returns why it ended."""
        streams = asyncio.create_task(self._accept_streams())
        try:
            await self._session.wait_closed()
        finally:
            self._session.set_message_receiver(TRANSFER_MESSAGES.types, None)
            streams.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(streams, *self._tasks, return_exceptions=True)
            if self._closing is not None:
                await asyncio.gather(self._closing, return_exceptions=True)
            reason = await self._session.wait_closed() if self._session.is_closed else "stopped"
            self._machine.session_closed(reason)
            self._flush()
        return reason

    async def send(self, transfer: str, files: list[SourceFile]) -> ev.TransferFinished:
        """Offer ``files`` and send what the receiver wants; raise `TransferRefused` or `SessionError`
        (`TransferProtocolError` if the receiver broke the protocol)."""
        if self._session.is_closed:
            raise SessionLost(await self._session.wait_closed())
        if transfer in self._sends:
            raise RuntimeError(f"transfer {transfer} is already being sent on this session")
        outcome: asyncio.Future[ev.TransferFinished] = self._loop.create_future()
        self._sends[transfer], self._sources[transfer] = outcome, files
        try:
            self._machine.offer(transfer, [(f.name, f.size) for f in files])
            self._flush()
            return await self._session.unless_closed(asyncio.shield(outcome))
        except asyncio.CancelledError:
            self._machine.forget(transfer)  # stop sending; the receiver keeps what it has
            self._flush()
            raise
        finally:
            del self._sends[transfer], self._sources[transfer]
            if outcome.done() and not outcome.cancelled():
                outcome.exception()  # retrieved: a late outcome of a send that ended otherwise

    async def cancel(self, transfer: str, reason: str = "cancelled") -> None:
        """Stop a transfer in either direction; the receiver deletes its partial files."""
        if not self._session.is_closed:
            self._machine.cancel(transfer, reason)
            self._flush()

    # --- into the machine -------------------------------------------------------------------------------

    def _message(self, message: dict[str, Any]) -> None:
        try:
            self._machine.receive(decode(message), self._loop.time())
        except TransferProtocolError as exc:
            self._protocol_error(exc)
        self._flush()

    async def _accept_streams(self) -> None:
        while True:
            try:
                stream = await self._session.accept_stream()
            except SessionError:
                return
            self._spawn(self._stream_opened(stream))

    async def _stream_opened(self, stream: IncomingStream) -> None:
        header = b""
        while len(header) < HEADER_SIZE:
            chunk = await stream.read()
            if not chunk:
                return
            header += chunk
        transfer, index, offset = decode_header(header)
        self._opened[stream.stream_id] = (stream, header[HEADER_SIZE:])
        try:
            self._machine.stream_opened(stream.stream_id, transfer, index, offset)
            self._flush()  # a `ReceiveFile` takes the stream
        finally:
            self._opened.pop(stream.stream_id, None)  # not taken: left unread

    def _protocol_error(self, exc: TransferProtocolError) -> None:
        """The peer broke the protocol: our sends fail with it, and the session ends with the reason."""
        log.warning("file transfer protocol error from %s: %s", self._peer, exc)
        self._broken = exc
        for outcome in self._sends.values():
            settle_outcome(outcome, error=exc)
        if self._closing is None:
            self._closing = asyncio.create_task(self._session.close(f"file transfer protocol error: {exc}"))

    # --- out of the machine -----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Carry out everything the machine has to say: messages, events, file work (in that order)."""
        if self._flushing:
            return  # the outer call's loop picks up what this input added
        self._flushing = True
        try:
            while True:
                messages = self._machine.messages_to_send()
                for message in messages:
                    with contextlib.suppress(SessionError):
                        self._session.send_message(encode(message))
                busy = bool(messages)
                while (event := self._machine.next_event()) is not None:
                    busy = True
                    self._event(event)
                while (instruction := self._machine.next_instruction()) is not None:
                    busy = True
                    self._do(instruction)
                if not busy:
                    return
        finally:
            self._flushing = False

    def _event(self, event: ev.TransferEvent) -> None:
        self._emit(event)
        outcome = self._sends.get(event.transfer)
        if outcome is None or outcome.done() or getattr(event, "direction", None) != "send":
            return
        if isinstance(event, ev.TransferFinished):
            settle_outcome(outcome, result=event)
        elif isinstance(event, ev.TransferDeclined):
            settle_outcome(outcome, error=TransferRefused(f"{self._peer} declined: {event.reason}"))
        elif isinstance(event, ev.TransferCancelled):
            who = "" if event.by == "us" else f"{self._peer} "
            settle_outcome(outcome, error=TransferRefused(f"{who}cancelled: {event.reason}"))
        elif isinstance(event, ev.TransferInterrupted):
            settle_outcome(outcome, error=self._broken or SessionLost(event.reason))

    def _do(self, instruction: work.Instruction) -> None:
        """One piece of file work: quick ones here, the rest in a task of their transfer."""
        transfer = (
            instruction.offer.transfer if isinstance(instruction, work.AskUser) else instruction.transfer
        )
        if isinstance(instruction, work.SendFile):
            source = self._sources[transfer][instruction.index]
            self._spawn(self._send_file(instruction, source), ("send", transfer))
        elif isinstance(instruction, work.StopSending):
            self._stop(("send", transfer))
        elif isinstance(instruction, work.LookUp):
            self._spawn(self._look_up(instruction), ("receive", transfer))
        elif isinstance(instruction, work.AskUser):
            self._spawn(self._ask(instruction), ("receive", transfer))
        elif isinstance(instruction, work.Admit):
            self._spawn(self._admit(instruction), ("receive", transfer))
        elif isinstance(instruction, work.ReceiveFile):
            stream, first = self._opened.pop(instruction.stream)
            self._spawn(self._receive_file(instruction, stream, first), ("receive", transfer))
        elif isinstance(instruction, work.WithdrawQuestion):
            self._stop(("receive", transfer))
        elif isinstance(instruction, work.StopReceiving):
            self._kept.pop(transfer, None)
            self._stop(("receive", transfer))  # file tasks record their offsets as they stop
        elif isinstance(instruction, work.ForgetStored):
            kept = self._kept.pop(transfer, None)
            if kept is not None:
                kept.state.remove()
        elif isinstance(instruction, work.FailFile):
            if (kept := self._kept.get(transfer)) is not None:
                file_io.record_failure(kept.state, instruction.index, instruction.reason, discard=True)
        elif isinstance(instruction, work.FinishIncoming):
            if (kept := self._kept.pop(transfer, None)) is not None:
                kept.state.finish()
            self._release(transfer)
        elif isinstance(instruction, work.Release):
            self._kept.pop(transfer, None)
            self._release(transfer)
        elif isinstance(instruction, work.Drop):
            self._drop(transfer)
        else:
            assert_never(instruction)

    # --- file work: sending -----------------------------------------------------------------------------

    async def _send_file(self, job: work.SendFile, source: SourceFile) -> None:
        session = self._session
        stream = session.open_stream()

        def moved(position: int, count: int) -> None:
            now = self._loop.time()
            self._machine.data_moved(job.transfer, "send", job.index, position=position, count=count, now=now)
            self._flush()

        sent = False
        try:
            await file_io.send_file(
                session,
                stream,
                transfer=job.transfer,
                index=job.index,
                source=source,
                resume=(job.offset, job.prefix),
                moved=moved,
            )
            sent = True
        except OSError as exc:
            reason = f"cannot read {source.name}: {exc.strerror or exc}"
            self._machine.file_unreadable(job.transfer, job.index, reason, self._loop.time())
        finally:
            if not sent:
                session.reset_stream(stream, file_io.STOP_FILE)  # a read error, a cancel, the session's end
        if sent:
            self._machine.file_sent(job.transfer, job.index, self._loop.time())
        self._flush()

    # --- file work: receiving ---------------------------------------------------------------------------

    async def _look_up(self, job: work.LookUp) -> None:
        inbox = self._inbox
        assert inbox is not None
        transfer = job.transfer
        try:
            await inbox.claim(transfer, self, self._let_go)
            state = inbox.load(transfer, self._peer)
            stored: dict[int, StoredFile] | None = None
            if state is not None:
                kept = self._kept[transfer] = _Kept(state)
                points = await asyncio.to_thread(file_io.resume_points, state)
                stored = {}
                for index, item in state.files.items():
                    offset, prefix = points.get(index, (item.verified, None))
                    if prefix is not None:
                        kept.prefixes[index] = prefix
                    digest = prefix.hexdigest() if prefix is not None else ""
                    stored[index] = StoredFile(item.size, item.status, offset, digest, item.reason)
        except OSError as exc:
            self._machine.refused(
                transfer, f"the receiving side cannot store the files: {exc.strerror or exc}"
            )
        else:
            self._machine.found(transfer, stored)
        self._flush()

    async def _ask(self, job: work.AskUser) -> None:
        assert self._inbox is not None
        assert self._inbox.ask is not None
        answer = await self._inbox.ask(job.offer)
        if isinstance(answer, Path):
            self._machine.user_accepted(job.offer.transfer, answer)
        else:
            self._machine.user_declined(job.offer.transfer, answer)
        self._flush()

    async def _admit(self, job: work.Admit) -> None:
        inbox = self._inbox
        assert inbox is not None
        transfer = job.transfer
        try:
            if job.fresh:
                reason = inbox.refusal(self._peer, job.offer, job.needed, folder=job.folder)
                if reason is None:
                    self._kept[transfer] = _Kept(inbox.create(self._peer, job.offer, job.folder))
            else:
                folder = self._kept[transfer].state.folder
                needed = job.needed
                reason = inbox.refusal(self._peer, job.offer, needed, folder) if needed is not None else None
            if reason is None:
                self._kept[transfer].state.save()
        except OSError as exc:
            reason = f"the receiving side cannot store the files: {exc.strerror or exc}"
        if reason is None:
            self._machine.admitted(transfer, self._loop.time())
        else:
            self._machine.refused(transfer, reason)
        self._flush()

    async def _receive_file(self, job: work.ReceiveFile, stream: IncomingStream, first: bytes) -> None:
        transfer, index = job.transfer, job.index
        kept = self._kept[transfer]
        size = kept.state.files[index].size
        prefix = kept.prefixes.pop(index, None)
        incoming = IncomingFile(size, job.offset, prefix) if job.offset else IncomingFile.fresh(size)

        def moved(position: int, count: int) -> None:
            now = self._loop.time()
            self._machine.data_moved(transfer, "receive", index, position=position, count=count, now=now)
            self._flush()

        try:
            complete = await file_io.receive_file(
                kept.state, index, incoming, stream, first=first, moved=moved, dropped=lambda: kept.dropped
            )
        except StreamAborted:
            complete = False
        except OSError as exc:  # a full disk, a folder gone: this file fails, the others go on
            reason = f"cannot write {kept.state.files[index].path}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):
                file_io.record_failure(kept.state, index, reason, discard=True)
            self._machine.file_broken(transfer, index, reason, self._loop.time())
            self._flush()
            return
        if not complete:
            self._machine.stream_ended(transfer, index)
        else:
            kept_as = file_io.keep_verified(kept.state, index, incoming)
            now = self._loop.time()
            if isinstance(kept_as, Path):
                self._machine.file_received(transfer, index, incoming.digest, kept_as, now)
            else:
                self._machine.file_broken(transfer, index, kept_as, now)
        self._flush()

    async def _let_go(self, transfer: str) -> None:
        """Another session took this transfer over (the sender reconnected before we noticed the old
        session was dead): stop writing, record the offsets, and forget it here."""
        tasks = set(self._work.get(("receive", transfer), ()))
        self._machine.taken_over(transfer)
        self._flush()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop(self, transfer: str) -> None:
        """Cancelled: stop writing, delete the partial files and the state (finished files stay)."""
        kept = self._kept.pop(transfer, None)
        state = None
        if kept is not None:
            kept.dropped = True
            state = kept.state
        elif self._inbox is not None:  # cancelled before we read it: what an earlier session kept
            state = self._inbox.load(transfer, self._peer)
        self._stop(("receive", transfer))
        if state is not None:
            state.remove()
        self._release(transfer)

    def _release(self, transfer: str) -> None:
        if self._inbox is not None:
            self._inbox.release(transfer, self)

    # --- tasks ------------------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], key: tuple[ev.Direction, str] | None = None) -> None:
        task = asyncio.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if key is not None:
            self._work.setdefault(key, set()).add(task)
            task.add_done_callback(lambda done: self._work.get(key, set()).discard(done))

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except SessionError:
            pass  # the session ended: `run` tells the machine
        except TransferProtocolError as exc:
            self._protocol_error(exc)
            self._flush()

    def _stop(self, key: tuple[ev.Direction, str]) -> None:
        """Cancel a transfer's work in one direction (not the task asking for it)."""
        for task in self._work.pop(key, set()):
            if task is not asyncio.current_task():
                task.cancel()
