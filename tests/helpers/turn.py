"""Helpers for the TURN tests: a driver for the sans-IO `TurnServer` with a fake clock, and a TURN client.

`MachineHarness` plays the adapter's part in memory (it "binds" relay sockets unless told a port is taken).
`TurnClientState` builds requests with the shared codec and does the long-term credential dance (RFC 8489
§9.2): it learns REALM and NONCE from a 401 or 438 and signs with `long_term_key`; `request` and `allocate`
do the same over real UDP (a `UdpPeer`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rendezvous.config import TurnConfig, TurnQuotas
from rendezvous.turn_server import (
    CloseRelay,
    OpenRelay,
    RelayTransmit,
    Transmit,
    Transport,
    TurnAction,
    TurnServer,
)
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ErrorCode,
    MessageIntegrity,
    Nonce,
    Realm,
    RequestedTransport,
    StunClass,
    StunMessage,
    StunMethod,
    Username,
    XorMappedAddress,
    XorRelayedAddress,
    decode,
    long_term_key,
)
from rendezvous.wire.turn import REQUESTED_TRANSPORT_UDP, RestCredentials, make_rest_credentials
from tests.helpers.udp import UdpPeer

SECRET = "test shared secret"
REALM = "punchline.test"
T0 = 1_800_000_000.0  # a fixed unix time for the fake clock
SERVER: Address = ("127.0.0.1", 3478)
CLIENT: Address = ("198.51.100.7", 40001)
PEER: Address = ("203.0.113.9", 6000)
#: REQUESTED-TRANSPORT UDP, which every Allocate carries (RFC 8656 §18.8).
UDP = RequestedTransport(REQUESTED_TRANSPORT_UDP)


def turn_config(**overrides: object) -> TurnConfig:
    """A small relay for machine tests: ports 50000-50009, loopback peers allowed."""
    quotas = overrides.pop("quotas", TurnQuotas())
    values: dict[str, object] = {
        "realm": REALM,
        "min_port": 50000,
        "max_port": 50009,
        "allow_loopback_peers": True,
        "quotas": quotas,
    }
    values.update(overrides)
    return TurnConfig(**values)  # type: ignore[arg-type]


@dataclass
class MachineHarness:
    """The machine plus an in-memory adapter: relay sockets open at once unless their port is ``taken``."""

    config: TurnConfig = field(default_factory=turn_config)
    now: float = T0
    taken: set[int] = field(default_factory=set)
    open_ports: set[int] = field(default_factory=set)
    log: list[TurnAction] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = TurnServer(
            self.config, secret=SECRET, server_address=SERVER, relay_ip="127.0.0.1", rng=random.Random(7)
        )

    def run(self, actions: list[TurnAction]) -> list[TurnAction]:
        """Carry out socket requests as the adapter would; return every action, socket ones included."""
        done: list[TurnAction] = []
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            done.append(action)
            if isinstance(action, OpenRelay):
                ok = action.relay_port not in self.taken
                if ok:
                    self.open_ports.add(action.relay_port)
                queue += self.server.relay_opened(action.relay_port, ok, self.now)
            elif isinstance(action, CloseRelay):
                self.open_ports.discard(action.relay_port)
        self.log += done
        return done

    def receive(self, data: bytes, source: Address, transport: Transport = "udp") -> list[TurnAction]:
        """A datagram on the listening port (or a frame on ``source``'s TCP connection)."""
        return self.run(self.server.receive(data, source, self.now, transport))

    def from_peer(self, relay_port: int, data: bytes, peer: Address) -> list[TurnAction]:
        """A datagram from a peer on a relay socket."""
        return self.run(self.server.receive_relayed(relay_port, data, peer, self.now))

    def advance(self, seconds: float) -> list[TurnAction]:
        """Move the fake clock, firing the machine's timer if it is due."""
        self.now += seconds
        timer = self.server.get_timer()
        if timer is not None and timer <= self.now:
            return self.run(self.server.handle_timer(self.now))
        return []


def transmits(actions: list[TurnAction], to: Address | None = None) -> list[bytes]:
    """The datagrams sent from the listening port (to ``to`` if given)."""
    return [a.data for a in actions if isinstance(a, Transmit) and (to is None or a.address == to)]


def relayed(actions: list[TurnAction]) -> list[RelayTransmit]:
    """The datagrams sent from relay sockets."""
    return [a for a in actions if isinstance(a, RelayTransmit)]


def error_code(message: StunMessage) -> int | None:
    """The ERROR-CODE of a response, or None for a success."""
    error = message.find(ErrorCode)
    return error.code if error else None


@dataclass
class TurnClientState:
    """A TURN client's credentials and the realm/nonce it learnt: builds signed requests."""

    credentials: RestCredentials
    realm: str | None = None
    nonce: str | None = None

    @classmethod
    def for_user(cls, user: str, now: float, ttl: int = 3600, secret: str = SECRET) -> TurnClientState:
        """Fresh REST credentials for ``user``."""
        return cls(make_rest_credentials(secret, user, now=now, ttl=ttl))

    @property
    def key(self) -> bytes:
        """The long-term key (RFC 8489 §9.2.2) for the learnt realm."""
        assert self.realm is not None
        return long_term_key(self.credentials.username, self.realm, self.credentials.password)

    def build(self, method: int, *attrs: Attribute, klass: StunClass = StunClass.REQUEST) -> bytes:
        """A request signed with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY once a challenge was seen."""
        if klass == StunClass.INDICATION:
            return StunMessage(method, klass, attributes=attrs).encode(fingerprint=True)
        if self.realm is None or self.nonce is None:
            return StunMessage(method, klass, attributes=attrs).encode(fingerprint=True)
        signed = (*attrs, Username(self.credentials.username), Realm(self.realm), Nonce(self.nonce))
        return StunMessage(method, klass, attributes=signed).encode(integrity_key=self.key, fingerprint=True)

    def learn(self, response: bytes) -> StunMessage:
        """Decode a response; remember REALM and NONCE from a 401 or 438 challenge."""
        message = decode(response)
        if error_code(message) in (401, 438):
            realm, nonce = message.find(Realm), message.find(Nonce)
            if realm is not None and nonce is not None:
                self.realm, self.nonce = realm.realm, nonce.nonce
        return message


# --- over real UDP ---------------------------------------------------------------------------------


async def request(
    client: UdpPeer, state: TurnClientState, server: Address, method: int, *attrs: Attribute
) -> StunMessage:
    """One request with the 401/438 dance, over real UDP."""
    for _ in range(2):
        client.send(state.build(method, *attrs), server)
        data, _ = await client.next()
        answer = state.learn(data)
        if error_code(answer) not in (401, 438) or answer.find(MessageIntegrity) is not None:
            return answer
    return answer


async def allocate(client: UdpPeer, state: TurnClientState, server: Address, *attrs: Attribute) -> Address:
    """An allocation (UDP) over real UDP; the relayed address."""
    answer = await request(client, state, server, StunMethod.ALLOCATE, UDP, *attrs)
    assert error_code(answer) is None, answer
    assert answer.find(XorMappedAddress) == XorMappedAddress(client.address)
    relayed = answer.find(XorRelayedAddress)
    assert relayed is not None
    return relayed.address
