"""ICE candidates (RFC 8445 §5.1), one component over UDP: what each peer offers the other to try.

A candidate is a transport address the peer can be reached at, with a kind, a priority and a foundation:

======  ==========================================  =========================================
kind    what it is                                  sent from (``base``)
======  ==========================================  =========================================
host    an address of one of our interfaces         ``direct``: the session's own UDP socket
srflx   our address as a STUN server saw it (NAT)   ``direct``
prflx   our address as the *peer* saw it (learned   ``direct`` (never signalled, only learned
        from checks, RFC 8445 §7.3.1.3)             from a check)
relay   the address our TURN server allocated       ``relay``: through our TURN allocation
======  ==========================================  =========================================

On the signalling channel a candidate is a JSON object
``{"kind": "host", "ip": "192.168.1.20", "port": 50000, "priority": 2130706431, "foundation": "1a2b3c4d"}``.
`parse_candidates` checks what a peer sent strictly and drops bad entries with a reason; `Candidate.from_dict`
raises `CandidateError` (and nothing else) for one bad entry. Unknown keys are ignored, so newer peers can add
fields. The related address (``raddr``) is deliberately not sent: for a relay candidate it would reveal the
public address that users who force the relay want hidden.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

from rendezvous.wire.stun import Address

CandidateKind = Literal["host", "srflx", "prflx", "relay"]
#: Where datagrams for a candidate leave from: the session socket, or through our TURN allocation on it.
Base = Literal["direct", "relay"]
#: How a NAT maps ports (RFC 4787 §4.1), as a peer may declare it in its offer (e.g. measured per RFC 5780).
NatMapping = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown"]

KINDS: Final[tuple[CandidateKind, ...]] = get_args(CandidateKind)
BASES: Final[tuple[Base, ...]] = get_args(Base)
NAT_MAPPINGS: Final[tuple[NatMapping, ...]] = get_args(NatMapping)

#: RFC 8445 §5.1.2.2 recommended type preferences (host 126, prflx 110, srflx 100, relay 0).
TYPE_PREFERENCE: Final[dict[CandidateKind, int]] = {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}
#: The single component we use (RFC 8445 §4: RTP-style component ids start at 1).
COMPONENT_ID: Final = 1
#: How many candidates we accept from a peer; more is a misbehaving peer (RFC 8445 §6.1.2.5 limits pairs).
MAX_REMOTE_CANDIDATES: Final = 32

_FOUNDATION_RE = re.compile(r"^[A-Za-z0-9+/]{1,32}$")  # RFC 8445 §15.1: 1*32 ice-char
_MAX_PRIORITY = 2**31 - 1  # RFC 8445 §5.1.2: a positive 31-bit integer

_PRIVATE_NETWORKS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "169.254.0.0/16",  # RFC 3927 link-local
        "fe80::/10",  # RFC 4291 link-local
        "fc00::/7",  # RFC 4193 unique local (ULA)
    )
)


class CandidateError(ValueError):
    """A candidate from the peer is malformed; the message says which field and why."""


def candidate_priority(
    kind: CandidateKind, local_preference: int = 65535, component: int = COMPONENT_ID
) -> int:
    """RFC 8445 §5.1.2.1: 2^24 x type preference + 2^8 x local preference + (256 - component id)."""
    if not 0 <= local_preference <= 65535 or not 1 <= component <= 256:
        raise ValueError(f"local preference {local_preference} or component {component} out of range")
    return (TYPE_PREFERENCE[kind] << 24) + (local_preference << 8) + (256 - component)


def pair_priority(controlling: int, controlled: int) -> int:
    """RFC 8445 §6.1.2.3: 2^32 x min(G, D) + 2 x max(G, D) + (1 if G > D else 0)."""
    return (
        (min(controlling, controlled) << 32)
        + 2 * max(controlling, controlled)
        + int(controlling > controlled)
    )


def compute_foundation(kind: CandidateKind, base_ip: str) -> str:
    """RFC 8445 §5.1.1.3: equal for candidates of one kind from one base IP (one STUN/TURN server here)."""
    return hashlib.sha256(f"{kind}|{base_ip}|udp".encode()).hexdigest()[:8]


def is_private_address(ip: str) -> bool:
    """True for LAN-only addresses: RFC 1918, link-local (IPv4 and IPv6) and unique-local IPv6 (ULA)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in _PRIVATE_NETWORKS)


def address_family(ip: str) -> int:
    """4 or 6 for an IP literal."""
    return ipaddress.ip_address(ip).version


@dataclass(frozen=True)
class Candidate:
    """One candidate: its kind, transport address, priority (RFC 8445 §5.1.2) and foundation (§5.1.1.3)."""

    kind: CandidateKind
    address: Address
    priority: int
    foundation: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown candidate kind {self.kind!r}")
        if not 1 <= self.priority <= _MAX_PRIORITY or not _FOUNDATION_RE.match(self.foundation):
            raise ValueError(f"bad priority or foundation in {self!r}")

    @classmethod
    def create(cls, kind: CandidateKind, address: Address, *, local_preference: int = 65535) -> Candidate:
        """A local candidate with the RFC's priority and a foundation from its kind and IP."""
        return cls(
            kind, address, candidate_priority(kind, local_preference), compute_foundation(kind, address[0])
        )

    @property
    def base(self) -> Base:
        """``relay`` for relay candidates (sent through the TURN allocation), else ``direct``."""
        return "relay" if self.kind == "relay" else "direct"

    def to_dict(self) -> dict[str, object]:
        """The JSON object sent on the signalling channel (module docstring)."""
        return {
            "kind": self.kind,
            "ip": self.address[0],
            "port": self.address[1],
            "priority": self.priority,
            "foundation": self.foundation,
        }

    @classmethod
    def from_dict(cls, data: object, *, allow_loopback: bool = False) -> Candidate:
        """Parse one candidate a peer sent; raise `CandidateError` (only) when any field is unacceptable.

        Peer-reflexive candidates are learned from checks, never signalled, so ``prflx`` is refused; so are
        names (no DNS here), unspecified, multicast and broadcast addresses, and loopback unless allowed.
        """
        if not isinstance(data, dict):
            raise CandidateError("a candidate is a JSON object")
        kind = data.get("kind")
        if kind not in ("host", "srflx", "relay"):
            raise CandidateError(f"kind {kind!r} is not host, srflx or relay")
        ip, port = data.get("ip"), data.get("port")
        if not isinstance(ip, str) or len(ip) > 64:
            raise CandidateError("ip is not a string")
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError as exc:
            raise CandidateError(f"ip {ip[:64]!r} is not an IP address") from exc
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        if parsed.is_unspecified or parsed.is_multicast or str(parsed) == "255.255.255.255":
            raise CandidateError(f"ip {parsed} cannot be a unicast peer")
        if parsed.is_loopback and not allow_loopback:
            raise CandidateError(f"ip {parsed} is loopback")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 0xFFFF:
            raise CandidateError(f"port {port!r} is not 1-65535")
        priority = data.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= _MAX_PRIORITY:
            raise CandidateError(f"priority {priority!r} is not a positive 31-bit integer")
        foundation = data.get("foundation")
        if not isinstance(foundation, str) or not _FOUNDATION_RE.match(foundation):
            raise CandidateError("foundation is not 1-32 letters, digits, '+' or '/'")
        return cls(kind, (str(parsed), port), priority, foundation)


def parse_candidates(
    items: object, *, limit: int = MAX_REMOTE_CANDIDATES, allow_loopback: bool = False
) -> tuple[list[Candidate], list[str]]:
    """Parse a peer's candidate list: the good ones (deduplicated by address) and a reason per dropped entry.

    Never raises: a peer that sends nonsense gets fewer candidates, and the reasons go to the log.
    """
    if not isinstance(items, list):
        return [], ["candidates are not a JSON list"]
    accepted: dict[Address, Candidate] = {}
    dropped: list[str] = []
    for index, item in enumerate(items):
        try:
            candidate = Candidate.from_dict(item, allow_loopback=allow_loopback)
        except CandidateError as exc:
            dropped.append(f"candidate {index}: {exc}")
            continue
        if candidate.address in accepted:
            dropped.append(f"candidate {index}: duplicate address {candidate.address}")
        elif len(accepted) >= limit:
            dropped.append(f"candidate {index}: more than {limit} candidates")
        else:
            accepted[candidate.address] = candidate
    return list(accepted.values()), dropped


def parse_nat_mapping(value: object) -> NatMapping:
    """A peer's declared NAT mapping behaviour; anything unrecognised is ``unknown``."""
    for mapping in NAT_MAPPINGS:
        if value == mapping:
            return mapping
    return "unknown"
