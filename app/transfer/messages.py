"""The file transfer's control messages: typed, checked, and the protocol written down beside them.

They travel on the session's control stream (`app.session.control`: length-prefixed JSON on stream 0),
each a JSON object with a ``type`` and the transfer's id::

    type         who sends it       fields: what it says
    offer        sender → receiver  transfer (32 hex digits), files [{index, path, size}], total:
                                    may I send you these? (names are relative POSIX paths)
    accept       receiver → sender  transfer, files [{index, offset, prefix}], skipped [{index, reason}],
                                    done [index]: yes: send these from their resume points; these I
                                    cannot take; these I already have (answers ``offer``)
    decline      receiver → sender  transfer, reason: no (answers ``offer``)
    file-result  receiver → sender  transfer, index, ok, reason (when not ok), sha256 (when ok):
                                    file ``index`` arrived whole and verified, or failed (answers its data
                                    stream, or ``file-failed``)
    file-failed  sender → receiver  transfer, index, reason: I could not read that file (its data stream
                                    was reset)
    cancel       either → other     transfer, reason: stop; the receiver deletes what it kept

``prefix`` is the SHA-256 (hex) of the receiver's first ``offset`` bytes of the file: the sender goes on from
``offset`` only if its own first bytes hash the same, otherwise from 0 (the data stream's header says
which, `app.transfer.protocol`). Resuming is an ordinary ``offer`` with the same transfer id on a later
session: a receiver that accepted it before answers from its state on disk, without asking again.

`decode` turns a JSON object into one of the dataclasses below or raises `TransferProtocolError`, nothing
else: field types (`app.session.control.MessageSet`), then the values (transfer id, indices, sizes, resume
points). Reasons are cut to `MAX_REASON` characters, and an empty one reads as the default. File names are
not judged here: an unsafe name refuses that one file (`Offer.safe`), not the message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar

from app.session.control import ControlMessage, MessageSet
from app.transfer.names import UnsafeName, safe_relative_path
from app.transfer.protocol import TransferProtocolError

#: Most files in one offer (a folder of photos is fine; a million-entry offer is a denial of service).
MAX_FILES = 100_000
#: Largest file size accepted in an offer (16 TiB).
MAX_FILE_SIZE = 1 << 44
#: Longest reason kept from the peer, in characters.
MAX_REASON = 500
_TRANSFER_ID = re.compile(r"[0-9a-f]{32}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class OfferedFile:
    """One file of an offer as the sender names it (not yet made safe)."""

    index: int
    path: str
    size: int


@dataclass(frozen=True)
class ResumePoint:
    """Where the receiver wants a file from: ``offset``, with the SHA-256 of the bytes before it."""

    index: int
    offset: int
    prefix: str


@dataclass(frozen=True)
class SkippedFile:
    """A file the receiver will not take, and why."""

    index: int
    reason: str = "skipped"


# -------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Offer(ControlMessage):
    """May I send you these files? (``total`` is informative: the receiver adds the sizes itself.)"""

    TYPE: ClassVar[str] = "offer"
    transfer: str
    files: tuple[OfferedFile, ...]
    total: int | None = None

    def safe(self) -> SafeOffer:
        """The offer with every name made safe (`app.transfer.names`); unsafe ones refused one by one."""
        files: list[SafeFile] = []
        refused: list[tuple[int, str, str]] = []
        for entry in self.files:
            try:
                files.append(SafeFile(entry.index, safe_relative_path(entry.path), entry.size))
            except UnsafeName as exc:
                refused.append((entry.index, entry.path, str(exc)))
        return SafeOffer(self.transfer, tuple(files), tuple(refused))


@dataclass(frozen=True)
class Accept(ControlMessage):
    """Yes: send ``files`` from their resume points; ``skipped`` will not be taken; ``done`` are here."""

    TYPE: ClassVar[str] = "accept"
    transfer: str
    files: tuple[ResumePoint, ...]
    skipped: tuple[SkippedFile, ...] = ()
    done: tuple[int, ...] = ()


@dataclass(frozen=True)
class Decline(ControlMessage):
    """No, with the receiver's reason (a sentence for people)."""

    TYPE: ClassVar[str] = "decline"
    transfer: str
    reason: str = "declined"


@dataclass(frozen=True)
class FileResult(ControlMessage):
    """File ``index`` arrived whole and verified (``sha256``), or failed (``reason``)."""

    TYPE: ClassVar[str] = "file-result"
    transfer: str
    index: int
    ok: bool
    reason: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class FileFailed(ControlMessage):
    """The sender could not read file ``index``; the others go on."""

    TYPE: ClassVar[str] = "file-failed"
    transfer: str
    index: int
    reason: str = "the file could not be read"


@dataclass(frozen=True)
class Cancel(ControlMessage):
    """Stop this transfer for good (either side); the receiver deletes what it kept."""

    TYPE: ClassVar[str] = "cancel"
    transfer: str
    reason: str = "cancelled"


TransferMessage = Offer | Accept | Decline | FileResult | FileFailed | Cancel

#: Every transfer message, by type: what the transfer layer registers for on the session.
TRANSFER_MESSAGES: MessageSet[TransferMessage] = MessageSet(
    (Offer, Accept, Decline, FileResult, FileFailed, Cancel), TransferProtocolError
)


# ------------------------------------------------------------------------------------- the receiver's view


@dataclass(frozen=True)
class SafeFile:
    """One file of an offer that can be received: where it goes (made safe) and how big it is."""

    index: int
    path: PurePosixPath
    size: int


@dataclass(frozen=True)
class SafeOffer:
    """An offer as the receiver can take it: the files with safe names, and those refused for theirs."""

    transfer: str
    files: tuple[SafeFile, ...]
    refused: tuple[tuple[int, str, str], ...]  # (index, name as sent, why)

    @property
    def total(self) -> int:
        """Bytes in the files that can be received."""
        return sum(f.size for f in self.files)


# ------------------------------------------------------------------------------------------------ codec


def encode(message: TransferMessage) -> dict[str, Any]:
    """The JSON object for ``message`` (what `PeerSession.send_message` takes)."""
    return TRANSFER_MESSAGES.encode(message)


def decode(message: Mapping[str, Any]) -> TransferMessage:
    """The typed message for a JSON object from the peer; `TransferProtocolError` if it is not a valid one."""
    decoded = TRANSFER_MESSAGES.decode(message)
    _check_transfer_id(decoded.transfer)
    if isinstance(decoded, Offer):
        return _checked_offer(decoded)
    if isinstance(decoded, Accept):
        return _checked_accept(decoded)
    if isinstance(decoded, Decline):
        return dataclasses.replace(decoded, reason=_reason(decoded.reason, "declined"))
    if isinstance(decoded, FileResult):
        _check_index(decoded.index)
        reason = _reason(decoded.reason, "failed") if not decoded.ok else None
        return dataclasses.replace(decoded, reason=reason)
    if isinstance(decoded, FileFailed):
        _check_index(decoded.index)
        return dataclasses.replace(decoded, reason=_reason(decoded.reason, "the file could not be read"))
    return dataclasses.replace(decoded, reason=_reason(decoded.reason, "cancelled"))


def _checked_offer(offer: Offer) -> Offer:
    if not 0 < len(offer.files) <= MAX_FILES:
        raise TransferProtocolError(f"an offer must list 1 to {MAX_FILES} files")
    seen: set[int] = set()
    for entry in offer.files:
        if entry.index in seen or not 0 <= entry.index < MAX_FILES:
            raise TransferProtocolError("an offered file has a bad or repeated index")
        seen.add(entry.index)
        if not 0 <= entry.size <= MAX_FILE_SIZE:
            raise TransferProtocolError(f"offered file {entry.index} has a bad size")
    return offer


def _checked_accept(accept: Accept) -> Accept:
    for point in accept.files:
        _check_index(point.index)
        if point.offset < 0 or not _HEX_DIGEST.fullmatch(point.prefix):
            raise TransferProtocolError("an accepted file has a bad resume point")
    for entry in accept.skipped:
        _check_index(entry.index)
    for index in accept.done:
        _check_index(index)
    skipped = tuple(SkippedFile(s.index, _reason(s.reason, "skipped")) for s in accept.skipped)
    return dataclasses.replace(accept, skipped=skipped)


def _check_transfer_id(value: str) -> None:
    if not _TRANSFER_ID.fullmatch(value):
        raise TransferProtocolError("a transfer message has a bad transfer id")


def _check_index(value: int) -> None:
    if not 0 <= value < MAX_FILES:
        raise TransferProtocolError("a transfer message has a bad file index")


def _reason(text: str | None, default: str) -> str:
    return (text or default)[:MAX_REASON]
