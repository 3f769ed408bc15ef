"""What the network check found, and what it means in plain words — for one side and for a pair (pure).

The terms are RFC 4787's as RFC 5780 measures them. *Mapping*: does the router keep one public port for
our socket whatever we talk to (endpoint-independent), or give a new one per destination address
(address-dependent) or per destination address and port (address-and-port-dependent, "symmetric NAT")?
*Filtering*: which senders may answer through that port — anyone (endpoint-independent, "full cone"),
only addresses we sent to, or only the exact address and port we sent to.

Hole punching works when at least one side keeps its port (its peer learns the right port from the
rendezvous) and the other side's filter lets the punches in. Our connection code punches plainly (no port
prediction), so a router that changes ports meets a filtering router on the other side only through the
relay; the pair verdict says so, and the connection code may skip the direct attempts then.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from app.nat.candidates import NatMapping, parse_nat_mapping
from app.nat.router_behaviour import Behaviour, RouterBehaviour


@dataclass(frozen=True)
class NetworkReport:
    """One network check's findings (see the module docstring for the terms)."""

    udp: bool
    local: tuple[str, int] | None = None
    public: tuple[str, int] | None = None
    mapping: Behaviour = "unknown"
    filtering: Behaviour = "unknown"
    port_preserved: bool | None = None
    hairpinning: bool | None = None
    #: The longest idle time after which the router still let an answer in ("at least N s"), if probed.
    mapping_lifetime: float | None = None
    #: "NAT-PMP", "PCP" or "UPnP IGD" when the LAN gateway answers one, else None (not opened anything).
    port_mapping: str | None = None
    #: The public address the gateway itself says it has (NAT-PMP): private or shared while STUN sees
    #: another one means a second NAT beyond the home router.
    gateway_external_ip: str | None = None
    #: A global IPv6 address of this machine, if it has one (IPv6 needs no NAT: reachable as it is).
    ipv6: str | None = None
    #: Whether the STUN server supports RFC 5780 (with one address, some answers stay "A or B").
    server_addresses: int = 0

    @property
    def behind_nat(self) -> bool | None:
        """True when the public address differs from ours (None without an answer)."""
        if self.public is None or self.local is None:
            return None
        return self.public != self.local

    @property
    def cgnat(self) -> bool:
        """The public address is in the carrier-grade NAT range (100.64.0.0/10, RFC 6598)."""
        return self.public is not None and _in(self.public[0], "100.64.0.0/10")

    @property
    def double_nat(self) -> bool:
        """The home router's own WAN address is private or shared (CGNAT) — another NAT is beyond it."""
        outer = self.gateway_external_ip
        if outer is None or self.public is None or outer == self.public[0]:
            return False
        return _in(outer, "100.64.0.0/10") or ipaddress.ip_address(outer).is_private

    @property
    def behaviour(self) -> RouterBehaviour:
        """What the connection code needs of this report (`app.nat.router_behaviour.pair_verdict`)."""
        return RouterBehaviour(self.udp, self.mapping, self.filtering)

    @property
    def symmetric(self) -> bool:
        """The router changes ports per destination (mapping is not endpoint-independent)."""
        return self.behaviour.symmetric

    def verdict(self) -> str:
        """One paragraph for people."""
        if not self.udp:
            return (
                "Your network lets no UDP out: calls and files will go through the relay over TCP "
                "(they work, a little slower)."
            )
        if self.behind_nat is False:
            return "You are not behind a NAT: direct calls will work with everyone whose router allows them."
        if self.symmetric:
            return (
                "Your router gives a new port for every destination: calls to friends behind similar "
                "routers will use the relay."
            )
        if self.mapping == "unknown":
            return (
                "UDP works, but how your router maps ports could not be measured (the server lacks RFC 5780)."
            )
        extra = " It even lets anyone answer (full cone)." if self.filtering == "endpoint-independent" else ""
        cgnat = " Your provider shares one public address among customers (CGNAT)." if self.cgnat else ""
        if self.double_nat:
            cgnat += " There is a second NAT beyond your router (its own WAN address is private)."
        return f"Your router is peer-friendly: direct calls will work with most friends.{extra}{cgnat}"

    def declared(self) -> tuple[NatMapping, NatMapping]:
        """Mapping and filtering as a connection offer declares them (an undecided pair is "unknown")."""
        return parse_nat_mapping(self.mapping), parse_nat_mapping(self.filtering)

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``: every field, and the derived ones."""
        derived = {"behind_nat": self.behind_nat, "cgnat": self.cgnat, "double_nat": self.double_nat}
        return {**asdict(self), **derived, "verdict": self.verdict()}


def describe_report(report: NetworkReport) -> list[tuple[str, str]]:
    """(label, value) rows for the CLI and the app's Network check panel."""

    def address(value: tuple[str, int] | None) -> str:
        return "—" if value is None else f"{value[0]}:{value[1]}"

    def yes_no(value: bool | None) -> str:
        return "not measured" if value is None else "yes" if value else "no"

    lifetime = report.mapping_lifetime
    return [
        ("UDP", "works" if report.udp else "blocked"),
        ("Public address", address(report.public)),
        ("Local address", address(report.local)),
        (
            "Behind a NAT",
            yes_no(report.behind_nat)
            + (" (CGNAT)" if report.cgnat else "")
            + (" (double NAT)" if report.double_nat else ""),
        ),
        ("IPv6", report.ipv6 or "none"),
        ("Mapping", report.mapping),
        ("Port kept", yes_no(report.port_preserved)),
        ("Filtering", report.filtering),
        ("Hairpinning", yes_no(report.hairpinning)),
        ("Mapping lifetime", "not measured" if lifetime is None else f"at least {lifetime:g} s"),
        ("Port mapping", report.port_mapping or "none answered (nothing was opened)"),
    ]


def _in(host: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network)
    except ValueError:
        return False
