"""The file transfer protocol on a peer session: control messages, data streams, and per-file state.

Control messages (`app.session.control`, on the session's control stream)::

    offer        sender → receiver  transfer (32 hex digits), files [{index, path, size}], total
    accept       receiver → sender  transfer, files [{index, offset, prefix}], skipped [{index, reason}],
                                    done [index]: what to send, from where, and what needs nothing more
    decline      receiver → sender  transfer, reason
    file-result  receiver → sender  transfer, index, ok, reason (when not ok), sha256 (when ok)
    file-failed  sender → receiver  transfer, index, reason: the sender could not read that file
    cancel       either             transfer, reason: stop; the receiver deletes what it kept

Resuming is an ordinary offer with the same transfer id: the receiver finds its state on disk and answers
with the offset it has verified for each file and the SHA-256 of those bytes (``prefix``). The sender
checks the prefix against its own file and goes on from the offset, or from 0 if they differ (the partial
file was damaged); it says which in the data stream's header.

Data: one unidirectional stream per file::

    "PLF1" | transfer id (16 bytes) | file index (u32) | offset (u64) | bytes offset..size | SHA-256 (32)

The final SHA-256 covers the whole file. The receiver hashes what it writes (after re-reading its verified
prefix when resuming) and renames the partial file into place only when the digests match.

Everything here is sans-IO: parsing, validation and `IncomingFile`, which tracks one file's bytes and
digest. Reading and writing files is `app.transfer.endpoint`'s job.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeGuard

from app.transfer.names import UnsafeName, safe_relative_path

DATA_MAGIC = b"PLF1"
_HEADER = struct.Struct("!4s16sIQ")
HEADER_SIZE = _HEADER.size
DIGEST_SIZE = 32
#: Most files in one offer (a folder of photos is fine; a million-entry offer is a denial of service).
MAX_FILES = 100_000
#: Largest file size accepted in an offer (16 TiB).
MAX_FILE_SIZE = 1 << 44
_TRANSFER_ID = re.compile(r"[0-9a-f]{32}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class TransferProtocolError(Exception):
    """The peer sent a transfer message or data stream that breaks the protocol."""


@dataclass(frozen=True)
class OfferedFile:
    """One file in an offer: where it goes (already made safe) and how big it is."""

    index: int
    path: PurePosixPath
    size: int


@dataclass(frozen=True)
class Offer:
    """A validated offer: the files that can be received, and those refused for their names."""

    transfer: str
    files: tuple[OfferedFile, ...]
    refused: tuple[tuple[int, str, str], ...]  # (index, name as sent, why)

    @property
    def total(self) -> int:
        """Bytes in the files that can be received."""
        return sum(f.size for f in self.files)


def offer_message(transfer: str, files: list[tuple[str, int]]) -> dict[str, Any]:
    """The ``offer`` for ``files`` (relative POSIX path, size), indexed in order."""
    return {
        "type": "offer",
        "transfer": transfer,
        "files": [{"index": i, "path": path, "size": size} for i, (path, size) in enumerate(files)],
        "total": sum(size for _, size in files),
    }


def parse_offer(message: dict[str, Any]) -> Offer:
    """Validate an ``offer``; names are made safe here, and unsafe ones are refused one by one."""
    transfer = transfer_id(message)
    entries = message.get("files")
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_FILES:
        raise TransferProtocolError(f"an offer must list 1 to {MAX_FILES} files")
    files: list[OfferedFile] = []
    refused: list[tuple[int, str, str]] = []
    seen: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise TransferProtocolError("an offered file is not an object")
        index, name, size = entry.get("index"), entry.get("path"), entry.get("size")
        if not _is_int(index) or index in seen or not 0 <= index < MAX_FILES:
            raise TransferProtocolError("an offered file has a bad or repeated index")
        seen.add(index)
        if not _is_int(size) or not 0 <= size <= MAX_FILE_SIZE:
            raise TransferProtocolError(f"offered file {index} has a bad size")
        if not isinstance(name, str):
            raise TransferProtocolError(f"offered file {index} has no name")
        try:
            files.append(OfferedFile(index, safe_relative_path(name), size))
        except UnsafeName as exc:
            refused.append((index, name, str(exc)))
    return Offer(transfer, tuple(files), tuple(refused))


def transfer_id(message: dict[str, Any]) -> str:
    """The message's transfer id, checked."""
    value = message.get("transfer")
    if not isinstance(value, str) or not _TRANSFER_ID.fullmatch(value):
        raise TransferProtocolError("a transfer message has a bad transfer id")
    return value


def file_index(message: dict[str, Any]) -> int:
    """The message's file index, checked."""
    value = message.get("index")
    if not _is_int(value) or not 0 <= value < MAX_FILES:
        raise TransferProtocolError("a transfer message has a bad file index")
    return value


@dataclass(frozen=True)
class ResumePoint:
    """Where the receiver wants a file from: ``offset``, with the SHA-256 of the bytes before it."""

    index: int
    offset: int
    prefix: str


def parse_accept(message: dict[str, Any]) -> tuple[list[ResumePoint], dict[int, str], set[int]]:
    """An ``accept``: files to send (with resume points), files skipped (with reasons), files already done."""
    transfer_id(message)
    wanted, skipped, done = message.get("files"), message.get("skipped", []), message.get("done", [])
    if not isinstance(wanted, list) or not isinstance(skipped, list) or not isinstance(done, list):
        raise TransferProtocolError("an accept has bad file lists")
    points: list[ResumePoint] = []
    for entry in wanted:
        if not isinstance(entry, dict):
            raise TransferProtocolError("an accepted file is not an object")
        offset, prefix = entry.get("offset"), entry.get("prefix")
        if (
            not _is_int(offset)
            or offset < 0
            or not isinstance(prefix, str)
            or not _HEX_DIGEST.fullmatch(prefix)
        ):
            raise TransferProtocolError("an accepted file has a bad resume point")
        points.append(ResumePoint(file_index(entry), offset, prefix))
    reasons = {}
    for entry in skipped:
        if not isinstance(entry, dict):
            raise TransferProtocolError("a skipped file is not an object")
        reasons[file_index(entry)] = str(entry.get("reason", "skipped"))[:500]
    finished = {file_index({"index": i}) for i in done}
    return points, reasons, finished


def encode_header(transfer: str, index: int, offset: int) -> bytes:
    """A data stream's header."""
    return _HEADER.pack(DATA_MAGIC, bytes.fromhex(transfer), index, offset)


def decode_header(data: bytes) -> tuple[str, int, int]:
    """(transfer id, file index, offset) from a data stream's first `HEADER_SIZE` bytes."""
    if len(data) < HEADER_SIZE:
        raise TransferProtocolError("a data stream ended inside its header")
    magic, transfer, index, offset = _HEADER.unpack_from(data)
    if magic != DATA_MAGIC:
        raise TransferProtocolError("a data stream does not start with the file header")
    return transfer.hex(), index, offset


class IncomingFile:
    """One file's bytes as they arrive: what to write where, and the whole-file digest check.

    Start it at the verified ``offset`` with a hash of the bytes before it; `feed` splits stream data into
    file bytes (to write at `position`) and the sender's trailing digest; `verified` compares digests.
    """

    def __init__(self, size: int, offset: int, prefix_hash: Any) -> None:
        if not 0 <= offset <= size:
            raise ValueError("offset outside the file")
        self.size = size
        self.position = offset
        self._hash = prefix_hash
        self._trailer = bytearray()

    @classmethod
    def fresh(cls, size: int) -> IncomingFile:
        """A file received from its first byte."""
        return cls(size, 0, hashlib.sha256())

    def feed(self, data: bytes) -> bytes:
        """The file bytes in ``data``, to be written where `position` was before this call.

        Bytes past the end of the file are the sender's digest (kept for `verified`).
        """
        room = self.size - self.position
        body = data[:room]
        self._hash.update(body)
        self.position += len(body)
        rest = data[len(body) :]
        if len(self._trailer) + len(rest) > DIGEST_SIZE:
            raise TransferProtocolError("a data stream is longer than its file")
        self._trailer += rest
        return body

    @property
    def complete(self) -> bool:
        """Every byte and the digest have arrived."""
        return self.position == self.size and len(self._trailer) == DIGEST_SIZE

    @property
    def digest(self) -> str:
        """SHA-256 of what was received, in hex."""
        return str(self._hash.hexdigest())

    def verified(self) -> bool:
        """True if the bytes received hash to the digest the sender computed (call once `complete`)."""
        return self.complete and self._hash.digest() == bytes(self._trailer)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
