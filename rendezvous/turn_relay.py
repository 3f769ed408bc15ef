"""The asyncio adapter of the TURN relay: sockets and a timer around the sans-IO `TurnServer`.

One DatagramProtocol on the listening (STUN) port; one non-blocking UDP socket per allocation, bound on the
relay IP to the port the machine picks and read with ``loop.add_reader`` (so opening one is synchronous and
the machine hears at once whether the port was free); one timer, re-armed after every input, for expiries.
No protocol decisions live here: receive → feed the machine → carry out its actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from rendezvous.config import TurnConfig
from rendezvous.log import log_event
from rendezvous.turn_server import (
    AllocationCreated,
    AllocationEnded,
    CloseRelay,
    OpenRelay,
    RelayTransmit,
    Transmit,
    TurnAction,
    TurnServer,
)
from rendezvous.wire.stun import Address

log = logging.getLogger("punchline.turn")

_READS_PER_WAKEUP = 64  # datagrams read from one relay socket before yielding to the loop
_RELAY_BUFFER_BYTES = 1 << 20  # receive buffer of each relay socket (bursts of a file transfer)


class TurnRelay(asyncio.DatagramProtocol):
    """The listening socket's protocol; owns the relay sockets and the expiry timer."""

    def __init__(
        self, config: TurnConfig, *, secret: str, relay_ip: str, external_ip: str, clock: Callable[[], float]
    ) -> None:
        self._config = config
        self._secret = secret
        self._relay_ip = relay_ip
        self._external_ip = external_ip
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._machine: TurnServer | None = None
        self._relays: dict[int, socket.socket] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._paused = False
        #: Datagrams sent to clients and dropped because the send buffer was full (counters for tests/logs).
        self.sent = 0
        self.dropped = 0

    @property
    def address(self) -> Address:
        """The (host, port) the listening socket is bound to."""
        assert self._transport is not None, "the relay is not started"
        sockname = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    @property
    def machine(self) -> TurnServer:
        """The sans-IO server (for counters in tests)."""
        assert self._machine is not None, "the relay is not started"
        return self._machine

    # ------------------------------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; build the machine now that the listening address is known."""
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._machine = TurnServer(
            self._config, secret=self._secret, server_address=self.address, relay_ip=self._external_ip
        )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """A client datagram: feed the machine."""
        self._apply(self.machine.receive(data, addr, self._clock()))

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier answers: nothing to do."""
        log_event(log, "turn_socket_error", level=logging.DEBUG, error=str(exc))

    def pause_writing(self) -> None:
        """The send buffer is full: drop instead of queueing."""
        self._paused = True

    def resume_writing(self) -> None:
        """The send buffer drained."""
        self._paused = False

    def close(self) -> None:
        """End every allocation, close every socket, stop the timer."""
        if self._machine is not None:
            self._apply(self._machine.close())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
            log_event(log, "turn_stopped", sent=self.sent, dropped=self.dropped)

    # ------------------------------------------------------------------------------------------ actions

    def _apply(self, actions: list[TurnAction]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, Transmit):
                self._send_to_client(action.data, action.address)
            elif isinstance(action, RelayTransmit):
                relay = self._relays.get(action.relay_port)
                if relay is not None:
                    # A full buffer or an unreachable peer: this is UDP, so the datagram is lost.
                    with contextlib.suppress(OSError):
                        relay.sendto(action.data, action.address)
            elif isinstance(action, OpenRelay):
                ok = self._open_relay(action.relay_port)
                queue += self.machine.relay_opened(action.relay_port, ok, self._clock())
            elif isinstance(action, CloseRelay):
                self._close_relay(action.relay_port)
            elif isinstance(action, AllocationCreated):
                log_event(
                    log,
                    "turn_allocation_created",
                    user=action.user,
                    client=f"{action.client[0]}:{action.client[1]}",
                    relay_port=action.relay_port,
                    lifetime=action.lifetime,
                    allocations=self.machine.allocation_count,
                )
            elif isinstance(action, AllocationEnded):
                log_event(
                    log,
                    "turn_allocation_ended",
                    user=action.user,
                    client=f"{action.client[0]}:{action.client[1]}",
                    relay_port=action.relay_port,
                    reason=action.reason,
                    bytes_relayed=action.bytes_relayed,
                    datagrams_dropped=action.datagrams_dropped,
                )
        self._rearm()

    def _send_to_client(self, data: bytes, address: Address) -> None:
        if self._transport is None or self._transport.is_closing() or self._paused:
            self.dropped += 1
            return
        self._transport.sendto(data, address)
        self.sent += 1

    def _open_relay(self, port: int) -> bool:
        family = socket.AF_INET6 if ipaddress.ip_address(self._relay_ip).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RELAY_BUFFER_BYTES)
            sock.bind((self._relay_ip, port))
        except OSError as exc:
            sock.close()
            log_event(log, "turn_relay_port_busy", level=logging.DEBUG, port=port, error=str(exc))
            return False
        self._relays[port] = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._relay_readable, port, sock)
        return True

    def _close_relay(self, port: int) -> None:
        sock = self._relays.pop(port, None)
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def _relay_readable(self, port: int, sock: socket.socket) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error reported on the socket: try the next datagram
            self._apply(self.machine.receive_relayed(port, data, addr, self._clock()))
            if self._relays.get(port) is not sock:
                return  # the allocation ended while handling this datagram

    # ------------------------------------------------------------------------------------------ timer

    def _rearm(self) -> None:
        if self._machine is None:
            return
        deadline = self._machine.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0.0, deadline - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._apply(self.machine.handle_timer(self._clock()))


async def start_turn_relay(
    config: TurnConfig, *, host: str, port: int, secret: str, clock: Callable[[], float] = time.time
) -> TurnRelay:
    """Bind UDP ``host:port``, serve TURN (and STUN Binding) on it; relay sockets bind ``config.relay_ip``.

    Raises OSError when the port cannot be bound, ValueError when no concrete relay address can be advertised
    (the relay binds 0.0.0.0 and no ``external_ip`` is set). ``clock`` is unix time (REST usernames use it).
    """
    relay_ip = config.relay_ip or host
    external_ip = config.external_ip or relay_ip
    if ipaddress.ip_address(external_ip).is_unspecified:
        raise ValueError(f"the relay binds {relay_ip}: set an external IP for clients to reach it")
    loop = asyncio.get_running_loop()
    _, relay = await loop.create_datagram_endpoint(
        lambda: TurnRelay(config, secret=secret, relay_ip=relay_ip, external_ip=external_ip, clock=clock),
        local_addr=(host, port),
    )
    bound_host, bound_port = relay.address
    log_event(
        log,
        "turn_listening",
        host=bound_host,
        port=bound_port,
        relay_ip=relay_ip,
        external_ip=external_ip,
        relay_ports=f"{config.min_port}-{config.max_port}",
        realm=config.realm,
    )
    return relay
