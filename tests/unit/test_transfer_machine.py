"""The file transfer machine alone: two machines against each other, with no sockets, no files, no clock.

As in aioquic's tests/test_connection.py, `roundtrip` carries each side's control messages to the other
(through the JSON wire format). Everything the adapter would do is played by hand or by `Disk`, a fake of
what the inbox keeps between sessions; data streams are just numbers. Each test reads as the story of one
transfer: who says what, what the machine decides, and what it asks of its adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path, PurePosixPath
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.transfer import events as ev
from app.transfer import messages as m
from app.transfer.file_work import (
    Admit,
    AskUser,
    Drop,
    FailFile,
    FinishIncoming,
    ForgetStored,
    Instruction,
    LookUp,
    ReceiveFile,
    Release,
    SendFile,
    StopReceiving,
    StopSending,
    StoredFile,
    WithdrawQuestion,
)
from app.transfer.machine import RECEIVING, SENDING, InboxMode, TransferMachine
from app.transfer.protocol import EMPTY_PREFIX, TransferProtocolError

X = TypeVar("X")
T = "7" * 32
FILES = [("photos/a.jpg", 3000), ("photos/b.txt", 5)]
TOTAL = 3005
PREFIX = "c" * 64  # the hash of a resumed file's first bytes (what the receiver read back from disk)
_streams: Iterator[int] = count(3, 4)  # QUIC's client-opened unidirectional stream ids


@dataclass
class Side:
    """One machine and what it said: events for the app, and file work not done yet (``todo``)."""

    machine: TransferMachine
    events: list[ev.TransferEvent] = field(default_factory=list)
    todo: list[Instruction] = field(default_factory=list)

    def collect(self) -> None:
        while (event := self.machine.next_event()) is not None:
            self.events.append(event)
        while (instruction := self.machine.next_instruction()) is not None:
            self.todo.append(instruction)

    def of(self, kind: type[X]) -> list[X]:
        self.collect()
        return [e for e in self.events if isinstance(e, kind)]

    def take(self, kind: type[X]) -> X:
        """The oldest instruction of ``kind``, now done (the test fails if there is none)."""
        self.collect()
        for item in self.todo:
            if isinstance(item, kind):
                self.todo.remove(item)
                return item
        raise AssertionError(f"no {kind.__name__} among {self.todo}")

    def asked(self, kind: type[object]) -> bool:
        self.collect()
        return any(isinstance(item, kind) for item in self.todo)


def sender(inbox: InboxMode = "accept") -> Side:
    return Side(TransferMachine("bob", inbox=inbox))


def receiver(inbox: InboxMode = "accept") -> Side:
    return Side(TransferMachine("alice", inbox=inbox))


def wire(message: m.TransferMessage) -> m.TransferMessage:
    """A message as the peer reads it: JSON there and back."""
    return m.decode(json.loads(json.dumps(m.encode(message))))


def roundtrip(a: Side, b: Side, now: float = 0.0) -> tuple[list[m.TransferMessage], list[m.TransferMessage]]:
    """Carry ``a``'s messages to ``b``, then ``b``'s to ``a``; what went each way."""
    there = a.machine.messages_to_send()
    for message in there:
        b.machine.receive(wire(message), now)
    back = b.machine.messages_to_send()
    for message in back:
        a.machine.receive(wire(message), now)
    a.collect()
    b.collect()
    return there, back


@dataclass
class Disk:
    """The receiver's inbox as the machine sees it: records of accepted transfers, kept across sessions."""

    kept: dict[str, dict[int, StoredFile]] = field(default_factory=dict)

    def look_up(self, side: Side) -> None:
        job = side.take(LookUp)
        side.machine.found(job.transfer, self.kept.get(job.transfer))
        side.collect()

    def admit(self, side: Side, now: float = 0.0) -> Admit:
        job = side.take(Admit)
        if job.fresh:
            self.kept[job.transfer] = {f.index: StoredFile(f.size, "partial") for f in job.offer.files}
        side.machine.admitted(job.transfer, now)
        side.collect()
        return job

    def checkpoint(self, transfer: str, index: int, offset: int) -> None:
        self.kept[transfer][index] = StoredFile(self.kept[transfer][index].size, "partial", offset, PREFIX)

    def saved(self, transfer: str, index: int) -> None:
        self.kept[transfer][index] = StoredFile(self.kept[transfer][index].size, "done")


def accepted_pair(disk: Disk, inbox: InboxMode = "accept") -> tuple[Side, Side]:
    """Alice offered FILES to bob, whose inbox took them; the accept has reached alice."""
    alice, bob = sender(), receiver(inbox)
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    if inbox == "ask":
        bob.take(AskUser)
        bob.machine.user_accepted(T, Path("/elsewhere"))
    disk.admit(bob)
    roundtrip(bob, alice)
    return alice, bob


def stream_one(alice: Side, bob: Side, disk: Disk, now: float = 1.0) -> SendFile:
    """Alice's next file goes over a data stream, arrives whole and verified; the result goes back."""
    job = alice.take(SendFile)
    size = FILES[job.index][1]
    stream = next(_streams)
    bob.machine.stream_opened(stream, job.transfer, job.index, job.offset)
    assert bob.take(ReceiveFile) == ReceiveFile(job.transfer, job.index, job.offset, stream)
    alice.machine.data_moved(T, "send", job.index, position=size, count=size - job.offset, now=now)
    alice.machine.file_sent(T, job.index, now)
    bob.machine.data_moved(T, "receive", job.index, position=size, count=size - job.offset, now=now)
    disk.saved(T, job.index)
    bob.machine.file_received(T, job.index, f"{job.index:064x}", Path(f"/dl/{job.index}"), now)
    roundtrip(bob, alice, now)
    return job


# --- offer, accept, results, finished ----------------------------------------------------------------


def test_an_offer_is_accepted_sent_file_by_file_and_finished_on_both_sides() -> None:
    alice, bob, disk = sender(), receiver(), Disk()
    alice.machine.offer(T, FILES)
    there, _ = roundtrip(alice, bob)
    assert there == [
        m.Offer(T, (m.OfferedFile(0, "photos/a.jpg", 3000), m.OfferedFile(1, "photos/b.txt", 5)), TOTAL)
    ]
    assert alice.of(ev.OfferMade)[0].total == TOTAL
    assert bob.take(LookUp).offer.total == TOTAL  # the inbox is asked what it kept of this transfer
    bob.machine.found(T, None)
    admit = bob.take(Admit)
    assert (admit.fresh, admit.folder, admit.needed) == (True, None, TOTAL)
    offered = bob.of(ev.OfferReceived)[0]
    assert (offered.resumed, [f.path for f in offered.files]) == (False, ["photos/a.jpg", "photos/b.txt"])
    bob.machine.admitted(T, 0.0)
    there, _ = roundtrip(bob, alice)
    fresh = (m.ResumePoint(0, 0, EMPTY_PREFIX), m.ResumePoint(1, 0, EMPTY_PREFIX))
    assert there == [m.Accept(T, fresh)]
    assert [e.resume_bytes for e in alice.of(ev.TransferAccepted) + bob.of(ev.TransferAccepted)] == [0, 0]
    first = alice.take(SendFile)
    assert (first.index, first.offset, first.prefix) == (0, 0, EMPTY_PREFIX)
    assert not alice.asked(SendFile)  # one file at a time
    alice.todo.insert(0, first)
    disk.kept[T] = {0: StoredFile(3000, "partial"), 1: StoredFile(5, "partial")}
    stream_one(alice, bob, disk)
    stream_one(alice, bob, disk, now=2.0)
    assert [(e.completed, e.failed, e.bytes_sent) for e in alice.of(ev.TransferFinished)] == [(2, 0, TOTAL)]
    finished = bob.of(ev.TransferFinished)
    assert [(e.completed, e.failed, e.bytes_sent, e.seconds) for e in finished] == [(2, 0, TOTAL, 2.0)]
    assert [e.sha256 for e in alice.of(ev.FileCompleted)] == [f"{i:064x}" for i in range(2)]
    assert bob.take(FinishIncoming) == FinishIncoming(T)
    assert not alice.machine.sending(T)
    assert not bob.machine.receiving(T)
    progress = alice.of(ev.TransferProgress)
    assert (progress[-1].bytes_done, progress[-1].total) == (TOTAL, TOTAL)


def test_the_user_declines_and_the_sender_hears_why() -> None:
    alice, bob, disk = sender(), receiver("ask"), Disk()
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    question = bob.take(AskUser)
    assert question.offer.transfer == T
    bob.machine.user_declined(T, "not now, thanks")
    there, _ = roundtrip(bob, alice)
    assert there == [m.Decline(T, "not now, thanks")]
    assert (
        alice.of(ev.TransferDeclined)[0].reason == bob.of(ev.TransferDeclined)[0].reason == "not now, thanks"
    )
    assert bob.take(Release) == Release(T)  # the inbox lets go; nothing was written
    assert not bob.asked(Admit)
    assert not alice.machine.sending(T)


def test_the_user_accepts_into_a_folder_of_their_choice() -> None:
    alice, bob, disk = sender(), receiver("ask"), Disk()
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    bob.take(AskUser)
    bob.machine.user_accepted(T, Path("/media/usb"))
    admit = bob.take(Admit)
    assert (admit.folder, admit.fresh) == (Path("/media/usb"), True)


def test_the_inbox_refuses_and_the_offer_is_declined_with_its_reason() -> None:
    alice, bob, disk = sender(), receiver(), Disk()
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    bob.take(Admit)
    bob.machine.refused(T, "not enough free disk space")
    roundtrip(bob, alice)
    assert alice.of(ev.TransferDeclined)[0].reason == "not enough free disk space"
    assert bob.take(Release) == Release(T)


def test_without_an_inbox_offers_are_declined_at_once_and_quietly() -> None:
    alice, bob = sender(), receiver("none")
    alice.machine.offer(T, FILES)
    _, back = roundtrip(alice, bob)
    assert back == [m.Decline(T, "not accepting files")]
    assert bob.events == []
    assert bob.todo == []


def test_unsafe_names_are_refused_one_by_one_and_the_rest_accepted() -> None:
    alice, bob, disk = sender(), receiver(), Disk()
    alice.machine.offer(T, [("../escape.txt", 4), ("fine.txt", 4)])
    roundtrip(alice, bob)
    disk.look_up(bob)
    assert bob.of(ev.OfferReceived)[0].refused[0][0] == "../escape.txt"
    assert [f.path for f in bob.take(Admit).offer.files] == [PurePosixPath("fine.txt")]
    bob.machine.admitted(T, 0.0)
    there, _ = roundtrip(bob, alice)
    accept = there[0]
    assert isinstance(accept, m.Accept)
    assert [p.index for p in accept.files] == [1]
    assert [s.index for s in accept.skipped] == [0]
    assert accept.skipped[0].reason.startswith("unsafe name")
    assert [e.index for e in alice.of(ev.FileFailed)] == [0]
    assert [e.index for e in bob.of(ev.FileFailed)] == [0]
    assert alice.take(SendFile).index == 1


# --- resuming ----------------------------------------------------------------------------------------


def test_a_re_offer_of_an_accepted_transfer_resumes_from_the_verified_offsets_without_asking() -> None:
    disk = Disk()
    alice, bob = accepted_pair(disk, inbox="ask")  # the user was asked once, and said yes
    assert len(bob.of(ev.OfferReceived)) == 1
    first = alice.take(SendFile)
    bob.machine.stream_opened(next(_streams), T, first.index, first.offset)
    bob.take(ReceiveFile)
    disk.checkpoint(T, 0, 1200)  # 1200 bytes durable when the path died
    alice.machine.session_closed("the path was lost")
    bob.machine.session_closed("the path was lost")
    assert alice.of(ev.TransferInterrupted)[0].direction == "send"
    assert bob.of(ev.TransferInterrupted)[0].direction == "receive"
    assert bob.take(Release) == Release(T)  # the state stays on disk
    # A new session: the same transfer offered again.
    alice, bob = sender(), receiver("ask")
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    assert not bob.asked(AskUser)  # accepted before: not asked a second time
    assert bob.of(ev.OfferReceived)[0].resumed
    admit = disk.admit(bob)
    assert (admit.fresh, admit.needed) == (False, TOTAL - 1200)  # free space for what is still to come
    there, _ = roundtrip(bob, alice)
    assert there == [m.Accept(T, (m.ResumePoint(0, 1200, PREFIX), m.ResumePoint(1, 0, EMPTY_PREFIX)))]
    assert alice.of(ev.TransferAccepted)[0].resume_bytes == 1200
    job = alice.take(SendFile)
    assert (job.index, job.offset, job.prefix) == (0, 1200, PREFIX)


def test_a_transfer_never_accepted_is_asked_about_again_and_never_resumed() -> None:
    disk = Disk()
    for ending in ("declined", "session closed", "cancelled", "question withdrawn"):
        alice, bob = sender(), receiver("ask")
        alice.machine.offer(T, FILES)
        roundtrip(alice, bob)
        disk.look_up(bob)
        assert bob.take(AskUser).offer.resumed is False, ending
        if ending == "declined":
            bob.machine.user_declined(T, "no")
        elif ending == "session closed":
            bob.machine.session_closed("gone")
            assert bob.take(WithdrawQuestion) == WithdrawQuestion(T)
        elif ending == "cancelled":
            alice.machine.cancel(T)
            roundtrip(alice, bob)
            assert bob.take(WithdrawQuestion) == WithdrawQuestion(T)
        else:
            bob.machine.cancel(T, "never mind")
        assert bob.take(Release) == Release(T), ending  # nothing on disk to delete
        assert not bob.asked(Admit)
        assert T not in disk.kept, ending
        assert not bob.of(ev.TransferAccepted), ending


def test_no_data_stream_is_taken_before_the_accept() -> None:
    alice, bob, disk = sender(), receiver("ask"), Disk()
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    bob.machine.stream_opened(next(_streams), T, 0, 0)  # a peer that sends before it is asked for
    assert not bob.asked(ReceiveFile)


def test_a_finished_transfer_offered_again_is_answered_done() -> None:
    disk = Disk(kept={T: {0: StoredFile(3000, "done"), 1: StoredFile(5, "failed", reason="damaged")}})
    alice, bob = sender(), receiver("ask")
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    admit = bob.take(Admit)
    assert admit.needed is None  # nothing left to come: no space check
    bob.machine.admitted(T, 0.0)
    there, _ = roundtrip(bob, alice)
    assert there == [m.Accept(T, (), (m.SkippedFile(1, "damaged"),), (0,))]
    assert [(e.completed, e.failed, e.bytes_sent) for e in alice.of(ev.TransferFinished)] == [(1, 1, 0)]
    assert [(e.completed, e.failed) for e in bob.of(ev.TransferFinished)] == [(1, 1)]
    assert alice.of(ev.TransferAccepted)[0].resume_bytes == 3000
    assert bob.take(FinishIncoming) == FinishIncoming(T)


def test_what_was_kept_for_other_files_under_the_same_id_is_forgotten_and_the_offer_is_new() -> None:
    disk = Disk(kept={T: {0: StoredFile(99, "partial", 50, PREFIX)}})
    alice, bob = sender(), receiver("ask")
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    assert bob.take(ForgetStored) == ForgetStored(T)
    assert bob.take(AskUser).offer.resumed is False


def test_a_damaged_resume_point_is_sent_again_from_zero_and_only_there() -> None:
    disk = Disk(kept={T: {0: StoredFile(3000, "partial", 1200, PREFIX), 1: StoredFile(5, "done")}})
    alice, bob = sender(), receiver()
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    disk.look_up(bob)
    disk.admit(bob)
    roundtrip(bob, alice)
    with pytest.raises(TransferProtocolError, match="agreed offset"):
        bob.machine.stream_opened(next(_streams), T, 0, 600)
    # The sender's own first 1200 bytes hash otherwise: it sends from 0, which is always acceptable.
    bob.machine.stream_opened(next(_streams), T, 0, 0)
    assert bob.take(ReceiveFile).offset == 0


# --- cancel, from either side, at each stage ---------------------------------------------------------


def _to_stage(stage: str, disk: Disk) -> tuple[Side, Side]:
    alice, bob = sender(), receiver("ask")
    alice.machine.offer(T, FILES)
    roundtrip(alice, bob)
    if stage == "checking":
        return alice, bob
    disk.look_up(bob)
    bob.take(AskUser)
    if stage == "asking":
        return alice, bob
    bob.machine.user_accepted(T, Path("/dl"))
    if stage == "admitting":
        return alice, bob
    disk.admit(bob)
    roundtrip(bob, alice)
    job = alice.take(SendFile)
    bob.machine.stream_opened(next(_streams), T, job.index, job.offset)
    bob.take(ReceiveFile)
    alice.todo.append(job)
    return alice, bob


@pytest.mark.parametrize("by", ["sender", "receiver"])
@pytest.mark.parametrize("stage", ["checking", "asking", "admitting", "streaming"])
def test_a_cancel_from_either_side_at_each_stage_stops_both(by: str, stage: str) -> None:
    disk = Disk()
    alice, bob = _to_stage(stage, disk)
    cancelling, other = (alice, bob) if by == "sender" else (bob, alice)
    cancelling.machine.cancel(T, "changed my mind")
    there, _ = roundtrip(cancelling, other)
    assert there == [m.Cancel(T, "changed my mind")]
    assert not alice.machine.sending(T)
    assert not bob.machine.receiving(T)
    sent = alice.of(ev.TransferCancelled)
    assert [(e.by, e.reason) for e in sent] == [("us" if by == "sender" else "peer", "changed my mind")]
    received = bob.of(ev.TransferCancelled)
    if stage == "checking":
        assert received == []  # the offer never reached the app
    else:
        assert [e.by for e in received] == ["us" if by == "receiver" else "peer"]
    if stage == "asking":
        assert bob.take(WithdrawQuestion) == WithdrawQuestion(T)
        assert bob.take(Release) == Release(T)  # never accepted: nothing on disk to delete
    else:
        assert bob.take(Drop) == Drop(T)  # what was kept goes (an earlier session's too)
    if stage == "streaming":
        assert alice.take(StopSending) == StopSending(T)


def test_answers_that_come_after_a_cancel_are_late_and_ignored() -> None:
    disk = Disk()
    alice, bob = _to_stage("admitting", disk)
    alice.machine.cancel(T)
    roundtrip(alice, bob)
    bob.todo.clear()
    bob.machine.admitted(T, 0.0)  # the inbox's work finished after the cancel arrived
    bob.machine.user_accepted(T, Path("/dl"))
    bob.machine.found(T, None)
    assert bob.machine.messages_to_send() == []
    assert not bob.asked(object)
    # And a peer message about a transfer that ended here: it crossed our cancel.
    alice.machine.receive(m.Accept(T, ()), 0.0)
    alice.machine.receive(m.FileResult(T, 0, ok=True), 0.0)
    assert alice.machine.messages_to_send() == []


def test_a_send_our_caller_gave_up_on_stops_quietly() -> None:
    alice, _ = _to_stage("streaming", Disk())
    alice.machine.forget(T)
    assert alice.take(StopSending) == StopSending(T)
    assert alice.machine.messages_to_send() == []
    assert not alice.of(ev.TransferCancelled)


def test_another_session_taking_the_transfer_over_stops_this_one_silently() -> None:
    disk = Disk()
    _, bob = _to_stage("streaming", disk)
    events = len(bob.events)
    bob.machine.taken_over(T)
    assert bob.take(StopReceiving) == StopReceiving(T)
    assert bob.machine.messages_to_send() == []
    assert len(bob.of(object)) == events
    assert not bob.machine.receiving(T)


# --- failed files ------------------------------------------------------------------------------------


def test_a_file_the_sender_cannot_read_fails_alone() -> None:
    disk = Disk()
    alice, bob = accepted_pair(disk)
    job = alice.take(SendFile)
    alice.machine.file_unreadable(T, job.index, "cannot read photos/a.jpg: gone", 1.0)
    there, back = roundtrip(alice, bob)
    assert there == [m.FileFailed(T, 0, "cannot read photos/a.jpg: gone")]
    assert back == [
        m.FileResult(T, 0, ok=False, reason="the sender could not send it: cannot read photos/a.jpg: gone")
    ]
    assert bob.take(FailFile) == FailFile(
        T, 0, "the sender could not send it: cannot read photos/a.jpg: gone"
    )
    assert [e.reason for e in alice.of(ev.FileFailed)] == ["cannot read photos/a.jpg: gone"]  # once, ours
    stream_one(alice, bob, disk)  # the other file goes on
    assert [(e.completed, e.failed) for e in alice.of(ev.TransferFinished)] == [(1, 1)]
    assert [(e.completed, e.failed) for e in bob.of(ev.TransferFinished)] == [(1, 1)]


def test_a_file_that_arrives_damaged_fails_and_the_sender_is_told() -> None:
    disk = Disk()
    alice, bob = accepted_pair(disk)
    job = alice.take(SendFile)
    bob.machine.stream_opened(next(_streams), T, job.index, 0)
    bob.take(ReceiveFile)
    alice.machine.file_sent(T, job.index, 1.0)
    bob.machine.file_broken(T, job.index, "content hash mismatch", 1.0)
    roundtrip(bob, alice)
    assert [(e.index, e.reason) for e in alice.of(ev.FileFailed)] == [(0, "content hash mismatch")]
    stream_one(alice, bob, disk)
    assert [(e.completed, e.failed) for e in alice.of(ev.TransferFinished)] == [(1, 1)]


def test_a_stream_that_ends_early_leaves_its_file_waiting_for_another_from_zero() -> None:
    disk = Disk()
    alice, bob = accepted_pair(disk)
    job = alice.take(SendFile)
    bob.machine.stream_opened(next(_streams), T, job.index, 0)
    bob.take(ReceiveFile)
    bob.machine.stream_ended(T, job.index)
    bob.machine.stream_opened(next(_streams), T, job.index, 0)
    assert bob.take(ReceiveFile).index == job.index


def test_a_result_for_the_file_being_sent_stops_its_stream_and_the_next_one_starts() -> None:
    alice, _ = accepted_pair(Disk())
    job = alice.take(SendFile)
    alice.machine.receive(m.FileResult(T, job.index, ok=False, reason="cannot write: disk full"), 1.0)
    assert alice.take(StopSending) == StopSending(T)
    assert alice.take(SendFile).index == 1


# --- the peer breaking the protocol ------------------------------------------------------------------


def test_out_of_turn_messages_are_protocol_errors() -> None:
    alice, bob, disk = sender(), receiver("ask"), Disk()
    alice.machine.offer(T, FILES)
    with pytest.raises(TransferProtocolError, match="out of turn"):
        alice.machine.receive(m.FileResult(T, 0, ok=True), 0.0)  # a result before any accept
    roundtrip(alice, bob)
    with pytest.raises(TransferProtocolError, match="out of turn"):
        bob.machine.receive(m.Offer(T, (m.OfferedFile(0, "x", 1),)), 0.0)  # offered again while under way
    disk.look_up(bob)
    with pytest.raises(TransferProtocolError, match="out of turn"):
        bob.machine.receive(m.FileFailed(T, 0, "?"), 0.0)  # before our accept
    bob.take(AskUser)
    bob.machine.user_accepted(T, Path("/dl"))
    disk.admit(bob)
    roundtrip(bob, alice)
    with pytest.raises(TransferProtocolError, match="out of turn"):
        alice.machine.receive(m.Accept(T, ()), 0.0)  # a second accept
    with pytest.raises(TransferProtocolError, match="not to be sent"):
        alice.machine.receive(m.FileResult(T, 7, ok=True), 0.0)
    alice.machine.receive(m.FileResult(T, 0, ok=True), 0.0)
    with pytest.raises(TransferProtocolError, match="second result"):
        alice.machine.receive(m.FileResult(T, 0, ok=True), 0.0)
    with pytest.raises(TransferProtocolError, match="not offered"):
        bob.machine.receive(m.FileFailed(T, 9, "?"), 0.0)
    stream = next(_streams)
    bob.machine.stream_opened(stream, T, 1, 0)
    with pytest.raises(TransferProtocolError, match="second data stream"):
        bob.machine.stream_opened(next(_streams), T, 1, 0)


@pytest.mark.parametrize(
    "accept",
    [
        m.Accept(T, (m.ResumePoint(5, 0, EMPTY_PREFIX),)),
        m.Accept(T, (m.ResumePoint(0, 0, EMPTY_PREFIX),), done=(0,)),
        m.Accept(T, (m.ResumePoint(1, 6, EMPTY_PREFIX),)),
    ],
    ids=["not-offered", "named-twice", "past-the-end"],
)
def test_an_accept_that_does_not_fit_the_offer_is_a_protocol_error(accept: m.Accept) -> None:
    alice = sender()
    alice.machine.offer(T, FILES)
    with pytest.raises(TransferProtocolError):
        alice.machine.receive(accept, 0.0)
    assert alice.machine.sending(T)  # and nothing changed: the adapter ends the session


def test_messages_about_unknown_transfers_and_streams_are_late_and_ignored() -> None:
    bob = receiver()
    other = "9" * 32
    for message in (m.Accept(other, ()), m.FileResult(other, 0, ok=True), m.Cancel(other), m.Decline(other)):
        bob.machine.receive(message, 0.0)
    bob.machine.receive(m.FileFailed(other, 0, "?"), 0.0)
    bob.machine.stream_opened(next(_streams), other, 0, 0)
    assert bob.machine.messages_to_send() == []
    assert bob.of(object) == []
    assert not bob.asked(object)


def test_the_tables_have_edges_for_every_peer_message_they_name() -> None:
    # Each peer message type appears in a table; out-of-turn edges are simply missing from them.
    inputs = {what for _, what in SENDING} | {what for _, what in RECEIVING}
    assert {"accept", "decline", "file-result", "cancel", "offer", "file-failed"} <= inputs
    assert all(following == "ended" for (_, what), following in SENDING.items() if what == "session closed")


# Random peers: whatever a well-typed message says, in any order, the machine answers or raises the
# protocol error, never anything else.
_index = st.integers(0, 3)
_peer_messages = st.one_of(
    st.builds(
        m.Offer,
        st.just(T),
        st.lists(
            st.builds(m.OfferedFile, _index, st.sampled_from(["a", "../b", "c/d"]), st.integers(0, 9)),
            min_size=1,
            max_size=3,
        ),
    ),
    st.builds(
        m.Accept,
        st.just(T),
        st.lists(st.builds(m.ResumePoint, _index, st.integers(0, 9), st.just(EMPTY_PREFIX)), max_size=3).map(
            tuple
        ),
        st.lists(st.builds(m.SkippedFile, _index), max_size=2).map(tuple),
        st.lists(_index, max_size=2).map(tuple),
    ),
    st.builds(m.Decline, st.just(T)),
    st.builds(m.FileResult, st.just(T), _index, st.booleans()),
    st.builds(m.FileFailed, st.just(T), _index),
    st.builds(m.Cancel, st.just(T)),
)


@settings(max_examples=300)
@given(st.lists(_peer_messages, max_size=8), st.sampled_from(["none", "ask", "accept"]))
def test_any_sequence_of_peer_messages_is_answered_or_refused(
    sequence: list[m.TransferMessage], inbox: InboxMode
) -> None:
    side = Side(TransferMachine("alice", inbox=inbox))
    side.machine.offer(T, FILES)  # so that answers to an offer have something to match
    for message in sequence:
        try:
            side.machine.receive(wire(message), 0.0)
        except TransferProtocolError:
            continue
        side.collect()
        for job in list(side.todo):  # play a willing adapter for whatever it asked
            if isinstance(job, LookUp):
                side.machine.found(job.transfer, None)
            elif isinstance(job, AskUser):
                side.machine.user_accepted(job.offer.transfer, Path("/dl"))
            elif isinstance(job, Admit):
                side.machine.admitted(job.transfer, 0.0)
            elif isinstance(job, SendFile):
                side.machine.file_sent(job.transfer, job.index, 0.0)
        side.todo.clear()
        side.collect()
    side.machine.session_closed("done")
    side.collect()
