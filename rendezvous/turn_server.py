"""The TURN relay (RFC 8656 over UDP), sans-IO: datagrams and a clock in, datagrams and socket requests out.

`TurnServer` never opens a socket or reads the clock. The adapter (``rendezvous.turn_relay``) feeds it:

* `TurnServer.receive` — a datagram on the listening port (the STUN port: Binding is answered there too,
  like coturn, by ``rendezvous.stun_server.answer``);
* `TurnServer.receive_relayed` — a datagram a peer sent to an allocation's relay socket, named by its port;
* `TurnServer.relay_opened` — whether the relay socket asked for with `OpenRelay` could be bound;
* `TurnServer.handle_timer` — at or after `TurnServer.get_timer`, for expiries.

Each call returns a list of actions (typed frozen dataclasses, below): datagrams to send from the listening
port (`Transmit`) or from a relay socket (`RelayTransmit`), sockets to open or close, and allocation events
to log. ``now`` is unix time in seconds: REST usernames carry a unix expiry, so one clock serves all.

Protocol, per message on the listening port:

=====================================  ==================================================================
received                               answered
=====================================  ==================================================================
Binding request                        as the plain STUN server (unauthenticated, RFC 8489 §6.3.1)
Allocate/Refresh/CreatePermission/     the long-term credential mechanism first (RFC 8489 §9.2.4):
ChannelBind request                    no MESSAGE-INTEGRITY → 401 + REALM + NONCE; missing USERNAME,
                                       REALM or NONCE → 400; a username that is not a live REST username
                                       ``"<unix expiry>:<user>"`` or a wrong HMAC → 401; a nonce that is
                                       forged, for another client or older than ``nonce_lifetime`` → 438.
                                       Then unknown comprehension-required attributes → 420, then the
                                       method (RFC 8656 §7.2, §8, §10, §11). Answers after a successful
                                       check carry MESSAGE-INTEGRITY with the same key; all carry FINGERPRINT
Allocate                               REQUESTED-TRANSPORT missing → 400, not UDP → 442; DONT-FRAGMENT →
                                       420 (relay sockets cannot set DF per datagram); REQUESTED-ADDRESS-
                                       FAMILY other than the relay's → 440; EVEN-PORT without R → an even
                                       port; EVEN-PORT with R or RESERVATION-TOKEN → 508 (we never reserve
                                       ports, §7.2 lets a server refuse); quotas → 486 (per user) / 508
                                       (total, or no free port); an allocation on this 5-tuple → 437
                                       (a retransmission of the same request gets the same answer)
Refresh                                LIFETIME 0 deletes; otherwise max(min(asked, max), default)
CreatePermission, ChannelBind          peer family ≠ relay family → 443, forbidden peer → 403,
                                       channel outside 0x4000-0x4FFF or already bound otherwise → 400
Send indication, ChannelData           relayed to the peer if permitted and within the bandwidth budget,
                                       else silently dropped (RFC 8656 §11.2, §12.6)
anything else                          dropped: responses, other indications, malformed messages, garbage
=====================================  ==================================================================

Requests for an allocation that does not exist → 437; by another username than the allocation's → 441.
Data from a peer without a permission is dropped (§9); from a permitted peer it goes to the client as
ChannelData if a channel is bound to it, else as a Data indication (§11.3).

No relaying to an unspecified, multicast, broadcast or reserved address, to port 0, to our own listening
port, or to loopback unless ``allow_loopback_peers`` (tests): the relay is not an open proxy into the
server's host. Answers to unauthenticated requests are at most `MAX_UNAUTHENTICATED_ANSWER` bytes, so
spoofed requests cannot turn the server into a large amplifier.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import random
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

from rendezvous.config import TurnConfig
from rendezvous.stun_server import answer as binding_answer
from rendezvous.wire.stun import (
    Address,
    Attribute,
    AttributeType,
    ChannelNumber,
    Data,
    DontFragment,
    EvenPort,
    Lifetime,
    MessageIntegrity,
    Nonce,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    StunClass,
    StunDecodeError,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    canonical_address,
    decode,
    is_stun,
    long_term_key,
    verify_integrity,
)
from rendezvous.wire.turn import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    REQUESTED_TRANSPORT_UDP,
    ChannelDataError,
    TurnErrorCode,
    channel_data_header,
    is_channel_data,
    parse_channel_data,
    rest_password,
    rest_username_expiry,
)

#: The most bytes any answer to a request without valid credentials may have (a 401/438 challenge is ~90).
MAX_UNAUTHENTICATED_ANSWER = 128
PERMISSION_LIFETIME = 300  # RFC 8656 §9
CHANNEL_LIFETIME = 600  # RFC 8656 §12
#: Largest application datagram relayed: it must fit a ChannelData or Data indication (16-bit lengths).
MAX_RELAYED_BYTES = 65_000
_PORT_ATTEMPTS = 8  # relay ports tried when binding fails (another program holds the port) before 508
_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02
_NONCE_MAC_CHARS = 16
_NONCE_STAMP = re.compile(r"[0-9a-f]{1,12}")
_TURN_REQUESTS = frozenset(
    (StunMethod.ALLOCATE, StunMethod.REFRESH, StunMethod.CREATE_PERMISSION, StunMethod.CHANNEL_BIND)
)


#: A client's transport address as the machine keys it: (ip, port) over UDP, (ip, port, "tcp") over TCP.
#: The transport is part of the 5-tuple (RFC 8656 §2): behind a port-preserving NAT a UDP client and a TCP
#: client can share an ip:port.
ClientKey = tuple[str, int] | tuple[str, int, Literal["tcp"]]
Transport = Literal["udp", "tcp"]
EndReason = Literal["expired", "deleted", "closed", "shutdown"]


def _client_key(source: tuple[object, ...], transport: Transport) -> ClientKey | None:
    """The `ClientKey` of a socket-layer address on ``transport``, or None if it is not an IP endpoint."""
    address = canonical_address(source)
    if address is None:
        return None
    return (address[0], address[1], "tcp") if transport == "tcp" else address


# --- actions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transmit:
    """Send ``data`` to a client: from the listening port, or on its TCP connection (a "tcp" key)."""

    data: bytes
    address: ClientKey


@dataclass(frozen=True)
class RelayTransmit:
    """Send ``data`` from the relay socket on ``relay_port`` to a peer."""

    relay_port: int
    data: bytes
    address: Address


@dataclass(frozen=True)
class OpenRelay:
    """Bind a UDP socket on the relay IP and ``relay_port``, then report with `TurnServer.relay_opened`."""

    relay_port: int


@dataclass(frozen=True)
class CloseRelay:
    """Close the relay socket on ``relay_port`` (its allocation ended)."""

    relay_port: int


@dataclass(frozen=True)
class AllocationCreated:
    """An allocation now exists (for the log: who, from where, which relay port, for how long)."""

    relay_port: int
    client: ClientKey
    user: str
    lifetime: int


@dataclass(frozen=True)
class AllocationEnded:
    """An allocation ended: it expired, the client deleted it (Refresh 0) or closed its TCP connection, or the
    server shut down."""

    relay_port: int
    client: ClientKey
    user: str
    reason: EndReason
    bytes_relayed: int
    datagrams_dropped: int


TurnAction = Transmit | RelayTransmit | OpenRelay | CloseRelay | AllocationCreated | AllocationEnded


# --- state ---------------------------------------------------------------------------------------------


@dataclass
class _Channel:
    peer: Address
    expires: float


@dataclass
class _Allocation:
    client: ClientKey
    relay_port: int
    username: str
    user: str
    key: bytes
    expires: float
    transaction_id: bytes  # of the Allocate that made it: a retransmission gets ``response`` again
    response: bytes
    tokens: float
    token_time: float
    permissions: dict[str, float] = field(default_factory=dict)  # peer IP → expiry
    channels: dict[int, _Channel] = field(default_factory=dict)
    # keyed by peer Address; typed wider so a raw socket-layer tuple can be looked up without parsing
    channel_of_peer: dict[tuple[object, ...], int] = field(default_factory=dict)
    bytes_relayed: int = 0
    dropped: int = 0


@dataclass
class _Pending:
    """An Allocate waiting for its relay socket (`OpenRelay` → `relay_opened`)."""

    request: StunMessage
    client: ClientKey
    username: str
    user: str
    key: bytes
    lifetime: int
    even: bool
    tried: set[int]


@dataclass(frozen=True)
class _Auth:
    username: str
    key: bytes


class TurnServer:
    """The TURN server's state: allocations by client and by relay port, and the credential checks."""

    def __init__(
        self,
        config: TurnConfig,
        *,
        secret: str,
        server_address: Address,
        relay_ip: str,
        rng: random.Random | None = None,
        nonce_key: bytes | None = None,
    ) -> None:
        """``server_address`` is the listening (ip, port); ``relay_ip`` goes in XOR-RELAYED-ADDRESS.

        ``rng`` picks relay ports and Data indication transaction ids (seed it in tests); ``nonce_key``
        signs nonces (random by default: nonces then do not survive a restart, clients just get a 438).
        """
        if len(config.realm.encode("utf-8")) > 32:
            raise ValueError("the TURN realm is at most 32 bytes (it goes in every 401 challenge)")
        if not 0 < config.min_port <= config.max_port <= 0xFFFF:
            raise ValueError(f"bad relay port range {config.min_port}-{config.max_port}")
        self._config = config
        self._quotas = config.quotas
        self._secret = secret
        self._realm = config.realm
        self._relay_ip = str(ipaddress.ip_address(relay_ip))
        self._relay_family = _FAMILY_IPV4 if ipaddress.ip_address(relay_ip).version == 4 else _FAMILY_IPV6
        self._listen_port = server_address[1]
        self._rng = rng or random.Random()  # noqa: S311 - ports and indication ids need no secrecy
        self._nonce_key = nonce_key or secrets.token_bytes(32)
        self._by_client: dict[tuple[object, ...], _Allocation] = {}  # keyed by client Address (see above)
        self._by_port: dict[int, _Allocation] = {}
        self._pending: dict[int, _Pending] = {}  # relay port → pending Allocate
        self._pending_by_client: dict[ClientKey, _Pending] = {}
        self._per_user: dict[str, int] = {}
        self._deadlines: list[tuple[float, int]] = []  # (expiry, relay port), stale entries skipped

    # ------------------------------------------------------------------------------------------ queries

    @property
    def allocation_count(self) -> int:
        """Allocations alive right now."""
        return len(self._by_port)

    def has_allocation(self, client: ClientKey) -> bool:
        """Whether ``client`` (a `ClientKey`) holds an allocation, or has one being opened."""
        return client in self._by_client or client in self._pending_by_client

    def relay_ports(self) -> tuple[int, ...]:
        """Relay ports of the live allocations."""
        return tuple(self._by_port)

    def get_timer(self) -> float | None:
        """When `handle_timer` must next run (the earliest allocation expiry), or None."""
        while self._deadlines:
            expires, port = self._deadlines[0]
            allocation = self._by_port.get(port)
            if allocation is not None and allocation.expires == expires:
                return expires
            heapq.heappop(self._deadlines)  # stale: refreshed or ended since
        return None

    # ------------------------------------------------------------------------------------------ inputs

    def receive(
        self, data: bytes, source: tuple[object, ...], now: float, transport: Transport = "udp"
    ) -> list[TurnAction]:
        """A datagram arrived on the listening port from ``source``, or a frame on its TCP connection."""
        if is_channel_data(data):  # the hot path: data on a channel, before any address parsing
            return self._channel_data(data, source, now, transport)
        client = _client_key(source, transport)
        if client is None:
            return []
        if not is_stun(data):
            return []
        try:
            message = decode(data)
        except StunDecodeError:
            return []
        if message.method == StunMethod.BINDING:
            reply = binding_answer(data, client[:2])
            return [Transmit(reply, client)] if reply is not None else []
        if message.message_class == StunClass.INDICATION and message.method == StunMethod.SEND:
            return self._send_indication(message, client, now)
        if message.message_class != StunClass.REQUEST or message.method not in _TURN_REQUESTS:
            return []
        auth = self._authenticate(message, data, client, now)
        if not isinstance(auth, _Auth):
            return auth
        unknown = message.unknown_comprehension_required()
        if unknown:  # RFC 8489 §6.3.1.1
            return self._error(message, client, auth, 420, "Unknown Attribute", UnknownAttributes(unknown))
        if message.method == StunMethod.ALLOCATE:
            return self._allocate(message, client, auth, now)
        allocation = self._by_client.get(client)
        if allocation is None:
            return self._error(
                message, client, auth, TurnErrorCode.ALLOCATION_MISMATCH, "Allocation Mismatch"
            )
        if allocation.username != auth.username:  # RFC 8656 §6.2: same credentials as the Allocate
            return self._error(message, client, auth, TurnErrorCode.WRONG_CREDENTIALS, "Wrong Credentials")
        if message.method == StunMethod.REFRESH:
            return self._refresh(message, allocation, auth, now)
        if message.method == StunMethod.CREATE_PERMISSION:
            return self._create_permission(message, allocation, auth, now)
        return self._channel_bind(message, allocation, auth, now)

    def receive_relayed(
        self, relay_port: int, data: bytes, peer: tuple[object, ...], now: float
    ) -> list[TurnAction]:
        """A peer sent ``data`` to the relay socket on ``relay_port`` (RFC 8656 §11.3, §12.6)."""
        allocation = self._by_port.get(relay_port)
        if allocation is None or len(data) > MAX_RELAYED_BYTES:
            return []
        # A socket-layer IPv4 address is already canonical: a channel found by it is the usual case.
        number = allocation.channel_of_peer.get(peer)
        address = allocation.channels[number].peer if number is not None else canonical_address(peer)
        if address is None:
            return []
        if allocation.permissions.get(address[0], 0.0) <= now or not self._spend(allocation, len(data), now):
            allocation.dropped += 1
            return []
        if number is None:
            number = allocation.channel_of_peer.get(address)
        if number is not None and allocation.channels[number].expires > now:
            return [Transmit(channel_data_header(number, len(data)) + data, allocation.client)]
        indication = StunMessage(
            StunMethod.DATA,
            StunClass.INDICATION,
            self._rng.randbytes(12),
            (XorPeerAddress(address), Data(data)),
        )
        return [Transmit(indication.encode(fingerprint=True), allocation.client)]

    def relay_opened(self, relay_port: int, ok: bool, now: float) -> list[TurnAction]:
        """The adapter bound (``ok``) or could not bind the relay socket an `OpenRelay` asked for."""
        pending = self._pending.pop(relay_port, None)
        if pending is None:
            return [CloseRelay(relay_port)] if ok else []
        self._pending_by_client.pop(pending.client, None)
        if not ok:
            pending.tried.add(relay_port)
            port = (
                self._pick_port(pending.even, pending.tried) if len(pending.tried) < _PORT_ATTEMPTS else None
            )
            if port is None:
                auth = _Auth(pending.username, pending.key)
                return self._error(
                    pending.request,
                    pending.client,
                    auth,
                    TurnErrorCode.INSUFFICIENT_CAPACITY,
                    "No Relay Port",
                )
            self._pending[port] = pending
            self._pending_by_client[pending.client] = pending
            return [OpenRelay(port)]
        request = pending.request
        response = request.success_response(
            XorRelayedAddress((self._relay_ip, relay_port)),
            Lifetime(pending.lifetime),
            XorMappedAddress(pending.client[:2]),
        ).encode(integrity_key=pending.key, fingerprint=True)
        allocation = _Allocation(
            client=pending.client,
            relay_port=relay_port,
            username=pending.username,
            user=pending.user,
            key=pending.key,
            expires=now + pending.lifetime,
            transaction_id=request.transaction_id,
            response=response,
            tokens=float(self._quotas.burst_bytes),
            token_time=now,
        )
        self._by_client[pending.client] = allocation
        self._by_port[relay_port] = allocation
        self._per_user[pending.user] = self._per_user.get(pending.user, 0) + 1
        heapq.heappush(self._deadlines, (allocation.expires, relay_port))
        return [
            AllocationCreated(relay_port, pending.client, pending.user, pending.lifetime),
            Transmit(response, pending.client),
        ]

    def client_closed(self, source: tuple[object, ...], now: float) -> list[TurnAction]:
        """A TCP client's connection closed: its allocation goes with it (RFC 8656 §3.1, §7)."""
        client = _client_key(source, "tcp")
        if client is None:
            return []
        pending = self._pending_by_client.pop(client, None)
        if pending is not None:
            self._pending = {port: p for port, p in self._pending.items() if p is not pending}
        allocation = self._by_client.get(client)
        return self._end(allocation, "closed") if allocation is not None else []

    def handle_timer(self, now: float) -> list[TurnAction]:
        """End the allocations whose lifetime ran out (RFC 8656 §7: no Refresh in time)."""
        actions: list[TurnAction] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            expires, port = heapq.heappop(self._deadlines)
            allocation = self._by_port.get(port)
            if allocation is not None and allocation.expires == expires:
                actions += self._end(allocation, "expired")
        return actions

    def close(self) -> list[TurnAction]:
        """End every allocation (the server is shutting down)."""
        actions: list[TurnAction] = []
        for allocation in list(self._by_port.values()):
            actions += self._end(allocation, "shutdown")
        return actions

    # ------------------------------------------------------------------------------------------ auth

    def _authenticate(
        self, message: StunMessage, data: bytes, client: ClientKey, now: float
    ) -> _Auth | list[TurnAction]:
        """RFC 8489 §9.2.4, with TURN REST usernames and passwords derived from the shared secret."""
        if message.find(MessageIntegrity) is None:
            return self._challenge(message, client, now, TurnErrorCode.UNAUTHENTICATED, "Unauthorized")
        username, realm, nonce = message.find(Username), message.find(Realm), message.find(Nonce)
        if username is None or realm is None or nonce is None:
            return self._unsigned(message, client, TurnErrorCode.BAD_REQUEST, "Bad Request")
        expiry = rest_username_expiry(username.name)
        if expiry is None or expiry < now or realm.realm != self._realm:
            return self._challenge(message, client, now, TurnErrorCode.UNAUTHENTICATED, "Unauthorized")
        key = long_term_key(username.name, self._realm, rest_password(self._secret, username.name))
        if not verify_integrity(data, key):
            return self._challenge(message, client, now, TurnErrorCode.UNAUTHENTICATED, "Unauthorized")
        if not self._nonce_valid(nonce.nonce, client, now):
            return self._challenge(message, client, now, TurnErrorCode.STALE_NONCE, "Stale Nonce")
        return _Auth(username.name, key)

    def _nonce(self, client: ClientKey, now: float) -> str:
        """A stateless nonce: issue time in hex, then a MAC over it and the client's IP (RFC 8489 §9.2)."""
        stamp = f"{max(0, int(now)):x}"
        return stamp + self._nonce_mac(stamp, client)

    def _nonce_mac(self, stamp: str, client: ClientKey) -> str:
        text = f"{stamp}|{client[0]}".encode()
        return hmac.new(self._nonce_key, text, hashlib.sha256).hexdigest()[:_NONCE_MAC_CHARS]

    def _nonce_valid(self, nonce: str, client: ClientKey, now: float) -> bool:
        stamp, mac = nonce[:-_NONCE_MAC_CHARS], nonce[-_NONCE_MAC_CHARS:]
        if not nonce.isascii() or not _NONCE_STAMP.fullmatch(stamp):
            return False
        if not hmac.compare_digest(mac, self._nonce_mac(stamp, client)):
            return False
        return 0 <= now - int(stamp, 16) < self._config.nonce_lifetime

    def _challenge(
        self, message: StunMessage, client: ClientKey, now: float, code: int, reason: str
    ) -> list[TurnAction]:
        """401 or 438 with REALM and a fresh NONCE, no MESSAGE-INTEGRITY (RFC 8489 §9.2.4)."""
        reply = message.error_response(code, reason, Realm(self._realm), Nonce(self._nonce(client, now)))
        return self._bounded(reply.encode(fingerprint=True), client)

    def _unsigned(self, message: StunMessage, client: ClientKey, code: int, reason: str) -> list[TurnAction]:
        return self._bounded(message.error_response(code, reason).encode(fingerprint=True), client)

    @staticmethod
    def _bounded(data: bytes, client: ClientKey) -> list[TurnAction]:
        if len(data) > MAX_UNAUTHENTICATED_ANSWER:
            return []  # cannot happen with a realm of at most 32 bytes; kept so no answer can amplify
        return [Transmit(data, client)]

    def _error(
        self, message: StunMessage, client: ClientKey, auth: _Auth, code: int, reason: str, *extra: Attribute
    ) -> list[TurnAction]:
        """An error answer to an authenticated request, signed with its key (RFC 8489 §9.2.4)."""
        reply = message.error_response(code, reason, *extra)
        return [Transmit(reply.encode(integrity_key=auth.key, fingerprint=True), client)]

    def _success(
        self, message: StunMessage, client: ClientKey, auth: _Auth, *attrs: Attribute
    ) -> list[TurnAction]:
        reply = message.success_response(*attrs)
        return [Transmit(reply.encode(integrity_key=auth.key, fingerprint=True), client)]

    # ------------------------------------------------------------------------------------------ methods

    def _allocate(self, message: StunMessage, client: ClientKey, auth: _Auth, now: float) -> list[TurnAction]:
        """RFC 8656 §7.2."""
        existing = self._by_client.get(client)
        if existing is not None:
            if existing.transaction_id == message.transaction_id:
                return [Transmit(existing.response, client)]  # a retransmission: same answer
            return self._error(
                message, client, auth, TurnErrorCode.ALLOCATION_MISMATCH, "Allocation Mismatch"
            )
        if client in self._pending_by_client:
            return []  # its socket is being opened; the answer follows
        transport = message.find(RequestedTransport)
        if transport is None:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "No REQUESTED-TRANSPORT")
        if transport.protocol != REQUESTED_TRANSPORT_UDP:
            return self._error(
                message, client, auth, TurnErrorCode.UNSUPPORTED_TRANSPORT_PROTOCOL, "UDP Relays Only"
            )
        if message.find(DontFragment) is not None:
            # §7.2: a server that cannot set DF treats DONT-FRAGMENT as an unknown comprehension-required one.
            unknown = UnknownAttributes((AttributeType.DONT_FRAGMENT,))
            return self._error(
                message, client, auth, TurnErrorCode.UNKNOWN_ATTRIBUTE, "Unknown Attribute", unknown
            )
        even = message.find(EvenPort)
        if even is not None and message.find(ReservationToken) is not None:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "EVEN-PORT With A Token")
        if message.find(ReservationToken) is not None or (even is not None and even.reserve):
            return self._error(
                message, client, auth, TurnErrorCode.INSUFFICIENT_CAPACITY, "Port Reservation Unsupported"
            )
        family = message.find(RequestedAddressFamily)
        if (family.family if family else _FAMILY_IPV4) != self._relay_family:
            return self._error(
                message, client, auth, TurnErrorCode.ADDRESS_FAMILY_NOT_SUPPORTED, "Family Not Supported"
            )
        user = auth.username.partition(":")[2]
        held = self._per_user.get(user, 0) + sum(1 for p in self._pending.values() if p.user == user)
        if held >= self._quotas.max_allocations_per_user:
            return self._error(message, client, auth, TurnErrorCode.ALLOCATION_QUOTA_REACHED, "Quota Reached")
        if len(self._by_port) + len(self._pending) >= self._quotas.max_allocations:
            return self._error(message, client, auth, TurnErrorCode.INSUFFICIENT_CAPACITY, "Server Full")
        port = self._pick_port(even is not None, set())
        if port is None:
            return self._error(message, client, auth, TurnErrorCode.INSUFFICIENT_CAPACITY, "No Relay Port")
        pending = _Pending(
            message, client, auth.username, user, auth.key, self._lifetime(message), even is not None, set()
        )
        self._pending[port] = pending
        self._pending_by_client[client] = pending
        return [OpenRelay(port)]

    def _refresh(
        self, message: StunMessage, allocation: _Allocation, auth: _Auth, now: float
    ) -> list[TurnAction]:
        """RFC 8656 §8: LIFETIME 0 deletes the allocation, anything else extends it."""
        client = allocation.client
        family = message.find(RequestedAddressFamily)
        if family is not None and family.family != self._relay_family:
            return self._error(
                message, client, auth, TurnErrorCode.PEER_ADDRESS_FAMILY_MISMATCH, "Family Mismatch"
            )
        asked = message.find(Lifetime)
        if asked is not None and asked.seconds == 0:
            return [*self._end(allocation, "deleted"), *self._success(message, client, auth, Lifetime(0))]
        lifetime = self._lifetime(message)
        allocation.expires = now + lifetime
        heapq.heappush(self._deadlines, (allocation.expires, allocation.relay_port))
        return self._success(message, client, auth, Lifetime(lifetime))

    def _create_permission(
        self, message: StunMessage, allocation: _Allocation, auth: _Auth, now: float
    ) -> list[TurnAction]:
        """RFC 8656 §10: a permission per peer IP (ports do not matter), for 300 s."""
        client = allocation.client
        peers = [a.address for a in message.attributes if isinstance(a, XorPeerAddress)]
        if not peers:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "No XOR-PEER-ADDRESS")
        for peer in peers:
            problem = self._peer_problem(peer)
            if problem is not None:
                return self._error(message, client, auth, *problem)
        if not self._room_for(allocation, {peer[0] for peer in peers}, now):
            return self._error(
                message, client, auth, TurnErrorCode.INSUFFICIENT_CAPACITY, "Too Many Permissions"
            )
        for peer in peers:
            allocation.permissions[peer[0]] = now + PERMISSION_LIFETIME
        return self._success(message, client, auth)

    def _channel_bind(
        self, message: StunMessage, allocation: _Allocation, auth: _Auth, now: float
    ) -> list[TurnAction]:
        """RFC 8656 §11.2: bind or refresh a channel (600 s); it also installs or refreshes a permission."""
        client = allocation.client
        channel, peer_attr = message.find(ChannelNumber), message.find(XorPeerAddress)
        if channel is None or peer_attr is None:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "Channel Or Peer Missing")
        number, peer = channel.number, peer_attr.address
        if not CHANNEL_MIN <= number <= CHANNEL_MAX:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "Bad Channel Number")
        problem = self._peer_problem(peer)
        if problem is not None:
            return self._error(message, client, auth, *problem)
        self._prune(allocation, now)
        bound = allocation.channels.get(number)
        if bound is not None and bound.peer != peer:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "Channel Bound Elsewhere")
        other = allocation.channel_of_peer.get(peer)
        if other is not None and other != number:
            return self._error(message, client, auth, TurnErrorCode.BAD_REQUEST, "Peer On Another Channel")
        if not self._room_for(allocation, {peer[0]}, now):
            return self._error(
                message, client, auth, TurnErrorCode.INSUFFICIENT_CAPACITY, "Too Many Permissions"
            )
        allocation.channels[number] = _Channel(peer, now + CHANNEL_LIFETIME)
        allocation.channel_of_peer[peer] = number
        allocation.permissions[peer[0]] = now + PERMISSION_LIFETIME
        return self._success(message, client, auth)

    def _send_indication(self, message: StunMessage, client: ClientKey, now: float) -> list[TurnAction]:
        """RFC 8656 §11.2: relay DATA to XOR-PEER-ADDRESS if permitted; otherwise drop without a word."""
        allocation = self._by_client.get(client)
        if allocation is None or message.unknown_comprehension_required():
            return []
        peer, data = message.find(XorPeerAddress), message.find(Data)
        if peer is None or data is None or message.find(DontFragment) is not None:
            return []
        return self._to_peer(allocation, peer.address, data.data, now)

    def _channel_data(
        self, data: bytes, source: tuple[object, ...], now: float, transport: Transport
    ) -> list[TurnAction]:
        """RFC 8656 §12.6: data on a bound channel goes to its peer; on an unbound one it is dropped."""
        # Looked up by the socket-layer address first: a hit means it is already canonical (IPv4 always is).
        raw = source if transport == "udp" else (source[0], source[1], "tcp")
        allocation = self._by_client.get(raw)
        if allocation is None:
            client = _client_key(source, transport)
            allocation = self._by_client.get(client) if client is not None else None
            if allocation is None:
                return []
        try:
            number, payload = parse_channel_data(data)
        except ChannelDataError:
            return []
        channel = allocation.channels.get(number)
        if channel is None or channel.expires <= now:
            return []
        return self._to_peer(allocation, channel.peer, payload, now)

    # ------------------------------------------------------------------------------------------ helpers

    def _to_peer(self, allocation: _Allocation, peer: Address, data: bytes, now: float) -> list[TurnAction]:
        if allocation.permissions.get(peer[0], 0.0) <= now or not self._spend(allocation, len(data), now):
            allocation.dropped += 1
            return []
        return [RelayTransmit(allocation.relay_port, data, peer)]

    def _spend(self, allocation: _Allocation, size: int, now: float) -> bool:
        """Token bucket: ``bytes_per_second`` sustained, ``burst_bytes`` at once; False means drop."""
        quotas = self._quotas
        elapsed = max(0.0, now - allocation.token_time)
        allocation.tokens = min(
            float(quotas.burst_bytes), allocation.tokens + elapsed * quotas.bytes_per_second
        )
        allocation.token_time = max(allocation.token_time, now)
        if allocation.tokens < size:
            return False
        allocation.tokens -= size
        allocation.bytes_relayed += size
        return True

    def _lifetime(self, message: StunMessage) -> int:
        """RFC 8656 §7.2/§8: max(min(asked, maximum), default); the default when none is asked for."""
        asked = message.find(Lifetime)
        quotas = self._quotas
        if asked is None:
            return quotas.default_lifetime
        return max(min(asked.seconds, quotas.max_lifetime), quotas.default_lifetime)

    def _pick_port(self, even: bool, exclude: set[int]) -> int | None:
        """A random free relay port (RFC 8656 §7.2 asks for unpredictable ports), even if asked."""
        low, high = self._config.min_port, self._config.max_port
        if even:
            low += low % 2
        step = 2 if even else 1
        count = (high - low) // step + 1
        if count <= 0:
            return None
        start = self._rng.randrange(count)
        for i in range(count):
            port = low + ((start + i) % count) * step
            if port not in self._by_port and port not in self._pending and port not in exclude:
                return port
        return None

    def _peer_problem(self, peer: Address) -> tuple[int, str] | None:
        """Why the relay will not talk to ``peer`` (error code and reason), or None if it may."""
        ip = ipaddress.ip_address(peer[0])
        if (_FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6) != self._relay_family:
            return TurnErrorCode.PEER_ADDRESS_FAMILY_MISMATCH, "Peer Address Family Mismatch"
        forbidden = (
            peer[1] == 0
            or ip.is_unspecified
            or ip.is_multicast
            or ip.is_reserved  # includes 255.255.255.255
            or (ip.is_loopback and not self._config.allow_loopback_peers)
            or (peer[1] == self._listen_port and (ip.is_loopback or str(ip) == self._relay_ip))
        )
        return (TurnErrorCode.FORBIDDEN, "Forbidden IP") if forbidden else None

    def _room_for(self, allocation: _Allocation, ips: set[str], now: float) -> bool:
        self._prune(allocation, now)
        after = set(allocation.permissions) | ips
        return len(after) <= self._quotas.max_permissions_per_allocation

    @staticmethod
    def _prune(allocation: _Allocation, now: float) -> None:
        """Forget expired permissions and channel bindings."""
        for ip in [ip for ip, expires in allocation.permissions.items() if expires <= now]:
            del allocation.permissions[ip]
        for number in [n for n, c in allocation.channels.items() if c.expires <= now]:
            peer = allocation.channels.pop(number).peer
            if allocation.channel_of_peer.get(peer) == number:
                del allocation.channel_of_peer[peer]

    def _end(self, allocation: _Allocation, reason: EndReason) -> list[TurnAction]:
        self._by_port.pop(allocation.relay_port, None)
        self._by_client.pop(allocation.client, None)
        left = self._per_user.get(allocation.user, 1) - 1
        if left > 0:
            self._per_user[allocation.user] = left
        else:
            self._per_user.pop(allocation.user, None)
        return [
            CloseRelay(allocation.relay_port),
            AllocationEnded(
                allocation.relay_port,
                allocation.client,
                allocation.user,
                reason,
                allocation.bytes_relayed,
                allocation.dropped,
            ),
        ]
