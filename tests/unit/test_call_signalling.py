"""Call signalling, both ends of the state machine wired together in memory with a fake clock."""

from __future__ import annotations

import pytest

from app.voice.call_messages import (
    CALL_MESSAGES,
    Accept,
    CallMessage,
    CallProtocolError,
    Cancel,
    Hangup,
    Invite,
    Ringing,
)
from app.voice.call_signalling import (
    NO_ANSWER_AFTER,
    RING_GRACE,
    CallEnded,
    CallEvent,
    CallRinging,
    CallSignalling,
    CallStarted,
    busy_reply,
)


class Line:
    """Alice calls Bob; messages cross instantly unless the line is cut."""

    def __init__(self) -> None:
        self.now = 0.0
        self.alice = CallSignalling.start("bob", self.now)
        invite = self.alice.messages_to_send()[0]
        assert isinstance(invite, Invite)
        self.bob = CallSignalling.incoming(invite, "alice", self.now)
        self.events: dict[str, list[CallEvent]] = {"alice": [], "bob": []}
        self.sent: dict[str, list[CallMessage]] = {"alice": [invite], "bob": []}
        self.cut = False
        self.flush()

    def flush(self) -> None:
        moved = True
        while moved:
            moved = False
            for name, sender, receiver in (("alice", self.alice, self.bob), ("bob", self.bob, self.alice)):
                for message in sender.messages_to_send():
                    moved = True
                    self.sent[name].append(message)
                    if not self.cut:  # through the wire format, as on a session
                        receiver.receive(CALL_MESSAGES.decode(CALL_MESSAGES.encode(message)))
            for name, machine in (("alice", self.alice), ("bob", self.bob)):
                while (event := machine.next_event()) is not None:
                    self.events[name].append(event)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for machine in (self.alice, self.bob):
            timer = machine.get_timer()
            if timer is not None and timer <= self.now:
                machine.handle_timer(self.now)
        self.flush()

    def ended(self, name: str) -> CallEnded:
        event = self.events[name][-1]
        assert isinstance(event, CallEnded), self.events[name]
        return event


def test_ring_answer_and_hang_up() -> None:
    line = Line()
    assert line.events == {"alice": [CallRinging(line.alice.call)], "bob": [CallRinging(line.bob.call)]}
    line.bob.accept()
    line.flush()
    assert line.events["alice"][-1] == CallStarted(line.alice.call)
    assert line.events["bob"][-1] == CallStarted(line.bob.call)
    line.alice.hangup()
    line.flush()
    assert (line.ended("alice").reason, line.ended("alice").by) == ("hung up", "us")
    assert line.ended("bob").text == "alice hung up."
    assert line.alice.state == line.bob.state == "ended"


def test_the_callee_hangs_up_too() -> None:
    line = Line()
    line.bob.accept()
    line.bob.hangup()
    line.flush()
    assert line.ended("alice").text == "bob hung up."


def test_decline() -> None:
    line = Line()
    line.bob.decline()
    line.flush()
    assert line.ended("alice").text == "bob declined the call."
    assert line.ended("bob").text == "You declined the call."
    assert not line.ended("bob").missed  # Bob saw it and said no
    assert not line.ended("alice").missed


def test_an_answered_call_is_not_missed() -> None:
    line = Line()
    line.bob.accept()
    line.flush()
    line.alice.hangup()
    line.flush()
    assert not line.ended("bob").missed


def test_cancel_before_an_answer_stops_the_ringing_as_a_missed_call() -> None:
    line = Line()
    line.advance(12)
    line.alice.hangup()  # the caller's Hang up while it rings is a cancel
    line.flush()
    assert line.sent["alice"][-1] == Cancel(line.alice.call, "cancelled")
    assert line.ended("alice").reason == "cancelled"
    assert line.ended("alice").text == "You cancelled the call."
    assert not line.ended("alice").missed
    assert line.bob.state == "ended"
    assert line.ended("bob").text == "alice cancelled the call."
    assert line.ended("bob").missed
    assert line.alice.get_timer() is None
    assert line.bob.get_timer() is None  # nothing left to ring


def test_no_answer_after_45_seconds_is_a_missed_call() -> None:
    line = Line()
    line.advance(44.9)
    assert (line.alice.state, line.bob.state) == ("ringing", "incoming")
    line.advance(0.2)
    assert line.sent["alice"][-1] == Cancel(line.alice.call, "no answer")
    assert (line.ended("alice").reason, line.ended("alice").by) == ("no answer", "us")
    assert line.ended("alice").text == "bob did not answer."
    assert not line.ended("alice").missed
    assert line.bob.state == "ended"
    assert line.ended("bob").text == "You missed a call from alice."
    assert line.ended("bob").missed


def test_the_ringing_lasts_45_seconds_whatever_the_timer_is_asked() -> None:
    line = Line()
    assert line.alice.get_timer() == NO_ANSWER_AFTER
    for _ in range(44):  # being woken early (or often) changes nothing
        line.advance(1.0)
        line.alice.handle_timer(line.now)
        line.flush()
    assert (line.alice.state, line.bob.state) == ("ringing", "incoming")


def test_the_session_ending_while_it_rings_is_a_missed_call() -> None:
    line = Line()
    line.advance(20)
    line.cut = True
    line.alice.session_closed()
    line.bob.session_closed()
    line.flush()
    assert line.ended("alice").text == "The session with bob ended."
    assert not line.ended("alice").missed
    assert line.ended("bob").reason == "closed"
    assert line.ended("bob").missed
    assert line.ended("bob").text == "You missed a call from alice: the session ended."


def test_a_path_dead_while_it_rings_is_a_missed_call() -> None:
    line = Line()
    line.cut = True
    line.bob.path_lost(line.now)
    line.advance(10.1)
    assert line.ended("bob").reason == "vanished"
    assert line.ended("bob").missed
    assert line.ended("bob").text == "You missed a call from alice: the connection was lost."


def test_the_callee_stops_ringing_by_itself_when_the_cancel_never_comes() -> None:
    line = Line()
    line.cut = True  # the caller's cancel is lost (an old or vanished caller)
    line.advance(NO_ANSWER_AFTER + 0.1)
    assert line.ended("alice").reason == "no answer"
    assert line.bob.state == "incoming"
    line.advance(RING_GRACE - 0.2)
    assert line.bob.state == "incoming"
    line.advance(0.2)
    assert line.ended("bob").reason == "no answer"
    assert line.ended("bob").missed
    assert line.ended("bob").text == "You missed a call from alice."
    assert line.sent["bob"] == [Ringing(line.bob.call)]  # nothing more to say


def test_busy() -> None:
    caller = CallSignalling.start("bob", 0.0)
    invite = caller.messages_to_send()[0]
    assert isinstance(invite, Invite)
    caller.receive(busy_reply(invite))
    event = caller.next_event()
    assert isinstance(event, CallEnded)
    assert event.text == "bob is in another call."


@pytest.mark.parametrize("after", [9.9, 10.1])
def test_a_peer_vanished_for_10_seconds_ends_the_call(after: float) -> None:
    line = Line()
    line.bob.accept()
    line.flush()
    line.cut = True
    line.alice.path_lost(line.now)
    line.advance(after)
    if after < 10:
        assert line.alice.state == "active"
        line.alice.path_recovered()
        line.advance(5)
        assert line.alice.state == "active"
    else:
        assert line.ended("alice").text == "The connection to bob was lost."


def test_the_session_closing_ends_the_call_and_late_messages_are_ignored() -> None:
    line = Line()
    line.bob.accept()
    line.flush()
    line.bob.session_closed()
    line.flush()
    assert line.ended("bob").reason == "closed"
    line.bob.receive(Accept(line.bob.call))
    line.bob.receive(Hangup("another call"))
    assert line.bob.next_event() is None
    assert line.bob.messages_to_send() == []


def test_call_messages_keep_their_wire_format_and_refuse_bad_fields() -> None:
    assert CALL_MESSAGES.encode(Cancel("c1", "no answer")) == {
        "type": "call-cancel",
        "call": "c1",
        "reason": "no answer",
    }
    assert CALL_MESSAGES.encode(Invite("c1")) == {"type": "call-invite", "call": "c1"}
    assert CALL_MESSAGES.decode({"type": "call-cancel", "call": "c1"}) == Cancel("c1")  # reason is optional
    for bad in (
        {"type": "call-invite"},
        {"type": "call-invite", "call": 7},
        {"type": "call-cancel", "call": "c1", "reason": "bored"},
        {"type": "call-dance", "call": "c1"},
    ):
        with pytest.raises(CallProtocolError):
            CALL_MESSAGES.decode(bad)
