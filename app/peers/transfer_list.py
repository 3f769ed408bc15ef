"""The transfers panel's contents without Qt: a record per transfer, kept current from events, and history.

Each record says what the user sees: who, which files, how far, how fast, what state in words, and which
buttons make sense (cancel, resume, show in folder). Every transfer is written to ``transfers.json`` (the
newest `HISTORY_LIMIT`) when it is queued, accepted and when it stops, so that after a restart, a crash
included, the panel still shows it on both sides: one that was under way then reads "interrupted", and an
interrupted send can be resumed from there.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from app.peers import events as pe
from app.transfer import events as tev
from app.transfer.progress import human_duration, human_size

State = Literal[
    "waiting", "asking", "moving", "retrying", "done", "failed", "declined", "cancelled", "interrupted"
]
HISTORY_LIMIT = 200
_ACTIVE = ("waiting", "asking", "moving", "retrying")


@dataclass
class TransferRecord:
    """One transfer as the panel shows it."""

    transfer: str
    peer: str
    direction: tev.Direction
    title: str
    files: int
    total: int
    state: State = "waiting"
    detail: str = ""
    done: int = 0
    rate: float = 0.0
    eta: float | None = None
    failed_files: int = 0
    #: Where received files are (what "Show in folder" opens); for a send, the first source's folder.
    folder: str | None = None
    #: What the user sent (paths), so that "Resume" can offer the same files again.
    sources: list[str] = field(default_factory=list)
    updated: float = 0.0

    @property
    def active(self) -> bool:
        """Still going (or waiting to): it can be cancelled."""
        return self.state in _ACTIVE

    @property
    def can_resume(self) -> bool:
        """A send that stopped before the end: sending the same files again resumes it."""
        return self.direction == "send" and bool(self.sources) and self.state in ("interrupted", "failed")

    @property
    def fraction(self) -> float:
        """How much has arrived, 0 to 1."""
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)

    @property
    def heading(self) -> str:
        """ "To bob: photos (1.2 MB)" / "From bob: notes.txt (3 kB)"."""
        way = "To" if self.direction == "send" else "From"
        return f"{way} {self.peer}: {self.title} ({human_size(self.total)})"


def title_of(files: tuple[tev.FileEntry, ...]) -> str:
    """A transfer's name: its one top-level file or folder, else how many files."""
    tops = {f.path.split("/", 1)[0] for f in files}
    if len(tops) == 1:
        top = next(iter(tops))
        return top if len(files) == 1 else f"{top} ({len(files)} files)"
    return f"{len(files)} files"


class TransferList:
    """Records by transfer id, updated with `apply`; history read from and written to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, TransferRecord] = {}
        self._load()

    def apply(self, event: tev.TransferEvent | pe.HubEvent) -> TransferRecord | None:
        """Update the record ``event`` is about; returns it (None if the event is not about a transfer)."""
        record = self._record_for(event)
        if record is None:
            return None
        finished_before = not record.active
        _update(record, event)
        record.updated = time.time()
        stopped = not record.active and not finished_before
        if stopped or isinstance(event, _SAVED_ON):
            self._save()
        return record

    def _record_for(self, event: tev.TransferEvent | pe.HubEvent) -> TransferRecord | None:
        if isinstance(event, pe.SendQueued):
            record = TransferRecord(
                event.transfer, event.peer, "send", title_of(event.files), len(event.files), event.total
            )
            record.sources = list(event.sources)
            record.folder = str(Path(event.sources[0]).parent) if event.sources else None
            self.records[event.transfer] = record
            return record
        if isinstance(event, tev.OfferReceived):
            record = TransferRecord(
                event.transfer, event.peer, "receive", title_of(event.files), len(event.files), event.total
            )
            self.records[event.transfer] = record
            return record
        transfer = getattr(event, "transfer", None)
        return self.records.get(transfer) if isinstance(transfer, str) else None

    def ordered(self) -> list[TransferRecord]:
        """Active transfers first, then the rest, newest first."""
        return sorted(self.records.values(), key=lambda r: (not r.active, -r.updated))

    def forget_finished(self) -> None:
        """Clear the history (the panel's "Clear finished")."""
        self.records = {k: r for k, r in self.records.items() if r.active}
        self._save()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for item in data["transfers"]:
                record = TransferRecord(**item)
                if record.active:  # the app stopped (or crashed) while it was going
                    _stopped_by_restart(record)
                self.records[record.transfer] = record
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            return  # a damaged history is not worth stopping the app for; it is rewritten on the next save

    def _save(self) -> None:
        kept = sorted(self.records.values(), key=lambda r: -r.updated)
        data = {"version": 1, "transfers": [asdict(r) for r in kept[:HISTORY_LIMIT]]}
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data), encoding="utf-8")
            os.replace(temporary, self.path)


#: Events after which the history is written although the transfer goes on: it then survives a crash.
_SAVED_ON = (pe.SendQueued, tev.TransferAccepted, tev.TransferInterrupted, pe.SendRetrying)


def _stopped_by_restart(record: TransferRecord) -> None:
    """A record that was active when Punchline stopped, as the panel shows it after a restart."""
    record.rate, record.eta = 0.0, None
    if record.direction == "send":
        record.state, record.detail = (
            "interrupted",
            "Interrupted when Punchline closed. Resume sends the rest.",
        )
    elif record.state == "asking":
        record.state, record.detail = "interrupted", "Not answered before Punchline closed."
    else:
        record.state = "interrupted"
        record.detail = f"Interrupted when Punchline closed. It resumes when {record.peer} sends again."


def _update(record: TransferRecord, event: tev.TransferEvent | pe.HubEvent) -> None:
    """The state machine of a record: each event sets the state and the sentence the panel shows."""
    peer = record.peer
    if isinstance(event, pe.SendQueued):
        record.state, record.detail = "waiting", f"Connecting to {peer}…"
        if event.resumed:
            record.detail = f"Connecting to {peer} to resume…"
    elif isinstance(event, tev.OfferMade):
        record.state, record.detail = "asking", f"Waiting for {peer} to accept…"
    elif isinstance(event, tev.OfferReceived):
        record.state, record.detail = "asking", f"{peer} wants to send you this."
    elif isinstance(event, tev.TransferAccepted):
        record.state, record.done = "moving", event.resume_bytes
        record.detail = (
            f"Resuming at {human_size(event.resume_bytes)}…" if event.resume_bytes else "Starting…"
        )
    elif isinstance(event, tev.TransferProgress):
        record.state, record.done, record.rate, record.eta = "moving", event.bytes_done, event.rate, event.eta
        record.detail = f"{human_size(event.rate)}/s, {human_duration(event.eta)} left"
    elif isinstance(event, tev.FileCompleted):
        if event.saved_as is not None and record.folder is None:
            record.folder = str(event.saved_as.parent)
    elif isinstance(event, tev.FileFailed):
        record.failed_files += 1
    elif isinstance(event, tev.TransferFinished):
        record.done = record.total if not event.failed else record.done
        if event.failed and not event.completed:
            record.state, record.detail = "failed", "No file could be transferred."
        elif event.failed:
            record.state = "failed"
            record.detail = f"{event.completed} of {event.completed + event.failed} files arrived."
        else:
            record.state = "done"
            seconds = max(event.seconds, 1e-3)
            record.detail = f"Done in {human_duration(seconds)} ({human_size(event.bytes_sent / seconds)}/s)."
    elif isinstance(event, tev.TransferDeclined):
        record.state, record.detail = "declined", f"Declined: {event.reason}"
    elif isinstance(event, tev.TransferCancelled):
        who = "You" if event.by == "us" else peer
        record.state, record.detail = "cancelled", f"{who} cancelled it."
    elif isinstance(event, tev.TransferInterrupted):
        record.rate, record.eta = 0.0, None
        if record.active:
            record.state = "interrupted"
            then = (
                "Resume sends the rest."
                if record.direction == "send"
                else f"It resumes when {peer} sends again."
            )
            record.detail = f"Interrupted ({event.reason}). {then}"
    elif isinstance(event, pe.SendRetrying):
        record.state, record.rate, record.eta = "retrying", 0.0, None
        record.detail = (
            f"Waiting for {peer} to come online; it goes on by itself."
            if event.offline
            else f"Waiting for {peer}: {event.reason}. Trying again in {event.retry_in:.0f} s…"
        )
    elif isinstance(event, pe.SendGaveUp):
        record.state, record.rate, record.eta = "interrupted", 0.0, None
        record.detail = f"Stopped: {event.reason}. Resume to try again."
