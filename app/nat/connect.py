"""Connecting to a contact: punch parameters offered and answered over signalling, then a `PeerLink`.

The caller (controlling, RFC 8445 §6.1.1) and the callee exchange three kinds of opaque signalling payload
(the rendezvous forwards them without reading them, ``rendezvous.wire.signalling`` ``send_signal``):

==============  ======  =================================================================================
type            from    fields
==============  ======  =================================================================================
punch-offer     caller  session (random id), ufrag, pwd, candidates (``app.nat.candidates`` JSON), nat
punch-answer    callee  session, ufrag, pwd, candidates, nat
punch-bye       either  session, reason: the other side gave up or hung up
==============  ======  =================================================================================

Each side gathers its candidates on the session socket before it sends (host at once; STUN and TURN answers
within a round trip or two). Credentials are fresh per session: a 48-bit ufrag and a 144-bit password
(RFC 8445 §5.3 asks for at least 24 and 128 bits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from app.errors import TryAgainLater
from app.nat.candidates import Candidate, NatMapping, parse_candidates, parse_nat_mapping
from app.nat.hole_punch import HolePunchConfig
from app.nat.peer_link import GatherConfig, GatherResult, PeerLink, RelayServer
from app.nat.router_behaviour import RouterBehaviour, pair_verdict
from app.signalling.events import SignalReceived
from rendezvous.wire.ports import DEFAULT_STUN_PORT
from rendezvous.wire.signalling import IceServer
from rendezvous.wire.stun import Address

log = logging.getLogger("punchline.nat")

OFFER, ANSWER, BYE = "punch-offer", "punch-answer", "punch-bye"


class NoPath(TryAgainLater):
    """No path to the peer now (no answer, no working candidate pair); the message says why, for people."""


@dataclass(frozen=True)
class ConnectOptions:
    """How to connect: relay only (hides our address), and time limits.

    Loopback addresses are offered and accepted exactly when the rendezvous server itself is on loopback:
    then this app and any peer offering loopback candidates run on the server's computer (two accounts
    on one machine, the demo); a real server never makes a client probe its own loopback.
    """

    force_relay: bool = False
    gather_timeout: float = 2.0
    #: Seconds of checks before a relayed pair may carry the call. Measured in the NAT lab at 40 ms round
    #: trip (tests/bench/connect_times.py): direct pairs answer ~0.1 s into the checks, and with 0.6 s the
    #: first relayed path is usable within 1 s of dialling (1.0 s made it 1.22 s).
    relay_grace: float = 0.6
    #: How long to wait for the peer's answer, then for a first working path.
    answer_timeout: float = 15.0
    path_timeout: float = 10.0
    #: Our router's behaviour from the network check (`app.netcheck`), told to the peer with each offer and
    #: answer; when both sides' say a direct path is hopeless, only the relay is tried.
    nat_mapping: NatMapping = "unknown"
    nat_filtering: NatMapping = "unknown"  # the same four words, for filtering


@dataclass(frozen=True)
class PunchParameters:
    """One side's half of a session: credentials, candidates, declared NAT mapping."""

    session: str
    ufrag: str
    password: str = field(repr=False)
    candidates: tuple[Candidate, ...]
    nat_mapping: NatMapping = "unknown"
    nat_filtering: NatMapping = "unknown"  # the same four words, for filtering

    def to_payload(self, kind: str) -> dict[str, Any]:
        """The signalling payload (module docstring)."""
        return {
            "type": kind,
            "session": self.session,
            "ufrag": self.ufrag,
            "pwd": self.password,
            "candidates": [c.to_dict() for c in self.candidates],
            "nat": self.nat_mapping,
            "filtering": self.nat_filtering,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, allow_loopback: bool) -> PunchParameters:
        """Parse a peer's offer or answer; raise `NoPath` when it cannot be used at all."""
        session, ufrag, password = payload.get("session"), payload.get("ufrag"), payload.get("pwd")
        fields: list[str] = []
        for name, value in (("session", session), ("ufrag", ufrag), ("pwd", password)):
            if not isinstance(value, str) or not 0 < len(value) <= 256 or ":" in value:
                raise NoPath(f"the peer's connection offer has a bad {name}")
            fields.append(value)
        session, ufrag, password = fields
        candidates, dropped = parse_candidates(payload.get("candidates"), allow_loopback=allow_loopback)
        for reason in dropped:
            log.info("peer candidate dropped: %s", reason)
        mapping, filtering = (
            parse_nat_mapping(payload.get("nat")),
            parse_nat_mapping(payload.get("filtering")),
        )
        return cls(session, ufrag, password, tuple(candidates), mapping, filtering)


@dataclass
class Connection:
    """A live session with a contact: the link, who the peer is, and what gathering could not find."""

    peer: str
    session: str
    link: PeerLink
    controlling: bool
    gather_problems: tuple[str, ...]
    #: The peer's device id (from signalling): which of the contact's keys the session should meet.
    peer_device: str = ""
    #: Both sides' parameters, with the router behaviour each declared (`pair_verdict` reads them).
    mine: PunchParameters | None = None
    theirs: PunchParameters | None = None

    def pair_verdict(self) -> tuple[str, str] | None:
        """What both network checks predict for this pair, and why; None unless both sides measured."""
        if self.mine is None or self.theirs is None:
            return None
        if "unknown" in (self.mine.nat_mapping, self.theirs.nat_mapping):
            return None
        return pair_verdict(_behaviour(self.mine), _behaviour(self.theirs))

    def close(self) -> None:
        """Close the link (the peer notices through consent failure, or a bye sent by the caller of this)."""
        self.link.close()


@dataclass(frozen=True)
class ResolvedIceServers:
    """What `resolve_ice_servers` found: STUN addresses, a UDP TURN relay, and a TCP one (names resolved)."""

    stun: tuple[Address, ...] = ()
    relay: RelayServer | None = None
    tcp_relay: RelayServer | None = None


async def resolve_ice_servers(servers: tuple[IceServer, ...]) -> ResolvedIceServers:
    """STUN addresses and the first usable TURN server per transport from ``get_ice_servers`` (IPv4)."""
    loop = asyncio.get_running_loop()
    stun: list[Address] = []
    relays: dict[str, RelayServer] = {}
    for server in servers:
        for url in server.urls:
            scheme, host, port, transport = _split_ice_url(url)
            transport = transport or "udp"
            if host is None or transport not in ("udp", "tcp") or (scheme == "stun" and transport != "udp"):
                continue
            if scheme == "turn" and (transport in relays or not server.username or not server.credential):
                continue
            try:
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.info("cannot resolve %s: %s", url, exc)
                continue
            address: Address = (str(infos[0][4][0]), int(infos[0][4][1]))
            if scheme == "stun" and address not in stun:
                stun.append(address)
            elif scheme == "turn" and server.username and server.credential:
                relays[transport] = RelayServer(
                    address, server.username, server.credential, "tcp" if transport == "tcp" else "udp"
                )
    return ResolvedIceServers(tuple(stun), relays.get("udp"), relays.get("tcp"))


def _split_ice_url(url: str) -> tuple[str | None, str | None, int, str | None]:
    """Split ``stun:host[:port]`` (RFC 7064) or ``turn:host[:port][?transport=udp]`` (RFC 7065)."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("stun", "turn"):
        return None, None, 0, None
    rest, _, query = rest.partition("?")
    transport = parse_qs(query).get("transport", [None])[0]
    try:
        parts = urlsplit("//" + rest)
        host, port = parts.hostname, parts.port or DEFAULT_STUN_PORT
    except ValueError:
        return None, None, 0, None
    return scheme, host, port, transport


def _new_parameters(
    session: str, gathered: GatherResult, options: ConnectOptions | None = None
) -> PunchParameters:
    mapping, filtering = (options.nat_mapping, options.nat_filtering) if options else ("unknown", "unknown")
    return PunchParameters(
        session, secrets.token_hex(6), secrets.token_urlsafe(18), gathered.candidates, mapping, filtering
    )


def _behaviour(parameters: PunchParameters) -> RouterBehaviour:
    return RouterBehaviour(udp=True, mapping=parameters.nat_mapping, filtering=parameters.nat_filtering)


def hopeless_direct(mine: PunchParameters, theirs: PunchParameters) -> str | None:
    """Why a direct path cannot work between these two routers (both measured), or None to try one."""
    verdict, reason = pair_verdict(_behaviour(mine), _behaviour(theirs))
    return f"the network checks said so: {reason}" if verdict == "will use the relay" else None


def server_is_local(resolved: ResolvedIceServers) -> bool:
    """Whether the rendezvous's STUN/TURN service is on this computer's loopback (`ConnectOptions`)."""
    addresses = [*resolved.stun, *(r.address for r in (resolved.relay, resolved.tcp_relay) if r is not None)]
    return bool(addresses) and all(_is_loopback(address[0]) for address in addresses)


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


async def _prepare(
    servers: tuple[IceServer, ...], options: ConnectOptions
) -> tuple[PeerLink, GatherResult, bool]:
    """A socket with our candidates gathered, and whether loopback candidates are fine (`ConnectOptions`)."""
    resolved = await resolve_ice_servers(servers)
    loopback = server_is_local(resolved)
    link = await PeerLink.open()
    try:
        gathered = await link.gather(
            GatherConfig(
                stun_servers=resolved.stun,
                relay=resolved.relay,
                tcp_relay=resolved.tcp_relay,
                timeout=options.gather_timeout,
                allow_loopback=loopback,
            )
        )
    except BaseException:
        link.close()
        raise
    return link, gathered, loopback


def _begin(
    link: PeerLink,
    mine: PunchParameters,
    theirs: PunchParameters,
    *,
    controlling: bool,
    options: ConnectOptions,
) -> None:
    hopeless = hopeless_direct(mine, theirs)
    punch = PeerLink.new_punch(
        controlling=controlling,
        ufrag=mine.ufrag,
        password=mine.password,
        tie_breaker=secrets.randbits(64),
        config=HolePunchConfig(
            force_relay=options.force_relay or hopeless is not None,
            relay_reason=None if options.force_relay else hopeless,
            relay_grace=options.relay_grace,
            relay_transport=link.relay_transport,
        ),
    )
    for candidate in mine.candidates:
        punch.add_local_candidate(candidate)
    punch.end_of_local_candidates()
    punch.set_remote_parameters(theirs.ufrag, theirs.password, nat_mapping=theirs.nat_mapping)
    punch.add_remote_candidates(theirs.candidates)
    punch.end_of_remote_candidates()
    link.start(punch)


SendSignal = Callable[[str, dict[str, Any]], Awaitable[None]]


class Connector:
    """Dials contacts and answers their offers; feed it every `SignalReceived` through `handle_signal`."""

    def __init__(
        self,
        send_signal: SendSignal,
        get_ice_servers: Callable[[], Awaitable[tuple[IceServer, ...]]],
        options: ConnectOptions | None = None,
    ) -> None:
        self._send_signal = send_signal
        self._get_ice_servers = get_ice_servers
        self._options = options or ConnectOptions()
        self._answers: dict[str, asyncio.Future[tuple[dict[str, Any], str]]] = {}
        self._incoming: asyncio.Queue[Connection | NoPath] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    def set_network(self, mapping: NatMapping, filtering: NatMapping) -> None:
        """Our router's behaviour from the network check, for the offers and answers from now on."""
        self._options = replace(self._options, nat_mapping=mapping, nat_filtering=filtering)

    def handle_signal(self, event: SignalReceived) -> bool:
        """Route a signal: True if it was ours (an offer, answer or bye), False for other layers."""
        kind = event.payload.get("type")
        session = event.payload.get("session")
        if kind == ANSWER and isinstance(session, str) and session in self._answers:
            future = self._answers[session]
            if not future.done():
                future.set_result((event.payload, event.sender_device))
            return True
        if kind == BYE and isinstance(session, str) and session in self._answers:
            future = self._answers[session]
            if not future.done():
                reason = event.payload.get("reason")
                future.set_exception(NoPath(f"{event.sender} declined: {reason or 'no reason given'}"))
            return True
        if kind == OFFER:
            task = asyncio.create_task(self._answer(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True
        return kind in (ANSWER, BYE)

    async def dial(self, contact: str) -> Connection:
        """Connect to ``contact`` (who must be online and run a `Connector`): returns once a path works."""
        session = secrets.token_hex(8)
        link, gathered, loopback = await _prepare(await self._get_ice_servers(), self._options)
        try:
            mine = _new_parameters(session, gathered, self._options)
            answer: asyncio.Future[tuple[dict[str, Any], str]] = asyncio.get_running_loop().create_future()
            self._answers[session] = answer
            await self._send_signal(contact, mine.to_payload(OFFER))
            try:
                async with asyncio.timeout(self._options.answer_timeout):
                    payload, device = await answer
            except TimeoutError:
                raise NoPath(f"{contact} did not answer the connection offer") from None
            finally:
                del self._answers[session]
            theirs = PunchParameters.from_payload(payload, allow_loopback=loopback)
            _begin(link, mine, theirs, controlling=True, options=self._options)
            await self._wait_for_path(link, contact, gathered)
        except BaseException:
            link.close()
            raise
        return Connection(contact, session, link, True, gathered.problems, device, mine, theirs)

    async def accept(self) -> Connection:
        """The next incoming connection that found a path (raises `NoPath` for one that did not)."""
        result = await self._incoming.get()
        if isinstance(result, NoPath):
            raise result
        return result

    async def close(self) -> None:
        """Stop answering offers."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _answer(self, offer: SignalReceived) -> None:
        link, gathered, loopback = await _prepare(await self._get_ice_servers(), self._options)
        try:
            theirs = PunchParameters.from_payload(offer.payload, allow_loopback=loopback)
            mine = _new_parameters(theirs.session, gathered, self._options)
            _begin(link, mine, theirs, controlling=False, options=self._options)
            await self._send_signal(offer.sender, mine.to_payload(ANSWER))
            await self._wait_for_path(link, offer.sender, gathered)
        except NoPath as exc:
            link.close()
            await self._incoming.put(exc)
            return
        except BaseException:
            link.close()
            raise
        await self._incoming.put(
            Connection(
                offer.sender,
                theirs.session,
                link,
                False,
                gathered.problems,
                offer.sender_device,
                mine,
                theirs,
            )
        )

    async def _wait_for_path(self, link: PeerLink, peer: str, gathered: GatherResult) -> None:
        try:
            async with asyncio.timeout(self._options.path_timeout):
                await link.wait_for_path()
        except TimeoutError:
            detail = "; ".join(gathered.problems)
            raise NoPath(
                f"no working path to {peer} within {self._options.path_timeout:g} s"
                + (f" ({detail})" if detail else "")
            ) from None
