"""Asking a STUN server for our public (server-reflexive) address: RFC 8489 Binding transactions over UDP.

`BindingTransaction` is the sans-IO machine: it takes datagrams and the time in, gives datagrams and
events out, and never touches a socket or a clock, so it can run on a socket someone else owns (the
connectivity checks multiplex STUN with other traffic on one socket) and under a fake clock in tests.
`discover_public_address` is the thin asyncio adapter for the simple case: a socket of its own, one question.

One transaction, client side (RFC 8489 §6.2.1, §6.3.3-6.3.4):

- send a Binding request (with FINGERPRINT, so a shared socket can tell it apart);
- no answer: send it again after RTO, 2 RTO, 4 RTO... until Rc requests are out, then wait Rm x RTO and
  give up (`BindingFailed` with ``timed_out``);
- a success response with our transaction id from the server's address: `BindingSucceeded` with the
  XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from an RFC 3489 server);
- an error response: `BindingFailed` with its code and reason;
- anything else (other sources, other transactions, garbage) is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from app.errors import FinalError, PunchlineError, TryAgainLater
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ErrorCode,
    MappedAddress,
    OtherAddress,
    ResponseOrigin,
    StunClass,
    StunDecodeError,
    StunMessage,
    StunMethod,
    XorMappedAddress,
    canonical_address,
    decode,
    is_stun,
    new_transaction_id,
)

# --- configuration and events --------------------------------------------------------------------------


@dataclass(frozen=True)
class BindingConfig:
    """Retransmission parameters (RFC 8489 §6.2.1); the defaults are the RFC's, about 39.5 s in all."""

    #: First retransmission timeout, in seconds; it doubles after each request.
    initial_rto: float = 0.5
    #: Rc: requests sent in all (the first and the retransmissions).
    max_requests: int = 7
    #: Rm: after the last request, wait this many times ``initial_rto`` before giving up.
    final_wait_factor: int = 16

    def __post_init__(self) -> None:
        if self.initial_rto <= 0 or self.max_requests < 1 or self.final_wait_factor < 0:
            raise ValueError(f"invalid STUN retransmission settings {self}")

    @property
    def total_time(self) -> float:
        """How long a transaction waits for an answer before it fails, in seconds."""
        spacing = sum(self.initial_rto * (1 << i) for i in range(self.max_requests - 1))
        return spacing + self.final_wait_factor * self.initial_rto


@dataclass(frozen=True)
class BindingSucceeded:
    """The server answered: ``mapped`` is our address as it sees it (our public address behind a NAT)."""

    mapped: Address
    server: Address
    #: Seconds since the request was last sent (retransmissions make older samples ambiguous, so newest).
    rtt: float
    #: RFC 5780, when the server runs behaviour discovery: where the answer came from (RESPONSE-ORIGIN and
    #: the datagram's source) and the server's other address (OTHER-ADDRESS).
    response_origin: Address | None = None
    other_address: Address | None = None
    source: Address | None = None


@dataclass(frozen=True)
class BindingFailed:
    """The transaction ended without a mapped address; ``reason`` is a sentence for people."""

    reason: str
    server: Address
    #: The STUN error code when the server answered with an error response (RFC 8489 §14.8).
    error_code: int | None = None
    #: True when nothing answered before the retransmissions ran out.
    timed_out: bool = False


BindingEvent = BindingSucceeded | BindingFailed


# --- the machine ---------------------------------------------------------------------------------------


class BindingTransaction:
    """One STUN Binding transaction, sans-IO (RFC 8489 §6.2.1 over UDP).

    Drive it with `datagrams_to_send`, `receive_datagram` and `handle_timer`; read `next_event` and
    `get_timer`. It ends with exactly one `BindingSucceeded` or `BindingFailed`.
    """

    def __init__(
        self,
        server: Address,
        now: float,
        *,
        config: BindingConfig | None = None,
        transaction_id: bytes | None = None,
        attributes: tuple[Attribute, ...] = (),
        any_source: bool = False,
    ) -> None:
        """``attributes`` go into the request (RFC 5780's CHANGE-REQUEST...); with ``any_source`` the answer
        may come from another address than ``server`` (it did, when CHANGE-REQUEST asked for that)."""
        canonical = canonical_address(server)
        if canonical is None:
            raise ValueError(f"STUN server {server!r} is not a numeric (ip, port); resolve names first")
        self._server = canonical
        self._config = config or BindingConfig()
        self._transaction_id = transaction_id or new_transaction_id()
        request = StunMessage(StunMethod.BINDING, StunClass.REQUEST, self._transaction_id, attributes)
        self._any_source = any_source
        self._request = request.encode(fingerprint=True)
        self._requests_sent = 0
        self._next_send: float | None = now  # the first request is due at once
        self._last_sent = now
        self._give_up_at: float | None = None
        self._done = False
        self._events: deque[BindingEvent] = deque()

    @property
    def transaction_id(self) -> bytes:
        """The 12-byte id matching our responses (a socket shared by many transactions demuxes on it)."""
        return self._transaction_id

    @property
    def server(self) -> Address:
        """The server this transaction asks (as a canonical (ip, port))."""
        return self._server

    @property
    def done(self) -> bool:
        """True once the transaction has succeeded or failed."""
        return self._done

    @property
    def requests_sent(self) -> int:
        """How many requests went out (the first one and retransmissions)."""
        return self._requests_sent

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """The request when one is due (first send or retransmission), else nothing."""
        if self._done or self._next_send is None or now < self._next_send:
            return []
        self._requests_sent += 1
        self._last_sent = now
        if self._requests_sent < self._config.max_requests:
            # RFC 8489 §6.2.1: the interval doubles each time (sent at 0, RTO, 3 RTO, 7 RTO...).
            self._next_send = now + self._config.initial_rto * (1 << (self._requests_sent - 1))
        else:
            self._next_send = None
            self._give_up_at = now + self._config.final_wait_factor * self._config.initial_rto
        return [(self._request, self._server)]

    def get_timer(self) -> float | None:
        """When `handle_timer` (then `datagrams_to_send`) should next run, or None when done."""
        if self._done:
            return None
        return self._next_send if self._next_send is not None else self._give_up_at

    def handle_timer(self, now: float) -> None:
        """Give up once Rm x RTO has passed since the last request (`datagrams_to_send` retransmits)."""
        if self._done or self._give_up_at is None or now < self._give_up_at:
            return
        total = self._config.total_time
        self._finish(
            BindingFailed(
                f"no answer to {self._requests_sent} requests in {total:g} s",
                self._server,
                timed_out=True,
            )
        )

    def receive_datagram(self, data: bytes, addr: tuple[Any, ...], now: float) -> None:
        """Feed a datagram that arrived on the socket; anything but this transaction's response is ignored."""
        source = canonical_address(addr)
        if self._done or (source != self._server and not self._any_source) or not is_stun(data):
            return
        try:
            message = decode(data)
        except StunDecodeError:
            return  # RFC 8489 §6.3: malformed messages are discarded; retransmissions continue
        if (
            message.transaction_id != self.transaction_id
            or message.method != StunMethod.BINDING
            or message.message_class not in (StunClass.SUCCESS, StunClass.ERROR)
        ):
            return
        self._finish(self._outcome(message, now, source))

    def next_event(self) -> BindingEvent | None:
        """The next event, or None when there is none pending."""
        return self._events.popleft() if self._events else None

    def _outcome(self, response: StunMessage, now: float, source: Address | None = None) -> BindingEvent:
        unknown = response.unknown_comprehension_required()
        if unknown:
            # RFC 8489 §6.3.3-6.3.4: unknown comprehension-required attributes fail the transaction.
            names = ", ".join(f"{t:#06x}" for t in unknown)
            return BindingFailed(f"the STUN server's answer has unknown attributes {names}", self._server)
        if response.message_class == StunClass.ERROR:
            error = response.find(ErrorCode)
            if error is None:
                return BindingFailed("the STUN server answered an error without a code", self._server)
            return BindingFailed(
                f"the STUN server answered {error.code} {error.reason}".rstrip(),
                self._server,
                error_code=error.code,
            )
        xor_mapped = response.find(XorMappedAddress)
        mapped = xor_mapped.address if xor_mapped else None
        if mapped is None:
            plain = response.find(MappedAddress)  # RFC 8489 §14.1: servers from before RFC 5389
            mapped = plain.address if plain else None
        if mapped is None:
            return BindingFailed("the STUN server's answer has no mapped address", self._server)
        origin, other = response.find(ResponseOrigin), response.find(OtherAddress)
        return BindingSucceeded(
            mapped,
            self._server,
            max(0.0, now - self._last_sent),
            response_origin=origin.address if origin else None,
            other_address=other.address if other else None,
            source=source,
        )

    def _finish(self, event: BindingEvent) -> None:
        self._done = True
        self._next_send = self._give_up_at = None
        self._events.append(event)


# --- the asyncio adapter -------------------------------------------------------------------------------


class StunClientError(PunchlineError):
    """Finding our public address failed; the message says why, for people."""


class StunTimeout(StunClientError, TryAgainLater):
    """The STUN server did not answer in time."""


class StunErrorResponse(StunClientError, FinalError):
    """The STUN server answered with an error response."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PublicAddress:
    """What a STUN server saw: our ``public`` address, the ``local`` one we sent from, and the round trip."""

    public: Address
    local: Address
    server: Address
    rtt: float


def _format(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str | None) -> int:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host or "").version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_UNSPEC


class ProbeSocket(asyncio.DatagramProtocol):
    """A UDP socket that runs Binding transactions one after another, and can wait for stray datagrams.

    The asyncio adapter of `BindingTransaction`: datagrams and the loop's timer go in, requests go out.
    One socket for several questions keeps one NAT mapping (the RFC 5780 tests of `app.netcheck` need
    that); ``remote`` connects it, so that the kernel picks and reports the local address routing there.
    """

    def __init__(self, config: BindingConfig) -> None:
        self._loop = asyncio.get_running_loop()
        self._config = config
        self._transport: asyncio.DatagramTransport | None = None
        self._transaction: BindingTransaction | None = None
        self._result: asyncio.Future[BindingEvent] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._others: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.refused = False  # an ICMP port unreachable came back: nothing listens there

    @classmethod
    async def open(
        cls,
        local: Address | None = ("0.0.0.0", 0),  # noqa: S104 - any interface
        *,
        remote: Address | None = None,
        config: BindingConfig | None = None,
    ) -> ProbeSocket:
        """A new socket bound to ``local`` (connected to ``remote``); raises OSError."""
        loop = asyncio.get_running_loop()
        _, probe = await loop.create_datagram_endpoint(
            lambda: cls(config or BindingConfig()), local_addr=local, remote_addr=remote
        )
        return probe

    @property
    def local(self) -> Address:
        """The address the socket is bound to."""
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (CPython's does not subclass DatagramTransport, hence a cast).
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
        # ICMP errors are not answers (RFC 8489 leaves them advisory): keep retransmitting, note the hint.
        if isinstance(exc, ConnectionRefusedError):
            self.refused = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._result is not None and not self._result.done():
            self._result.set_exception(StunClientError(f"the STUN socket closed ({exc})"))

    async def binding(
        self,
        server: Address,
        *attributes: Attribute,
        any_source: bool = False,
        config: BindingConfig | None = None,
    ) -> BindingEvent:
        """One Binding transaction to ``server`` from this socket (with RFC 5780 ``attributes``)."""
        self._transaction = BindingTransaction(
            server,
            self._loop.time(),
            config=config or self._config,
            attributes=attributes,
            any_source=any_source,
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
        """Release the socket (a transaction still waiting fails with `StunClientError`)."""
        if self._transport is not None:
            self._transport.close()

    def _process(self) -> None:
        transaction, result = self._transaction, self._result
        if transaction is None or result is None or self._transport is None:
            return
        connected = self._transport.get_extra_info("peername") is not None
        for data, to in transaction.datagrams_to_send(self._loop.time()):
            self._transport.sendto(data, None if connected else to)  # a connected socket takes no address
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


async def _resolve(loop: asyncio.AbstractEventLoop, server: Address, family: int) -> Address:
    host, port = server
    try:
        infos = await loop.getaddrinfo(
            host, port, family=family, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
        )
    except socket.gaierror as exc:
        raise StunClientError(f"Cannot resolve STUN server {host}: {exc.strerror}") from exc
    if not infos:
        raise StunClientError(f"Cannot resolve STUN server {host}")
    sockaddr = infos[0][4]  # the resolver's preferred address (RFC 6724 order)
    return (str(sockaddr[0]), int(sockaddr[1]))


async def discover_public_address(
    server: Address,
    *,
    local_addr: Address | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - an overall deadline the caller chooses, named in the error
    config: BindingConfig | None = None,
) -> PublicAddress:
    """Ask ``server`` (host name or IP, port) for our address as it sees it, from a fresh UDP socket.

    Raises `StunTimeout` when nothing answers within ``timeout`` seconds (or the retransmissions of
    ``config`` run out first), `StunErrorResponse` on an error answer, `StunClientError` for other failures.
    """
    loop = asyncio.get_running_loop()
    name = _format(server)
    remote = await _resolve(loop, server, _family(local_addr[0] if local_addr else None))
    started = loop.time()
    try:
        probe = await ProbeSocket.open(local_addr, remote=remote, config=config)
    except OSError as exc:
        raise StunClientError(f"Cannot send to STUN server {name} ({exc.strerror or exc})") from exc
    try:
        local = probe.local
        try:
            async with asyncio.timeout(timeout):
                event = await probe.binding(remote)
        except TimeoutError:
            event = BindingFailed("timeout", remote, timed_out=True)
    finally:
        probe.close()
    if isinstance(event, BindingSucceeded):
        return PublicAddress(public=event.mapped, local=local, server=event.server, rtt=event.rtt)
    if event.timed_out:
        waited = round(loop.time() - started, 1)
        hint = " (the host refused: is a STUN server running on that port?)" if probe.refused else ""
        raise StunTimeout(f"No answer from STUN server {name} after {waited} s{hint}")
    if event.error_code is not None:
        raise StunErrorResponse(f"STUN server {name}: {event.reason}", event.error_code)
    raise StunClientError(f"STUN server {name}: {event.reason}")
