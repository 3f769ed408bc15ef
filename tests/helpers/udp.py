"""A bare UDP socket for tests on loopback: send anything, collect what comes back."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from rendezvous.wire.stun import Address


class UdpPeer(asyncio.DatagramProtocol):
    """A bare UDP socket for tests: send anything, collect what comes back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # CPython's lacks the base class

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    @property
    def address(self) -> Address:
        """Our bound (host, port)."""
        assert self.transport is not None
        sockname = self.transport.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    def send(self, data: bytes, addr: Address) -> None:
        """Send one datagram."""
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def next(self, timeout: float = 2.0) -> tuple[bytes, Address]:
        """The next datagram received."""
        async with asyncio.timeout(timeout):
            return await self.received.get()

    def close(self) -> None:
        """Close the socket."""
        assert self.transport is not None
        self.transport.close()


async def open_udp_peer(host: str = "127.0.0.1") -> UdpPeer:
    """A `UdpPeer` bound to an ephemeral port on ``host``."""
    _, peer = await asyncio.get_running_loop().create_datagram_endpoint(UdpPeer, local_addr=(host, 0))
    return peer
