"""How a NAT router treats UDP (RFC 4787 / RFC 5780 terms), and what two routers mean for a direct path.

The network check (`app.netcheck`) measures a `RouterBehaviour`; connection offers carry it to the peer;
`pair_verdict` says, from both, whether the connection code will find a direct path. The connection code
uses the verdict to skip hopeless direct checks (`app.nat.connect.hopeless_direct`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Behaviour = Literal[
    "endpoint-independent",
    "address-dependent",
    "address-and-port-dependent",
    "endpoint-independent or address-dependent",  # a server with one IP cannot tell these apart
    "unknown",
]
PairVerdict = Literal["direct likely", "direct after extra probing", "will use the relay"]


@dataclass(frozen=True)
class RouterBehaviour:
    """Whether UDP gets out at all, and the router's mapping and filtering behaviour."""

    udp: bool
    mapping: Behaviour = "unknown"
    filtering: Behaviour = "unknown"

    @property
    def symmetric(self) -> bool:
        """The router changes ports per destination (mapping is not endpoint-independent)."""
        return self.mapping in ("address-dependent", "address-and-port-dependent")


def pair_verdict(ours: RouterBehaviour, theirs: RouterBehaviour) -> tuple[PairVerdict, str]:
    """What two networks will get from our connection code, and why, in words."""
    if not ours.udp or not theirs.udp:
        return "will use the relay", "one side's network lets no UDP out"
    if ours.mapping == "unknown" or theirs.mapping == "unknown":
        return "direct after extra probing", "one side's router could not be measured"
    if not ours.symmetric and not theirs.symmetric:
        return "direct likely", "both routers keep one port per socket"
    if ours.symmetric and theirs.symmetric:
        return "will use the relay", "both routers give a new port for every destination"
    keeper = theirs if ours.symmetric else ours
    if keeper.filtering in ("endpoint-independent", "address-dependent"):
        return "direct likely", "the port-keeping side lets the other side's new port in"
    if keeper.filtering == "endpoint-independent or address-dependent":
        return "direct after extra probing", "the port-keeping side may let the other side's new port in"
    return (
        "will use the relay",
        "one router gives a new port per destination; the other lets in only the exact port it sent to",
    )
