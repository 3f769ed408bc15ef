"""The file transfer protocol's data streams, and its error type.

The control messages (offer, accept, decline, file-result, file-failed, cancel) and what each answers are
written down in `app.transfer.messages`; the decisions they drive are `app.transfer.machine`'s.

Data: one unidirectional stream per file, opened by the sender once the receiver accepted::

    "PLF1" | transfer id (16 bytes) | file index (u32) | offset (u64) | bytes offset..size | SHA-256 (32)

The offset is the receiver's resume point for that file (``accept`` names it, with the SHA-256 of the bytes
before it, ``prefix``), or 0 when the sender's own first bytes hash differently (the partial file was
damaged). The final SHA-256 covers the whole file. The receiver hashes what it writes (continuing the hash
of its verified prefix when resuming) and renames the partial file into place only when the digests match.

Everything here is sans-IO: the header and `IncomingFile`, which tracks one file's bytes and digest.
Reading and writing files is `app.transfer.file_io`'s job.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from app.errors import FinalError

DATA_MAGIC = b"PLF1"
_HEADER = struct.Struct("!4s16sIQ")
HEADER_SIZE = _HEADER.size
DIGEST_SIZE = 32
#: The ``prefix`` of a file received from its first byte: the SHA-256 of no bytes.
EMPTY_PREFIX = hashlib.sha256().hexdigest()


class TransferProtocolError(FinalError):
    """The peer broke the file transfer protocol (a control message or a data stream); the session ends.

    The one error `app.transfer.messages.decode` and `app.transfer.machine.TransferMachine` raise for what
    the peer sent; our own misuse of their API raises ``ValueError`` or ``RuntimeError`` (a bug).
    """


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
