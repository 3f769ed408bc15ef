"""Thin asyncio adapter for `TurnAllocation`: receive → feed the machine → transmit, one re-armed timer.

`TurnDriver` runs an allocation on a UDP transport someone else owns (their protocol passes each datagram
to `TurnDriver.datagram_received`, which says whether it was TURN's); `open_turn_socket` gives it a socket
of its own, for tests and the command line. No protocol decisions are made here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from app.nat.turn_client import TurnAllocation, TurnClientConfig, TurnEvent
from rendezvous.wire.stun import Address


class TurnDriver:
    """Carries bytes and time between a `TurnAllocation` and an asyncio datagram transport."""

    def __init__(self, allocation: TurnAllocation, transport: asyncio.DatagramTransport) -> None:
        self.allocation = allocation
        self.events: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._process()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> bool:
        """Offer a datagram from the socket; True if the allocation consumed it."""
        mine = self.allocation.receive_datagram(data, addr, self._loop.time())
        if mine:
            self._process()
        return mine

    def add_peer(self, peer: Address) -> None:
        """Ask for a permission and a channel for ``peer``."""
        self.allocation.add_peer(peer, self._loop.time())
        self._process()

    def send_to_peer(self, peer: Address, data: bytes) -> bool:
        """Send ``data`` to ``peer`` through the relay; False if there is no allocation."""
        sent = self.allocation.send_to_peer(peer, data, self._loop.time())
        self._process()
        return sent

    def close(self) -> None:
        """Start deleting the allocation (`AllocationClosed` follows)."""
        self.allocation.close(self._loop.time())
        self._process()

    def stop(self) -> None:
        """Stop the timer (the socket stays its owner's)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def next_event(self, timeout: float = 5.0) -> TurnEvent:  # noqa: ASYNC109 - a plain deadline
        """The next event from the allocation; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self.events.get()

    def _on_timer(self) -> None:
        self._timer = None
        self.allocation.handle_timer(self._loop.time())
        self._process()

    def _process(self) -> None:
        now = self._loop.time()
        if not self._transport.is_closing():
            for data, addr in self.allocation.datagrams_to_send(now):
                self._transport.sendto(data, addr)
        while (event := self.allocation.next_event()) is not None:
            self.events.put_nowait(event)
        self.stop()
        when = self.allocation.get_timer()
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)


class _TurnOnlyProtocol(asyncio.DatagramProtocol):
    """A socket of the allocation's own; non-TURN datagrams go to ``other``."""

    def __init__(self, other: Callable[[bytes, Address], None] | None) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.driver: TurnDriver | None = None
        self._other = other

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # CPython's lacks the base class

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        mine = self.driver is not None and self.driver.datagram_received(data, addr)
        if not mine and self._other is not None:
            self._other(data, (str(addr[0]), int(addr[1])))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.driver is not None:
            self.driver.stop()


async def open_turn_socket(
    server: Address,
    username: str,
    password: str,
    *,
    local_addr: Address = ("0.0.0.0", 0),  # noqa: S104 - the socket talks to a relay anywhere
    config: TurnClientConfig | None = None,
    other: Callable[[bytes, Address], None] | None = None,
) -> tuple[TurnDriver, asyncio.DatagramTransport]:
    """A fresh UDP socket running an allocation on ``server`` (numeric address); the Allocate goes out now."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _TurnOnlyProtocol(other), local_addr=local_addr
    )
    protocol.driver = TurnDriver(TurnAllocation(server, username, password, config=config), transport)
    return protocol.driver, transport
