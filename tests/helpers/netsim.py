"""A sans-IO network for the hole-punching tests: NATs, a TURN-like relay, a lossy link and a fake clock.

Everything is in memory and deterministic for a seed. Peers are `HolePunch` machines; `Network.run` steps a
fake clock through the earliest of their `get_timer()` and the next packet delivery, and routes what
`datagrams_to_send` returns:

- ``direct`` datagrams leave the peer's socket; to an address on its own LAN they go straight there,
  otherwise through its NAT (if any) onto the "Internet";
- ``relay`` datagrams go to the relay server, which sends them from the peer's relayed address (and grants the
  destination IP a permission, as a TURN CreatePermission would, RFC 8656 §9);
- arriving at a NAT's public address, a datagram passes the NAT's filter or is dropped; arriving at a relayed
  address, it is forwarded to the allocation's owner (``via="relay"``) if its source IP has a permission.

NAT models (RFC 4787 terms): ``cone`` = endpoint-independent mapping with address-and-port-dependent
filtering (a port-restricted cone), ``symmetric`` = a fresh random port per destination with the same
filtering, ``blocked`` = no UDP at all; a peer without a NAT has a public address. Hairpinning works for
cone NATs as it falls out of the model. Loss, delay and jitter (hence reordering) apply per datagram;
relayed datagrams take two hops of delay. ``drop`` lets a test black-hole chosen datagrams (all direct
ones for a while, say).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from app.nat.candidates import Candidate, NatMapping, is_private_address, parse_candidates
from app.nat.hole_punch import HolePunch, HolePunchConfig, Outgoing
from app.nat.path_events import PathEvent
from rendezvous.wire.stun import Address

NatType = Literal["cone", "symmetric", "blocked"]

STUN_SERVER: Address = ("198.51.100.53", 3478)
RELAY_SERVER: Address = ("198.51.100.80", 3478)
RELAY_IP = "198.51.100.81"


@dataclass(frozen=True)
class Packet:
    """A datagram in flight on the Internet side (after NAT translation)."""

    data: bytes
    src: Address
    dst: Address
    #: True when a relay carries it (sent through a relay, or addressed to a relayed address).
    relayed: bool


class Nat:
    """One NAT box: mappings, filtering, and its public IP."""

    def __init__(self, public_ip: str, kind: NatType, rng: random.Random) -> None:
        self.public_ip = public_ip
        self.kind = kind
        self._rng = rng
        self._mappings: dict[tuple[Address, Address | None], int] = {}
        self._internal: dict[int, Address] = {}
        self._allowed: dict[int, set[Address]] = {}
        self._next_port = 40000

    def outbound(self, src: Address, dst: Address) -> Address | None:
        """The public source of a datagram from ``src`` to ``dst`` (None: dropped), opening the filter."""
        if self.kind == "blocked":
            return None
        key = (src, None if self.kind == "cone" else dst)
        port = self._mappings.get(key)
        if port is None:
            if self.kind == "cone":
                port, self._next_port = self._next_port, self._next_port + 1
            else:
                port = self._rng.randrange(1024, 65536)
                while port in self._internal:
                    port = self._rng.randrange(1024, 65536)
            self._mappings[key] = port
            self._internal[port] = src
        self._allowed.setdefault(port, set()).add(dst)
        return (self.public_ip, port)

    def inbound(self, src: Address, port: int) -> Address | None:
        """The internal destination of a datagram from ``src`` to our ``port``, or None when filtered."""
        if port not in self._internal or src not in self._allowed.get(port, set()):
            return None
        return self._internal[port]


@dataclass
class SimPeer:
    """A machine, its socket address, its NAT and LAN, and what it reported."""

    name: str
    machine: HolePunch
    address: Address
    lan: str
    nat: Nat | None
    ufrag: str
    password: str
    mapping: NatMapping = "unknown"
    relayed: Address | None = None
    events: list[tuple[float, PathEvent]] = field(default_factory=list)
    app_received: list[tuple[float, bytes, Address]] = field(default_factory=list)

    def of_type(self, kind: type[PathEvent]) -> list[tuple[float, PathEvent]]:
        """Events of one class, with their times."""
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


class Network:
    """The simulated Internet and its clock (module docstring)."""

    def __init__(
        self, *, seed: int = 1, delay: float = 0.015, jitter: float = 0.0, loss: float = 0.0
    ) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
        self.peers: dict[str, SimPeer] = {}
        self.nats: dict[str, Nat] = {}
        self.drop: Callable[[Packet, float], bool] | None = None
        #: Everything the machines sent: (time, peer name, datagram).
        self.sent: list[tuple[float, str, Outgoing]] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._allocations: dict[Address, str] = {}
        self._permissions: dict[Address, set[str]] = {}
        self._relay_ports = itertools.count(50000)

    # --- building ---------------------------------------------------------------------------------------

    def nat(self, public_ip: str, kind: NatType) -> Nat:
        """A NAT that peers can sit behind."""
        nat = Nat(public_ip, kind, self.rng)
        self.nats[public_ip] = nat
        return nat

    def add_peer(
        self,
        name: str,
        address: Address,
        *,
        nat: Nat | None,
        controlling: bool,
        lan: str | None = None,
        config: HolePunchConfig | None = None,
        relay: bool = True,
        tie_breaker: int | None = None,
        mapping: NatMapping = "unknown",
    ) -> SimPeer:
        """A peer with its socket at ``address`` (behind ``nat`` unless None), gathering its candidates."""
        ufrag, password = f"{name}ufrag", f"{name}-password-0123456789"
        machine = HolePunch(
            controlling=controlling,
            local_ufrag=ufrag,
            local_password=password,
            tie_breaker=tie_breaker if tie_breaker is not None else self.rng.getrandbits(64),
            now=self.now,
            config=config,
            nat_mapping=mapping,
        )
        peer = SimPeer(name, machine, address, lan or name, nat, ufrag, password, mapping)
        self.peers[name] = peer
        for candidate in self._gather(peer, relay):
            machine.add_local_candidate(candidate)
        machine.end_of_local_candidates()
        return peer

    def _gather(self, peer: SimPeer, relay: bool) -> list[Candidate]:
        candidates = [Candidate.create("host", peer.address)]
        if peer.nat is not None and peer.nat.kind != "blocked":
            srflx = peer.nat.outbound(peer.address, STUN_SERVER)  # a Binding to the STUN server
            assert srflx is not None
            candidates.append(Candidate.create("srflx", srflx))
            if relay:
                peer.nat.outbound(peer.address, RELAY_SERVER)  # the Allocate opens the NAT for the relay
        if relay and (peer.nat is None or peer.nat.kind != "blocked"):
            peer.relayed = (RELAY_IP, next(self._relay_ports))
            self._allocations[peer.relayed] = peer.name
            self._permissions[peer.relayed] = set()
            candidates.append(Candidate.create("relay", peer.relayed))
        return candidates

    def exchange(self, a: SimPeer, b: SimPeer, *, declare_mapping: bool = False) -> None:
        """Signalling, both ways, through JSON: credentials, candidates, end of candidates."""
        for me, peer in ((a, b), (b, a)):
            me.machine.set_remote_parameters(
                peer.ufrag, peer.password, nat_mapping=peer.mapping if declare_mapping else "unknown"
            )
            wire = json.loads(json.dumps([c.to_dict() for c in peer.machine.local_candidates]))
            candidates, dropped = parse_candidates(wire)
            assert not dropped, dropped
            me.machine.add_remote_candidates(candidates)
            me.machine.end_of_remote_candidates()

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at fake time ``when``."""
        heapq.heappush(self._queue, (when, next(self._seq), action))

    # --- running ----------------------------------------------------------------------------------------

    def run(self, until: float) -> None:
        """Step the clock to ``until``: deliveries, timers, sends; fail on a machine whose timer spins."""
        spins = 0
        while True:
            times = [self._queue[0][0]] if self._queue else []
            for peer in self.peers.values():
                timer = peer.machine.get_timer()
                if timer is not None:
                    times.append(timer)
            nxt = min(times) if times else None
            if nxt is None or nxt > until:
                self.now = max(self.now, until)
                return
            spins = spins + 1 if nxt <= self.now else 0
            assert spins < 1000, f"a timer keeps firing at {self.now} without progress"
            self.now = max(self.now, nxt)
            while self._queue and self._queue[0][0] <= self.now:
                _, _, action = heapq.heappop(self._queue)
                action()
            for peer in self.peers.values():
                timer = peer.machine.get_timer()
                if timer is not None and timer <= self.now:
                    peer.machine.handle_timer(self.now)
            self.flush()

    def flush(self) -> None:
        """Send what every machine has ready and collect its events."""
        for peer in self.peers.values():
            for out in peer.machine.datagrams_to_send(self.now):
                self.sent.append((self.now, peer.name, out))
                self._send(peer, out.data, out.via, out.to)
            while (event := peer.machine.next_event()) is not None:
                peer.events.append((self.now, event))

    def send_app(self, peer: SimPeer, data: bytes) -> None:
        """Send an application datagram on the peer's selected path (what the adapter would do)."""
        path = peer.machine.selected_path
        assert path is not None, f"{peer.name} has no path"
        self._send(peer, data, path.via, path.remote_address)

    # --- routing ----------------------------------------------------------------------------------------

    def _send(self, peer: SimPeer, data: bytes, via: str, to: Address) -> None:
        if via == "relay":
            if peer.relayed is None or (peer.nat is not None and peer.nat.kind == "blocked"):
                return
            self._permissions[peer.relayed].add(to[0])  # RFC 8656 §9: the client permits the peer's IP
            self._launch(Packet(data, peer.relayed, to, relayed=True), hops=2)
            return
        for other in self.peers.values():
            if other.lan == peer.lan and other.address == to and other is not peer:
                self._launch_local(data, peer.address, other)
                return
        if is_private_address(to[0]):
            return  # someone else's LAN address: not routable from here
        source = peer.address
        if peer.nat is not None:
            mapped = peer.nat.outbound(peer.address, to)
            if mapped is None:
                return
            source = mapped
        self._launch(Packet(data, source, to, relayed=to in self._allocations), hops=1)

    def _lossy(self, packet: Packet) -> bool:
        if self.drop is not None and self.drop(packet, self.now):
            return True
        return self.rng.random() < self.loss

    def _arrival(self, hops: int) -> float:
        return self.now + hops * self.delay + self.rng.uniform(0, self.jitter)

    def _launch_local(self, data: bytes, source: Address, to: SimPeer) -> None:
        packet = Packet(data, source, to.address, relayed=False)
        if not self._lossy(packet):
            self.at(self._arrival(1), lambda: self._deliver(to, data, "direct", source))

    def _launch(self, packet: Packet, hops: int) -> None:
        if not self._lossy(packet):
            self.at(self._arrival(hops), lambda: self._arrive(packet))

    def _arrive(self, packet: Packet) -> None:
        owner = self._allocations.get(packet.dst)
        if owner is not None:
            if packet.src[0] in self._permissions[packet.dst]:
                # The relay wraps it in a Data indication to its client; the client's NAT lets it in.
                peer = self.peers[owner]
                self.at(self.now + self.delay, lambda: self._deliver(peer, packet.data, "relay", packet.src))
            return
        nat = self.nats.get(packet.dst[0])
        for peer in self.peers.values():
            if nat is not None and peer.nat is nat:
                internal = nat.inbound(packet.src, packet.dst[1])
                if internal == peer.address:
                    self._deliver(peer, packet.data, "direct", packet.src)
                    return
            elif peer.nat is None and peer.address == packet.dst:
                self._deliver(peer, packet.data, "direct", packet.src)
                return

    def _deliver(self, peer: SimPeer, data: bytes, via: Literal["direct", "relay"], source: Address) -> None:
        if not peer.machine.receive_datagram(data, via, source, self.now):
            peer.app_received.append((self.now, data, source))
        self.flush()
