"""A TURN client allocation (RFC 8656 over UDP), sans-IO: a relayed address for when hole punching fails.

`TurnAllocation` takes datagrams and the time in and gives datagrams and events out; it never touches a
socket or a clock, so it can share one UDP socket with hole punching and QUIC (`receive_datagram` says
whether a datagram was its own) and run under a fake clock in tests. ``app.nat.turn_socket`` is the thin
asyncio adapter.

What goes over the wire, client (C) and server (S); every request is retransmitted per RFC 8489 §6.2.1
and, once the server has challenged us, signed with the long-term key (USERNAME, REALM, NONCE,
MESSAGE-INTEGRITY, RFC 8489 §9.2) and FINGERPRINT (the socket is shared, RFC 8489 §7):

====================================  ==================================================================
C → S Allocate (REQUESTED-TRANSPORT   §7.1. First unsigned; S answers 401 with REALM and NONCE, and C
UDP, LIFETIME)                        sends it again signed. S answers XOR-RELAYED-ADDRESS,
                                      XOR-MAPPED-ADDRESS, LIFETIME → `AllocationReady`.
S → C 438 Stale Nonce (any request)   RFC 8489 §9.2.5: C sends the request again with the new NONCE.
C → S Refresh (LIFETIME)              §8: at ``refresh_fraction`` of the lifetime. 437 means the
                                      allocation is gone → `AllocationExpired`.
C → S CreatePermission                §9: one per peer IP; permissions last 300 s, C refreshes them
(XOR-PEER-ADDRESS)                    every ``permission_refresh`` s → `PermissionReady` the first time.
C → S ChannelBind (CHANNEL-NUMBER,    §12: channels last 600 s, C refreshes them every
XOR-PEER-ADDRESS)                     ``channel_refresh`` s → `ChannelBound` the first time.
C → S Send indication                 §11: data to a peer without a bound channel (not signed).
(XOR-PEER-ADDRESS, DATA)
C ↔ S ChannelData                     §12.4: data on a bound channel, a 4-byte header instead of ~36.
S → C Data indication                 §11.6: data from a peer without a channel → `DataReceived`.
C → S Refresh (LIFETIME 0)            §8: `close` deletes the allocation → `AllocationClosed`.
====================================  ==================================================================

Errors from the server are expected and end in an event with a sentence for people (`AllocationFailed`,
`PermissionFailed`, `ChannelFailed`); nothing that arrives from the network makes a method raise. Misuse
(a peer that is not a numeric address, data too large for one datagram) raises `ValueError`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from rendezvous.wire.stun import (
    Address,
    Attribute,
    ChannelNumber,
    Data,
    ErrorCode,
    Lifetime,
    MessageIntegrity,
    Nonce,
    Realm,
    RequestedTransport,
    StunClass,
    StunDecodeError,
    StunMessage,
    StunMethod,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    canonical_address,
    decode,
    is_stun,
    long_term_key,
    new_transaction_id,
    verify_integrity,
)
from rendezvous.wire.turn import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    REQUESTED_TRANSPORT_UDP,
    ChannelData,
    ChannelDataError,
    decode_channel_data,
    is_channel_data,
)

_MAX_TEXT_BYTES = 763  # RFC 8489 §14.9-14.10: REALM and NONCE are at most 763 bytes
_TURN_METHODS = frozenset(
    {
        StunMethod.ALLOCATE,
        StunMethod.REFRESH,
        StunMethod.SEND,
        StunMethod.DATA,
        StunMethod.CREATE_PERMISSION,
        StunMethod.CHANNEL_BIND,
    }
)

# --- configuration and events --------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnClientConfig:
    """Timers of a TURN allocation; defaults follow RFC 8656 and RFC 8489 §6.2.1 (RTO 250 ms, ~12 s)."""

    #: LIFETIME asked for in Allocate and Refresh, in seconds (RFC 8656 §7.1: the default is 600).
    lifetime: int = 600
    #: Refresh the allocation at this fraction of the lifetime the server granted.
    refresh_fraction: float = 0.8
    #: Refresh permissions this often; the server keeps them 300 s (RFC 8656 §9).
    permission_refresh: float = 240.0
    #: How long the server keeps a permission (after it we stop counting on it).
    permission_lifetime: float = 300.0
    #: Refresh channel bindings this often; the server keeps them 600 s (RFC 8656 §12).
    channel_refresh: float = 540.0
    #: How long the server keeps a channel binding (after it we fall back to Send indications).
    channel_lifetime: float = 600.0
    #: After a failed refresh (of anything), try again this much later while the old one still lasts.
    retry_interval: float = 5.0
    #: First retransmission timeout in seconds (RFC 8489 §6.2.1); it doubles after each request.
    initial_rto: float = 0.25
    #: Rc: requests sent in all per transaction (the first and the retransmissions).
    max_requests: int = 6
    #: Rm: after the last request, wait this many times ``initial_rto`` before giving up.
    final_wait_factor: int = 16
    #: 438 Stale Nonce answers accepted in a row for one request before it fails.
    max_stale_nonce_retries: int = 3

    def __post_init__(self) -> None:
        if (
            self.lifetime < 0
            or not 0 < self.refresh_fraction < 1
            or self.initial_rto <= 0
            or self.max_requests < 1
            or self.final_wait_factor < 0
            or min(self.permission_refresh, self.channel_refresh, self.retry_interval) <= 0
        ):
            raise ValueError(f"invalid TURN client settings {self}")

    @property
    def transaction_time(self) -> float:
        """How long one request waits for an answer before it fails, in seconds."""
        spacing = sum(self.initial_rto * (1 << i) for i in range(self.max_requests - 1))
        return spacing + self.final_wait_factor * self.initial_rto


@dataclass(frozen=True)
class AllocationReady:
    """The server gave us a relayed address; peers that send to it reach us (once permitted)."""

    relayed_address: Address
    #: Our address as the server sees it (server-reflexive), if it said.
    mapped_address: Address | None
    #: Seconds the allocation lasts unless refreshed (the machine refreshes it).
    lifetime: int


@dataclass(frozen=True)
class AllocationRefreshed:
    """A Refresh succeeded: the allocation now lasts ``lifetime`` more seconds."""

    lifetime: int


@dataclass(frozen=True)
class AllocationFailed:
    """No allocation: ``reason`` is a sentence for people; ``code`` the server's error code, if any."""

    reason: str
    code: int | None = None


@dataclass(frozen=True)
class AllocationExpired:
    """A working allocation is gone (refreshes failed, or the server forgot it)."""

    reason: str


@dataclass(frozen=True)
class AllocationClosed:
    """`close` finished: the allocation is deleted (or the server no longer answered)."""


@dataclass(frozen=True)
class PermissionReady:
    """The server now relays data from ``peer_ip`` (any port) to us and ours to it (RFC 8656 §9)."""

    peer_ip: str


@dataclass(frozen=True)
class PermissionFailed:
    """The server refused (or did not answer) a permission for ``peer_ip``."""

    peer_ip: str
    reason: str
    code: int | None = None


@dataclass(frozen=True)
class ChannelBound:
    """Data to and from ``peer`` now travels as ChannelData on ``channel`` (RFC 8656 §12)."""

    peer: Address
    channel: int


@dataclass(frozen=True)
class ChannelFailed:
    """The channel for ``peer`` could not be bound; its data keeps using Send and Data indications."""

    peer: Address
    reason: str
    code: int | None = None


@dataclass(frozen=True)
class DataReceived:
    """A datagram from ``peer``, relayed by the server."""

    peer: Address
    data: bytes


TurnEvent = (
    AllocationReady
    | AllocationRefreshed
    | AllocationFailed
    | AllocationExpired
    | AllocationClosed
    | PermissionReady
    | PermissionFailed
    | ChannelBound
    | ChannelFailed
    | DataReceived
)


# --- the state machine, as data ------------------------------------------------------------------------


class AllocationState(Enum):
    """Where the allocation is in its life."""

    ALLOCATING = auto()
    READY = auto()
    CLOSING = auto()
    CLOSED = auto()
    FAILED = auto()
    EXPIRED = auto()


class _Input(Enum):
    ALLOCATED = auto()
    REFUSED = auto()
    LOST = auto()
    CLOSE = auto()
    DEALLOCATED = auto()


_S = AllocationState
_TRANSITIONS: dict[tuple[AllocationState, _Input], AllocationState] = {
    (_S.ALLOCATING, _Input.ALLOCATED): _S.READY,
    (_S.ALLOCATING, _Input.REFUSED): _S.FAILED,
    (_S.ALLOCATING, _Input.CLOSE): _S.CLOSED,  # nothing to delete yet (a late success is ignored)
    (_S.READY, _Input.LOST): _S.EXPIRED,
    (_S.READY, _Input.CLOSE): _S.CLOSING,
    (_S.CLOSING, _Input.DEALLOCATED): _S.CLOSED,
}
_FINAL = frozenset({_S.CLOSED, _S.FAILED, _S.EXPIRED})


class _Kind(Enum):
    ALLOCATE = auto()
    REFRESH = auto()
    PERMISSION = auto()
    CHANNEL_BIND = auto()
    DEALLOCATE = auto()


_METHOD = {
    _Kind.ALLOCATE: StunMethod.ALLOCATE,
    _Kind.REFRESH: StunMethod.REFRESH,
    _Kind.PERMISSION: StunMethod.CREATE_PERMISSION,
    _Kind.CHANNEL_BIND: StunMethod.CHANNEL_BIND,
    _Kind.DEALLOCATE: StunMethod.REFRESH,
}
_WHAT = {
    _Kind.ALLOCATE: "Allocate",
    _Kind.REFRESH: "Refresh",
    _Kind.PERMISSION: "CreatePermission",
    _Kind.CHANNEL_BIND: "ChannelBind",
    _Kind.DEALLOCATE: "Refresh (deallocate)",
}

# Error codes a person can act on, in words (RFC 8656 §19, RFC 8489 §14.8).
_REASONS = {
    300: "the relay redirects to another server",
    400: "the relay did not understand our request",
    401: "the relay refused the credentials",
    403: "the relay forbids this",
    420: "the relay does not support something we asked for",
    437: "the relay has no matching allocation",
    438: "the relay kept rejecting our nonce",
    440: "the relay does not support that address family",
    441: "the relay refused the credentials",
    442: "the relay does not relay UDP",
    443: "the peer's address family does not match the relayed address",
    486: "the relay is full",
    500: "the relay had an internal error",
    508: "the relay is out of capacity",
}


def describe_error(code: int, phrase: str = "") -> str:
    """A sentence for people about a TURN error code, e.g. "the relay is full (486)"."""
    known = _REASONS.get(code)
    if known is None:
        phrase = phrase.strip()
        known = f"the relay answered an error: {phrase}" if phrase else "the relay answered an error"
    return f"{known} ({code})"


@dataclass
class _Request:
    """One request transaction and its retransmission schedule (RFC 8489 §6.2.1)."""

    kind: _Kind
    attributes: tuple[Attribute, ...]
    subject: Any  # the peer IP (permission) or peer address (channel), else None
    transaction_id: bytes
    data: bytes
    signed: bool
    stale_retries: int = 0
    sent: int = 0
    next_send: float | None = None
    give_up_at: float | None = None


@dataclass
class _Permission:
    #: The peer that asked for it: only its IP counts, but some servers refuse port 0 in XOR-PEER-ADDRESS.
    peer: Address
    installed: bool = False
    refresh_at: float | None = None
    expires_at: float | None = None
    request: _Request | None = None


@dataclass
class _Channel:
    number: int
    bound: bool = False
    refresh_at: float | None = None
    expires_at: float | None = None
    request: _Request | None = None


@dataclass
class _Outcome:
    """How a request ended, for the per-kind handlers."""

    response: StunMessage | None = None
    code: int | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _peek_method(data: bytes) -> int:
    """The method bits of a STUN header (RFC 8489 §5), without decoding the rest."""
    message_type = int.from_bytes(data[:2], "big")
    return (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)


def _text_fits(text: str) -> bool:
    return len(text.encode("utf-8")) <= _MAX_TEXT_BYTES


# --- the machine ---------------------------------------------------------------------------------------


class TurnAllocation:
    """One TURN allocation on one UDP socket, sans-IO (RFC 8656).

    The first Allocate goes out on the first `datagrams_to_send`. Drive it with `receive_datagram` and
    `handle_timer`, send what `datagrams_to_send` returns, read `next_event` and re-arm `get_timer`.
    """

    def __init__(
        self, server: Address, username: str, password: str, *, config: TurnClientConfig | None = None
    ) -> None:
        canonical = canonical_address(server)
        if canonical is None:
            raise ValueError(f"TURN server {server!r} is not a numeric (ip, port); resolve names first")
        Username(username).encode_value(bytes(12))  # raises ValueError if it cannot be sent
        self._server = canonical
        self._username = username
        self._password = password
        self._config = config or TurnClientConfig()
        self._state = AllocationState.ALLOCATING
        self._started = False
        self._realm: str | None = None
        self._nonce: str | None = None
        self._key: bytes | None = None
        self._requests: dict[bytes, _Request] = {}
        self._outgoing: list[bytes] = []
        self._events: deque[TurnEvent] = deque()
        self._relayed: Address | None = None
        self._mapped: Address | None = None
        self._refresh_at: float | None = None
        self._expires_at: float | None = None
        self._refreshing = False
        self._peers: list[Address] = []
        self._permissions: dict[str, _Permission] = {}
        self._channels: dict[Address, _Channel] = {}
        self._channel_peers: dict[int, Address] = {}
        self._next_channel = CHANNEL_MIN

    # --- read-only views

    @property
    def server(self) -> Address:
        """The TURN server (canonical (ip, port))."""
        return self._server

    @property
    def state(self) -> AllocationState:
        """Where the allocation is in its life."""
        return self._state

    @property
    def done(self) -> bool:
        """True once closed, failed or expired: nothing more will happen."""
        return self._state in _FINAL

    @property
    def relayed_address(self) -> Address | None:
        """The relayed transport address, once allocated."""
        return self._relayed

    def channel_for(self, peer: Address) -> int | None:
        """The bound channel number for ``peer``, or None while data to it uses Send indications."""
        channel = self._channels.get(self._peer(peer))
        return channel.number if channel is not None and channel.bound else None

    # --- inputs

    def add_peer(self, peer: Address, now: float) -> None:
        """Ask for a permission for ``peer``'s IP and a channel to ``peer`` (now, or once allocated)."""
        canonical = self._peer(peer)
        if self._state == _S.ALLOCATING and canonical not in self._peers:
            self._peers.append(canonical)  # installed once the allocation is ready
        elif self._state == _S.READY:
            self._install_peer(canonical, now)

    def send_to_peer(self, peer: Address, data: bytes, now: float) -> bool:
        """Queue ``data`` for ``peer`` through the relay; False when there is no allocation to send on.

        Uses ChannelData once the channel is bound, a Send indication before (RFC 8656 §11-12). A peer
        not added yet is added. Like any UDP datagram it may be lost, e.g. before `PermissionReady`.
        """
        canonical = self._peer(peer)
        if self._state != _S.READY:
            return False
        if canonical[0] not in self._permissions and canonical not in self._channels:
            self._install_peer(canonical, now)
        channel = self._channels.get(canonical)
        if channel is not None and channel.bound:
            self._outgoing.append(ChannelData(channel.number, data).encode())
        else:
            # RFC 8656 §11.1: no MESSAGE-INTEGRITY on indications (the server cannot answer them anyway).
            send = StunMessage(
                StunMethod.SEND, StunClass.INDICATION, attributes=(XorPeerAddress(canonical), Data(data))
            )
            self._outgoing.append(send.encode(fingerprint=True))
        return True

    def close(self, now: float) -> None:
        """Delete the allocation (Refresh with LIFETIME 0, RFC 8656 §8); ends with `AllocationClosed`."""
        if self._state in _FINAL or self._state == _S.CLOSING:
            return
        was = self._state
        self._move(_Input.CLOSE)
        self._requests.clear()
        self._outgoing.clear()
        if was == _S.ALLOCATING:
            self._events.append(AllocationClosed())
            return
        self._start(_Kind.DEALLOCATE, (Lifetime(0),), None, now)

    def receive_datagram(self, data: bytes, addr: tuple[Any, ...], now: float) -> bool:
        """Feed a datagram from the socket; True if it was TURN traffic from our server (consumed).

        STUN with a TURN method (first byte 0-3) and ChannelData (first byte 64-79) from the server are
        ours (RFC 7983 §7); anything else, e.g. a Binding response or a peer's packet, is left to others.
        """
        # The session socket hands over canonical addresses: compare as given before parsing one.
        if addr != self._server and canonical_address(addr) != self._server:
            return False
        if is_channel_data(data):
            self._receive_channel_data(data)
            return True
        if not is_stun(data) or _peek_method(data) not in _TURN_METHODS:
            return False
        try:
            message = decode(data)
        except StunDecodeError:
            return True  # RFC 8489 §6.3: malformed messages are discarded; retransmissions continue
        if message.message_class == StunClass.INDICATION:
            self._receive_indication(message)
        elif message.message_class in (StunClass.SUCCESS, StunClass.ERROR):
            self._receive_response(message, data, now)
        return True

    def handle_timer(self, now: float) -> None:
        """Give up on requests whose retransmissions ran out; start the refreshes that are due."""
        for request in list(self._requests.values()):
            if request.give_up_at is not None and now >= request.give_up_at:
                total = self._config.transaction_time
                reason = f"no answer from the relay to {_WHAT[request.kind]} within {total:g} s"
                self._end(request, _Outcome(reason=reason), now)
        if self._state != _S.READY:
            return
        assert self._expires_at is not None
        if now >= self._expires_at:
            self._lose("the relay allocation expired: refreshing it failed")
            return
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            self._start(_Kind.REFRESH, (Lifetime(self._config.lifetime),), None, now)
        for ip, permission in self._permissions.items():
            if permission.expires_at is not None and now >= permission.expires_at:
                permission.installed = False
                permission.expires_at = None
            if permission.refresh_at is not None and now >= permission.refresh_at:
                permission.refresh_at = None
                attributes = (XorPeerAddress(permission.peer),)
                permission.request = self._start(_Kind.PERMISSION, attributes, ip, now)
        for peer, channel in self._channels.items():
            if channel.expires_at is not None and now >= channel.expires_at:
                channel.bound = False  # RFC 8656 §12: back to Send indications until it is bound again
                channel.expires_at = None
            if channel.refresh_at is not None and now >= channel.refresh_at:
                channel.refresh_at = None
                channel.request = self._start_channel_bind(peer, channel, now)

    # --- outputs

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Requests due (first sends and retransmissions), then queued data, all to the server."""
        if not self._started:
            self._started = True
            if self._state == _S.ALLOCATING:
                attributes = (RequestedTransport(REQUESTED_TRANSPORT_UDP), Lifetime(self._config.lifetime))
                self._start(_Kind.ALLOCATE, attributes, None, now)
        out: list[tuple[bytes, Address]] = []
        for request in self._requests.values():
            if request.next_send is None or now < request.next_send:
                continue
            request.sent += 1
            rto = self._config.initial_rto
            if request.sent < self._config.max_requests:
                # RFC 8489 §6.2.1: the interval doubles each time (sent at 0, RTO, 3 RTO, 7 RTO...).
                request.next_send = now + rto * (1 << (request.sent - 1))
            else:
                request.next_send = None
                request.give_up_at = now + self._config.final_wait_factor * rto
            out.append((request.data, self._server))
        out.extend((data, self._server) for data in self._outgoing)
        self._outgoing.clear()
        return out

    def get_timer(self) -> float | None:
        """When `handle_timer` (then `datagrams_to_send`) should next run, or None if nothing is pending."""
        times = [r.next_send if r.next_send is not None else r.give_up_at for r in self._requests.values()]
        if self._state == _S.READY:
            times += [self._refresh_at, self._expires_at]
            times += [t for p in self._permissions.values() for t in (p.refresh_at, p.expires_at)]
            times += [t for c in self._channels.values() for t in (c.refresh_at, c.expires_at)]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def next_event(self) -> TurnEvent | None:
        """The next event, or None when there is none pending."""
        return self._events.popleft() if self._events else None

    # --- requests

    def _start(self, kind: _Kind, attributes: tuple[Attribute, ...], subject: Any, now: float) -> _Request:
        request = _Request(kind, attributes, subject, b"", b"", signed=False)
        self._sign(request, now)
        return request

    def _sign(self, request: _Request, now: float) -> None:
        """(Re)build the request with a fresh transaction id and the current nonce, and queue it at once."""
        self._requests.pop(request.transaction_id, None)
        request.transaction_id = new_transaction_id()
        message = StunMessage(
            _METHOD[request.kind], StunClass.REQUEST, request.transaction_id, request.attributes
        )
        if self._key is not None:
            assert self._realm is not None
            assert self._nonce is not None
            credentials = (Username(self._username), Realm(self._realm), Nonce(self._nonce))
            message = StunMessage(
                message.method,
                message.message_class,
                message.transaction_id,
                message.attributes + credentials,
            )
        request.data = message.encode(integrity_key=self._key, fingerprint=True)
        request.signed = self._key is not None
        request.sent = 0
        request.next_send = now
        request.give_up_at = None
        self._requests[request.transaction_id] = request

    def _start_channel_bind(self, peer: Address, channel: _Channel, now: float) -> _Request:
        return self._start(
            _Kind.CHANNEL_BIND, (ChannelNumber(channel.number), XorPeerAddress(peer)), peer, now
        )

    def _receive_response(self, response: StunMessage, data: bytes, now: float) -> None:
        request = self._requests.get(response.transaction_id)
        if request is None or response.method != _METHOD[request.kind]:
            return  # a late answer to a transaction we gave up or replaced
        error = response.find(ErrorCode)
        if response.message_class == StunClass.ERROR and error is None:
            self._end(request, _Outcome(reason="the relay answered an error without a code"), now)
            return
        code = error.code if error is not None and response.message_class == StunClass.ERROR else None
        if request.signed and code not in (401, 438):
            # RFC 8489 §9.2.5: a response without a valid MESSAGE-INTEGRITY is discarded as if never received.
            assert self._key is not None
            if response.find(MessageIntegrity) is None or not verify_integrity(data, self._key):
                return
        if code == 401 and not request.signed:
            self._challenge(request, response, now)
            return
        if code == 438 and request.stale_retries < self._config.max_stale_nonce_retries:
            nonce, realm = response.find(Nonce), response.find(Realm)
            if nonce is not None and _text_fits(nonce.nonce) and self._key is not None:
                self._nonce = nonce.nonce
                if realm is not None and _text_fits(realm.realm) and realm.realm != self._realm:
                    self._realm = realm.realm
                    self._key = long_term_key(self._username, realm.realm, self._password)
                request.stale_retries += 1
                self._sign(request, now)  # RFC 8489 §9.2.5: retry with the new nonce
                return
        if code is not None:
            assert error is not None
            self._end(request, _Outcome(code=code, reason=describe_error(code, error.reason)), now)
            return
        unknown = response.unknown_comprehension_required()
        if unknown:
            # RFC 8489 §6.3.3: unknown comprehension-required attributes fail the transaction.
            names = ", ".join(f"{t:#06x}" for t in unknown)
            self._end(request, _Outcome(reason=f"the relay's answer has unknown attributes {names}"), now)
            return
        self._end(request, _Outcome(response=response), now)

    def _challenge(self, request: _Request, response: StunMessage, now: float) -> None:
        """RFC 8489 §9.2.3: a 401 with REALM and NONCE to an unsigned request: sign it and send it again."""
        realm, nonce = response.find(Realm), response.find(Nonce)
        if realm is None or nonce is None or not _text_fits(realm.realm) or not _text_fits(nonce.nonce):
            self._end(
                request, _Outcome(code=401, reason=describe_error(401) + " without a usable challenge"), now
            )
            return
        self._realm, self._nonce = realm.realm, nonce.nonce
        self._key = long_term_key(self._username, realm.realm, self._password)
        self._sign(request, now)

    def _end(self, request: _Request, outcome: _Outcome, now: float) -> None:
        """A request finished (answered, refused or timed out): act on it by kind."""
        self._requests.pop(request.transaction_id, None)
        failed = outcome.response is None
        if failed and outcome.code == 437 and self._state == _S.READY:
            self._lose(describe_error(437))  # RFC 8656 §7.3: the server no longer has our allocation
            return
        handler = {
            _Kind.ALLOCATE: self._allocate_done,
            _Kind.REFRESH: self._refresh_done,
            _Kind.PERMISSION: self._permission_done,
            _Kind.CHANNEL_BIND: self._channel_done,
            _Kind.DEALLOCATE: self._deallocate_done,
        }[request.kind]
        handler(request, outcome, now)

    def _allocate_done(self, request: _Request, outcome: _Outcome, now: float) -> None:
        if self._state != _S.ALLOCATING:
            return
        response = outcome.response
        relayed = response.find(XorRelayedAddress) if response is not None else None
        if response is None or relayed is None:
            reason = outcome.reason or "the relay's answer has no relayed address"
            self._move(_Input.REFUSED)
            self._requests.clear()
            self._events.append(AllocationFailed(reason, outcome.code))
            return
        mapped = response.find(XorMappedAddress)
        lifetime = self._granted_lifetime(response)
        self._relayed = relayed.address
        self._mapped = mapped.address if mapped is not None else None
        self._move(_Input.ALLOCATED)
        self._schedule_refresh(lifetime, now)
        self._events.append(AllocationReady(relayed.address, self._mapped, lifetime))
        for peer in self._peers:
            self._install_peer(peer, now)

    def _refresh_done(self, request: _Request, outcome: _Outcome, now: float) -> None:
        if self._state != _S.READY:
            return
        if outcome.response is None:
            assert self._expires_at is not None
            self._refresh_at = min(now + self._config.retry_interval, self._expires_at)
            return
        lifetime = self._granted_lifetime(outcome.response)
        self._schedule_refresh(lifetime, now)
        self._events.append(AllocationRefreshed(lifetime))

    def _permission_done(self, request: _Request, outcome: _Outcome, now: float) -> None:
        ip: str = request.subject
        permission = self._permissions.get(ip)
        if self._state != _S.READY or permission is None or permission.request is not request:
            return
        permission.request = None
        if outcome.response is not None:
            first = not permission.installed
            permission.installed = True
            permission.refresh_at = now + self._config.permission_refresh
            permission.expires_at = now + self._config.permission_lifetime
            if first:
                self._events.append(PermissionReady(ip))
        elif permission.installed:
            permission.refresh_at = now + self._config.retry_interval
        else:
            del self._permissions[ip]  # a later add_peer for this IP asks again
            self._events.append(PermissionFailed(ip, outcome.reason, outcome.code))

    def _channel_done(self, request: _Request, outcome: _Outcome, now: float) -> None:
        peer: Address = request.subject
        channel = self._channels.get(peer)
        if self._state != _S.READY or channel is None or channel.request is not request:
            return
        channel.request = None
        if outcome.response is not None:
            first = not channel.bound
            channel.bound = True
            channel.refresh_at = now + self._config.channel_refresh
            channel.expires_at = now + self._config.channel_lifetime
            if first:
                self._events.append(ChannelBound(peer, channel.number))
        elif channel.bound:
            channel.refresh_at = now + self._config.retry_interval
        else:
            # Keep the number reserved for this peer (RFC 8656 §12: no rebinding to another peer) but stop.
            channel.refresh_at = None
            self._events.append(ChannelFailed(peer, outcome.reason, outcome.code))

    def _deallocate_done(self, request: _Request, outcome: _Outcome, now: float) -> None:
        if self._state == _S.CLOSING:
            self._move(_Input.DEALLOCATED)
            self._requests.clear()
            self._events.append(AllocationClosed())

    # --- helpers

    def _install_peer(self, peer: Address, now: float) -> None:
        ip = peer[0]
        if ip not in self._permissions:
            permission = _Permission(peer)
            self._permissions[ip] = permission
            # RFC 8656 §9.1: only the IP counts; the port in XOR-PEER-ADDRESS is ignored.
            permission.request = self._start(_Kind.PERMISSION, (XorPeerAddress(peer),), ip, now)
        channel = self._channels.get(peer)
        if channel is None and self._next_channel <= CHANNEL_MAX:
            channel = _Channel(self._next_channel)
            self._next_channel += 1
            self._channels[peer] = channel
            self._channel_peers[channel.number] = peer
            channel.request = self._start_channel_bind(peer, channel, now)
        elif (
            channel is not None
            and not channel.bound
            and channel.request is None
            and channel.refresh_at is None
        ):
            channel.request = self._start_channel_bind(peer, channel, now)  # it failed before: try again

    def _granted_lifetime(self, response: StunMessage) -> int:
        lifetime = response.find(Lifetime)
        return lifetime.seconds if lifetime is not None else self._config.lifetime

    def _schedule_refresh(self, lifetime: int, now: float) -> None:
        self._expires_at = now + lifetime
        self._refresh_at = now + max(lifetime * self._config.refresh_fraction, 0.0)

    def _lose(self, reason: str) -> None:
        self._move(_Input.LOST)
        self._requests.clear()
        self._outgoing.clear()
        self._events.append(AllocationExpired(reason))

    def _move(self, event: _Input) -> None:
        target = _TRANSITIONS.get((self._state, event))
        if target is None:
            raise AssertionError(f"TURN allocation: no transition from {self._state.name} on {event.name}")
        self._state = target

    def _receive_indication(self, message: StunMessage) -> None:
        if message.method != StunMethod.DATA or self._state not in (_S.READY, _S.CLOSING):
            return
        peer, payload = message.find(XorPeerAddress), message.find(Data)
        if peer is None or payload is None:
            return  # RFC 8656 §11.6: discard a Data indication without them
        source = canonical_address(peer.address)
        if source is None or source[0] not in self._permissions:
            return  # RFC 8656 §11.6: not from a peer we permitted
        self._events.append(DataReceived(source, payload.data))

    def _receive_channel_data(self, data: bytes) -> None:
        if self._state not in (_S.READY, _S.CLOSING):
            return
        try:
            message = decode_channel_data(data)
        except ChannelDataError:
            return
        peer = self._channel_peers.get(message.channel)
        if peer is not None:  # RFC 8656 §12.6: ChannelData on a channel we did not bind is discarded
            self._events.append(DataReceived(peer, message.data))

    @staticmethod
    def _peer(peer: Address) -> Address:
        canonical = canonical_address(peer)
        if canonical is None:
            raise ValueError(f"TURN peer {peer!r} is not a numeric (ip, port)")
        return canonical
