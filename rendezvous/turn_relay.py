"""The asyncio adapter of the TURN relay: sockets and a timer around the sans-IO `TurnServer`.

UDP sockets are plain non-blocking sockets read with ``loop.add_reader``: the listening (STUN) port and
one relay socket per allocation, bound on the relay IP to the port the machine picks (so opening one is
synchronous and the machine hears at once whether the port was free). One timer, re-armed after every
control input, serves expiries. No protocol decisions live here: receive → feed the machine → carry out
its actions.

Relaying is the hot path (two datagrams in and two out per round trip of a call or a transfer), so each
wakeup drains up to `_READS_PER_WAKEUP` datagrams from a socket, reads the clock once per wakeup, and a
lone data action (`Transmit` or `RelayTransmit`) is sent straight away without the general action loop.
Sends never queue: a full socket buffer drops the datagram, as a router would (this is UDP).

TURN over TCP (RFC 8656 §3.1) listens on the same port number: each connection is one client (its key
carries "tcp", see `ClientKey`), cut into frames by `StreamFramer`; its allocation ends when it closes. A
connection that holds no allocation for ``tcp_idle_timeout`` is closed, and no more connections are kept
than allocations may exist (``quotas.max_allocations``), so idle sockets cannot exhaust the server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import cast

from rendezvous.behaviour_discovery import BehaviourDiscovery, is_binding_request
from rendezvous.config import TurnConfig
from rendezvous.log import log_event
from rendezvous.turn_server import (
    AllocationCreated,
    AllocationEnded,
    ClientKey,
    CloseRelay,
    OpenRelay,
    RelayTransmit,
    Transmit,
    TurnAction,
    TurnServer,
)
from rendezvous.wire.stun import Address, canonical_address
from rendezvous.wire.turn import FramingError, StreamFramer, stream_frame

log = logging.getLogger("punchline.turn")

_READS_PER_WAKEUP = 64  # datagrams read from one socket before yielding to the loop
_RELAY_BUFFER_BYTES = 1 << 20  # receive buffer of each relay socket (bursts of a file transfer)
_LISTEN_BUFFER_BYTES = 4 << 20  # buffers of the listening socket, which carries every client's traffic
_MAX_DATAGRAM = 65_535
#: Bytes queued on one TCP client connection above which frames to it are dropped (it is not reading).
_TCP_WRITE_LIMIT = 1 << 20


def _udp_socket(host: str, port: int, buffer_bytes: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` with ``buffer_bytes`` of receive buffer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _TcpClient(asyncio.Protocol):
    """One TURN-over-TCP connection: frames in go to the relay; `write` pads and queues frames out."""

    def __init__(self, relay: TurnRelay) -> None:
        self._relay = relay
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._idle_check: asyncio.TimerHandle | None = None
        self.key: ClientKey = ("", 0, "tcp")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the relay (or close at once when it is full); start the idle check."""
        self._transport = cast(asyncio.Transport, transport)
        # Spelled as the machine spells it (an IPv4 client of a dual-stack socket is plain IPv4).
        peer = canonical_address(transport.get_extra_info("peername")) or ("", 0)
        self.key = (peer[0], peer[1], "tcp")
        if not peer[0] or not self._relay._tcp_opened(self):
            log_event(log, "turn_tcp_refused", level=logging.DEBUG, client=f"{peer[0]}:{peer[1]}")
            self._transport.abort()
            return
        self._schedule_idle_check()

    def data_received(self, data: bytes) -> None:
        """Cut the stream into frames; garbage closes the connection (there is no next frame to find)."""
        try:
            frames = self._framer.feed(data)
        except FramingError as exc:
            log_event(log, "turn_tcp_garbage", level=logging.DEBUG, client=self.key[0], error=str(exc))
            self.close()
            return
        for frame in frames:
            self._relay._tcp_frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        """The client went away: so does its allocation."""
        if self._idle_check is not None:
            self._idle_check.cancel()
        self._relay._tcp_closed(self)

    def write(self, message: bytes) -> bool:
        """Queue one frame; False (dropped) when the client has not read the last `_TCP_WRITE_LIMIT` bytes."""
        transport = self._transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > _TCP_WRITE_LIMIT
        ):
            return False
        transport.write(stream_frame(message))
        return True

    def close(self) -> None:
        """Abort the connection (`connection_lost` follows)."""
        if self._transport is not None:
            self._transport.abort()

    def _schedule_idle_check(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_check = loop.call_later(self._relay._idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        if self._relay._tcp_idle(self):
            log_event(log, "turn_tcp_idle", level=logging.DEBUG, client=self.key[0])
            self.close()
        else:
            self._schedule_idle_check()


def _numeric(host: str) -> str:
    """``host`` as an IP address: itself if it is one, else its first UDP address (OSError if none)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])


class TurnRelay:
    """Owns the listening socket, the relay sockets and the expiry timer around one `TurnServer`."""

    def __init__(
        self,
        config: TurnConfig,
        listener: socket.socket,
        *,
        secret: str,
        relay_ip: str,
        external_ip: str,
        clock: Callable[[], float],
    ) -> None:
        self._relay_ip = relay_ip
        self._clock = clock
        self._listener = listener
        self._machine = TurnServer(config, secret=secret, server_address=self.address, relay_ip=external_ip)
        self._relays: dict[int, socket.socket] = {}
        self._tcp_clients: dict[ClientKey, _TcpClient] = {}
        self._tcp_server: asyncio.Server | None = None
        self._idle_timeout = config.tcp_idle_timeout
        self._max_tcp_clients = config.quotas.max_allocations
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        #: Datagrams sent to clients, and those dropped because the send buffer was full (for tests/logs).
        self.sent = 0
        self.dropped = 0
        #: RFC 5780 behaviour discovery, when the server runs it: Binding requests are answered there.
        self.discovery: BehaviourDiscovery | None = None
        self._loop.add_reader(listener.fileno(), self._listener_readable)

    @property
    def address(self) -> Address:
        """The (host, port) the listening socket is bound to."""
        sockname = self._listener.getsockname()
        return (str(sockname[0]), int(sockname[1]))

    @property
    def machine(self) -> TurnServer:
        """The sans-IO server (for counters in tests)."""
        return self._machine

    def close(self) -> None:
        """End every allocation, close every socket, stop the timer."""
        if self._closed:
            return
        self._apply(self._machine.close())
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop.remove_reader(self._listener.fileno())
        self._listener.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for client in list(self._tcp_clients.values()):
            client.close()
        log_event(log, "turn_stopped", sent=self.sent, dropped=self.dropped)

    async def listen_tcp(self) -> None:
        """Accept TURN over TCP on the listening address's IP and port number (OSError if it is taken)."""
        host, port = self.address
        self._tcp_server = await self._loop.create_server(lambda: _TcpClient(self), host, port)

    @property
    def tcp_clients(self) -> int:
        """TURN-over-TCP connections open now."""
        return len(self._tcp_clients)

    # ------------------------------------------------------------------------------------------ sockets

    def _listener_readable(self) -> None:
        """Client datagrams, fed to the machine; a lone `RelayTransmit` (ChannelData) goes out at once."""
        machine, listener, now = self._machine, self._listener, self._clock()
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = listener.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier answer: try the next datagram
                log_event(log, "turn_socket_error", level=logging.DEBUG, error=str(exc))
                continue
            if self.discovery is not None and is_binding_request(data):
                self.discovery.receive(data, addr)
                continue
            actions = machine.receive(data, addr, now)
            if len(actions) == 1 and type(action := actions[0]) is RelayTransmit:
                self._send_to_peer(action)
            elif actions:
                self._apply(actions)
            if self._closed:
                return

    def _relay_readable(self, port: int, sock: socket.socket) -> None:
        """Peer datagrams on one allocation's relay socket: each goes to the client (or is dropped)."""
        machine, now = self._machine, self._clock()
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error reported on the socket: try the next datagram
            actions = machine.receive_relayed(port, data, addr, now)
            if len(actions) == 1 and type(action := actions[0]) is Transmit:
                self._send_to_client(action.data, action.address)
            elif actions:
                self._apply(actions)
            if self._relays.get(port) is not sock:
                return  # the allocation ended while handling this datagram

    def _send_to_client(self, data: bytes, address: ClientKey) -> None:
        if len(address) == 3:
            client = self._tcp_clients.get(address)
            if client is None or not client.write(data):
                self.dropped += 1
            else:
                self.sent += 1
            return
        try:
            self._listener.sendto(data, address)
        except OSError:  # full buffer or unreachable: this is UDP, the datagram is lost
            self.dropped += 1
        else:
            self.sent += 1

    def send_from_listener(self, data: bytes, address: Address) -> None:
        """Send a datagram from the STUN/TURN port (behaviour discovery answers that leave from here)."""
        self._send_to_client(data, address)

    def _send_to_peer(self, action: RelayTransmit) -> None:
        relay = self._relays.get(action.relay_port)
        if relay is not None:
            try:  # noqa: SIM105 - contextlib.suppress costs more than the send on this hot path
                relay.sendto(action.data, action.address)
            except OSError:  # full buffer or unreachable peer: the datagram is lost, like any UDP
                pass

    def _open_relay(self, port: int) -> bool:
        try:
            sock = _udp_socket(self._relay_ip, port, _RELAY_BUFFER_BYTES)
        except OSError as exc:
            log_event(log, "turn_relay_port_busy", level=logging.DEBUG, port=port, error=str(exc))
            return False
        self._relays[port] = sock
        self._loop.add_reader(sock.fileno(), self._relay_readable, port, sock)
        return True

    def _close_relay(self, port: int) -> None:
        sock = self._relays.pop(port, None)
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    # ------------------------------------------------------------------------------------------ actions

    def _apply(self, actions: list[TurnAction]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, Transmit):
                if not self._closed:
                    self._send_to_client(action.data, action.address)
            elif isinstance(action, RelayTransmit):
                self._send_to_peer(action)
            elif isinstance(action, OpenRelay):
                ok = self._open_relay(action.relay_port)
                queue += self._machine.relay_opened(action.relay_port, ok, self._clock())
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
                    allocations=self._machine.allocation_count,
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

    # ------------------------------------------------------------------------------------------ tcp

    def _tcp_opened(self, client: _TcpClient) -> bool:
        """A new TCP connection; False (close it) when the server holds as many as it may."""
        if self._closed or len(self._tcp_clients) >= self._max_tcp_clients:
            return False
        self._tcp_clients[client.key] = client
        return True

    def _tcp_frame(self, client: _TcpClient, frame: bytes) -> None:
        self._apply(self._machine.receive(frame, client.key[:2], self._clock(), "tcp"))

    def _tcp_closed(self, client: _TcpClient) -> None:
        if self._tcp_clients.get(client.key) is client:
            del self._tcp_clients[client.key]
            if not self._closed:
                self._apply(self._machine.client_closed(client.key[:2], self._clock()))

    def _tcp_idle(self, client: _TcpClient) -> bool:
        """Whether ``client``'s connection holds no allocation (then it is closed)."""
        return not self._machine.has_allocation(client.key)

    # ------------------------------------------------------------------------------------------ timer

    def _rearm(self) -> None:
        deadline = None if self._closed else self._machine.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(
                self._loop.time() + max(0.0, deadline - self._clock()), self._on_timer
            )

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._apply(self._machine.handle_timer(self._clock()))


async def start_turn_relay(
    config: TurnConfig, *, host: str, port: int, secret: str, clock: Callable[[], float] = time.time
) -> TurnRelay:
    """Bind UDP ``host:port``, serve TURN (and STUN Binding) on it; relay sockets bind ``config.relay_ip``.

    Raises OSError when the port cannot be bound, ValueError when no concrete relay address can be advertised
    (the relay binds 0.0.0.0 and no ``external_ip`` is set). ``clock`` is unix time (REST usernames use it).
    """
    relay_ip = config.relay_ip or _numeric(host)
    external_ip = config.external_ip or relay_ip
    if ipaddress.ip_address(external_ip).is_unspecified:
        raise ValueError(f"the relay binds {relay_ip}: set an external IP for clients to reach it")
    numeric = _numeric(host)
    # With port 0 the UDP port is the kernel's pick, which TCP may already use there: pick again.
    for attempt in range(1 if port else 8):
        listener = _udp_socket(numeric, port, _LISTEN_BUFFER_BYTES)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _LISTEN_BUFFER_BYTES)
            relay = TurnRelay(
                config, listener, secret=secret, relay_ip=relay_ip, external_ip=external_ip, clock=clock
            )
        except BaseException:
            listener.close()
            raise
        try:
            if config.tcp:
                await relay.listen_tcp()
            break
        except OSError:
            relay.close()
            if port or attempt == 7:
                raise
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
