"""Call events and statistics as output lines: what ``call`` and ``listen --answer`` print."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from app.voice.call import CallLink
from app.voice.call_signalling import CallEnded, CallEvent, CallRinging, CallStarted

Emit = Callable[..., None]  # Output.emit(event, text, **fields)


class CallPrinter:
    """Prints a call's ringing, answer and end, and its statistics once a second while it lasts."""

    def __init__(self, emit: Emit, *, stats_every: float = 1.0) -> None:
        self._emit = emit
        self._stats_every = stats_every
        self._stats_tasks: dict[str, asyncio.Task[None]] = {}

    def event(self, link: CallLink, event: CallEvent) -> None:
        """A `CallLink` event handler."""
        peer, role = link.machine.peer, link.machine.role
        common: dict[str, Any] = {"call": event.call, "peer": peer}
        if isinstance(event, CallRinging):
            text = f"Ringing {peer}..." if role == "caller" else f"{peer} is calling."
            self._emit("ringing", text, direction="out" if role == "caller" else "in", **common)
        elif isinstance(event, CallStarted):
            self._emit("answered", f"In a call with {peer}.", **common)
            self._stats_tasks[event.call] = asyncio.create_task(self._stats(link))
        elif isinstance(event, CallEnded):
            task = self._stats_tasks.pop(event.call, None)
            if task is not None:
                task.cancel()
            if link.media is not None:
                media = link.media
                final = media.stats()
                recovered = final.fec_recovered + final.copies_used
                self._emit(
                    "media_times",
                    f"Call totals: {final.concealed} frame(s) concealed, {recovered} recovered, "
                    f"quality {final.quality:.1f}.",
                    call=event.call,
                    first_capture_at=media.first_capture_at,
                    first_playout_at=media.first_playout_at,
                    final=asdict(final),
                )
            self._emit(
                "call_ended", event.text, reason=event.reason, by=event.by, message=event.text, **common
            )

    async def _stats(self, link: CallLink) -> None:
        while True:
            await asyncio.sleep(self._stats_every)
            if link.media is None:
                continue
            stats = link.media.stats()
            rtt = f"{stats.rtt_ms:.0f} ms" if stats.rtt_ms is not None else "?"
            text = (
                f"rtt {rtt}, loss in {100 * stats.loss_in:.1f} % / out {100 * stats.loss_out:.1f} %, "
                f"buffer {stats.buffer_ms:.0f} ms, concealed {stats.concealed}, "
                f"{stats.bitrate / 1000:.0f} kbit/s, quality {stats.quality:.1f}"
                + (" (muted)" if stats.muted else "")
            )
            self._emit("call_stats", text, call=link.call, **asdict(stats))
