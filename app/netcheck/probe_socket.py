"""One UDP socket that runs STUN Binding transactions one after another (RFC 5780 tests need the same
socket, hence the same NAT mapping, for several questions) and can wait for a stray datagram.

The transactions are `app.stun_client.BindingTransaction`s (sans-IO); this is their asyncio adapter for a
socket the network check owns.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from app.stun_client import BindingConfig, BindingEvent, BindingFailed, BindingTransaction
from rendezvous.wire.stun import Address, Attribute

#: Quicker than RFC 8489's 39.5 s: a probe that gets no answer in about 3 s is taken as blocked.
PROBE_CONFIG = BindingConfig(initial_rto=0.25, max_requests=4, final_wait_factor=4)


class ProbeSocket(asyncio.DatagramProtocol):
    """A bound UDP socket; `binding` asks a question, `next_datagram` waits for anything else."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._transaction: BindingTransaction | None = None
        self._result: asyncio.Future[BindingEvent] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._others: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    @classmethod
    async def open(cls, local: Address = ("0.0.0.0", 0)) -> ProbeSocket:  # noqa: S104 - any interface
        """A new socket bound to ``local``."""
        _, probe = await asyncio.get_running_loop().create_datagram_endpoint(cls, local_addr=local)
        return probe

    @property
    def local(self) -> Address:
        """The address the socket is bound to."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        result = self._result
        if self._transaction is not None and result is not None and not result.done():
            self._transaction.receive_datagram(data, addr, self._loop.time())
            self._process()
            if result.done():
                return  # it was the answer
        with contextlib.suppress(asyncio.QueueFull):
            self._others.put_nowait((data, (str(addr[0]), int(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        """ICMP errors are only hints; the transaction's retransmissions decide."""

    async def binding(
        self,
        server: Address,
        *attributes: Attribute,
        any_source: bool = False,
        config: BindingConfig = PROBE_CONFIG,
    ) -> BindingEvent:
        """One Binding transaction to ``server`` from this socket (with RFC 5780 ``attributes``)."""
        self._transaction = BindingTransaction(
            server, self._loop.time(), config=config, attributes=attributes, any_source=any_source
        )
        self._result = self._loop.create_future()
        self._process()
        try:
            return await self._result
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def send(self, data: bytes, to: Address) -> None:
        """A raw datagram (the hairpin test sends to our own public address)."""
        assert self._transport is not None
        self._transport.sendto(data, to)

    async def next_datagram(self, timeout: float) -> tuple[bytes, Address] | None:  # noqa: ASYNC109
        """The next datagram that was not an answer, or None after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self._others.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        """Release the socket."""
        if self._timer is not None:
            self._timer.cancel()
        if self._result is not None and not self._result.done():
            self._result.set_result(BindingFailed("the probe socket closed", ("0.0.0.0", 0)))  # noqa: S104
        if self._transport is not None:
            self._transport.close()

    def _process(self) -> None:
        transaction, result = self._transaction, self._result
        if transaction is None or result is None or self._transport is None:
            return
        for data, to in transaction.datagrams_to_send(self._loop.time()):
            self._transport.sendto(data, to)
        event = transaction.next_event()
        if event is not None and not result.done():
            result.set_result(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = transaction.get_timer()
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._transaction is not None:
            self._transaction.handle_timer(self._loop.time())
        self._process()
