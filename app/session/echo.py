"""Round-trip probes over a peer session: every session answers them; ``punchline-cli connect`` sends them.

An echo request is ``ECHO_REQUEST`` + sequence (8 bytes) + send time (8 bytes, float); the reply is the same
bytes with ``ECHO_REPLY`` first (`app.session.datagram_kinds`). They travel as QUIC DATAGRAM frames, the way
audio does: encrypted, and never retransmitted, so a lost probe is loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

from app.session.datagram_kinds import DatagramKind
from app.session.peer_session import PeerSession, SessionError

_ECHO = struct.Struct("!BQd")


def answer_echoes(session: PeerSession) -> None:
    """Answer the peer's echo requests on ``session`` for as long as it lasts."""

    def reply(data: bytes) -> None:
        if len(data) == _ECHO.size:
            with contextlib.suppress(SessionError):  # the session is ending: nobody waits for the reply
                session.send_datagram(bytes((DatagramKind.ECHO_REPLY,)) + data[1:])

    session.set_datagram_receiver(DatagramKind.ECHO_REQUEST, reply)


@dataclass(frozen=True)
class EchoSummary:
    """What ``count`` probes found: how many came back, the loss and the median round trip."""

    sent: int
    received: int
    loss: float
    rtt_ms_median: float | None


async def measure_echoes(
    session: PeerSession, *, count: int, interval: float, on_reply: Callable[[int, float], None]
) -> EchoSummary:
    """Send ``count`` probes ``interval`` s apart; ``on_reply(seq, rtt_ms)`` for each first reply."""
    loop = asyncio.get_running_loop()
    rtts: dict[int, float] = {}

    def replied(data: bytes) -> None:
        if len(data) != _ECHO.size:
            return
        _, seq, sent = _ECHO.unpack(data)
        if seq in rtts or not 0 <= seq < count:
            return
        rtts[seq] = (loop.time() - sent) * 1000
        on_reply(seq, rtts[seq])

    session.set_datagram_receiver(DatagramKind.ECHO_REPLY, replied)
    try:
        for seq in range(count):
            session.send_datagram(_ECHO.pack(DatagramKind.ECHO_REQUEST, seq, loop.time()))
            await asyncio.sleep(interval)
        await asyncio.sleep(min(2.0, max(0.5, 4 * interval)))  # stragglers
    finally:
        session.set_datagram_receiver(DatagramKind.ECHO_REPLY, None)
    ordered = sorted(rtts.values())
    return EchoSummary(
        sent=count,
        received=len(rtts),
        loss=round(1 - len(rtts) / count, 3) if count else 0.0,
        rtt_ms_median=round(ordered[len(ordered) // 2], 3) if ordered else None,
    )
