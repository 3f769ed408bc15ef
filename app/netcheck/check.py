"""The network check: RFC 5780 tests against a STUN server that runs behaviour discovery.

- UDP at all: a Binding request answered (test I), which also gives the public address and the server's
  other address (OTHER-ADDRESS).
- Mapping (RFC 5780 §4.3): from the same socket, ask the other IP (same port): same public address →
  endpoint-independent; otherwise ask the other IP and port: same as before → address-dependent, else
  address-and-port-dependent. With a one-IP server, the other port only: endpoint-independent and
  address-dependent then look alike.
- Filtering (§4.4), from a fresh socket that has talked only to the server's main address: ask for the
  answer from the other IP and port (arrives → endpoint-independent), then from the other port only
  (arrives → address-dependent, else address-and-port-dependent).
- Hairpinning (§4.5): a datagram to our own public address comes back to us.
- Mapping lifetime (§4.6, optional, slow): after N idle seconds, the server answers (RESPONSE-PORT) to our
  old public port from a request sent by another socket; reported as "at least N s".
- A port-mapping protocol on the gateway (`app.netcheck.port_mapping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Sequence

from app.nat.peer_link import route_address
from app.nat.router_behaviour import Behaviour
from app.nat.stun_client import BindingConfig, BindingSucceeded, ProbeSocket
from app.netcheck.port_mapping import detect_port_mapping
from app.netcheck.report import NetworkReport
from rendezvous.wire.stun import (
    Address,
    AttributeType,
    ChangeRequest,
    RawAttribute,
    ResponsePort,
    StunClass,
    StunMessage,
    StunMethod,
    new_transaction_id,
)

#: Quicker than RFC 8489's 39.5 s: a probe that gets no answer in about 3 s is taken as blocked.
PROBE_CONFIG = BindingConfig(initial_rto=0.25, max_requests=4, final_wait_factor=4)
#: Idle times (seconds) the lifetime probe tries, in order; it stops at the first that fails.
LIFETIME_STEPS = (5.0, 15.0, 30.0, 60.0, 120.0)


async def run_network_check(
    server: Address, *, lifetime_steps: Sequence[float] = (), port_mapping: bool = True
) -> NetworkReport:
    """Run the tests against ``server`` (a STUN server with RFC 5780); never raises for network trouble."""
    probe = await ProbeSocket.open(config=PROBE_CONFIG)
    try:
        first = await probe.binding(server)
        if not isinstance(first, BindingSucceeded):
            return NetworkReport(udp=False)
        local = (route_address(server) or probe.local[0], probe.local[1])
        public, other = first.mapped, first.other_address
        mapping: Behaviour = "unknown"
        filtering: Behaviour = "unknown"
        if other is not None:
            mapping = await _mapping(probe, server, other, public)
            filtering = await _filtering(server, other)
        hairpin = await _hairpinning(probe, public)
    finally:
        probe.close()
    lifetime = (
        await measure_lifetime(server, lifetime_steps) if lifetime_steps and other is not None else None
    )
    gateway = await detect_port_mapping() if port_mapping else None
    return NetworkReport(
        udp=True,
        local=local,
        public=public,
        mapping=mapping,
        filtering=filtering,
        port_preserved=public[1] == local[1],
        hairpinning=hairpin,
        mapping_lifetime=lifetime,
        port_mapping=gateway.protocol if gateway else None,
        gateway_external_ip=gateway.external_ip if gateway else None,
        ipv6=global_ipv6(),
        server_addresses=0 if other is None else 2 if other[0] != server[0] else 1,
    )


async def resolve_host(server: Address) -> Address:
    """A STUN server's name resolved to an address (the tests compare addresses); raises OSError."""
    infos = await asyncio.get_running_loop().getaddrinfo(server[0], server[1], type=socket.SOCK_DGRAM)
    host, port = infos[0][4][:2]
    return (str(host), int(port))


async def _mapping(probe: ProbeSocket, server: Address, other: Address, public: Address) -> Behaviour:
    two_ips = other[0] != server[0]
    second = await probe.binding((other[0], server[1]) if two_ips else (server[0], other[1]))
    if not isinstance(second, BindingSucceeded):
        return "unknown"
    if second.mapped == public:
        return "endpoint-independent" if two_ips else "endpoint-independent or address-dependent"
    if not two_ips:
        return "address-and-port-dependent"
    third = await probe.binding(other)
    if not isinstance(third, BindingSucceeded):
        return "unknown"
    return "address-dependent" if third.mapped == second.mapped else "address-and-port-dependent"


async def _filtering(server: Address, other: Address) -> Behaviour:
    fresh = await ProbeSocket.open(config=PROBE_CONFIG)  # its mapping has seen only the server's main address
    try:
        if not isinstance(await fresh.binding(server), BindingSucceeded):
            return "unknown"
        two_ips = other[0] != server[0]
        if two_ips:
            changed = await fresh.binding(server, ChangeRequest(True, True), any_source=True)
            if isinstance(changed, BindingSucceeded):
                return "endpoint-independent"
        port_only = await fresh.binding(server, ChangeRequest(False, True), any_source=True)
        if isinstance(port_only, BindingSucceeded):
            return "address-dependent" if two_ips else "endpoint-independent or address-dependent"
        return "address-and-port-dependent"
    finally:
        fresh.close()


async def _hairpinning(probe: ProbeSocket, public: Address) -> bool:
    marker = StunMessage(StunMethod.BINDING, StunClass.INDICATION, new_transaction_id()).encode()
    probe.send(marker, public)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while (left := deadline - loop.time()) > 0:
        got = await probe.next_datagram(left)
        if got is None:
            return False
        if got[0] == marker:
            return True
    return False


def global_ipv6() -> str | None:
    """This machine's global IPv6 source address, if it has a route to the IPv6 internet."""
    found = route_address(("2001:db8::1", 9))  # documentation prefix: a connected UDP socket sends nothing
    with contextlib.suppress(ValueError):
        if found is not None and ipaddress.ip_address(found).is_global:
            return found
    return None


async def measure_lifetime(server: Address, steps: Sequence[float]) -> float | None:
    """The longest idle time in ``steps`` after which our old mapping still let the server's answer in."""
    alive: float | None = None
    for idle in steps:
        holder, asker = (
            await ProbeSocket.open(config=PROBE_CONFIG),
            await ProbeSocket.open(config=PROBE_CONFIG),
        )
        try:
            first = await holder.binding(server)
            if not isinstance(first, BindingSucceeded):
                return alive
            await asyncio.sleep(idle)
            # The answer goes to our public IP at the holder's port; padded so that the server may (an
            # answer sent elsewhere is never larger than its request). Three tries, half a second apart.
            attributes = (ResponsePort(first.mapped[1]), RawAttribute(AttributeType.PADDING, bytes(96)))
            request = StunMessage(StunMethod.BINDING, StunClass.REQUEST, new_transaction_id(), attributes)
            for _ in range(3):
                asker.send(request.encode(fingerprint=True), server)
                if await holder.next_datagram(0.5) is not None:
                    alive = idle
                    break
            else:
                return alive
        finally:
            holder.close()
            asker.close()
    return alive
