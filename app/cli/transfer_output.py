"""File transfer events as CLI output: JSON lines with ``--json``, sentences and a progress bar without.

JSON events: ``offer``, ``accepted``, ``declined``, ``progress``, ``done`` (one file, with its SHA-256, the
path type and where it was saved), ``file_failed``, ``finished``, ``interrupted``, ``cancelled``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from app.nat.path_events import PathInfo
from app.transfer import events as ev
from app.transfer.progress import human_duration, human_size

Emit = Callable[..., None]  # Output.emit(event, text, **fields)
BAR_WIDTH = 30


class TransferPrinter:
    """Turns transfer events into output; ``path(peer)`` says how we are connected to a peer right now."""

    def __init__(
        self,
        emit: Emit,
        as_json: bool,
        path: Callable[[str], PathInfo | None],
        bar_stream: TextIO = sys.stderr,
    ) -> None:
        self._emit = emit
        self._json = as_json
        self._path = path
        self._bar = bar_stream
        self._bar_shown = False
        self._last_percent = -10

    def __call__(self, event: ev.TransferEvent) -> None:
        """Print one event."""
        if isinstance(event, ev.TransferProgress):
            self._progress(event)
            return
        self._clear_bar()
        path = self._path(event.peer)
        kind = path.kind if path is not None else None
        common: dict[str, Any] = {"transfer": event.transfer, "peer": event.peer}
        if isinstance(event, ev.OfferMade):
            self._emit(
                "offer",
                f"Offering {len(event.files)} file(s), {human_size(event.total)}, to {event.peer}...",
                **common,
                direction="send",
                total=event.total,
                files=[{"path": f.path, "size": f.size} for f in event.files],
            )
        elif isinstance(event, ev.OfferReceived):
            refused = "".join(f"\n  refused {name!r}: {why}" for name, why in event.refused)
            self._emit(
                "offer",
                f"{event.peer} offers {len(event.files)} file(s), {human_size(event.total)}"
                + (" (resuming)" if event.resumed else "")
                + refused,
                **common,
                direction="receive",
                total=event.total,
                resumed=event.resumed,
                files=[{"path": f.path, "size": f.size} for f in event.files],
                refused=[{"path": name, "reason": why} for name, why in event.refused],
            )
        elif isinstance(event, ev.TransferAccepted):
            resumed = f", resuming after {human_size(event.resume_bytes)}" if event.resume_bytes else ""
            self._emit(
                "accepted",
                f"Accepted{resumed}.",
                **common,
                direction=event.direction,
                resume_bytes=event.resume_bytes,
            )
        elif isinstance(event, ev.TransferDeclined):
            self._emit(
                "declined",
                f"Declined: {event.reason}",
                **common,
                direction=event.direction,
                reason=event.reason,
            )
        elif isinstance(event, ev.FileCompleted):
            where = f" → {event.saved_as}" if event.saved_as else ""
            self._emit(
                "done",
                f"✓ {event.path} ({human_size(event.size)}, sha256 {event.sha256[:16]}…, {kind or '?'})"
                + where,
                **common,
                direction=event.direction,
                index=event.index,
                path=event.path,
                size=event.size,
                sha256=event.sha256,
                path_type=kind,
                saved_as=str(event.saved_as) if event.saved_as else None,
            )
        elif isinstance(event, ev.FileFailed):
            self._emit(
                "file_failed",
                f"✗ {event.path}: {event.reason}",
                **common,
                direction=event.direction,
                index=event.index,
                path=event.path,
                reason=event.reason,
            )
        elif isinstance(event, ev.TransferFinished):
            rate = event.bytes_sent / event.seconds if event.seconds > 0 else 0.0
            self._emit(
                "finished",
                f"Finished: {event.completed} file(s) done, {event.failed} failed; "
                f"{human_size(event.bytes_sent)} in {event.seconds:.1f} s"
                f" ({human_size(rate)}/s, {kind or '?'})",
                **common,
                direction=event.direction,
                completed=event.completed,
                failed=event.failed,
                bytes=event.bytes_sent,
                seconds=round(event.seconds, 3),
                rate=round(rate),
                path_type=kind,
            )
        elif isinstance(event, ev.TransferInterrupted):
            self._emit(
                "interrupted",
                f"Interrupted ({event.reason}); it will resume where it stopped.",
                **common,
                direction=event.direction,
                reason=event.reason,
            )
        elif isinstance(event, ev.TransferCancelled):
            who = "We" if event.by == "us" else event.peer
            self._emit(
                "cancelled",
                f"{who} cancelled: {event.reason}",
                **common,
                direction=event.direction,
                by=event.by,
                reason=event.reason,
            )

    def _progress(self, event: ev.TransferProgress) -> None:
        percent = int(100 * event.bytes_done / event.total) if event.total else 100
        if self._json:
            path = self._path(event.peer)
            self._emit(
                "progress",
                "",
                transfer=event.transfer,
                peer=event.peer,
                direction=event.direction,
                index=event.index,
                path=event.path,
                file_bytes=event.file_bytes,
                file_size=event.file_size,
                bytes=event.bytes_done,
                total=event.total,
                rate=round(event.rate),
                eta=round(event.eta, 1) if event.eta is not None else None,
                path_type=path.kind if path else None,
            )
            return
        tty = self._bar.isatty()
        if not tty and percent < self._last_percent + 10:
            return  # in a log file, one line per 10 %
        self._last_percent = percent
        filled = BAR_WIDTH * percent // 100
        line = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}% {human_size(event.bytes_done)}"
            f"/{human_size(event.total)} {human_size(event.rate)}/s"
            f" ETA {human_duration(event.eta)}  {event.path}"
        )
        if tty:
            print(f"\r{line[:150]:<150}", end="", file=self._bar, flush=True)
            self._bar_shown = True
        else:
            print(line, file=self._bar, flush=True)

    def _clear_bar(self) -> None:
        if self._bar_shown:
            print("\r" + " " * 150 + "\r", end="", file=self._bar, flush=True)
            self._bar_shown = False
