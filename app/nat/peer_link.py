"""One peer session's UDP socket, asyncio side: gathering, hole punching, the TURN relay and app datagrams.

Everything on the session travels through one UDP socket, so the NAT mapping the STUN server saw is the
one the peer's checks punch into, and the TURN allocation lives on it too. Datagrams are told apart by
source and first byte (RFC 7983 §7): from the TURN server they go to the `TurnAllocation` (which unwraps
relayed data); STUN (first byte 0-3) goes to the Binding transactions and the `HolePunch`; anything else
from the peer is the application's: the peer session's datagrams, QUIC packets wrapped by the loss-repair
layer, whose first byte is one of its kinds (48-51, `app.session.datagram_kinds.PathKind`). ChannelData
(64-79) from the relay is unwrapped first, so relayed application data is told apart the same way.

The one exception is TURN over TCP (``app.nat.turn_stream``), for networks that let no UDP out: when the
relay does not answer over UDP within `GatherConfig.tcp_fallback_delay`, an allocation over a TCP
connection to the same relay is tried alongside, and the first one ready is kept (UDP preferred).

This module is a thin adapter in the style of aioquic's ``asyncio/protocol.py``: receive → feed the
machines → transmit, one re-armed timer, no protocol decisions. The decisions are in `app.nat.hole_punch`,
`app.nat.turn_client` and `app.nat.stun_client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.nat.candidates import Base, Candidate
from app.nat.hole_punch import HolePunch, HolePunchConfig
from app.nat.path_events import PathEvent, PathInfo, RelayTransport
from app.nat.stun_client import BindingConfig, BindingFailed, BindingSucceeded, BindingTransaction
from app.nat.turn_client import (
    AllocationExpired,
    AllocationFailed,
    AllocationReady,
    DataReceived,
    TurnAllocation,
    TurnClientConfig,
    TurnEvent,
)
from app.nat.turn_stream import TurnStream, reliable_config
from rendezvous.wire.stun import Address, canonical_address

log = logging.getLogger("punchline.nat")

#: Application datagrams held while no path is selected yet, and for how long (seconds).
PENDING_LIMIT = 64
PENDING_SECONDS = 2.0
#: Datagrams read per wakeup: one event-loop turn per datagram would cap a file transfer at a few MB/s.
READ_BATCH = 64
#: Socket buffer sizes (bytes): room for a burst of QUIC packets while the loop is busy writing a file.
SOCKET_BUFFER = 4 * 1024 * 1024
_MAX_DATAGRAM = 65535


@dataclass(frozen=True)
class RelayServer:
    """A TURN server to allocate on, with REST-style credentials from the rendezvous (``get_ice_servers``)."""

    address: Address
    username: str
    password: str
    #: How we reach the relay (``turn:...?transport=tcp``: TCP); the relay talks UDP to the peer either way.
    transport: RelayTransport = "udp"


@dataclass
class _Relay:
    """One allocation attempt: on the session's UDP socket (``stream`` None) or on a TCP connection."""

    allocation: TurnAllocation
    transport: RelayTransport
    stream: TurnStream | None = None
    events: list[TurnEvent] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """The server granted the allocation (it has a relayed address)."""
        return self.allocation.relayed_address is not None


@dataclass(frozen=True)
class GatherConfig:
    """Where to find our public and relayed addresses, and how long to wait for them."""

    stun_servers: tuple[Address, ...] = ()
    relay: RelayServer | None = None
    #: The same relay over TCP, tried when ``relay`` has not answered over UDP within ``tcp_fallback_delay``
    #: seconds (or at once when there is no UDP relay).
    tcp_relay: RelayServer | None = None
    tcp_fallback_delay: float = 0.5
    #: Gathering ends when every server answered or this many seconds passed, whichever is first.
    timeout: float = 2.0
    #: Offer loopback host candidates (tests on one machine); real sessions never do.
    allow_loopback: bool = False
    stun: BindingConfig = field(
        default_factory=lambda: BindingConfig(initial_rto=0.1, max_requests=5, final_wait_factor=4)
    )
    turn: TurnClientConfig = field(default_factory=TurnClientConfig)


@dataclass(frozen=True)
class GatherResult:
    """What gathering found: candidates to offer, and why any kind is missing (for the path status)."""

    candidates: tuple[Candidate, ...]
    problems: tuple[str, ...]


def route_address(toward: Address | None) -> str | None:
    """The local IP the kernel would send from toward ``toward`` (a connected UDP socket sends nothing)."""
    if toward is None:
        return None
    family = socket.AF_INET6 if ":" in toward[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(toward)
        except OSError:
            return None
        return str(probe.getsockname()[0])


class PeerLink:
    """The session socket: gathers candidates, runs the punch, and carries application datagrams.

    Use `open`, then `gather`, exchange candidates over signalling, `start` the punch, then `send` and
    `receive`; `next_event` yields the `HolePunch`'s path events (selected, changed, stats, lost).
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = None
        self._bindings: list[BindingTransaction] = []
        self._relays: list[_Relay] = []  # UDP, then TCP while gathering; only the ready one after
        self._punch: HolePunch | None = None
        self._permitted: set[Address] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()  # set whenever a machine produced an event: wakes waiters
        self._received: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4096)
        self._events: asyncio.Queue[PathEvent] = asyncio.Queue()
        self._binding_events: list[BindingSucceeded | BindingFailed] = []
        self._pending: deque[tuple[float, bytes]] = deque()
        self._closed = False
        self._receiver: Callable[[bytes], None] | None = None
        self._direct_peer: Address | None = None  # the selected direct path's peer: the fast path
        self._relay_peer: Address | None = None  # the selected relayed path's peer: its fast path
        self.dropped_app_datagrams = 0

    # --- lifecycle ------------------------------------------------------------------------------------

    @classmethod
    async def open(cls, host: str = "0.0.0.0", port: int = 0) -> PeerLink:  # noqa: S104 - all interfaces
        """Bind the session socket (an ephemeral port on every interface by default)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        link = cls()
        link._sock = sock
        link._loop.add_reader(sock.fileno(), link._readable)
        return link

    @property
    def local_address(self) -> Address:
        """The socket's bound (ip, port)."""
        assert self._sock is not None
        name = self._sock.getsockname()
        return (str(name[0]), int(name[1]))

    @property
    def relayed_address(self) -> Address | None:
        """Our TURN allocation's relayed address, if we have one."""
        return self._turn.relayed_address if self._turn else None

    @property
    def relay_transport(self) -> RelayTransport:
        """How we reach our relay: "udp", or "tcp" when UDP to it is blocked."""
        return self._relays[0].transport if self._relays else "udp"

    @property
    def _turn(self) -> TurnAllocation | None:
        """The allocation application data and relayed checks use (the kept one, after gathering)."""
        return self._relays[0].allocation if self._relays else None

    @property
    def selected_path(self) -> PathInfo | None:
        """The path application datagrams take now, or None."""
        return self._punch.selected_path if self._punch else None

    def close(self) -> None:
        """Stop the punch, delete the allocation (best effort) and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._punch is not None:
            self._punch.close()
        if self._sock is not None:
            for relay in self._relays:
                if not relay.allocation.done:
                    relay.allocation.close(self._loop.time())
                self._flush_relay(relay, self._loop.time())
                if relay.stream is not None:
                    relay.stream.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    # --- gathering ------------------------------------------------------------------------------------

    async def gather(self, config: GatherConfig) -> GatherResult:
        """Host, server-reflexive and relayed candidates, all on this socket, within ``config.timeout``."""
        now = self._loop.time()
        self._bindings = [BindingTransaction(s, now, config=config.stun) for s in config.stun_servers]
        if config.relay is not None:
            server = config.relay
            allocation = TurnAllocation(server.address, server.username, server.password, config=config.turn)
            self._relays.append(_Relay(allocation, "udp"))
        self._pump()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(config.timeout):
                if config.tcp_relay is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(config.tcp_fallback_delay if config.relay else 0):
                            await self._wait_for(self._relay_answered)
                    if not any(r.ready for r in self._relays):
                        await self._open_tcp_relay(config.tcp_relay, config.turn)
                await self._wait_for(self._gathering_done)
        tcp_problem = self._keep_one_relay()

        port = self.local_address[1]
        problems: list[str] = []
        found: list[Candidate] = []
        probe = (
            config.stun_servers[0]
            if config.stun_servers
            else (config.relay.address if config.relay else None)
        )
        host_ip: str | None = self.local_address[0]
        if host_ip in ("0.0.0.0", "::"):  # noqa: S104 - bound to every interface: ask the routing table
            host_ip = route_address(probe)
        if host_ip is not None:
            host = Candidate.create("host", (host_ip, port))
            if not (host_ip.startswith("127.") or host_ip == "::1") or config.allow_loopback:
                found.append(host)
        for event in self._binding_events:
            if isinstance(event, BindingSucceeded):
                found.append(Candidate.create("srflx", event.mapped))
            else:
                problems.append(f"no public address from {event.server[0]}:{event.server[1]}: {event.reason}")
        for relay in self._relays:
            for turn_event in relay.events:
                if isinstance(turn_event, AllocationReady):
                    found.append(Candidate.create("relay", turn_event.relayed_address))
                    if turn_event.mapped_address is not None and relay.transport == "udp":
                        found.append(Candidate.create("srflx", turn_event.mapped_address))
                elif isinstance(turn_event, AllocationFailed):
                    problems.append(f"no relay: {turn_event.reason}")
            if not relay.ready and not any(isinstance(e, AllocationFailed) for e in relay.events):
                problems.append("no relay: the TURN server did not answer in time")
        if tcp_problem is not None:
            problems.append(tcp_problem)
        unique: dict[Address, Candidate] = {}
        for candidate in found:
            unique.setdefault(candidate.address, candidate)
        return GatherResult(tuple(unique.values()), tuple(problems))

    def _gathering_done(self) -> bool:
        if any(r.stream is not None and r.ready for r in self._relays):
            # Ready over TCP while UDP got no answer: no UDP leaves this network, so no STUN answer will
            # come either (and a public address would be useless without UDP). Do not wait for them.
            return True
        bindings_done = all(b.done for b in self._bindings)
        return bindings_done and self._relay_answered()

    def _relay_answered(self) -> bool:
        """No relay attempt is still waiting: one is ready, or every one has failed."""
        return any(r.ready for r in self._relays) or all(r.allocation.done for r in self._relays)

    async def _open_tcp_relay(self, server: RelayServer, config: TurnClientConfig) -> None:
        """Allocate over a TCP connection to ``server``; if it cannot connect, gathering goes on."""
        try:
            stream = await TurnStream.connect(
                server.address,
                lambda frame: self._from_relay_stream(server.address, frame),
                self._stream_closed,
            )
        except OSError as exc:
            log.info("relay over TCP %s:%d: %s", *server.address, exc)
            return
        allocation = TurnAllocation(
            server.address, server.username, server.password, config=reliable_config(config)
        )
        self._relays.append(_Relay(allocation, "tcp", stream))
        self._pump()

    def _keep_one_relay(self) -> str | None:
        """After gathering, keep the first ready allocation (UDP before TCP) and drop the others.

        Returns a problem to report when the relay is reached over TCP only (UDP to it is blocked).
        """
        ready = [r for r in self._relays if r.ready]
        if not ready:
            return None
        keep = ready[0]
        now = self._loop.time()
        for relay in self._relays:
            if relay is not keep:
                if relay.ready:
                    relay.allocation.close(now)
                    self._flush_relay(relay, now)
                if relay.stream is not None:
                    relay.stream.close()
        self._relays = [keep]
        if keep.transport == "tcp":
            return "the relay is reached over TCP: UDP to it got no answer"
        return None

    def _from_relay_stream(self, server: Address, frame: bytes) -> None:
        """A frame from a TURN-over-TCP connection: the same as a datagram from the server."""
        if self._closed:
            return
        now = self._loop.time()
        for relay in self._relays:
            if relay.stream is not None and relay.allocation.receive_datagram(frame, server, now):
                if self._relay_peer is not None and not self._drain_relay(relay, now)[1]:
                    return  # only application data for the selected path: nothing else to run
                break
        self._pump()

    def _stream_closed(self, reason: str) -> None:
        if not self._closed:
            log.info("relay TCP connection closed: %s", reason)

    # --- the punch ------------------------------------------------------------------------------------

    def start(self, punch: HolePunch) -> None:
        """Hand over the session's `HolePunch` (with local and remote parameters set); checks begin."""
        self._punch = punch
        self._pump()

    @staticmethod
    def new_punch(
        *, controlling: bool, ufrag: str, password: str, tie_breaker: int, config: HolePunchConfig
    ) -> HolePunch:
        """A `HolePunch` on the event loop's clock."""
        return HolePunch(
            controlling=controlling,
            local_ufrag=ufrag,
            local_password=password,
            tie_breaker=tie_breaker,
            now=asyncio.get_running_loop().time(),
            config=config,
        )

    async def next_event(self) -> PathEvent:
        """The next path event (selected, changed, stats, lost, recovered)."""
        return await self._events.get()

    async def wait_for_path(self) -> PathInfo:
        """The selected path, once there is one (wrap in ``asyncio.timeout``)."""
        await self._wait_for(lambda: self.selected_path is not None)
        path = self.selected_path
        assert path is not None
        return path

    # --- application datagrams ------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Send one datagram on the selected path; False if it was dropped.

        Before the first path is selected (the controlled side hears of it a moment after the controlling
        side starts sending), up to `PENDING_LIMIT` datagrams wait at most `PENDING_SECONDS` for it.
        """
        if self._sock is None or self._closed:
            return False
        path = self.selected_path
        if path is None:
            if self._punch is None or len(self._pending) >= PENDING_LIMIT:
                return False
            self._pending.append((self._loop.time(), data))
            return True
        if self._send_via(path.via, path.remote_address, data):
            self._pump()  # a new relay peer: its permission request needs the timer
        elif path.via == "relay":
            self._flush_turn(self._loop.time())  # the ChannelData just queued; nothing else is due
        return True

    async def receive(self) -> bytes:
        """The next application datagram from the peer."""
        return await self._received.get()

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        """Hand every application datagram to ``receiver`` as it arrives (the peer session does this).

        Datagrams that arrived before are handed over first, in order; `receive` gets nothing after this.
        """
        self._receiver = receiver
        while not self._received.empty():
            receiver(self._received.get_nowait())

    # --- the socket -------------------------------------------------------------------------------------

    def _readable(self) -> None:
        """Read what the socket holds (up to `READ_BATCH` datagrams) and hand each on."""
        sock = self._sock
        for _ in range(READ_BATCH):
            if sock is None or self._closed:
                return
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors (port unreachable on a dead candidate) are expected
                log.debug("session socket error: %s", exc)
                continue
            self._datagram_received(data, addr)

    def _sendto(self, data: bytes, addr: Address) -> None:
        assert self._sock is not None
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped_app_datagrams += 1  # buffer full: UDP may drop; QUIC and STUN retransmit
        except OSError as exc:
            log.debug("send to %s:%d failed: %s", addr[0], addr[1], exc)

    def _datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Demultiplex one datagram (module docstring) and run the machines."""
        if addr == self._direct_peer and data and data[0] > 3 and self._receiver is not None:
            # The fast path (RFC 7983: not STUN) for the selected direct peer: no machine wants it.
            self._receiver(data)
            return
        if self._relay_peer is not None and data and 64 <= data[0] <= 79:  # ChannelData (RFC 8656 §12)
            relay = self._relays[0]
            if addr == relay.allocation.server and relay.stream is None:
                now = self._loop.time()
                if relay.allocation.receive_datagram(data, relay.allocation.server, now):
                    if self._drain_relay(relay, now)[1]:
                        self._pump()
                    return
        source = canonical_address(addr)
        if source is None or self._closed:
            return
        now = self._loop.time()
        if any(
            r.stream is None
            and source == r.allocation.server
            and r.allocation.receive_datagram(data, source, now)
            for r in self._relays
        ):
            pass  # relayed data comes out as DataReceived events in _pump
        elif self._bindings and any(b.server == source and not b.done for b in self._bindings):
            for binding in self._bindings:
                binding.receive_datagram(data, source, now)
        else:
            self._from_peer(data, "direct", source, now)
        self._pump()

    # --- internals ------------------------------------------------------------------------------------

    def _from_peer(self, data: bytes, via: Base, source: Address, now: float) -> None:
        if self._punch is not None and self._punch.receive_datagram(data, via, source, now):
            return
        if self._punch is None:
            return  # no session yet: nobody we know
        path = self.selected_path
        # The controlled side may hear data a moment before it hears the nomination: any address the peer
        # offered or checked from (peer-reflexive) is the peer's.
        if (path is None or source != path.remote_address) and source not in {
            c.address for c in self._punch.remote_candidates
        }:
            return  # not our peer
        if self._receiver is not None:
            self._receiver(data)
            return
        try:
            self._received.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped_app_datagrams += 1

    def _send_via(self, via: Base, to: Address, data: bytes) -> bool:
        """Send (or queue in the TURN machine); True if ``to`` became a new relay peer."""
        if via == "direct":
            self._sendto(data, to)
            return False
        if self._turn is None:
            return False
        now = self._loop.time()
        new_peer = to not in self._permitted
        if new_peer:
            self._permitted.add(to)
            self._turn.add_peer(to, now)
        self._turn.send_to_peer(to, data, now)
        return new_peer

    def _flush_turn(self, now: float) -> None:
        """Put what the TURN machines have queued (requests, Send indications, ChannelData) on the wire."""
        for relay in self._relays:
            self._flush_relay(relay, now)

    def _flush_relay(self, relay: _Relay, now: float) -> None:
        if relay.stream is not None:
            for data, _ in relay.allocation.datagrams_to_send(now):
                relay.stream.write(data)
        else:
            for data, addr in relay.allocation.datagrams_to_send(now):
                self._sendto(data, addr)

    def _pump(self) -> None:
        """Move every machine's output to the socket and its events to their queues; re-arm the timer."""
        if self._sock is None or self._closed:
            return
        now = self._loop.time()
        for _ in range(8):  # relayed STUN may produce answers that go back through the relay
            progressed = False
            for binding in self._bindings:
                binding.handle_timer(now)
                for data, addr in binding.datagrams_to_send(now):
                    self._sendto(data, addr)
                while (binding_event := binding.next_event()) is not None:
                    self._binding_events.append(binding_event)
                    progressed = True
            if self._punch is not None:
                self._punch.handle_timer(now)
                if self._turn is not None:
                    for peer in self._punch.relay_destinations() - self._permitted:
                        self._permitted.add(peer)
                        self._turn.add_peer(peer, now)
                for out in self._punch.datagrams_to_send(now):
                    self._send_via(out.via, out.to, out.data)
                while (path_event := self._punch.next_event()) is not None:
                    self._events.put_nowait(path_event)
                    progressed = True
            for relay in self._relays:
                relay.allocation.handle_timer(now)
                self._flush_relay(relay, now)
                progressed = self._drain_relay(relay, now)[0] or progressed
            if not progressed:
                break
        self._flush_pending(now)
        path = self.selected_path
        self._direct_peer = path.remote_address if path is not None and path.via == "direct" else None
        self._relay_peer = path.remote_address if path is not None and path.via == "relay" else None
        self._changed.set()
        self._arm_timer()

    def _drain_relay(self, relay: _Relay, now: float) -> tuple[bool, bool]:
        """Handle a TURN allocation's events: (were there any, does anything but app data need the pump).

        Application data from the selected relayed peer goes straight to the receiver (the fast path);
        everything else takes the slow path through `_from_peer` and the event list.
        """
        any_events = needs_pump = False
        while (event := relay.allocation.next_event()) is not None:
            any_events = True
            if isinstance(event, DataReceived):
                data = event.data
                if (
                    event.peer == self._relay_peer
                    and self._receiver is not None
                    and data
                    and data[0] > 3  # not STUN (RFC 7983)
                ):
                    self._receiver(data)
                    continue
                self._from_peer(data, "relay", event.peer, now)
            else:
                relay.events.append(event)
                if isinstance(event, AllocationFailed | AllocationExpired):
                    log.info("relay (%s): %s", relay.transport, event.reason)
            needs_pump = True
        return any_events, needs_pump

    def _flush_pending(self, now: float) -> None:
        """Send the datagrams held for a path once there is one; drop those held too long."""
        path = self.selected_path
        while self._pending:
            queued_at, data = self._pending[0]
            if now - queued_at > PENDING_SECONDS:
                self._pending.popleft()
                self.dropped_app_datagrams += 1
            elif path is not None:
                self._pending.popleft()
                self._send_via(path.via, path.remote_address, data)
            else:
                break
        if path is not None and path.via == "relay":
            self._flush_turn(now)  # this runs after the pump's own flush: do not leave them queued

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timers = [b.get_timer() for b in self._bindings]
        timers.append(self._punch.get_timer() if self._punch else None)
        timers += [r.allocation.get_timer() for r in self._relays]
        due = [t for t in timers if t is not None]
        if due:
            self._timer = self._loop.call_at(max(min(due), self._loop.time()), self._pump)

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()
