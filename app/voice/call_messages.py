"""The call's control messages on the session's stream 0, typed (`app.session.control.MessageSet`).

Every message carries the call's id; what each one means is `app.voice.call_signalling`'s table. The wire
format is JSON: ``{"type": "call-invite", "call": "…"}``; ``call-cancel`` adds why the caller stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from app.session.control import ControlMessage, ControlProtocolError, MessageSet


class CallProtocolError(ControlProtocolError):
    """A ``call-*`` message that is not one of ours, or has a bad field (the peer misbehaved)."""


@dataclass(frozen=True)
class CallMessage(ControlMessage):
    """The base: every call message names its call."""

    call: str


@dataclass(frozen=True)
class Invite(CallMessage):
    """Caller → callee: please ring."""

    TYPE: ClassVar[str] = "call-invite"


@dataclass(frozen=True)
class Ringing(CallMessage):
    """Callee → caller: it is ringing."""

    TYPE: ClassVar[str] = "call-ringing"


@dataclass(frozen=True)
class Accept(CallMessage):
    """Callee → caller: answered."""

    TYPE: ClassVar[str] = "call-accept"


@dataclass(frozen=True)
class Decline(CallMessage):
    """Callee → caller: not now."""

    TYPE: ClassVar[str] = "call-decline"


@dataclass(frozen=True)
class Busy(CallMessage):
    """Callee → caller: already in another call (sent without ringing)."""

    TYPE: ClassVar[str] = "call-busy"


@dataclass(frozen=True)
class Cancel(CallMessage):
    """Caller → callee: the caller gave up, by hand or because nobody answered."""

    TYPE: ClassVar[str] = "call-cancel"
    reason: Literal["cancelled", "no answer"] | None = None


@dataclass(frozen=True)
class Hangup(CallMessage):
    """Either → other: the call is over."""

    TYPE: ClassVar[str] = "call-hangup"


CALL_MESSAGES: MessageSet[CallMessage] = MessageSet(
    [Invite, Ringing, Accept, Decline, Busy, Cancel, Hangup], error=CallProtocolError
)
