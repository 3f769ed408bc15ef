"""Call signalling: ring, answer, decline, busy, cancel, no answer, hang up, peer vanished — sans-IO.

The caller reaches the callee through the rendezvous (an ordinary connection offer) and the encrypted
session; the call itself is agreed with control messages on the session (stream 0), each carrying the
call's id::

    call-invite   caller → callee   please ring
    call-ringing  callee → caller   it is ringing (the caller hears a ring-back tone)
    call-accept   callee → caller   answered: audio flows both ways
    call-decline  callee → caller   not now
    call-busy     callee → caller   already in another call (sent without ringing)
    call-cancel   caller → callee   the caller gave up (by hand, or no answer after 45 s)
    call-hangup   either → other    the call is over

`CallSignalling` is one call's state machine, fed with messages (typed: `app.voice.call_messages`), user
actions and the time; it hands back messages to send (`messages_to_send`), events (`next_event`) and its
next deadline (`get_timer`). The
transitions are the table `TRANSITIONS`: an input with no entry for the current state is ignored (a late
or duplicate message), never an error. A call whose path is dead for `vanish_after` seconds ends.

Ringing ends in one of these ways; for the callee, every end but its own answer or decline is a missed
call (`CallEnded.missed`, which the app shows):

* the callee answers or declines;
* the caller cancels, by hand or after `NO_ANSWER_AFTER` seconds (``call-cancel`` says which);
* the session ends, or the path stays dead for `vanish_after` seconds;
* the callee's own limit, `NO_ANSWER_AFTER` + `RING_GRACE` seconds, in case the caller's cancel never
  comes (a caller that vanished without the path or the session noticing yet).
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import Literal

from app.voice import call_messages as msg

State = Literal["calling", "ringing", "incoming", "active", "ended"]
Role = Literal["caller", "callee"]
EndReason = Literal["declined", "busy", "cancelled", "no answer", "hung up", "vanished", "closed"]
By = Literal["us", "peer", "network"]

NO_ANSWER_AFTER = 45.0
#: The callee stops ringing by itself this long after the caller should have given up.
RING_GRACE = 5.0
VANISH_AFTER = 10.0


@dataclass(frozen=True)
class CallRinging:
    """The callee's phone is ringing (the caller's side sees this when the callee says so)."""

    call: str


@dataclass(frozen=True)
class CallStarted:
    """Answered: audio should flow both ways now."""

    call: str


@dataclass(frozen=True)
class CallEnded:
    """The call is over; ``by`` says who ended it and ``text`` says it for people.

    ``missed`` is true for the callee when the call rang and ended without an answer, for any reason but
    the callee's own decline: the app shows a missed call.
    """

    call: str
    reason: EndReason
    by: By
    text: str
    missed: bool = False


CallEvent = CallRinging | CallStarted | CallEnded

# (state, input) → (next state, message to send or None, event or None). Inputs are the peer's message
# types and our own actions ("accept", "decline", "hangup", "cancel") and "no-answer", "vanished", "closed".
_Row = tuple[State, str | None, Literal["ringing", "started"] | tuple[EndReason, By] | None]
TRANSITIONS: dict[tuple[State, str], _Row] = {
    # The caller, before an answer.
    ("calling", "call-ringing"): ("ringing", None, "ringing"),
    ("calling", "call-accept"): ("active", None, "started"),
    ("ringing", "call-accept"): ("active", None, "started"),
    ("calling", "call-decline"): ("ended", None, ("declined", "peer")),
    ("ringing", "call-decline"): ("ended", None, ("declined", "peer")),
    ("calling", "call-busy"): ("ended", None, ("busy", "peer")),
    ("ringing", "call-busy"): ("ended", None, ("busy", "peer")),
    ("calling", "cancel"): ("ended", "call-cancel", ("cancelled", "us")),
    ("ringing", "cancel"): ("ended", "call-cancel", ("cancelled", "us")),
    ("calling", "no-answer"): ("ended", "call-cancel", ("no answer", "us")),
    ("ringing", "no-answer"): ("ended", "call-cancel", ("no answer", "us")),
    # The callee, ringing.
    ("incoming", "accept"): ("active", "call-accept", "started"),
    ("incoming", "decline"): ("ended", "call-decline", ("declined", "us")),
    ("incoming", "call-cancel"): ("ended", None, ("cancelled", "peer")),
    ("incoming", "call-cancel/no answer"): ("ended", None, ("no answer", "peer")),
    ("incoming", "no-answer"): ("ended", None, ("no answer", "peer")),  # the caller's cancel never came
    # Either side, in the call.
    ("active", "hangup"): ("ended", "call-hangup", ("hung up", "us")),
    ("active", "call-hangup"): ("ended", None, ("hung up", "peer")),
}
# The path or the session can end any call that has not ended.
_ALIVE: tuple[State, ...] = ("calling", "ringing", "incoming", "active")
TRANSITIONS.update({(state, "vanished"): ("ended", None, ("vanished", "network")) for state in _ALIVE})
TRANSITIONS.update({(state, "closed"): ("ended", None, ("closed", "network")) for state in _ALIVE})


def new_call_id() -> str:
    """A random id for a new call."""
    return secrets.token_hex(8)


def end_text(reason: EndReason, by: By, peer: str, *, missed: bool = False) -> str:
    """Why a call ended, in words for the UI (``missed``: the callee's call that rang unanswered)."""
    ours = by == "us"
    if missed and reason in ("vanished", "closed"):
        why = "the connection was lost" if reason == "vanished" else "the session ended"
        return f"You missed a call from {peer}: {why}."
    return {
        "declined": "You declined the call." if ours else f"{peer} declined the call.",
        "busy": f"{peer} is in another call.",
        "cancelled": "You cancelled the call." if ours else f"{peer} cancelled the call.",
        "no answer": f"{peer} did not answer." if ours else f"You missed a call from {peer}.",
        "hung up": "You hung up." if ours else f"{peer} hung up.",
        "vanished": f"The connection to {peer} was lost.",
        "closed": f"The session with {peer} ended.",
    }[reason]


class CallSignalling:
    """One call between us and ``peer``, as the caller (`start`) or the callee (`incoming`)."""

    def __init__(
        self,
        call: str,
        role: Role,
        peer: str,
        *,
        no_answer_after: float = NO_ANSWER_AFTER,
        vanish_after: float = VANISH_AFTER,
    ) -> None:
        self.call = call
        self.role = role
        self.peer = peer
        self.state: State = "calling" if role == "caller" else "incoming"
        self.ended: CallEnded | None = None
        self._no_answer_after = no_answer_after
        self._vanish_after = vanish_after
        self._no_answer_at: float | None = None
        self._vanish_at: float | None = None
        self._outbox: deque[msg.CallMessage] = deque()
        self._events: deque[CallEvent] = deque()

    @classmethod
    def start(cls, peer: str, now: float, **timeouts: float) -> CallSignalling:
        """Call ``peer``: the invite is the first message to send."""
        machine = cls(new_call_id(), "caller", peer, **timeouts)
        machine._no_answer_at = now + machine._no_answer_after
        machine._outbox.append(msg.Invite(machine.call))
        return machine

    @classmethod
    def incoming(
        cls, invite: msg.Invite, peer: str, now: float | None = None, **timeouts: float
    ) -> CallSignalling:
        """Answer ``invite`` by ringing: tells the caller so, and shows the call as incoming.

        With ``now``, the ringing also stops by itself `RING_GRACE` seconds after the caller's no-answer
        time, should the caller's cancel never arrive.
        """
        machine = cls(invite.call, "callee", peer, **timeouts)
        if now is not None:
            machine._no_answer_at = now + machine._no_answer_after + RING_GRACE
        machine._outbox.append(msg.Ringing(machine.call))
        machine._events.append(CallRinging(machine.call))
        return machine

    # --- inputs ------------------------------------------------------------------------------------------

    def receive(self, message: msg.CallMessage) -> None:
        """A call message from the peer (`app.voice.call_messages`); other calls' are ignored."""
        if message.call != self.call:
            return
        kind = message.TYPE
        if isinstance(message, msg.Cancel) and message.reason == "no answer":
            kind = "call-cancel/no answer"  # the caller stopped ringing: a missed call
        self._input(kind)

    def accept(self) -> None:
        """The user answers (callee)."""
        self._input("accept")

    def decline(self) -> None:
        """The user declines (callee)."""
        self._input("decline")

    def cancel(self) -> None:
        """The user gives up before an answer (caller)."""
        self._input("cancel")

    def hangup(self) -> None:
        """The user ends the call (either side, once answered); before an answer this cancels or declines."""
        if self.state in ("calling", "ringing"):
            self._input("cancel")
        elif self.state == "incoming":
            self._input("decline")
        else:
            self._input("hangup")

    def path_lost(self, now: float) -> None:
        """No path to the peer works: the call ends unless one comes back within ``vanish_after``."""
        if self._vanish_at is None:
            self._vanish_at = now + self._vanish_after

    def path_recovered(self) -> None:
        """A path works again."""
        self._vanish_at = None

    def session_closed(self) -> None:
        """The encrypted session ended under the call."""
        self._input("closed")

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called."""
        if self.state == "ended":
            return None
        deadlines = [d for d in (self._no_answer_at, self._vanish_at) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Apply what is due: no answer, or a path dead for too long."""
        if self._vanish_at is not None and now >= self._vanish_at:
            self._input("vanished")
        elif self._no_answer_at is not None and now >= self._no_answer_at:
            self._input("no-answer")

    # --- outputs -----------------------------------------------------------------------------------------

    def messages_to_send(self) -> list[msg.CallMessage]:
        """Control messages for the peer, oldest first."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def next_event(self) -> CallEvent | None:
        """The next thing that happened, or None."""
        return self._events.popleft() if self._events else None

    # --- the table ---------------------------------------------------------------------------------------

    def _input(self, what: str) -> None:
        row = TRANSITIONS.get((self.state, what))
        if row is None:
            return  # late, duplicate or out of turn: nothing to do
        was = self.state
        self.state, message, event = row
        if message is not None:
            self._outbox.append(_message(message, self.call, no_answer=what == "no-answer"))
        if self.state not in ("calling", "ringing", "incoming"):
            self._no_answer_at = None
        if event == "ringing":
            self._events.append(CallRinging(self.call))
        elif event == "started":
            self._events.append(CallStarted(self.call))
        elif event is not None:
            reason, by = event
            missed = was == "incoming" and by != "us"  # rang, and ended without the callee's answer
            ended = CallEnded(self.call, reason, by, end_text(reason, by, self.peer, missed=missed), missed)
            self.ended = ended
            self._events.append(ended)


def busy_reply(invite: msg.Invite) -> msg.Busy:
    """What a callee already in a call answers to an invite, without ringing."""
    return msg.Busy(invite.call)


def _message(kind: str, call: str, *, no_answer: bool) -> msg.CallMessage:
    """The message a table row sends (its wire type), for ``call``."""
    if kind == msg.Cancel.TYPE:
        return msg.Cancel(call, "no answer" if no_answer else "cancelled")
    return _BY_TYPE[kind](call)


_BY_TYPE: dict[str, type[msg.CallMessage]] = {
    cls.TYPE: cls for cls in (msg.Ringing, msg.Accept, msg.Decline, msg.Busy, msg.Hangup)
}
