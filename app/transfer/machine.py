"""The file transfer as a sans-IO machine: one per session, both directions, every decision in one place.

`TransferMachine` is fed:

* the peer's control messages, decoded (`receive`; `app.transfer.messages` lists them and what they answer)
  and the data streams it opens (`stream_opened`, with the header's transfer, file and offset);
* our own actions: `offer` files, `cancel` a transfer either way, `forget` a send our caller gave up on;
* the inbox's and the user's answers: what the inbox kept of a transfer (`found`), the user's choice
  (`user_accepted` into a folder, `user_declined` with a reason), the inbox's (`admitted`, `refused`), and
  another session taking a transfer over (`taken_over`);
* the adapter's file work: bytes moved (`data_moved`), a file sent or unreadable, a file received and
  verified, broken (hash mismatch, cannot save) or its stream ended early; and `session_closed`.

Inputs whose outcome is timed (an accept starts the clock of a transfer, bytes make its rate, the last
result its duration) take ``now``, in seconds of any clock: the machine never reads one. It hands back
messages for the peer (`messages_to_send`), events for the app (`next_event`, `app.transfer.events`) and
file work for its adapter (`next_instruction`, `app.transfer.file_work`). It never touches a file, a
socket or the clock.

What it decides: whether an offer is valid (names made safe, refused one by one) and who is asked about it;
what a re-offer resumes and from where; the accept (resume points, skipped files, files already done);
which file is sent next; which data streams are taken; each file's result; when a transfer is finished;
cancels from either side at any stage, declines, and what a session's end leaves behind.

The two rules of resuming: a re-offer (same transfer id) of a transfer this receiver accepted before,
whose state the inbox kept on disk for the same files, is accepted again without asking, from the verified
offsets (files already done are answered "done"); a transfer it never accepted has no state on disk, so its
re-offer is asked about again: no byte flows without an accept.

The states of one transfer are the tables `SENDING` and `RECEIVING`: (state, input) → next state, where
"ended" means the transfer is over here and forgotten. An input with no edge is deliberate: from the peer
(its message types) it is a protocol error (`TransferProtocolError`; the adapter ends the session); from
us, the user, the inbox or the adapter it is late (the transfer ended or moved on meanwhile) and ignored.
A peer message about a transfer this machine does not know is late too (it crossed our cancel), and
ignored, except an offer, which starts one. A data stream is taken only for a file of a transfer in
"receiving" that still needs it; any other stream is left unread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from app.transfer import events as ev
from app.transfer import file_work as work
from app.transfer import messages as m
from app.transfer.file_work import Instruction, StoredFile
from app.transfer.progress import RateMeter
from app.transfer.protocol import EMPTY_PREFIX, TransferProtocolError

SenderState = Literal["offered", "sending"]
ReceiverState = Literal["new", "checking", "asking", "admitting", "receiving"]
Ended = Literal["ended"]
#: How the inbox takes offers from this peer: not at all, after asking the user, or by its own rules.
InboxMode = Literal["none", "ask", "accept"]

#: The sending side of one transfer. Inputs: the peer's "accept", "decline", "file-result", "cancel";
#: ours: "cancel by us", "forget"; the adapter's: "file sent", "file unreadable", "data moved"; and
#: "all files answered" (every file the receiver wanted has its result), "session closed".
SENDING: dict[tuple[SenderState, str], SenderState | Ended] = {
    ("offered", "accept"): "sending",  # files go one at a time, from the receiver's resume points
    ("offered", "decline"): "ended",
    ("sending", "data moved"): "sending",
    ("sending", "file sent"): "sending",  # the next one starts
    ("sending", "file unreadable"): "sending",  # the peer is told (file-failed); the next one starts
    ("sending", "file-result"): "sending",
    ("sending", "all files answered"): "ended",  # finished
    **{(state, "cancel"): "ended" for state in ("offered", "sending")},
    **{(state, "cancel by us"): "ended" for state in ("offered", "sending")},
    **{(state, "forget"): "ended" for state in ("offered", "sending")},  # resumable by a later offer
    **{(state, "session closed"): "ended" for state in ("offered", "sending")},  # interrupted
}

_LIVE: tuple[ReceiverState, ...] = ("checking", "asking", "admitting", "receiving")
#: The receiving side of one transfer ("new": not known yet). Inputs: the peer's "offer", "file-failed",
#: "cancel", "data stream"; ours: "cancel by us"; the inbox's and the user's: "found: resumable",
#: "found: new, ask", "found: new", "user accepts", "user declines", "admitted", "refused", "taken over";
#: the adapter's: "data moved", "file received", "file broken", "stream ended"; and "all files done"
#: (no file is still to come), "session closed".
RECEIVING: dict[tuple[ReceiverState, str], ReceiverState | Ended] = {
    ("new", "offer"): "checking",  # the inbox looks for what it kept of this transfer
    ("new", "offer, no inbox"): "ended",  # declined at once
    ("checking", "found: resumable"): "admitting",  # accepted before: not asked again
    ("checking", "found: new, ask"): "asking",
    ("checking", "found: new"): "admitting",  # the inbox's own rules decide
    ("checking", "refused"): "ended",  # the inbox could not be read: declined
    ("asking", "user accepts"): "admitting",
    ("asking", "user declines"): "ended",
    ("admitting", "admitted"): "receiving",  # the accept goes out
    ("admitting", "refused"): "ended",  # declined with the inbox's reason (not from them, disk full)
    ("receiving", "data stream"): "receiving",
    ("receiving", "data moved"): "receiving",
    ("receiving", "file received"): "receiving",
    ("receiving", "file broken"): "receiving",
    ("receiving", "stream ended"): "receiving",  # the file waits for another stream (from 0)
    ("receiving", "file-failed"): "receiving",
    ("receiving", "all files done"): "ended",  # finished
    **{(state, "cancel"): "ended" for state in _LIVE},
    **{(state, "cancel by us"): "ended" for state in _LIVE},
    **{(state, "taken over"): "ended" for state in _LIVE},
    **{(state, "session closed"): "ended" for state in _LIVE},
}

#: Inputs that are the peer's messages: with no edge, a protocol error rather than a late input.
PEER_MESSAGES = frozenset({*m.TRANSFER_MESSAGES.types})

S = TypeVar("S", bound=str)


def _edge(table: Mapping[tuple[S, str], S | Ended], state: S, what: str, transfer: str) -> S | Ended | None:
    """The next state for ``what`` in ``state``; when there is none: None (ignore) or a protocol error."""
    following = table.get((state, what))
    if following is None and what in PEER_MESSAGES:
        raise TransferProtocolError(f"{what} out of turn: transfer {transfer} is {state} here")
    return following


@dataclass
class _Progress:
    """Bytes of one transfer's files so far (on disk at the receiver), and the rate they move at."""

    started: float
    meter: RateMeter
    files: dict[int, ev.FileEntry]
    positions: dict[int, int]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def done(self) -> int:
        return sum(self.positions.values())


@dataclass
class _Outgoing:
    """A transfer we send."""

    transfer: str
    files: tuple[ev.FileEntry, ...]
    state: SenderState = "offered"
    points: dict[int, m.ResumePoint] = field(default_factory=dict)  # the files the receiver wants
    queue: deque[int] = field(default_factory=deque)  # wanted files not started yet, in order
    current: int | None = None  # the file being streamed
    results: dict[int, bool] = field(default_factory=dict)  # wanted file → ok
    failed_here: set[int] = field(default_factory=set)  # files we could not read
    completed: int = 0
    failed: int = 0
    progress: _Progress | None = None


FileState = Literal["waiting", "streaming", "done", "failed"]


@dataclass
class _IncomingFile:
    """One receivable file of a transfer we accepted."""

    entry: ev.FileEntry
    state: FileState
    offset: int = 0  # the resume point in the accept
    prefix: str = EMPTY_PREFIX
    resume_at: int | None = None  # the agreed offset a stream may start at (until one starts)
    reason: str | None = None


@dataclass
class _Incoming:
    """A transfer offered to us."""

    offer: m.SafeOffer
    indices: frozenset[int]  # every index of the offer, safe names or not
    state: ReceiverState = "checking"
    stored: Mapping[int, StoredFile] | None = None  # what the inbox kept, when it is ours to resume
    files: dict[int, _IncomingFile] = field(default_factory=dict)
    progress: _Progress | None = None

    @property
    def transfer(self) -> str:
        return self.offer.transfer

    @property
    def shown(self) -> bool:
        """The app has heard of this offer (`OfferReceived`)."""
        return self.state in ("asking", "admitting", "receiving")


class TransferMachine:
    """Every transfer of one session with ``peer``, both ways; see the module docstring.

    ``inbox`` says how offers from ``peer`` are taken: "none" declines them ("not accepting files"), "ask"
    puts new ones to the user, "accept" leaves new ones to the inbox's rules (`Admit`).
    """

    def __init__(self, peer: str, *, inbox: InboxMode = "accept") -> None:
        self.peer = peer
        self.inbox: InboxMode = inbox
        self._sending: dict[str, _Outgoing] = {}
        self._receiving: dict[str, _Incoming] = {}
        self._messages: deque[m.TransferMessage] = deque()
        self._events: deque[ev.TransferEvent] = deque()
        self._instructions: deque[Instruction] = deque()
        self._closed = False

    # --- outputs ---------------------------------------------------------------------------------------

    def messages_to_send(self) -> list[m.TransferMessage]:
        """Control messages for the peer, oldest first."""
        out = list(self._messages)
        self._messages.clear()
        return out

    def next_event(self) -> ev.TransferEvent | None:
        """The next thing the app should hear about, or None."""
        return self._events.popleft() if self._events else None

    def next_instruction(self) -> Instruction | None:
        """The next piece of file work for the adapter, or None."""
        return self._instructions.popleft() if self._instructions else None

    def sending(self, transfer: str) -> bool:
        """True while ``transfer`` is being offered or sent by us on this session."""
        return transfer in self._sending

    def receiving(self, transfer: str) -> bool:
        """True while ``transfer`` is offered to us or being received on this session."""
        return transfer in self._receiving

    # --- inputs: the peer ------------------------------------------------------------------------------

    def receive(self, message: m.TransferMessage, now: float) -> None:
        """A decoded message from the peer; `TransferProtocolError` if it breaks the protocol."""
        if self._closed:
            return
        if isinstance(message, m.Offer):
            self._on_offer(message)
        elif isinstance(message, m.Accept | m.Decline | m.FileResult):
            out = self._sending.get(message.transfer)
            if out is None:
                return  # about a transfer that ended here (it crossed our cancel)
            if isinstance(message, m.Accept):
                self._on_accept(out, message, now)
            elif isinstance(message, m.Decline):
                self._on_decline(out, message)
            else:
                self._on_result(out, message, now)
        elif isinstance(message, m.FileFailed):
            self._on_file_failed(message, now)
        else:
            self._on_cancel(message.transfer, message.reason, "peer")

    def stream_opened(self, stream: int, transfer: str, index: int, offset: int) -> None:
        """The peer opened data stream ``stream`` for file ``index`` from ``offset`` (its header says so).

        A `ReceiveFile` instruction takes it; a stream that gets none is not ours to read.
        """
        inc = self._receiving.get(transfer)
        if self._closed or inc is None or inc.state != "receiving":
            return  # no byte flows without an accept
        item = inc.files.get(index)
        if item is None or item.state in ("done", "failed"):
            return  # a file we cannot take, or have: nothing to do with its bytes
        if item.state == "streaming":
            raise TransferProtocolError(f"a second data stream for file {index} of transfer {transfer}")
        if offset not in (0, item.resume_at):
            raise TransferProtocolError(f"file {index} resumes at {offset}, not at the agreed offset")
        _edge(RECEIVING, inc.state, "data stream", transfer)
        item.state, item.resume_at = "streaming", None
        assert inc.progress is not None
        inc.progress.positions[index] = offset
        self._instructions.append(work.ReceiveFile(transfer, index, offset, stream))

    # --- inputs: our own actions -----------------------------------------------------------------------

    def offer(self, transfer: str, files: Sequence[tuple[str, int]]) -> None:
        """Offer ``files`` (relative POSIX name, size), indexed in order, as ``transfer``."""
        if transfer in self._sending:
            raise RuntimeError(f"transfer {transfer} is already being sent on this session")
        if self._closed:
            return
        entries = tuple(ev.FileEntry(i, name, size) for i, (name, size) in enumerate(files))
        self._sending[transfer] = _Outgoing(transfer, entries)
        total = sum(f.size for f in entries)
        offered = tuple(m.OfferedFile(f.index, f.path, f.size) for f in entries)
        self._messages.append(m.Offer(transfer, offered, total))
        self._events.append(ev.OfferMade(transfer, self.peer, entries, total))

    def cancel(self, transfer: str, reason: str = "cancelled") -> None:
        """Stop ``transfer`` for good, either way. The peer is told even if it is not known here (it may
        be on its way to us, or known only to the peer)."""
        if self._closed:
            return
        self._messages.append(m.Cancel(transfer, reason))
        self._on_cancel(transfer, reason, "us")

    def forget(self, transfer: str) -> None:
        """Our caller stopped waiting for a send: stop sending, tell no one (a later offer resumes it)."""
        out = self._sending.get(transfer)
        if out is not None and self._step_out(out, "forget"):
            self._end_sending(out)

    def session_closed(self, reason: str) -> None:
        """The session ended: what was under way is interrupted (resumable) or withdrawn."""
        if self._closed:
            return
        self._closed = True
        for out in list(self._sending.values()):
            self._step_out(out, "session closed")
            self._end_sending(out)
            self._events.append(ev.TransferInterrupted(out.transfer, self.peer, "send", reason))
        for inc in list(self._receiving.values()):
            self._step_in(inc, "session closed")
            if inc.state == "asking":
                self._instructions.append(work.WithdrawQuestion(inc.transfer))
            elif inc.state == "receiving":
                self._events.append(ev.TransferInterrupted(inc.transfer, self.peer, "receive", reason))
            self._end_receiving(inc, work.Release(inc.transfer))

    # --- inputs: the inbox and the user ----------------------------------------------------------------

    def found(self, transfer: str, stored: Mapping[int, StoredFile] | None) -> None:
        """What the inbox kept of ``transfer`` (answers `LookUp`): its files, or None if nothing."""
        inc = self._receiving.get(transfer)
        if inc is None or inc.state != "checking":
            return
        offer = inc.offer
        resumable = stored is not None and {i: f.size for i, f in stored.items()} == {
            f.index: f.size for f in offer.files
        }
        if stored is not None and not resumable:
            self._instructions.append(work.ForgetStored(transfer))  # the same id for other files
        entries = tuple(ev.FileEntry(f.index, str(f.path), f.size) for f in offer.files)
        refused = tuple((name, why) for _, name, why in offer.refused)
        received = ev.OfferReceived(transfer, self.peer, entries, offer.total, refused, resumable)
        if resumable:
            assert stored is not None
            inc.stored = stored
            self._step_in(inc, "found: resumable")
            partial = [f for f in stored.values() if f.status == "partial"]
            needed = sum(f.size - f.offset for f in partial) if partial else None
            self._events.append(received)
            self._instructions.append(work.Admit(transfer, offer, None, fresh=False, needed=needed))
        elif self.inbox == "ask" and offer.files:
            self._step_in(inc, "found: new, ask")
            self._events.append(received)
            self._instructions.append(work.AskUser(received))
        else:
            self._step_in(inc, "found: new")
            self._events.append(received)
            self._instructions.append(work.Admit(transfer, offer, None, fresh=True, needed=offer.total))

    def user_accepted(self, transfer: str, folder: Path) -> None:
        """The user takes the offer, into ``folder`` (answers `AskUser`)."""
        inc = self._receiving.get(transfer)
        if inc is not None and self._step_in(inc, "user accepts"):
            self._instructions.append(
                work.Admit(transfer, inc.offer, folder, fresh=True, needed=inc.offer.total)
            )

    def user_declined(self, transfer: str, reason: str) -> None:
        """The user says no, with ``reason`` (answers `AskUser`)."""
        inc = self._receiving.get(transfer)
        if inc is not None and self._step_in(inc, "user declines"):
            self._decline(inc, reason)

    def admitted(self, transfer: str, now: float) -> None:
        """The inbox took the offer (answers `Admit`): the accept goes out."""
        inc = self._receiving.get(transfer)
        if inc is None or not self._step_in(inc, "admitted"):
            return
        stored = inc.stored or {
            f.index: StoredFile(f.size, "partial", 0, EMPTY_PREFIX) for f in inc.offer.files
        }
        entries = {f.index: ev.FileEntry(f.index, str(f.path), f.size) for f in inc.offer.files}
        for index, kept in sorted(stored.items()):
            state: FileState = "waiting" if kept.status == "partial" else kept.status
            prefix = kept.prefix or EMPTY_PREFIX
            resume_at = kept.offset if state == "waiting" else None
            inc.files[index] = _IncomingFile(
                entries[index], state, kept.offset, prefix, resume_at, kept.reason
            )
        points = tuple(
            m.ResumePoint(i, f.offset, f.prefix) for i, f in inc.files.items() if f.state == "waiting"
        )
        done = tuple(i for i, f in inc.files.items() if f.state == "done")
        skipped = [
            m.SkippedFile(i, f.reason or "failed") for i, f in inc.files.items() if f.state == "failed"
        ]
        skipped += [m.SkippedFile(i, f"unsafe name: {why}") for i, _, why in inc.offer.refused]
        positions = {
            i: f.entry.size if f.state == "done" else f.offset if f.state == "waiting" else 0
            for i, f in inc.files.items()
        }
        inc.progress = _Progress(now, RateMeter(now), entries, positions)
        self._messages.append(m.Accept(transfer, points, tuple(skipped), done))
        resume_bytes = inc.progress.done
        self._events.append(ev.TransferAccepted(transfer, self.peer, "receive", resume_bytes))
        for index, name, why in inc.offer.refused:
            self._events.append(
                ev.FileFailed(transfer, self.peer, "receive", index, name, f"unsafe name: {why}")
            )
        self._check_received(inc, now)

    def refused(self, transfer: str, reason: str) -> None:
        """The inbox will not take the offer (answers `LookUp` or `Admit`): declined with ``reason``."""
        inc = self._receiving.get(transfer)
        if inc is not None and self._step_in(inc, "refused"):
            self._decline(inc, reason)

    def taken_over(self, transfer: str) -> None:
        """Another session's offer of ``transfer`` took it from this one (the inbox's claim)."""
        inc = self._receiving.get(transfer)
        if inc is not None and self._step_in(inc, "taken over"):
            self._end_receiving(inc, work.StopReceiving(transfer))

    # --- inputs: the adapter's file work ---------------------------------------------------------------

    def data_moved(
        self, transfer: str, direction: ev.Direction, index: int, *, position: int, count: int, now: float
    ) -> None:
        """``count`` more bytes of file ``index`` went out or were written; it stands at ``position``."""
        record = self._sending.get(transfer) if direction == "send" else self._receiving.get(transfer)
        if record is None or record.progress is None or index not in record.progress.files:
            return
        progress = record.progress
        progress.positions[index] = position
        progress.meter.add(now, count)
        if progress.meter.due(now):
            self._events.append(self._progress_event(transfer, direction, progress, index, now))

    def file_sent(self, transfer: str, index: int, now: float) -> None:
        """File ``index`` went out whole, digest included (answers `SendFile`)."""
        out = self._sending.get(transfer)
        if out is None or out.current != index or not self._step_out(out, "file sent"):
            return
        out.current = None
        assert out.progress is not None
        out.progress.positions[index] = out.files[index].size
        self._events.append(self._progress_event(transfer, "send", out.progress, index, now))
        self._send_next(out, now)

    def file_unreadable(self, transfer: str, index: int, reason: str, now: float) -> None:
        """File ``index`` could not be read (answers `SendFile`): the peer is told; the others go on."""
        out = self._sending.get(transfer)
        if out is None or out.current != index or not self._step_out(out, "file unreadable"):
            return
        out.current = None
        out.results[index] = False
        out.failed_here.add(index)
        out.failed += 1
        self._messages.append(m.FileFailed(transfer, index, reason))
        name = out.files[index].path
        self._events.append(ev.FileFailed(transfer, self.peer, "send", index, name, reason))
        self._send_next(out, now)

    def file_received(self, transfer: str, index: int, sha256: str, saved_as: Path, now: float) -> None:
        """File ``index`` arrived whole, its digest matched, and it is saved as ``saved_as``."""
        item = self._streaming(transfer, index, "file received")
        if item is None:
            return
        inc = self._receiving[transfer]
        item.state = "done"
        entry = item.entry
        assert inc.progress is not None
        inc.progress.positions[index] = entry.size
        self._events.append(self._progress_event(transfer, "receive", inc.progress, index, now))
        self._messages.append(m.FileResult(transfer, index, ok=True, sha256=sha256))
        self._events.append(
            ev.FileCompleted(transfer, self.peer, "receive", index, entry.path, entry.size, sha256, saved_as)
        )
        self._check_received(inc, now)

    def file_broken(self, transfer: str, index: int, reason: str, now: float) -> None:
        """File ``index`` arrived but cannot be kept: ``reason`` (a hash mismatch, a failed rename)."""
        item = self._streaming(transfer, index, "file broken")
        if item is not None:
            self._fail_incoming(self._receiving[transfer], item, reason, now)

    def stream_ended(self, transfer: str, index: int) -> None:
        """File ``index``'s stream stopped before the file was whole; another may bring it from 0."""
        item = self._streaming(transfer, index, "stream ended")
        if item is not None:
            item.state = "waiting"

    # --- the sending side ------------------------------------------------------------------------------

    def _on_accept(self, out: _Outgoing, accept: m.Accept, now: float) -> None:
        _edge(SENDING, out.state, "accept", out.transfer)  # a second accept is an error
        listed = [p.index for p in accept.files] + [s.index for s in accept.skipped] + list(accept.done)
        if len(set(listed)) != len(listed) or not set(listed) <= {f.index for f in out.files}:
            raise TransferProtocolError("the accept names files that were not offered, or one twice")
        if any(p.offset > out.files[p.index].size for p in accept.files):
            raise TransferProtocolError("the accept resumes a file past its end")
        self._step_out(out, "accept")
        out.points = {p.index: p for p in sorted(accept.files, key=lambda p: p.index)}
        out.queue = deque(out.points)
        out.completed = len(accept.done)
        out.failed = len(accept.skipped)
        positions = {i: p.offset for i, p in out.points.items()}
        positions.update({i: out.files[i].size for i in accept.done})
        files = {f.index: f for f in out.files}
        out.progress = _Progress(now, RateMeter(now), files, positions)
        self._events.append(ev.TransferAccepted(out.transfer, self.peer, "send", out.progress.done))
        for skipped in sorted(accept.skipped, key=lambda s: s.index):
            name = out.files[skipped.index].path
            self._events.append(
                ev.FileFailed(out.transfer, self.peer, "send", skipped.index, name, skipped.reason)
            )
        self._send_next(out, now)

    def _on_decline(self, out: _Outgoing, decline: m.Decline) -> None:
        if self._step_out(out, "decline"):
            self._end_sending(out)
            self._events.append(ev.TransferDeclined(out.transfer, self.peer, "send", decline.reason))

    def _on_result(self, out: _Outgoing, result: m.FileResult, now: float) -> None:
        self._step_out(out, "file-result")  # before the accept: an error
        index = result.index
        if index not in out.points:
            raise TransferProtocolError(f"a result for file {index}, which was not to be sent")
        if index in out.results:
            if index in out.failed_here:
                return  # the receiver's answer to our file-failed: we said so already
            raise TransferProtocolError(f"a second result for file {index}")
        out.results[index] = result.ok
        entry = out.files[index]
        if result.ok:
            out.completed += 1
            digest = result.sha256 or ""
            self._events.append(
                ev.FileCompleted(out.transfer, self.peer, "send", index, entry.path, entry.size, digest, None)
            )
        else:
            out.failed += 1
            reason = result.reason or "failed"
            self._events.append(ev.FileFailed(out.transfer, self.peer, "send", index, entry.path, reason))
        if out.current == index:  # the receiver gave up on it before its end (it could not write it)
            out.current = None
            self._instructions.append(work.StopSending(out.transfer))
        self._send_next(out, now)

    def _send_next(self, out: _Outgoing, now: float) -> None:
        while out.current is None and out.queue:
            index = out.queue.popleft()
            if index in out.results:
                continue  # the receiver answered for it already
            point = out.points[index]
            out.current = index
            self._instructions.append(work.SendFile(out.transfer, index, point.offset, point.prefix))
        self._check_sent(out, now)

    def _check_sent(self, out: _Outgoing, now: float) -> None:
        if len(out.results) < len(out.points) or not self._step_out(out, "all files answered"):
            return
        self._end_sending(out)
        assert out.progress is not None
        seconds = now - out.progress.started
        self._events.append(
            ev.TransferFinished(
                out.transfer, self.peer, "send", out.completed, out.failed, out.progress.meter.count, seconds
            )
        )

    def _end_sending(self, out: _Outgoing) -> None:
        del self._sending[out.transfer]
        if out.current is not None:
            self._instructions.append(work.StopSending(out.transfer))
            out.current = None

    # --- the receiving side ----------------------------------------------------------------------------

    def _on_offer(self, offer: m.Offer) -> None:
        transfer = offer.transfer
        known = self._receiving.get(transfer)
        if known is not None:
            _edge(RECEIVING, known.state, "offer", transfer)  # offered again while under way: an error
            return
        safe = offer.safe()
        inc = _Incoming(safe, frozenset(f.index for f in offer.files), state="new")
        if self.inbox == "none":
            self._step_in(inc, "offer, no inbox")
            self._messages.append(m.Decline(transfer, "not accepting files"))
            return
        self._step_in(inc, "offer")
        self._receiving[transfer] = inc
        self._instructions.append(work.LookUp(transfer, safe))

    def _on_file_failed(self, message: m.FileFailed, now: float) -> None:
        inc = self._receiving.get(message.transfer)
        if inc is None:
            return  # ended here already
        _edge(RECEIVING, inc.state, "file-failed", inc.transfer)  # before our accept: an error
        if message.index not in inc.indices:
            raise TransferProtocolError(f"file-failed for file {message.index}, which was not offered")
        item = inc.files.get(message.index)
        if item is None or item.state in ("done", "failed"):
            return  # not one we take, or it has its result already
        reason = f"the sender could not send it: {message.reason}"
        self._instructions.append(work.FailFile(inc.transfer, message.index, reason))
        self._fail_incoming(inc, item, reason, now)

    def _fail_incoming(self, inc: _Incoming, item: _IncomingFile, reason: str, now: float) -> None:
        item.state, item.reason = "failed", reason
        entry = item.entry
        assert inc.progress is not None
        inc.progress.positions[entry.index] = 0
        self._messages.append(m.FileResult(inc.transfer, entry.index, ok=False, reason=reason))
        self._events.append(
            ev.FileFailed(inc.transfer, self.peer, "receive", entry.index, entry.path, reason)
        )
        self._check_received(inc, now)

    def _check_received(self, inc: _Incoming, now: float) -> None:
        if any(f.state in ("waiting", "streaming") for f in inc.files.values()):
            return
        if not self._step_in(inc, "all files done"):
            return
        self._end_receiving(inc, work.FinishIncoming(inc.transfer))
        completed = sum(1 for f in inc.files.values() if f.state == "done")
        assert inc.progress is not None
        self._events.append(
            ev.TransferFinished(
                inc.transfer,
                self.peer,
                "receive",
                completed,
                len(inc.files) - completed,
                inc.progress.meter.count,
                now - inc.progress.started,
            )
        )

    def _decline(self, inc: _Incoming, reason: str) -> None:
        self._end_receiving(inc, work.Release(inc.transfer))
        self._messages.append(m.Decline(inc.transfer, reason))
        self._events.append(ev.TransferDeclined(inc.transfer, self.peer, "receive", reason))

    def _end_receiving(self, inc: _Incoming, cleanup: Instruction) -> None:
        del self._receiving[inc.transfer]
        self._instructions.append(cleanup)

    def _streaming(self, transfer: str, index: int, what: str) -> _IncomingFile | None:
        """File ``index`` of ``transfer`` if it has a stream here and ``what`` may happen to it now."""
        inc = self._receiving.get(transfer)
        if inc is None or not self._step_in(inc, what):
            return None
        item = inc.files.get(index)
        return item if item is not None and item.state == "streaming" else None

    # --- both sides ------------------------------------------------------------------------------------

    def _on_cancel(self, transfer: str, reason: str, by: Literal["us", "peer"]) -> None:
        what = "cancel" if by == "peer" else "cancel by us"
        out = self._sending.get(transfer)
        if out is not None and self._step_out(out, what):
            self._end_sending(out)
            self._events.append(ev.TransferCancelled(transfer, self.peer, "send", by, reason))
        inc = self._receiving.get(transfer)
        if inc is not None and self._step_in(inc, what):
            if inc.state == "asking":
                # Never accepted, so nothing is on disk: the question goes, the claim is let go.
                self._instructions.append(work.WithdrawQuestion(transfer))
                self._end_receiving(inc, work.Release(transfer))
            else:
                self._end_receiving(inc, work.Drop(transfer))
            if inc.shown:
                self._events.append(ev.TransferCancelled(transfer, self.peer, "receive", by, reason))

    @staticmethod
    def _step_out(out: _Outgoing, what: str) -> bool:
        """Follow ``what``'s edge in `SENDING`: False if there is none (late: ignore it). At "ended" the
        state stays as it was, for the caller's clean-up."""
        following = _edge(SENDING, out.state, what, out.transfer)
        if following is not None and following != "ended":
            out.state = following
        return following is not None

    @staticmethod
    def _step_in(inc: _Incoming, what: str) -> bool:
        """`_step_out` for `RECEIVING`."""
        following = _edge(RECEIVING, inc.state, what, inc.transfer)
        if following is not None and following != "ended":
            inc.state = following
        return following is not None

    def _progress_event(
        self, transfer: str, direction: ev.Direction, progress: _Progress, index: int, now: float
    ) -> ev.TransferProgress:
        entry = progress.files[index]
        done, total = progress.done, progress.total
        return ev.TransferProgress(
            transfer,
            self.peer,
            direction,
            index,
            entry.path,
            progress.positions.get(index, 0),
            entry.size,
            done,
            total,
            progress.meter.rate(now),
            progress.meter.eta(now, total - done),
        )
