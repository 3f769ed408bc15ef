"""TURN over TCP, client side (RFC 8656 §3.1): one TCP connection to the relay, carrying framed messages.

Networks that block outbound UDP still let a client reach the relay over TCP; the relay talks UDP to the
peer, so the peer sees an ordinary relayed candidate. The `TurnAllocation` machine is the same as over UDP
(configured without retransmissions, RFC 8489 §6.2.2): this adapter only cuts the stream into frames with
`StreamFramer` on the way in and pads ChannelData with `stream_frame` on the way out. No protocol decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import cast

from app.nat.turn_client import TurnClientConfig
from rendezvous.wire.stun import Address
from rendezvous.wire.turn import FramingError, StreamFramer, stream_frame

log = logging.getLogger("punchline.nat")

#: Bytes queued toward the relay above which frames are dropped (the relay stopped reading: it is UDP
#: traffic in spirit, so dropping beats buffering without bound).
WRITE_LIMIT = 1 << 20


def reliable_config(config: TurnClientConfig) -> TurnClientConfig:
    """``config`` for a reliable transport: one send per request, the same total wait (RFC 8489 §6.2.2)."""
    wait = max(1, round(config.transaction_time / config.initial_rto))
    return replace(config, max_requests=1, final_wait_factor=wait)


class TurnStream(asyncio.Protocol):
    """A TCP connection to a TURN server; hands each frame it reads to ``on_frame``."""

    def __init__(self, on_frame: Callable[[bytes], None], on_closed: Callable[[str], None]) -> None:
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self.dropped = 0

    @classmethod
    async def connect(
        cls, server: Address, on_frame: Callable[[bytes], None], on_closed: Callable[[str], None]
    ) -> TurnStream:
        """Open the connection (OSError when refused or unreachable; wrap in ``asyncio.timeout``)."""
        loop = asyncio.get_running_loop()
        _, stream = await loop.create_connection(lambda: cls(on_frame, on_closed), server[0], server[1])
        return stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Cut the stream into STUN messages and ChannelData; garbage ends the connection."""
        try:
            frames = self._framer.feed(data)
        except FramingError as exc:
            log.info("relay connection closed: %s", exc)
            self.close()
            return
        for frame in frames:
            self._on_frame(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        """The relay closed the connection (or it broke): the allocation on it is gone."""
        self._transport = None
        self._on_closed(str(exc) if exc else "the relay closed the TCP connection")

    @property
    def open(self) -> bool:
        """Whether frames can still be written."""
        return self._transport is not None and not self._transport.is_closing()

    def write(self, message: bytes) -> None:
        """Send one STUN message or ChannelData (padded); dropped when the relay is not keeping up."""
        transport = self._transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size() > WRITE_LIMIT:
            self.dropped += 1
            return
        transport.write(stream_frame(message))

    def close(self) -> None:
        """Close the connection after what is queued (the allocation ends with it)."""
        if self._transport is not None:
            self._transport.close()
