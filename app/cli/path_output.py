"""Path events as output lines: ``path``, ``path_changed``, ``stats``, ``path_lost``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.nat.path_events import (
    PathChanged,
    PathEvent,
    PathInfo,
    PathLost,
    PathRecovered,
    PathSelected,
    PathStats,
)

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
