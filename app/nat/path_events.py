"""Events of the hole-punching machine (`app.nat.hole_punch.HolePunch`): which path the session uses and how.

The session layer translates these into its own events (a call shows "direct", or "relayed via the server,
because the peer's router gives a new port per destination"). All are small frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.nat.candidates import Base
from rendezvous.wire.stun import Address

#: ``lan``: both ends on one network (host to host); ``direct``: through the NATs, no relay;
#: ``relayed``: through a TURN relay.
PathKind = Literal["lan", "direct", "relayed"]
#: Whose TURN relay carries a relayed path.
RelayedBy = Literal["us", "peer", "both"]
#: How a client reaches its TURN relay.
RelayTransport = Literal["udp", "tcp"]


@dataclass(frozen=True)
class PathInfo:
    """A working path: send application datagrams on base ``via`` to ``remote_address``."""

    kind: PathKind
    via: Base
    #: Our address as the peer sees it (XOR-MAPPED-ADDRESS of a check), or our relayed address when ``via`` is
    #: ``relay``.
    local_address: Address
    remote_address: Address
    relayed_by: RelayedBy | None = None
    #: How our side reaches the relay carrying the path: "udp", or "tcp" (TURN over TCP, RFC 8656 §3.1)
    #: when our network lets no UDP out. The relay talks UDP to the far side either way.
    relay_transport: RelayTransport | None = None
    #: Why no direct path is in use, in plain words, when ``kind`` is ``relayed``.
    reason_if_relayed: str | None = None


@dataclass(frozen=True)
class PathSelected:
    """The first working path of the session."""

    path: PathInfo


@dataclass(frozen=True)
class PathChanged:
    """Application data should move to ``path`` (an upgrade, a failover, or the peer's renomination)."""

    path: PathInfo
    previous: PathInfo
    reason: str


@dataclass(frozen=True)
class PathStats:
    """Measured on the selected path by its consent checks (RFC 7675): round trip and recent loss."""

    path: PathInfo
    #: Smoothed round-trip time in milliseconds (RFC 6298 SRTT of consent transactions).
    rtt_ms: float
    #: Fraction of the last ``samples`` consent checks that got no answer.
    loss: float
    samples: int


@dataclass(frozen=True)
class PathLost:
    """No path works at all (never did, or the last one died); checks go on in case one comes back."""

    reason: str


@dataclass(frozen=True)
class PathRecovered:
    """A path works again after `PathLost`."""

    path: PathInfo


@dataclass(frozen=True)
class RoleChanged:
    """A role conflict (RFC 8445 §7.3.1.1) made us switch between controlling and controlled."""

    controlling: bool


PathEvent = PathSelected | PathChanged | PathStats | PathLost | PathRecovered | RoleChanged
