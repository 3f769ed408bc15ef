"""What the file transfer layer tells the app and the CLI: small frozen dataclasses, one per happening."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Direction = Literal["send", "receive"]


@dataclass(frozen=True)
class FileEntry:
    """One file of a transfer as the user sees it."""

    index: int
    path: str
    size: int


@dataclass(frozen=True)
class OfferMade:
    """We offered files to ``peer``."""

    transfer: str
    peer: str
    files: tuple[FileEntry, ...]
    total: int


@dataclass(frozen=True)
class OfferReceived:
    """A contact offers files; ``refused`` lists names that could not be made safe (never written)."""

    transfer: str
    peer: str
    files: tuple[FileEntry, ...]
    total: int
    refused: tuple[tuple[str, str], ...]
    resumed: bool


@dataclass(frozen=True)
class TransferAccepted:
    """The receiver accepted; ``resume_bytes`` were already there from an earlier attempt."""

    transfer: str
    peer: str
    direction: Direction
    resume_bytes: int


@dataclass(frozen=True)
class TransferDeclined:
    """The receiver said no, with its reason."""

    transfer: str
    peer: str
    direction: Direction
    reason: str


@dataclass(frozen=True)
class TransferProgress:
    """Bytes moved so far, for one file and the whole transfer, with the recent rate and time left."""

    transfer: str
    peer: str
    direction: Direction
    index: int
    path: str
    file_bytes: int
    file_size: int
    bytes_done: int
    total: int
    rate: float  # bytes per second over the last few seconds
    eta: float | None  # seconds left at that rate; None while unknown


@dataclass(frozen=True)
class FileCompleted:
    """A file arrived whole and verified (``saved_as`` on the receiving side)."""

    transfer: str
    peer: str
    direction: Direction
    index: int
    path: str
    size: int
    sha256: str
    saved_as: Path | None


@dataclass(frozen=True)
class FileFailed:
    """One file could not be transferred; the others go on."""

    transfer: str
    peer: str
    direction: Direction
    index: int
    path: str
    reason: str


@dataclass(frozen=True)
class TransferFinished:
    """Every file is done or failed."""

    transfer: str
    peer: str
    direction: Direction
    completed: int
    failed: int
    bytes_sent: int  # bytes moved this time (not counting resumed ones)
    seconds: float


@dataclass(frozen=True)
class TransferInterrupted:
    """The session ended mid-transfer; the state on disk lets it resume from the verified offsets."""

    transfer: str
    peer: str
    direction: Direction
    reason: str


@dataclass(frozen=True)
class TransferCancelled:
    """Cancelled by ``by`` (us or the peer); the receiver deleted its partial files."""

    transfer: str
    peer: str
    direction: Direction
    by: Literal["us", "peer"]
    reason: str


TransferEvent = (
    OfferMade
    | OfferReceived
    | TransferAccepted
    | TransferDeclined
    | TransferProgress
    | FileCompleted
    | FileFailed
    | TransferFinished
    | TransferInterrupted
    | TransferCancelled
)
