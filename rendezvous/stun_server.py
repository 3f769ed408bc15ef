"""The rendezvous server's STUN binding service (RFC 8489): tells each client its address as seen from here.

Protocol, per datagram (all decisions live in `answer`, which is pure):

==============================================  ==========================================================
received                                        answered
==============================================  ==========================================================
Binding request                                 Binding success: XOR-MAPPED-ADDRESS of the source,
                                                FINGERPRINT (RFC 8489 §6.3.1)
Binding request with an unknown                 420 error: ERROR-CODE, UNKNOWN-ATTRIBUTES, FINGERPRINT
comprehension-required attribute                (RFC 8489 §6.3.1.1)
anything else: garbage, malformed messages,     nothing (silently dropped): indications are never
a bad FINGERPRINT, responses, indications,      answered (RFC 8489 §6.3.2; Binding indications are NAT
other methods                                   keepalives), nor are responses or unknown methods
==============================================  ==========================================================

No answer is ever more than 32 bytes larger than the request that caused it, so the service cannot be used
to amplify a spoofed-source flood, and answers carry no SOFTWARE attribute for the same reason. The server
keeps no state per client. The decisions are `rendezvous.behaviour_discovery.answer_binding`'s; with RFC
5780 behaviour discovery on, Binding requests go to that service instead (CHANGE-REQUEST, RESPONSE-PORT).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from rendezvous.behaviour_discovery import BehaviourDiscovery, answer_binding, is_binding_request
from rendezvous.log import log_event
from rendezvous.wire.stun import Address

log = logging.getLogger("punchline.stun")

#: The most an answer may exceed its request by, in bytes (an IPv6 success answering a bare 20-byte request
#: is exactly this much larger: 20 header + 24 XOR-MAPPED-ADDRESS + 8 FINGERPRINT).
MAX_AMPLIFICATION = 32


def answer(data: bytes, source: tuple[str, int]) -> bytes | None:
    """The bytes to send back to ``source`` for the datagram ``data``, or None to drop it. Never raises."""
    reply = answer_binding(data, source)
    if reply is None or len(reply.data) > len(data) + MAX_AMPLIFICATION:
        return None  # the check cannot fail with the answers above; kept so no future answer can amplify
    return reply.data


class StunServer(asyncio.DatagramProtocol):
    """The asyncio adapter: each datagram goes to `answer`, its reply goes back to the sender."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._paused = False  # the transport's send buffer is full (a flood): drop instead of queueing
        #: Datagrams answered and dropped since the start (plain counters for logs and tests).
        self.answered = 0
        self.dropped = 0
        #: RFC 5780 behaviour discovery, when the server runs it: Binding requests are answered there.
        self.discovery: BehaviourDiscovery | None = None

    @property
    def address(self) -> Address:
        """The (host, port) the socket is bound to (the real port when started on port 0)."""
        assert self._transport is not None, "the server is not started"
        sockname = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this once the socket is bound)."""
        # A datagram endpoint's transport (CPython's does not subclass DatagramTransport, hence a cast).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Answer or drop one datagram."""
        assert self._transport is not None
        if self.discovery is not None and is_binding_request(data):
            self.discovery.receive(data, addr)
            return
        reply = answer(data, addr)
        if reply is None or self._paused:
            self.dropped += 1
            log_event(log, "stun_dropped", level=logging.DEBUG, peer=addr[0], port=addr[1], size=len(data))
            return
        self._transport.sendto(reply, addr)
        self.answered += 1
        log_event(log, "stun_answered", level=logging.DEBUG, peer=addr[0], port=addr[1])

    def send(self, data: bytes, address: Address) -> None:
        """Send from the STUN port (behaviour discovery answers that leave from here)."""
        if self._transport is not None and not self._paused:
            self._transport.sendto(data, address)

    def pause_writing(self) -> None:
        """The send buffer passed its high-water mark: drop answers until it drains."""
        self._paused = True

    def resume_writing(self) -> None:
        """The send buffer drained."""
        self._paused = False

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier answers (a client went away): nothing to do."""
        log_event(log, "stun_socket_error", level=logging.DEBUG, error=str(exc))

    def close(self) -> None:
        """Stop answering and release the socket (on the loop's next iteration)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
            log_event(log, "stun_stopped", answered=self.answered, dropped=self.dropped)


async def start_stun_server(host: str, port: int) -> StunServer:
    """Bind UDP ``host:port`` (port 0 picks a free one) and answer STUN Binding requests on it.

    Raises OSError when the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(StunServer, local_addr=(host, port))
    bound_host, bound_port = server.address
    log_event(log, "stun_listening", host=bound_host, port=bound_port)
    return server
