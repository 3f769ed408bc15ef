"""What the transfer machine asks its adapter to do with files, and what the adapter tells it about disk.

`app.transfer.machine.TransferMachine` never touches a file, a socket or the clock. When a decision needs
the disk, the inbox or the user, it hands out one of the instructions below (``next_instruction``); the
adapter (`app.transfer.endpoint`) does the work and feeds the answer back through the method each
instruction names. An instruction about a transfer that ended meanwhile is still carried out where it
cleans up (`Release`, `Drop`); answers about a transfer the machine no longer knows are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.transfer.events import OfferReceived
from app.transfer.messages import SafeOffer

FileStatus = Literal["partial", "done", "failed"]


@dataclass(frozen=True)
class StoredFile:
    """One file of a transfer accepted earlier, as the inbox keeps it on disk (`app.transfer.inbox`).

    ``offset`` is the verified length of a partial file as read back from disk now, and ``prefix`` the
    SHA-256 (hex) of those bytes: the resume point to offer the sender.
    """

    size: int
    status: FileStatus
    offset: int = 0
    prefix: str = ""
    reason: str | None = None


# --- the sending side -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendFile:
    """Stream file ``index`` from the receiver's resume point (``offset``, with the hash ``prefix`` of the
    bytes before it; from 0 if our own bytes hash otherwise). Answer with `TransferMachine.data_moved` as
    bytes go, then `file_sent`, or `file_unreadable`."""

    transfer: str
    index: int
    offset: int
    prefix: str


@dataclass(frozen=True)
class StopSending:
    """Stop streaming this transfer's file now and abandon (reset) its stream; nothing more is sent."""

    transfer: str


# --- the receiving side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LookUp:
    """An offer arrived: take the transfer over in the inbox (from another session that may still hold
    it) and read what the inbox kept of it: answer `TransferMachine.found` (None: nothing on disk)."""

    transfer: str
    offer: SafeOffer


@dataclass(frozen=True)
class AskUser:
    """Put the offer to the user: answer `TransferMachine.user_accepted` (a folder) or `user_declined`."""

    offer: OfferReceived


@dataclass(frozen=True)
class WithdrawQuestion:
    """The question about this offer is moot (cancelled, or the session ended): stop asking."""

    transfer: str


@dataclass(frozen=True)
class Admit:
    """Let the inbox take the offer: check the folder and the free space for ``needed`` bytes (None: no
    check, nothing is left to receive) and, when ``fresh``, record the offer on disk (into ``folder``, else
    the inbox's own). Answer `TransferMachine.admitted` or `refused` (with the inbox's reason)."""

    transfer: str
    offer: SafeOffer
    folder: Path | None
    fresh: bool
    needed: int | None


@dataclass(frozen=True)
class ForgetStored:
    """What the inbox kept under this transfer id is for other files: delete it (a fresh offer follows)."""

    transfer: str


@dataclass(frozen=True)
class ReceiveFile:
    """Write data stream ``stream`` into file ``index`` from ``offset`` (0: from the start; otherwise the
    resume point agreed in the accept, continuing the hash of the bytes before it). Answer with
    `TransferMachine.data_moved` as bytes arrive, then `file_received`, `file_broken` or `stream_ended`."""

    transfer: str
    index: int
    offset: int
    stream: int


@dataclass(frozen=True)
class FailFile:
    """The sender gave up on file ``index``: delete its partial file and record it as failed (``reason``)."""

    transfer: str
    index: int
    reason: str


@dataclass(frozen=True)
class StopReceiving:
    """Another session took the transfer over: stop writing, make the offsets durable, let it go."""

    transfer: str


@dataclass(frozen=True)
class FinishIncoming:
    """Every file is done or failed: keep only the transfer's record on disk, and let it go in the inbox."""

    transfer: str


@dataclass(frozen=True)
class Release:
    """The transfer ends here unfinished (declined, or the session ended): let it go in the inbox; what is
    on disk stays for a later offer to resume."""

    transfer: str


@dataclass(frozen=True)
class Drop:
    """Cancelled: stop writing, delete the partial files and the state (finished files stay), let it go."""

    transfer: str


Instruction = (
    SendFile
    | StopSending
    | LookUp
    | AskUser
    | WithdrawQuestion
    | Admit
    | ForgetStored
    | ReceiveFile
    | FailFile
    | StopReceiving
    | FinishIncoming
    | Release
    | Drop
)
