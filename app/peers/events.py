"""What `app.peers.hub.PeerHub` tells the app besides the signalling and transfer events it passes on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.nat.path_events import PathEvent, PathInfo
from app.transfer.events import FileEntry
from app.voice.call import CallLink
from app.voice.call_signalling import CallEvent

#: ``idle``: no session (none needed yet); ``connecting``: finding a path and starting the session;
#: ``connected``: an encrypted session is up; ``failed``: the last attempt did not work (see ``problem``).
LinkState = Literal["idle", "connecting", "connected", "failed"]


@dataclass(frozen=True)
class PeerState:
    """How we are connected to one contact right now: what the status panel shows."""

    peer: str
    state: LinkState = "idle"
    path: PathInfo | None = None
    #: From the path's consent checks (RFC 7675): smoothed round trip and the share of checks unanswered.
    rtt_ms: float | None = None
    loss: float | None = None
    #: "End-to-end encrypted …" once the session is up, with how the contact's key is known.
    encryption: str | None = None
    safety_number: str | None = None
    #: What both sides' network checks predicted for this pair ("direct likely: ..."), when both ran.
    pair_verdict: str | None = None
    #: The last thing that went wrong, in plain words (cleared when a session starts).
    problem: str | None = None


@dataclass(frozen=True)
class PeerUpdated:
    """Something in a contact's `PeerState` changed."""

    state: PeerState


@dataclass(frozen=True)
class Dialling:
    """We are finding a path to ``peer`` (to send, call or measure); `PeerUpdated` follows as it goes."""

    peer: str


@dataclass(frozen=True)
class PathUpdate:
    """What the path manager said about the path to ``peer``: selected, changed, lost, back, or stats."""

    peer: str
    event: PathEvent


@dataclass(frozen=True)
class SessionFailed:
    """A session did not start: no path, or the identity check refused it (``refused``).

    ``incoming``: the contact dialled us (``peer`` is empty when the offer itself was unusable).
    """

    peer: str
    reason: str
    refused: bool
    incoming: bool


@dataclass(frozen=True)
class SessionEnded:
    """The session with ``peer`` ended; ``reason`` says why ("closed" when either side simply closed)."""

    peer: str
    reason: str


@dataclass(frozen=True)
class SendQueued:
    """The user asked to send files; they go as soon as a session with ``peer`` works."""

    transfer: str
    peer: str
    files: tuple[FileEntry, ...]
    total: int
    resumed: bool
    #: The paths the user chose (files and folders), for "Resume" after a restart.
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendRetrying:
    """The transfer cannot go on now (contact offline, path lost); it resumes by itself in ``retry_in`` s."""

    transfer: str
    peer: str
    reason: str
    retry_in: float
    #: The contact is offline: it goes on as soon as they come online (``retry_in`` is only the fallback).
    offline: bool = False


@dataclass(frozen=True)
class SendGaveUp:
    """No working session within the retry policy's time (or a final refusal): the transfer stops;
    sending again (or Resume) goes on from where it stopped."""

    transfer: str
    peer: str
    reason: str


@dataclass(frozen=True)
class CallUpdate:
    """A call changed (ringing, started, ended); ``link`` answers, declines, hangs up and holds the audio."""

    peer: str
    link: CallLink
    event: CallEvent


HubEvent = (
    PeerUpdated
    | Dialling
    | PathUpdate
    | SessionFailed
    | SessionEnded
    | SendQueued
    | SendRetrying
    | SendGaveUp
    | CallUpdate
)
