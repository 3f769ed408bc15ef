"""NAT behaviour discovery (RFC 5780) on the STUN port: answers from another address or port on request.

A client learns how its NAT maps and filters by asking the server to answer from elsewhere. The server
listens on its STUN port and an alternate port, on one IP address or two (``--stun-alt-port``,
``--stun-alt-ip``); each socket is named by (IP index, port index), (0, 0) being the STUN port itself.

`answer_binding` (pure) decides every Binding answer; it is the plain STUN service's too (no alternate
sockets: CHANGE-REQUEST and RESPONSE-PORT are then unknown attributes, 420, as RFC 5780 §6.1 says):

=========================================  ===============================================================
request                                     answer
=========================================  ===============================================================
Binding                                     XOR-MAPPED-ADDRESS, and with discovery RESPONSE-ORIGIN (the
                                            socket answering) and OTHER-ADDRESS (the one "change IP and
                                            port" would answer from), FINGERPRINT
CHANGE-REQUEST change IP / port             the same, sent from the socket with the other IP / port;
                                            change IP with one IP only: 420 (we cannot honour it)
RESPONSE-PORT p                             the same, sent to port ``p`` of the request's source IP — never
                                            to another IP; p < 1024: 400; and the answer may not be larger
                                            than the request (pad it with PADDING), or 400
malformed CHANGE-REQUEST / RESPONSE-PORT    400, to the source, from the socket it reached
=========================================  ===============================================================

Errors always go back to the source from the socket the request reached. An answer to the source is at
most `MAX_AMPLIFICATION` bytes larger than its request (an IPv6 answer with the three addresses to a bare
request), so a spoofed-source flood gains little, and one sent elsewhere with RESPONSE-PORT is never
larger than its request, so the server cannot be made to hit a third port harder than the sender could.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from rendezvous.log import log_event
from rendezvous.wire.stun import (
    Address,
    Attribute,
    AttributeType,
    ChangeRequest,
    OtherAddress,
    RawAttribute,
    ResponseOrigin,
    ResponsePort,
    StunClass,
    StunDecodeError,
    StunMethod,
    UnknownAttributes,
    XorMappedAddress,
    canonical_address,
    decode,
    is_stun,
)

log = logging.getLogger("punchline.stun")

#: The most an answer to the source may exceed its request by: a bare 20-byte IPv6 request answered with
#: XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS (24 bytes each) and FINGERPRINT (8).
MAX_AMPLIFICATION = 80
#: The lowest port RESPONSE-PORT may name: a client's own ports are ephemeral, system services' are not.
LOWEST_RESPONSE_PORT = 1024
_DISCOVERY_ATTRIBUTES = (AttributeType.CHANGE_REQUEST, AttributeType.RESPONSE_PORT, AttributeType.PADDING)
_UNKNOWN_ATTRIBUTE_REASON = "Unknown"  # short: each unknown type costs 4 bytes in, 2 out

Socket = tuple[int, int]  # (IP index, port index); (0, 0) is the STUN port


@dataclass(frozen=True)
class DiscoverySockets:
    """The addresses the answering sockets have, as clients must be told them (OTHER-ADDRESS...)."""

    ips: tuple[str, ...]  # one or two
    ports: tuple[int, int]  # the STUN port and the alternate port

    def address(self, socket: Socket) -> Address:
        """The (host, port) of socket (IP index, port index)."""
        return (self.ips[socket[0]], self.ports[socket[1]])

    @property
    def sockets(self) -> list[Socket]:
        """Every socket, the STUN port's first."""
        return [(ip, port) for ip in range(len(self.ips)) for port in range(2)]


@dataclass(frozen=True)
class Reply:
    """Send ``data`` from socket ``via`` to ``to``."""

    data: bytes
    via: Socket
    to: Address


def answer_binding(
    data: bytes,
    source: tuple[object, ...],
    received_on: Socket = (0, 0),
    sockets: DiscoverySockets | None = None,
) -> Reply | None:
    """What to send for the datagram ``data`` from ``source`` that reached ``received_on``; None drops it.

    Pure and total: any input gives a Reply or None, never an exception.
    """
    if not is_stun(data):
        return None
    try:
        request = decode(data)
    except StunDecodeError:
        return None
    if request.method != StunMethod.BINDING or request.message_class != StunClass.REQUEST:
        return None
    mapped = canonical_address(source)
    if mapped is None:
        return None

    def to_source(*attributes: Attribute, error: tuple[int, str] | None = None) -> Reply | None:
        message = (
            request.error_response(*error, *attributes) if error else request.success_response(*attributes)
        )
        encoded = message.encode(fingerprint=True)
        if len(encoded) > len(data) + MAX_AMPLIFICATION:
            return None  # cannot happen with the answers here; kept so no future answer can amplify
        return Reply(encoded, received_on, mapped)

    understood = _DISCOVERY_ATTRIBUTES if sockets is not None else ()
    unknown = tuple(t for t in request.unknown_comprehension_required() if t not in understood)
    if unknown:
        return to_source(UnknownAttributes(unknown), error=(420, _UNKNOWN_ATTRIBUTE_REASON))
    if sockets is None:
        return to_source(XorMappedAddress(mapped))
    raw = {a.type: a.value for a in request.attributes if isinstance(a, RawAttribute)}
    try:
        change = (
            ChangeRequest.decode_value(raw[AttributeType.CHANGE_REQUEST], b"")
            if (AttributeType.CHANGE_REQUEST in raw)
            else ChangeRequest(change_ip=False, change_port=False)
        )
        response_port = (
            ResponsePort.decode_value(raw[AttributeType.RESPONSE_PORT], b"").port
            if AttributeType.RESPONSE_PORT in raw
            else None
        )
    except StunDecodeError:
        return to_source(error=(400, "Bad Request"))
    if change.change_ip and len(sockets.ips) < 2:
        return to_source(
            UnknownAttributes((AttributeType.CHANGE_REQUEST,)), error=(420, _UNKNOWN_ATTRIBUTE_REASON)
        )
    if response_port is not None and response_port < LOWEST_RESPONSE_PORT:
        return to_source(error=(400, "Privileged RESPONSE-PORT"))
    via = (received_on[0] ^ change.change_ip, received_on[1] ^ change.change_port)
    other = ((1 - received_on[0]) if len(sockets.ips) > 1 else 0, 1 - received_on[1])
    reply = request.success_response(
        XorMappedAddress(mapped),
        ResponseOrigin(sockets.address(via)),
        OtherAddress(sockets.address(other)),
    ).encode(fingerprint=True)
    if response_port is None:
        return Reply(reply, via, mapped) if len(reply) <= len(data) + MAX_AMPLIFICATION else None
    if len(reply) > len(data):
        return to_source(error=(400, "Pad to use RESPONSE-PORT"))  # RFC 5780 §7.6: PADDING exists for this
    return Reply(reply, via, (mapped[0], response_port))


def is_binding_request(data: bytes) -> bool:
    """A cheap look at the first bytes: a STUN Binding request (which `answer_binding` decides)."""
    return len(data) >= 20 and data[0] == 0x00 and data[1] == 0x01 and is_stun(data)


class _AlternateSocket(asyncio.DatagramProtocol):
    """One alternate socket: what reaches it goes to the discovery service with its name."""

    def __init__(self, service: BehaviourDiscovery, name: Socket) -> None:
        self._service = service
        self._name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._service.receive(data, addr, self._name)

    def error_received(self, exc: Exception) -> None:
        log_event(log, "stun_socket_error", level=logging.DEBUG, error=str(exc))


class BehaviourDiscovery:
    """The alternate sockets and the sending of each answer from the socket `answer_binding` chose.

    The STUN port itself belongs to the TURN relay or the plain STUN server: they hand their Binding
    requests here (`receive` with socket (0, 0)) and give the way to send from it (``send_primary``).
    """

    def __init__(self, sockets: DiscoverySockets, send_primary: Callable[[bytes, Address], None]) -> None:
        self.sockets = sockets
        self._send_primary = send_primary
        self._alternates: dict[Socket, _AlternateSocket] = {}
        self.answered = 0

    def receive(self, data: bytes, source: tuple[str | Any, int], on: Socket = (0, 0)) -> None:
        """A datagram reached socket ``on``: answer it from the socket the request asks for."""
        reply = answer_binding(data, source, on, self.sockets)
        if reply is None:
            return
        if reply.via == (0, 0):
            self._send_primary(reply.data, reply.to)
        else:
            alternate = self._alternates.get(reply.via)
            if alternate is None or alternate.transport is None:
                return
            alternate.transport.sendto(reply.data, reply.to)
        self.answered += 1

    def add_alternate(self, name: Socket, socket: _AlternateSocket) -> None:
        """Socket ``name`` is open."""
        self._alternates[name] = socket

    def close(self) -> None:
        """Release the alternate sockets."""
        for alternate in self._alternates.values():
            if alternate.transport is not None:
                alternate.transport.close()
        self._alternates.clear()


async def start_behaviour_discovery(
    primary: Address,
    *,
    alt_port: int,
    alt_ip: str | None,
    send_primary: Callable[[bytes, Address], None],
    advertised_ip: str | None = None,
) -> BehaviourDiscovery:
    """Open the alternate sockets around the STUN port ``primary`` (bound; its real port).

    ``alt_port`` 0 picks a free port (tests). ``advertised_ip`` replaces an unspecified bind address
    (0.0.0.0) in what clients are told. Raises OSError when a socket cannot be bound, ValueError when there is
    no concrete address to tell clients.
    """
    loop = asyncio.get_running_loop()
    shown = advertised_ip or primary[0]
    if ipaddress.ip_address(shown).is_unspecified:
        raise ValueError(
            "the STUN port listens on every address: say which one clients reach (--external-ip)"
        )
    binds = (primary[0],) + ((alt_ip,) if alt_ip else ())
    ips = (shown,) + ((alt_ip,) if alt_ip else ())
    service = BehaviourDiscovery(DiscoverySockets(ips, (primary[1], alt_port)), send_primary)
    try:
        for name in service.sockets.sockets[1:]:  # (0, 1) first: its real port is the alternate port
            port = service.sockets.ports[name[1]]
            _, protocol = await loop.create_datagram_endpoint(
                functools.partial(_AlternateSocket, service, name), local_addr=(binds[name[0]], port)
            )
            service.add_alternate(name, protocol)
            if name == (0, 1) and protocol.transport is not None:
                bound = int(protocol.transport.get_extra_info("sockname")[1])
                service.sockets = DiscoverySockets(ips, (primary[1], bound))
    except BaseException:
        service.close()
        raise
    log_event(log, "behaviour_discovery", ips=list(service.sockets.ips), ports=list(service.sockets.ports))
    return service
