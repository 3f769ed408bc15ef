"""Hole punching: simplified ICE (RFC 8445) for one UDP component, sans-IO, with renomination and failover.

One `HolePunch` per peer session. Both peers pair their candidates with the other's and send STUN Binding
requests ("checks") to every pair at once; each NAT sees the other side's checks arrive just after its own
went out, takes them for replies, and lets them in. That is the hole punch. The controlling peer (the
caller) then nominates the best pair that answered, and both send application data on it.

Wire protocol (every message is a STUN Binding, RFC 8489, with FINGERPRINT; credentials are the short-term
ufrag/password pairs exchanged over signalling, RFC 8445 §7.2.2):

============================  ===============================================  ============================
message                       attributes                                       answered with
============================  ===============================================  ============================
check (request)               USERNAME "theirufrag:ourufrag", PRIORITY,        success: XOR-MAPPED-ADDRESS
                              ICE-CONTROLLING or ICE-CONTROLLED (tie-breaker), (the source we saw), signed
                              MESSAGE-INTEGRITY keyed with *their* password    with our password; error
                                                                               487 on a role conflict
nomination (request)          a check plus USE-CANDIDATE and NOMINATION        the same
                              (0xC001, a counter: the latest one wins, as in
                              the widely deployed renomination extension)
consent/keepalive (request)   a check (RFC 7675 §5.1)                          the same
============================  ===============================================  ============================

Requests that fail authentication (no USERNAME or MESSAGE-INTEGRITY, another ufrag, a bad HMAC) are dropped
without an answer: RFC 8489 §9.1.3 allows 400/401, but a legitimate peer always has our password, and
silence gives garbage and scans nothing to learn from or to amplify. Responses are accepted only for our own
transactions, signed with the peer's password, from the address the request went to (RFC 8445 §7.2.5.2.1).

Local candidates are reduced to their base (RFC 8445 §6.1.2.4): a pair is (``via``, remote address), where
``via`` is ``direct`` (the session socket: host and srflx candidates) or ``relay`` (our TURN allocation).
The pair's state machine is the `_PAIR_TRANSITIONS` table; the session's is `_SESSION_TRANSITIONS`.
Simplifications against RFC 8445: no frozen state (one component, few pairs: every pair starts Waiting),
one check list, and renomination instead of a single final nomination.

Selection (controlling side): the best succeeded pair by kind, LAN > direct > relayed, then round trip. A
LAN or direct pair is nominated as soon as it answers; a relayed one only after ``relay_grace`` (or once
nothing direct is left to try), so a call starts on the relay within about a second when direct paths are
slow or impossible. Checks go on in the background, and a better pair that starts answering is
renominated. The controlled side follows the nomination with the highest NOMINATION counter.

Liveness: the selected pair gets a consent check every second (RFC 7675 §5.1, faster after an unanswered
one); two seconds without any answer and it is dropped for the best other succeeded pair at once (both
sides decide on their own; the controlling side also renominates). Other succeeded pairs (the relay as a
warm spare) get a keepalive every ``keepalive_interval`` and expire after ``consent_expiry`` without an
answer (RFC 7675 §5.1: 30 s). Failed pairs are checked again with backoff, so a path that comes back is
found and upgraded to.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from app.nat.candidates import (
    BASES,
    Base,
    Candidate,
    CandidateKind,
    NatMapping,
    address_family,
    candidate_priority,
    compute_foundation,
    is_private_address,
    pair_priority,
)
from app.nat.path_events import (
    PathChanged,
    PathEvent,
    PathInfo,
    PathKind,
    PathLost,
    PathRecovered,
    PathSelected,
    PathStats,
    RelayedBy,
    RelayTransport,
    RoleChanged,
)
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ErrorCode,
    IceControlled,
    IceControlling,
    MessageIntegrity,
    Priority,
    RawAttribute,
    StunClass,
    StunDecodeError,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    UseCandidate,
    Username,
    XorMappedAddress,
    canonical_address,
    decode,
    is_stun,
    short_term_key,
    verify_integrity,
)

#: NOMINATION (draft-thatcher-ice-renomination §3): comprehension-optional, a 32-bit nomination counter.
NOMINATION_ATTRIBUTE: Final = 0xC001
ROLE_CONFLICT: Final = 487  # RFC 8445 §7.3.1.1
_KIND_RANK: Final[dict[PathKind, int]] = {"lan": 2, "direct": 1, "relayed": 0}
_NEW_PORT_MAPPINGS: Final = ("address-dependent", "address-and-port-dependent")

PairKey = tuple[Base, Address]


# --- configuration -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HolePunchConfig:
    """Timing and policy of one hole-punching session (seconds); the defaults suit home NATs and calls."""

    #: Ta (RFC 8445 §14.2): at most one new request every this often, per session.
    check_pacing: float = 0.020
    #: First retransmission timeout of a check; doubles per retransmission up to ``check_rto_max``.
    check_rto: float = 0.100
    check_rto_max: float = 1.6
    #: Retransmissions of a check (RFC 8445 §14.3 leaves Rc to the agent); ~8 s in all with the defaults.
    check_retransmissions: int = 7
    #: Start on a relayed pair when nothing direct has answered this long after the first check.
    relay_grace: float = 1.0
    #: Keepalive checks on succeeded pairs other than the selected one (RFC 8445 §11 recommends 15 s).
    keepalive_interval: float = 15.0
    #: Consent checks on the selected pair (RFC 7675 §5.1 says 5 s; we want failover within 3 s).
    consent_interval: float = 1.0
    #: After an unanswered consent check, probe again this soon.
    consent_retry_interval: float = 0.2
    #: The selected pair is dead after this long without any answer.
    consent_failure_timeout: float = 2.0
    #: Other succeeded pairs expire after this long without any answer (RFC 7675 §5.1: 30 s).
    consent_expiry: float = 30.0
    #: Failed pairs are checked again after this, doubling up to ``reprobe_max``.
    reprobe_interval: float = 5.0
    reprobe_max: float = 60.0
    #: Give up (`PathLost`) if no path is selected this long after the machine was created.
    connect_timeout: float = 30.0
    #: Consent checks the loss figure of `PathStats` is computed over.
    stats_window: int = 10
    #: RFC 8445 §6.1.2.5: limit on candidate pairs (a peer cannot make us check thousands of addresses).
    max_pairs: int = 100
    #: Use only our relay: non-relay local candidates are refused, so the peer never learns our address.
    force_relay: bool = False
    #: Why ``force_relay`` is set, when not by the user: the pair verdict of both network checks said a
    #: direct path is hopeless (`app.nat.router_behaviour.pair_verdict`), so no direct check is tried.
    relay_reason: str | None = None
    #: How we reach our own relay (TURN over TCP when UDP is blocked), reported in `PathInfo`.
    relay_transport: RelayTransport = "udp"

    def __post_init__(self) -> None:
        durations = (
            self.check_pacing,
            self.check_rto,
            self.check_rto_max,
            self.relay_grace,
            self.keepalive_interval,
            self.consent_interval,
            self.consent_retry_interval,
            self.consent_failure_timeout,
            self.consent_expiry,
            self.reprobe_interval,
            self.reprobe_max,
            self.connect_timeout,
        )
        if any(not d > 0 for d in durations) or self.check_retransmissions < 0:
            raise ValueError(f"invalid hole-punching settings {self}")
        if self.stats_window < 1 or self.max_pairs < 1:
            raise ValueError(f"invalid hole-punching settings {self}")


@dataclass(frozen=True)
class Outgoing:
    """A datagram to send on base ``via`` to ``to`` (through the TURN allocation when ``via`` is relay)."""

    data: bytes
    via: Base
    to: Address


# --- pair and session state machines -------------------------------------------------------------------


class PairState(Enum):
    """RFC 8445 §6.1.2.6 pair states, without Frozen."""

    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_W, _P, _S, _F = PairState.WAITING, PairState.IN_PROGRESS, PairState.SUCCEEDED, PairState.FAILED

#: (state, input) -> next state. A missing edge is a bug in this module.
_PAIR_TRANSITIONS: Final[dict[tuple[PairState, str], PairState]] = {
    (_W, "send"): _P,
    (_P, "success"): _S,
    (_W, "success"): _S,  # a late answer to an earlier check of a pair queued again
    (_F, "success"): _S,  # a late answer after the check timed out still proves the path
    (_S, "success"): _S,  # consent, keepalive and nomination answers refresh it
    (_P, "timeout"): _F,
    (_P, "error"): _F,
    (_P, "role-conflict"): _W,  # RFC 8445 §7.2.5.1: switch role, check again
    (_S, "expire"): _F,  # RFC 7675 §5.1: no answer for too long
    (_F, "retry"): _W,
}

SessionState = Literal["checking", "connected", "lost", "closed"]

#: (state, input) -> next state for the whole session. A missing edge is a bug in this module.
_SESSION_TRANSITIONS: Final[dict[tuple[SessionState, str], SessionState]] = {
    ("checking", "select"): "connected",  # PathSelected
    ("checking", "fail"): "lost",  # PathLost
    ("connected", "select"): "connected",  # PathChanged
    ("connected", "fail"): "lost",  # PathLost
    ("lost", "select"): "connected",  # PathRecovered
    ("checking", "close"): "closed",
    ("connected", "close"): "closed",
    ("lost", "close"): "closed",
}

TransactionPurpose = Literal["check", "nominate", "consent", "keepalive"]


@dataclass
class _Pair:
    via: Base
    remote: Candidate
    state: PairState = PairState.WAITING
    check_tid: bytes | None = None  # the transaction whose outcome moves the state
    mapped: Address | None = None  # our address as the peer saw it (RFC 8445 §7.2.5.3.1)
    rtt: float | None = None
    last_response: float | None = None
    retry_at: float | None = None
    retry_delay: float = 0.0
    next_keepalive: float | None = None
    next_consent: float | None = None
    consent_since: float = 0.0
    suspect_since: float | None = None  # the selected path died: is this one alive?

    @property
    def key(self) -> PairKey:
        return (self.via, self.remote.address)


@dataclass
class _Transaction:
    key: PairKey
    purpose: TransactionPurpose
    data: bytes
    controlling: bool
    last_sent: float
    rto: float
    sends: int = 1
    next_send: float | None = None
    deadline: float = 0.0


@dataclass
class _Stats:
    results: deque[bool] = field(default_factory=deque)
    srtt: float | None = None


# --- the machine ---------------------------------------------------------------------------------------


class HolePunch:
    """The hole-punching machine of one session, sans-IO (module docstring).

    Feed it candidates, the peer's credentials, `receive_datagram` and `handle_timer`; send what
    `datagrams_to_send` returns, read `next_event`, re-arm the timer at `get_timer`.
    """

    def __init__(
        self,
        *,
        controlling: bool,
        local_ufrag: str,
        local_password: str,
        tie_breaker: int,
        now: float,
        config: HolePunchConfig | None = None,
        nat_mapping: NatMapping = "unknown",
    ) -> None:
        if not local_ufrag or ":" in local_ufrag or not local_password:
            raise ValueError("the ufrag must be non-empty without ':' and the password non-empty")
        if not 0 <= tie_breaker < 2**64:
            raise ValueError("the tie-breaker is a 64-bit unsigned integer (RFC 8445 §7.1.3)")
        self._config = config or HolePunchConfig()
        self._controlling = controlling
        self._tie_breaker = tie_breaker
        self._local_ufrag = local_ufrag
        self._local_key = short_term_key(local_password)
        self._nat_mapping: NatMapping = nat_mapping
        self._remote_ufrag: str | None = None
        self._remote_key: bytes | None = None
        self._remote_mapping: NatMapping = "unknown"
        self._local: list[Candidate] = []
        self._remote: dict[Address, Candidate] = {}
        self._local_done = False
        self._remote_done = False
        self._pairs: dict[PairKey, _Pair] = {}
        self._triggered: deque[PairKey] = deque()
        self._transactions: dict[bytes, _Transaction] = {}
        self._created = now
        self._last_new_request: float | None = None
        self._checks_started: float | None = None
        self._grace_over = False
        self._state: SessionState = "checking"
        self._selected: PairKey | None = None
        self._selected_info: PathInfo | None = None
        self._nominate_next: PairKey | None = None
        self._nominations_sent = 0
        self._nomination_seen = -1
        self._pending_nomination: PairKey | None = None
        self._stats = _Stats()
        self._outgoing: list[Outgoing] = []
        self._events: deque[PathEvent] = deque()

    # --- properties -----------------------------------------------------------------------------------

    @property
    def controlling(self) -> bool:
        """True while we are the controlling agent (it may change on a role conflict, RFC 8445 §7.3.1.1)."""
        return self._controlling

    @property
    def state(self) -> SessionState:
        """checking, connected, lost or closed."""
        return self._state

    @property
    def selected_path(self) -> PathInfo | None:
        """Where application data goes now: base ``via``, to ``remote_address``; None when no path works."""
        return self._selected_info

    @property
    def local_candidates(self) -> tuple[Candidate, ...]:
        """The local candidates accepted so far: what to send the peer."""
        return tuple(self._local)

    @property
    def remote_candidates(self) -> tuple[Candidate, ...]:
        """The peer's candidates, signalled and peer-reflexive."""
        return tuple(self._remote.values())

    @property
    def nat_mapping(self) -> NatMapping:
        """Our own NAT's mapping behaviour as the adapter measured it, to declare in our offer."""
        return self._nat_mapping

    def relay_destinations(self) -> set[Address]:
        """Remote addresses we may send to through our relay: TURN permissions to create (RFC 8656 §9)."""
        return {pair.remote.address for pair in self._pairs.values() if pair.via == "relay"}

    def pair_states(self) -> dict[PairKey, PairState]:
        """Each pair's state, for diagnostics and tests."""
        return {key: pair.state for key, pair in self._pairs.items()}

    # --- inputs ---------------------------------------------------------------------------------------

    def add_local_candidate(self, candidate: Candidate) -> bool:
        """Offer a gathered candidate; True if accepted (signal it to the peer), False if refused.

        Refused: duplicates, ``prflx`` (learned, never gathered) and, with ``force_relay``, all but relay.
        """
        if candidate.kind == "prflx" or (self._config.force_relay and candidate.kind != "relay"):
            return False
        if any(c.address == candidate.address for c in self._local):
            return False
        self._local.append(candidate)
        for remote in list(self._remote.values()):
            self._add_pair(candidate.base, remote)
        return True

    def end_of_local_candidates(self) -> None:
        """Gathering is over: with the peer's end of candidates, all pairs failing means `PathLost`."""
        self._local_done = True

    def set_remote_parameters(
        self, ufrag: str, password: str, *, nat_mapping: NatMapping = "unknown"
    ) -> None:
        """The peer's credentials (and declared NAT mapping) from its offer or answer; checks start now."""
        if not ufrag or ":" in ufrag or not password:
            raise ValueError("the peer's ufrag must be non-empty without ':' and its password non-empty")
        self._remote_ufrag = ufrag
        self._remote_key = short_term_key(password)
        self._remote_mapping = nat_mapping

    def add_remote_candidates(self, candidates: Iterable[Candidate]) -> None:
        """The peer's candidates (trickled: any number of calls). Parse them with `parse_candidates` first."""
        for candidate in candidates:
            existing = self._remote.get(candidate.address)
            if existing is not None:
                if existing.kind == "prflx" and candidate.kind != "prflx":
                    self._replace_remote(candidate)  # signalled after a check taught it us: take its kind
                continue
            if len(self._remote) >= self._config.max_pairs:
                continue
            self._remote[candidate.address] = candidate
            for via in self._local_bases():
                self._add_pair(via, candidate)

    def end_of_remote_candidates(self) -> None:
        """The peer has sent all its candidates (RFC 8838 end-of-candidates)."""
        self._remote_done = True

    def receive_datagram(self, data: bytes, via: Base, addr: tuple[object, ...], now: float) -> bool:
        """Feed a datagram that arrived on base ``via`` from ``addr``; True if it was STUN (ours to handle).

        Anything not STUN is the application's (returns False). Malformed or unauthenticated STUN is dropped.
        """
        if via not in BASES:
            raise ValueError(f"unknown base {via!r}")
        if not is_stun(data):
            return False
        source = canonical_address(addr)
        if self._state == "closed" or source is None or (via == "direct" and self._config.force_relay):
            return True
        try:
            message = decode(data)
        except StunDecodeError:
            return True  # RFC 8489 §6.3: malformed messages are discarded silently
        if message.method != StunMethod.BINDING:
            return True
        if message.message_class == StunClass.REQUEST:
            self._on_request(message, data, via, source, now)
        elif message.message_class in (StunClass.SUCCESS, StunClass.ERROR):
            self._on_response(message, data, via, source, now)
        # Binding indications (RFC 8445 §11 keepalives) need no answer.
        self._tick(now)
        return True

    def handle_timer(self, now: float) -> None:
        """Retransmit, time out, probe, nominate and fail over as due (output: `datagrams_to_send`)."""
        self._tick(now)

    def close(self) -> None:
        """Stop: no more datagrams, timers or events."""
        if self._state != "closed":
            self._session("close")
        self._outgoing.clear()
        self._transactions.clear()

    # --- outputs --------------------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[Outgoing]:
        """Everything due by ``now``: answers, new checks (one per Ta), retransmissions, consent checks."""
        self._tick(now)
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> PathEvent | None:
        """The next event, or None when there is none pending."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When `handle_timer` should run next (it may be in the past: run it at once), or None."""
        if self._state == "closed":
            return None
        times: list[float] = []
        for tx in self._transactions.values():
            times.append(tx.next_send if tx.next_send is not None else tx.deadline)
        due = self._request_due()
        if due is not None:
            if self._last_new_request is not None:
                due = max(due, self._last_new_request + self._config.check_pacing)
            times.append(due)
        for pair in self._pairs.values():
            if pair.state is PairState.SUCCEEDED and pair.last_response is not None:
                if pair.key == self._selected:
                    since = max(pair.last_response, pair.consent_since)
                    times.append(since + self._config.consent_failure_timeout)
                else:
                    times.append(pair.last_response + self._config.consent_expiry)
                    if pair.suspect_since is not None:
                        times.append(pair.suspect_since + self._config.consent_failure_timeout)
            elif pair.state is PairState.FAILED and pair.retry_at is not None:
                times.append(pair.retry_at)
        if self._controlling and not self._grace_over and self._checks_started is not None:
            times.append(self._checks_started + self._relay_grace)
        if self._state == "checking":
            times.append(self._created + self._config.connect_timeout)
        return min(times) if times else None

    # --- receiving ------------------------------------------------------------------------------------

    def _on_request(self, message: StunMessage, data: bytes, via: Base, source: Address, now: float) -> None:
        username = message.find(Username)
        if username is None or message.find(MessageIntegrity) is None:
            return
        ours, colon, theirs = username.name.partition(":")
        if not colon or ours != self._local_ufrag:
            return
        if self._remote_ufrag is not None and theirs != self._remote_ufrag:
            return
        if not verify_integrity(data, self._local_key):
            return
        unknown = message.unknown_comprehension_required()
        if unknown:  # RFC 8489 §6.3.1.1: authenticated, so it deserves a 420
            self._answer(
                message.error_response(420, "Unknown Attribute", UnknownAttributes(unknown)), via, source
            )
            return
        priority = message.find(Priority)
        if priority is None or not 1 <= priority.priority < 2**31:
            self._answer(message.error_response(400, "Bad Request"), via, source)  # RFC 8445 §7.3
            return
        if not self._resolve_role_conflict(message, via, source):
            return
        self._answer(message.success_response(XorMappedAddress(source)), via, source)

        if source not in self._remote:
            # RFC 8445 §7.3.1.3: a check from an unknown address teaches us a peer-reflexive candidate.
            if len(self._remote) >= self._config.max_pairs:
                return
            learned = Candidate("prflx", source, priority.priority, compute_foundation("prflx", source[0]))
            self._remote[source] = learned
        key = (via, source)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._add_pair(via, self._remote[source], force=True)
            if pair is None:
                return
        # RFC 8445 §7.3.1.4: triggered check, so the pair is proven in our direction too.
        if pair.state is PairState.FAILED:
            self._transition(pair, "retry", now)
        if pair.state is PairState.WAITING and key not in self._triggered:
            self._triggered.append(key)
        if message.find(UseCandidate) is not None and not self._controlling:
            self._on_nomination(message, pair, now)

    def _resolve_role_conflict(self, message: StunMessage, via: Base, source: Address) -> bool:
        """RFC 8445 §7.3.1.1; False when we answered 487 and the request goes no further."""
        theirs_controlling = message.find(IceControlling)
        theirs_controlled = message.find(IceControlled)
        if self._controlling and theirs_controlling is not None:
            if self._tie_breaker >= theirs_controlling.tie_breaker:
                self._answer(message.error_response(ROLE_CONFLICT, "Role Conflict"), via, source)
                return False
            self._set_role(controlling=False)
        elif not self._controlling and theirs_controlled is not None:
            if self._tie_breaker >= theirs_controlled.tie_breaker:
                self._set_role(controlling=True)
            else:
                self._answer(message.error_response(ROLE_CONFLICT, "Role Conflict"), via, source)
                return False
        return True

    def _on_nomination(self, message: StunMessage, pair: _Pair, now: float) -> None:
        """Controlled side (RFC 8445 §7.3.1.5): follow the peer's latest nomination once the pair works."""
        counter = self._nomination_seen + 1
        for attribute in message.attributes:
            if isinstance(attribute, RawAttribute) and attribute.type == NOMINATION_ATTRIBUTE:
                if len(attribute.value) == 4:
                    counter = int.from_bytes(attribute.value, "big")
                break
        if counter < self._nomination_seen:
            return  # a retransmission of an older nomination, overtaken by a newer one
        self._nomination_seen = counter
        self._pending_nomination = pair.key
        if pair.state is PairState.SUCCEEDED:
            self._select(pair.key, now, "the peer switched to this path")

    def _on_response(self, message: StunMessage, data: bytes, via: Base, source: Address, now: float) -> None:
        tx = self._transactions.get(message.transaction_id)
        if tx is None or tx.key != (via, source):
            return  # RFC 8445 §7.2.5.2.1: a response must come from where the request went
        if self._remote_key is None or not verify_integrity(data, self._remote_key):
            return
        if message.unknown_comprehension_required():
            return
        del self._transactions[message.transaction_id]
        pair = self._pairs.get(tx.key)
        if pair is None:
            return
        if message.message_class == StunClass.ERROR:
            self._on_error_response(message, tx, pair, now)
            return
        mapped = message.find(XorMappedAddress)
        if mapped is not None:
            pair.mapped = mapped.address
        rtt = max(0.0, now - tx.last_sent)
        pair.rtt = rtt if pair.rtt is None else 0.875 * pair.rtt + 0.125 * rtt  # RFC 6298 §2.3
        pair.last_response = now
        pair.suspect_since = None
        self._transition(pair, "success", now)
        if tx.purpose == "consent" and pair.key == self._selected:
            if pair.next_consent is not None:
                pair.next_consent = max(pair.next_consent, tx.last_sent + self._config.consent_interval)
            self._record_consent(True, rtt)
        if tx.purpose == "nominate" and self._controlling and tx.controlling:
            self._select(pair.key, now, f"a {self._classify(pair)} path started working")
        elif not self._controlling and self._pending_nomination == pair.key:
            self._select(pair.key, now, "the peer switched to this path")

    def _on_error_response(self, message: StunMessage, tx: _Transaction, pair: _Pair, now: float) -> None:
        error = message.find(ErrorCode)
        if error is not None and error.code == ROLE_CONFLICT:
            # RFC 8445 §7.2.5.1: take the role opposite to the one the request claimed, then check again.
            if tx.controlling == self._controlling:
                self._set_role(controlling=not tx.controlling)
            if tx.purpose == "check" and pair.state is PairState.IN_PROGRESS and pair.check_tid is not None:
                self._transition(pair, "role-conflict", now)
                self._triggered.append(pair.key)
            return
        if tx.purpose == "check" and pair.state is PairState.IN_PROGRESS:
            self._transition(pair, "error", now)

    # --- the clock ------------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._state == "closed":
            return
        self._run_transactions(now)
        self._check_consent(now)
        self._retry_failed(now)
        if self._controlling:
            self._maybe_nominate(now)
        self._check_failed(now)
        self._send_new_request(now)

    def _run_transactions(self, now: float) -> None:
        for tid, tx in list(self._transactions.items()):
            if tx.next_send is not None and now >= tx.next_send:
                self._outgoing.append(Outgoing(tx.data, tx.key[0], tx.key[1]))
                tx.last_sent = now
                tx.sends += 1
                self._schedule_retransmission(tx, now)
            elif tx.next_send is None and now >= tx.deadline:
                del self._transactions[tid]
                self._on_timeout(tid, tx, now)

    def _schedule_retransmission(self, tx: _Transaction, now: float) -> None:
        if tx.purpose != "consent" and tx.sends <= self._config.check_retransmissions:
            tx.next_send = now + tx.rto
            tx.rto = min(2 * tx.rto, self._config.check_rto_max)
        else:
            # Consent checks are single shots (their loss is what PathStats measures); the others get one
            # last RTO to answer.
            tx.next_send = None
            tx.deadline = now + (self._config.consent_interval if tx.purpose == "consent" else tx.rto)

    def _on_timeout(self, tid: bytes, tx: _Transaction, now: float) -> None:
        pair = self._pairs.get(tx.key)
        if pair is None:
            return
        if tx.purpose == "check" and pair.state is PairState.IN_PROGRESS and pair.check_tid == tid:
            self._transition(pair, "timeout", now)
        elif tx.purpose == "nominate" and pair.state is PairState.SUCCEEDED:
            self._transition(pair, "expire", now)  # it stopped answering while we nominated it
        elif tx.purpose == "consent" and pair.key == self._selected:
            self._record_consent(False, None)

    def _check_consent(self, now: float) -> None:
        # Spares first, so a failover from the selected pair does not pick one that is about to expire.
        pairs = sorted(self._pairs.values(), key=lambda p: p.key == self._selected)
        for pair in pairs:
            if pair.state is not PairState.SUCCEEDED or pair.last_response is None:
                continue
            # Deadlines are compared as the sums get_timer returns, so float rounding cannot stall a timer.
            failure = self._config.consent_failure_timeout
            if pair.key == self._selected:
                if now >= max(pair.last_response, pair.consent_since) + failure:
                    self._transition(pair, "expire", now)
            elif now >= pair.last_response + self._config.consent_expiry or (
                pair.suspect_since is not None and now >= pair.suspect_since + failure
            ):
                self._transition(pair, "expire", now)

    def _retry_failed(self, now: float) -> None:
        for pair in self._pairs.values():
            if pair.state is PairState.FAILED and pair.retry_at is not None and now >= pair.retry_at:
                self._transition(pair, "retry", now)

    @property
    def _relay_grace(self) -> float:
        """How long a relayed pair waits for a direct one; none when our UDP is blocked (relay over TCP):
        then no direct pair can come through our router, and a LAN one would still upgrade the path later."""
        return 0.0 if self._config.relay_transport == "tcp" else self._config.relay_grace

    def _maybe_nominate(self, now: float) -> None:
        """Controlling side: nominate the best succeeded pair when it beats the selected one's kind."""
        if self._checks_started is not None and now >= self._checks_started + self._relay_grace:
            self._grace_over = True
        if self._remote_key is None or self._nominate_next is not None:
            return
        if any(tx.purpose == "nominate" for tx in self._transactions.values()):
            return
        best = self._best_valid()
        if best is None:
            return
        kind = self._classify(best)
        if self._selected is not None:
            selected = self._pairs[self._selected]
            if best.key == self._selected or _KIND_RANK[kind] <= _KIND_RANK[self._classify(selected)]:
                return
        elif kind == "relayed" and not self._grace_over and self._direct_pending():
            return
        self._nominate_next = best.key

    def _check_failed(self, now: float) -> None:
        if self._state != "checking" or self._selected is not None:
            return
        timed_out = now >= self._created + self._config.connect_timeout
        exhausted = (
            self._remote_key is not None
            and self._local_done
            and self._remote_done
            and all(pair.state is PairState.FAILED for pair in self._pairs.values())
        )
        if timed_out or exhausted:
            self._session("fail")
            self._events.append(PathLost(self._lost_reason()))

    # --- sending --------------------------------------------------------------------------------------

    def _send_new_request(self, now: float) -> None:
        if self._remote_key is None:
            return
        if self._last_new_request is not None and now < self._last_new_request + self._config.check_pacing:
            return
        job = self._next_job(now)
        if job is None:
            return
        purpose, pair = job
        nomination: int | None = None
        if purpose == "nominate":
            self._nominations_sent += 1
            nomination = self._nominations_sent
        tid, data = self._request(pair.via, nomination)
        tx = _Transaction(pair.key, purpose, data, self._controlling, now, self._config.check_rto)
        self._schedule_retransmission(tx, now)
        self._transactions[tid] = tx
        self._outgoing.append(Outgoing(data, pair.via, pair.remote.address))
        self._last_new_request = now
        if self._checks_started is None:
            self._checks_started = now
        if purpose == "check":
            pair.check_tid = tid
            self._transition(pair, "send", now)
        elif purpose == "consent":
            # Probe again soon unless this one is answered (the answer pushes the next to a full interval).
            retry = max(self._config.consent_retry_interval, 2 * (pair.rtt or 0.0))
            pair.next_consent = now + min(retry, self._config.consent_interval)
        elif purpose == "keepalive":
            pair.next_keepalive = now + self._config.keepalive_interval

    def _next_job(self, now: float) -> tuple[TransactionPurpose, _Pair] | None:
        """What the next paced request is: a nomination, a triggered check, consent, keepalive, a check."""
        if self._nominate_next is not None:
            key, self._nominate_next = self._nominate_next, None
            pair = self._pairs.get(key)
            if pair is not None and pair.state is PairState.SUCCEEDED:
                return "nominate", pair
        while self._triggered:
            pair = self._pairs[self._triggered.popleft()]
            if pair.state is PairState.WAITING:
                return "check", pair
        if self._selected is not None:
            pair = self._pairs[self._selected]
            if pair.next_consent is not None and now >= pair.next_consent:
                return "consent", pair
        for pair in self._pairs.values():
            if (
                pair.state is PairState.SUCCEEDED
                and pair.key != self._selected
                and pair.next_keepalive is not None
                and now >= pair.next_keepalive
            ):
                return "keepalive", pair
        waiting = [p for p in self._pairs.values() if p.state is PairState.WAITING]
        if waiting:
            return "check", max(waiting, key=self._pair_priority)
        return None

    def _request_due(self) -> float | None:
        """When `_next_job` will next have something (ignoring pacing), or None."""
        if self._remote_key is None:
            return None
        if self._nominate_next is not None or any(p.state is PairState.WAITING for p in self._pairs.values()):
            return self._created
        times: list[float] = []
        if self._selected is not None:
            consent = self._pairs[self._selected].next_consent
            if consent is not None:
                times.append(consent)
        for pair in self._pairs.values():
            if pair.state is PairState.SUCCEEDED and pair.key != self._selected and pair.next_keepalive:
                times.append(pair.next_keepalive)
        return min(times) if times else None

    def _request(self, via: Base, nomination: int | None) -> tuple[bytes, bytes]:
        """A check (RFC 8445 §7.2.2): USERNAME, PRIORITY, role, maybe nomination; signed with their key."""
        assert self._remote_key is not None
        assert self._remote_ufrag is not None
        # RFC 8445 §7.1.1: PRIORITY is what a peer-reflexive candidate from this base would get. Through our
        # relay we keep the relay's type preference, so a peer that learns our relayed address from a check
        # still ranks it last.
        kind: CandidateKind = "relay" if via == "relay" else "prflx"
        role = IceControlling(self._tie_breaker) if self._controlling else IceControlled(self._tie_breaker)
        attributes: list[Attribute] = [
            Username(f"{self._remote_ufrag}:{self._local_ufrag}"),
            Priority(candidate_priority(kind)),
            role,
        ]
        if nomination is not None:
            attributes += [UseCandidate(), RawAttribute(NOMINATION_ATTRIBUTE, nomination.to_bytes(4, "big"))]
        message = StunMessage(StunMethod.BINDING, StunClass.REQUEST, attributes=tuple(attributes))
        return message.transaction_id, message.encode(integrity_key=self._remote_key, fingerprint=True)

    def _answer(self, response: StunMessage, via: Base, to: Address) -> None:
        """Responses are signed with our password (RFC 8445 §7.3.1) and not paced."""
        self._outgoing.append(
            Outgoing(response.encode(integrity_key=self._local_key, fingerprint=True), via, to)
        )

    # --- pairs ----------------------------------------------------------------------------------------

    def _local_bases(self) -> list[Base]:
        return [base for base in BASES if any(c.base == base for c in self._local)]

    def _add_pair(self, via: Base, remote: Candidate, *, force: bool = False) -> _Pair | None:
        """Form (via, remote) unless it exists, cannot work or the list is full (RFC 8445 §6.1.2.4-5)."""
        key = (via, remote.address)
        if key in self._pairs:
            return self._pairs[key]
        families = {address_family(c.address[0]) for c in self._local if c.base == via}
        if not force and address_family(remote.address[0]) not in families:
            return None
        if via == "relay" and remote.kind != "relay" and is_private_address(remote.address[0]):
            return None  # a relay on the Internet cannot reach the peer's LAN address
        if len(self._pairs) >= self._config.max_pairs:
            return None
        pair = _Pair(via, remote, retry_delay=self._config.reprobe_interval)
        self._pairs[key] = pair
        return pair

    def _replace_remote(self, candidate: Candidate) -> None:
        self._remote[candidate.address] = candidate
        for pair in self._pairs.values():
            if pair.remote.address == candidate.address:
                pair.remote = candidate
        for via in self._local_bases():
            self._add_pair(via, candidate)

    def _local_priority(self, via: Base) -> int:
        """The pair's local side is its base (RFC 8445 §6.1.2.4): a host candidate, or our relay candidate."""
        kinds = ("relay",) if via == "relay" else ("host",)
        own = [c.priority for c in self._local if c.kind in kinds]
        return max(own) if own else candidate_priority("relay" if via == "relay" else "host")

    def _pair_priority(self, pair: _Pair) -> int:
        local = self._local_priority(pair.via)
        if self._controlling:
            return pair_priority(local, pair.remote.priority)
        return pair_priority(pair.remote.priority, local)

    def _transition(self, pair: _Pair, event: str, now: float) -> None:
        new = _PAIR_TRANSITIONS.get((pair.state, event))
        if new is None:
            raise AssertionError(f"pair {pair.key}: no transition from {pair.state.value} on {event!r}")
        old, pair.state = pair.state, new
        if new is PairState.SUCCEEDED and old is not PairState.SUCCEEDED:
            pair.retry_delay = self._config.reprobe_interval
            pair.next_keepalive = now + self._config.keepalive_interval
        elif new is PairState.FAILED:
            pair.retry_at = now + pair.retry_delay
            pair.retry_delay = min(2 * pair.retry_delay, self._config.reprobe_max)
            if pair.key == self._selected:
                self._selected_died(now)
        elif new is PairState.WAITING:
            pair.retry_at = None

    def _classify(self, pair: _Pair) -> PathKind:
        if pair.via == "relay" or pair.remote.kind == "relay":
            return "relayed"
        hosts = {c.address for c in self._local if c.kind == "host"}
        remote_is_host = pair.remote.kind == "host" or (
            pair.remote.kind == "prflx" and is_private_address(pair.remote.address[0])
        )
        return "lan" if remote_is_host and pair.mapped in hosts else "direct"

    def _best_valid(self) -> _Pair | None:
        valid = [p for p in self._pairs.values() if p.state is PairState.SUCCEEDED]
        if not valid:
            return None
        return max(
            valid,
            key=lambda p: (
                _KIND_RANK[self._classify(p)],
                -(p.rtt if p.rtt is not None else math.inf),
                self._pair_priority(p),
            ),
        )

    def _direct_pending(self) -> bool:
        """A pair that would not be relayed is still being checked."""
        return any(
            p.state in (PairState.WAITING, PairState.IN_PROGRESS) and self._classify(p) != "relayed"
            for p in self._pairs.values()
        )

    # --- selection ------------------------------------------------------------------------------------

    def _select(self, key: PairKey, now: float, reason: str, previous: PathInfo | None = None) -> None:
        if key == self._selected:
            return
        pair = self._pairs[key]
        previous = previous or self._selected_info
        info = self._path_info(pair)
        self._selected, self._selected_info = key, info
        pair.consent_since = now
        pair.next_consent = now + self._config.consent_interval
        self._stats = _Stats()
        state = self._state
        self._session("select")
        if state == "checking":
            self._events.append(PathSelected(info))
        elif state == "lost" or previous is None:
            self._events.append(PathRecovered(info))
        else:
            self._events.append(PathChanged(info, previous, reason))

    def _selected_died(self, now: float) -> None:
        """The selected pair lost consent: move to the best other pair at once, or report the loss."""
        previous = self._selected_info
        self._selected = self._selected_info = None
        self._pending_nomination = None
        for pair in self._pairs.values():
            if pair.state is PairState.SUCCEEDED and pair.suspect_since is None:
                # Whatever killed the path may have killed these too: probe them now and give them as long
                # as the selected one had, so a dead spare does not cost another two seconds each.
                pair.suspect_since = now
                pair.next_keepalive = now
        best = self._best_valid()
        if best is not None:
            self._select(best.key, now, "the path in use stopped answering", previous)
            if self._controlling:
                self._nominate_next = best.key  # so the controlled side follows (RFC 8445 §8.1.1)
        else:
            self._session("fail")
            self._events.append(PathLost(f"the connection stopped answering ({self._diagnosis()})"))

    def _session(self, event: str) -> None:
        new = _SESSION_TRANSITIONS.get((self._state, event))
        if new is None:
            raise AssertionError(f"session: no transition from {self._state} on {event!r}")
        self._state = new

    def _set_role(self, *, controlling: bool) -> None:
        if controlling == self._controlling:
            return
        self._controlling = controlling
        self._nominate_next = None
        self._pending_nomination = None
        self._events.append(RoleChanged(controlling))

    def _record_consent(self, answered: bool, rtt: float | None) -> None:
        stats = self._stats
        stats.results.append(answered)
        while len(stats.results) > self._config.stats_window:
            stats.results.popleft()
        if rtt is not None:
            stats.srtt = rtt if stats.srtt is None else 0.875 * stats.srtt + 0.125 * rtt
        if self._selected_info is not None and stats.srtt is not None:
            lost = sum(1 for ok in stats.results if not ok)
            self._events.append(
                PathStats(
                    self._selected_info, stats.srtt * 1000, lost / len(stats.results), len(stats.results)
                )
            )

    # --- explaining -----------------------------------------------------------------------------------

    def _path_info(self, pair: _Pair) -> PathInfo:
        kind = self._classify(pair)
        relayed_by: RelayedBy | None = None
        if pair.via == "relay":
            relayed_by = "both" if pair.remote.kind == "relay" else "us"
        elif pair.remote.kind == "relay":
            relayed_by = "peer"
        relay_addresses = [c.address for c in self._local if c.kind == "relay"]
        hosts = [c.address for c in self._local if c.kind == "host"]
        if pair.via == "relay" and relay_addresses:
            local = relay_addresses[0]
        else:
            local = pair.mapped or (hosts[0] if hosts else ("0.0.0.0", 0))  # noqa: S104 - unknown, not a bind
        relay_transport: RelayTransport | None = None
        if relayed_by:
            # Our hop to the relay: TCP only when our own relay carries the path and we reach it so.
            relay_transport = self._config.relay_transport if pair.via == "relay" else "udp"
        return PathInfo(
            kind=kind,
            via=pair.via,
            local_address=local,
            remote_address=pair.remote.address,
            relayed_by=relayed_by,
            relay_transport=relay_transport,
            reason_if_relayed=self._diagnosis() if relayed_by else None,
        )

    def _peer_new_port_per_destination(self) -> bool:
        """RFC 4787 §4.1: a peer-reflexive address with its srflx IP and another port means symmetric NAT."""
        if self._remote_mapping in _NEW_PORT_MAPPINGS:
            return True
        srflx = {c.address for c in self._remote.values() if c.kind == "srflx"}
        ips = {ip for ip, _ in srflx}
        return any(
            c.kind == "prflx" and c.address[0] in ips and c.address not in srflx
            for c in self._remote.values()
        )

    def _our_new_port_per_destination(self) -> bool:
        """The same test on the addresses the peer saw our checks come from (XOR-MAPPED-ADDRESS)."""
        if self._nat_mapping in _NEW_PORT_MAPPINGS:
            return True
        srflx = {c.address for c in self._local if c.kind == "srflx"}
        ips = {ip for ip, _ in srflx}
        return any(
            p.via == "direct" and p.mapped is not None and p.mapped[0] in ips and p.mapped not in srflx
            for p in self._pairs.values()
        )

    def _diagnosis(self) -> str:
        """Why no direct path works, from what the checks saw, in plain words."""
        if self._config.force_relay:
            return self._config.relay_reason or "relay forced by settings"
        if self._config.relay_transport == "tcp":
            return "our network lets no UDP out: the relay is reached over TCP"
        signalled = [c for c in self._remote.values() if c.kind != "prflx"]
        if self._remote_key is not None and signalled and all(c.kind == "relay" for c in signalled):
            return "peer has no direct candidates"
        if self._peer_new_port_per_destination():
            return "peer's router gives a new port per destination"
        if self._our_new_port_per_destination():
            return "our router gives a new port per destination"
        if not any(c.base == "direct" for c in self._local):
            return "we have no direct candidates"
        if any(c.kind == "srflx" for c in self._remote.values()):
            pending = any(
                p.via == "direct" and p.remote.kind == "srflx" and p.state is not PairState.FAILED
                for p in self._pairs.values()
            )
            return "no reply from the peer's public address" + (" yet" if pending else "")
        return "no reply from the peer's addresses"

    def _lost_reason(self) -> str:
        if self._remote_key is None:
            return "the peer never sent its connection details"
        if not self._remote:
            return "the peer sent no addresses to try"
        if not self._local:
            if self._config.force_relay:
                return "relay forced by settings, but no relay is available"
            return "we have no addresses to offer"
        return f"no address of the peer answered ({self._diagnosis()})"
