"""Events the signalling client reports to the layers above (the CLI, the path manager, the GUI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rendezvous.wire.signalling import Contact, Device, Status


@dataclass(frozen=True)
class SignedIn:
    """The connection is up and signed in (again, when ``reconnected``)."""

    username: str
    contacts: tuple[Contact, ...]
    stun_port: int | None
    reconnected: bool


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped; the client tries again in ``retry_in`` seconds."""

    reason: str
    retry_in: float


@dataclass(frozen=True)
class SessionEnded:
    """The client stopped for good: signed out, revoked, replaced, or its credentials no longer work."""

    reason: str


@dataclass(frozen=True)
class ContactChanged:
    """A contact record changed (a request arrived, was accepted, a contact was removed...)."""

    contact: Contact


@dataclass(frozen=True)
class PresenceChanged:
    """A mutual contact came online, went away or offline, or signed in on another device."""

    username: str
    status: Status
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class SignalReceived:
    """A contact sent us an opaque payload (call offers, candidates...; later layers define them)."""

    sender: str
    sender_device: str
    payload: dict[str, Any]


SignallingEvent = SignedIn | Disconnected | SessionEnded | ContactChanged | PresenceChanged | SignalReceived
