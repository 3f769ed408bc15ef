"""Does the LAN gateway offer a port-mapping protocol (NAT-PMP / PCP, UPnP IGD)? Asked, never used.

Only the questions that open nothing: NAT-PMP's "external address" request (RFC 6886 §3.2; a PCP server
answers it with a version error, RFC 6887 §9, which also tells us PCP is there) and an SSDP search for an
Internet Gateway Device (UPnP). No maintained pure-Python client exists for these (miniupnpc needs a C
build), and detection is two small datagrams, so they are written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

NAT_PMP_PORT = 5351
SSDP = ("239.255.255.250", 1900)
_SEARCH = (
    b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n'
    b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"
)


def default_gateway(route_table: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default gateway from the kernel's routing table (Linux), or None."""
    with contextlib.suppress(OSError, ValueError):
        for line in route_table.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "00000000":
                return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    return None


async def _ask(request: bytes, to: tuple[str, int], timeout: float) -> bytes | None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        try:
            await loop.sock_sendto(sock, request, to)
            async with asyncio.timeout(timeout):
                return await loop.sock_recv(sock, 2048)
        except (OSError, TimeoutError):
            return None


@dataclass(frozen=True)
class PortMapping:
    """What the gateway answered: the protocol, and (NAT-PMP) the public address it says it has."""

    protocol: str
    external_ip: str | None = None


def parse_nat_pmp(reply: bytes) -> PortMapping | None:
    """A NAT-PMP external-address answer (RFC 6886 §3.2), a PCP version error (RFC 6887 §9), or None."""
    if len(reply) < 2:
        return None
    if reply[0] != 0:
        return PortMapping("PCP")
    if len(reply) >= 12 and reply[1] == 128 and reply[2:4] == b"\0\0":  # opcode 128, result 0
        return PortMapping("NAT-PMP", socket.inet_ntoa(reply[8:12]))
    return PortMapping("NAT-PMP")


async def detect_port_mapping(timeout: float = 1.0) -> PortMapping | None:  # noqa: ASYNC109
    """The gateway's port-mapping protocol, if it answers one (NAT-PMP, PCP or UPnP IGD), else None."""
    gateway = default_gateway()
    nat_pmp, upnp = await asyncio.gather(
        _ask(b"\x00\x00", (gateway, NAT_PMP_PORT), timeout) if gateway else asyncio.sleep(0, None),
        _ask(_SEARCH, SSDP, timeout),
    )
    found = parse_nat_pmp(nat_pmp) if nat_pmp is not None else None
    if found is not None:
        return found
    if upnp is not None and upnp.startswith(b"HTTP/1.1 200"):
        return PortMapping("UPnP IGD")
    return None
