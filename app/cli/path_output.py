"""Echo datagrams over a peer session, and path events as output lines: what ``connect`` and ``listen`` print.

An echo request is ``0x7E`` + sequence (8 bytes) + send time (8 bytes, float); the reply is the same bytes
with ``0x7F`` first. Both first bytes sit outside STUN (0-3) and ChannelData (64-79), RFC 7983.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from app.nat.connect import Connection
from app.nat.path_events import (
    PathChanged,
    PathEvent,
    PathInfo,
    PathLost,
    PathRecovered,
    PathSelected,
    PathStats,
)
from app.session.peer_session import PeerSession

ECHO_REQUEST, ECHO_REPLY = 0x7E, 0x7F
_ECHO = struct.Struct("!BQd")

Emit = Callable[..., None]  # Output.emit(event, text, **fields)


def path_fields(path: PathInfo) -> dict[str, Any]:
    """A path as JSON fields."""
    return {
        "kind": path.kind,
        "via": path.via,
        "local": f"{path.local_address[0]}:{path.local_address[1]}",
        "remote": f"{path.remote_address[0]}:{path.remote_address[1]}",
        "relayed_by": path.relayed_by,
        "relay_transport": path.relay_transport,
        "reason": path.reason_if_relayed,
    }


def describe_path(path: PathInfo) -> str:
    """A path in words: "direct 203.0.113.11:40000 -> 203.0.113.12:40001", with the reason when relayed."""
    fields = path_fields(path)
    text = f"{path.kind} {fields['local']} -> {fields['remote']}"
    if path.kind == "relayed":
        text += f" (relay: {path.relayed_by}; {path.reason_if_relayed or 'no reason given'})"
    return text


def emit_path_event(peer: str, event: PathEvent, emit: Emit) -> None:
    """Print one path event (stats included) as a line."""
    if isinstance(event, PathSelected):
        emit(
            "path", f"connected to {peer}: {describe_path(event.path)}", peer=peer, **path_fields(event.path)
        )
    elif isinstance(event, PathChanged):
        emit(
            "path_changed",
            f"path to {peer} changed ({event.reason}): {describe_path(event.path)}",
            peer=peer,
            why=event.reason,
            previous=path_fields(event.previous),
            **path_fields(event.path),
        )
    elif isinstance(event, PathStats):
        emit(
            "stats",
            f"{event.path.kind} path to {peer}: rtt {event.rtt_ms:.1f} ms, loss {event.loss:.0%}",
            peer=peer,
            kind=event.path.kind,
            rtt_ms=round(event.rtt_ms, 2),
            loss=round(event.loss, 3),
        )
    elif isinstance(event, PathLost):
        emit("path_lost", f"lost every path to {peer}: {event.reason}", peer=peer, reason=event.reason)
    elif isinstance(event, PathRecovered):
        emit(
            "path", f"path to {peer} back: {describe_path(event.path)}", peer=peer, **path_fields(event.path)
        )


async def print_path_events(
    connection: Connection, emit: Emit, forward: Callable[[PathEvent], None] | None = None
) -> None:
    """Print the connection's path events until cancelled (and hand each to ``forward``: a call)."""
    while True:
        event = await connection.link.next_event()
        emit_path_event(connection.peer, event, emit)
        if forward is not None:
            forward(event)


async def echo_client(session: PeerSession, emit: Emit, *, count: int, interval: float) -> dict[str, Any]:
    """Send ``count`` echo requests ``interval`` apart, print each reply's round trip, return a summary.

    The echoes are QUIC DATAGRAM frames, the way audio will travel: encrypted, and never retransmitted.
    """
    loop = asyncio.get_running_loop()
    connection = session.connection
    rtts: dict[int, float] = {}

    async def replies() -> None:
        while True:
            data = await session.receive_datagram()
            if len(data) != _ECHO.size or data[0] != ECHO_REPLY:
                continue
            _, seq, sent = _ECHO.unpack(data)
            if seq in rtts:
                continue
            rtts[seq] = (loop.time() - sent) * 1000
            path = connection.link.selected_path
            emit(
                "echo",
                f"echo {seq} from {connection.peer}: {rtts[seq]:.2f} ms"
                + (f" ({path.kind})" if path else ""),
                seq=seq,
                rtt_ms=round(rtts[seq], 3),
                kind=path.kind if path else None,
            )

    reader = asyncio.create_task(replies())
    try:
        for seq in range(count):
            session.send_datagram(_ECHO.pack(ECHO_REQUEST, seq, loop.time()))
            await asyncio.sleep(interval)
        await asyncio.sleep(min(2.0, max(0.5, 4 * interval)))  # stragglers
    finally:
        reader.cancel()
    ordered = sorted(rtts.values())
    summary = {
        "sent": count,
        "received": len(rtts),
        "loss": round(1 - len(rtts) / count, 3) if count else 0.0,
        "rtt_ms_median": round(ordered[len(ordered) // 2], 3) if ordered else None,
    }
    emit(
        "summary",
        f"{len(rtts)}/{count} echoes answered"
        + (f", median round trip {summary['rtt_ms_median']} ms" if ordered else ""),
        peer=connection.peer,
        **summary,
    )
    return summary


async def echo_server(session: PeerSession) -> None:
    """Answer echo requests until the session ends."""
    while True:
        data = await session.receive_datagram()
        if len(data) == _ECHO.size and data[0] == ECHO_REQUEST:
            session.send_datagram(bytes((ECHO_REPLY,)) + data[1:])
