"""The files of a transfer: reading one into a data stream, writing one from a stream, durably.

The sender streams a file from the receiver's resume point once its own first bytes hash as the
receiver's do (otherwise from 0), then the whole file's SHA-256 (`app.transfer.protocol`). The receiver
writes a stream into its partial file and makes the bytes durable (fsync, then the offset in
``state.json``: never the other way round) every `CHECKPOINT` bytes or `CHECKPOINT_SECONDS`, whichever
comes first, and whenever the stream stops early, so that a killed receiver resumes from at most a second
before it died. A file whose digest matches is renamed into place; one that does not is deleted.

Reads and writes run on the event loop thread in chunks of `CHUNK` bytes (page-cache speed); fsyncs and
hashing a resumed prefix run in a worker thread. No decisions are taken here: they are
`app.transfer.machine`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from app.session.peer_session import IncomingStream, PeerSession
from app.transfer.inbox import IncomingTransfer, hash_prefix
from app.transfer.outbox import SourceFile
from app.transfer.protocol import IncomingFile, encode_header

log = logging.getLogger("punchline.transfer")

CHUNK = 256 * 1024
CHECKPOINT = 16 * 1024 * 1024
CHECKPOINT_SECONDS = 1.0
#: Stream reset code: the sender stopped this file (read error, cancel).
STOP_FILE = 1

#: Told as bytes move: (the file's position now, bytes moved since the last call).
Moved = Callable[[int, int], None]


async def send_file(
    session: PeerSession,
    stream: int,
    *,
    transfer: str,
    index: int,
    source: SourceFile,
    resume: tuple[int, str],
    moved: Moved,
) -> None:
    """Stream ``source`` as file ``index`` on ``stream`` from ``resume`` (offset, prefix hash), digest last.

    Raises ``OSError`` when the file cannot be read or changed size under us (the caller resets the stream).
    """
    with source.source.open("rb") as file:
        offset, digest = await asyncio.to_thread(_prefix_digest, file, *resume)
        moved(offset, 0)
        await session.write(stream, encode_header(transfer, index, offset))
        position = offset
        file.seek(offset)
        while position < source.size:
            chunk = file.read(min(CHUNK, source.size - position))
            if not chunk:
                raise OSError("the file became shorter while it was being sent")
            digest.update(chunk)
            await session.write(stream, chunk)
            position += len(chunk)
            moved(position, len(chunk))
        if file.read(1):
            raise OSError("the file grew while it was being sent")
        await session.write(stream, digest.digest(), end=True)


async def receive_file(
    state: IncomingTransfer,
    index: int,
    incoming: IncomingFile,
    stream: IncomingStream,
    *,
    first: bytes,
    moved: Moved,
    dropped: Callable[[], bool],
) -> bool:
    """Write ``stream`` (``first`` already read) into file ``index``'s partial file from ``incoming``'s
    position; True once every byte and the digest arrived (flushed to disk), False if the stream ended
    early. Whatever ends it, the bytes so far are made durable and recorded, unless ``dropped()``.

    Raises what the stream raises (`StreamAborted`...) and `TransferProtocolError` for a stream longer
    than its file.
    """
    loop = asyncio.get_running_loop()
    path = state.partial_path(index)
    state.directory.mkdir(parents=True, exist_ok=True)
    with path.open("r+b" if path.exists() else "wb") as file:
        file.truncate(incoming.position)
        file.seek(incoming.position)
        unsynced = 0
        synced_at = loop.time()
        data = first
        try:
            while True:
                if data:
                    body = incoming.feed(data)
                    file.write(body)
                    unsynced += len(body)
                    moved(incoming.position, len(body))
                    now = loop.time()
                    if unsynced >= CHECKPOINT or now - synced_at >= CHECKPOINT_SECONDS:
                        await _checkpoint(state, index, file, incoming.position)
                        unsynced, synced_at = 0, loop.time()
                if incoming.complete:
                    break
                data = await stream.read()
                if not data:
                    break
        finally:
            if not incoming.complete and not dropped():
                # No await here: this runs while the task is being cancelled (session over).
                _record_offset(state, index, file, incoming.position)
        if not incoming.complete:
            return False
        file.flush()
        await asyncio.to_thread(os.fsync, file.fileno())
    return True


def keep_verified(state: IncomingTransfer, index: int, incoming: IncomingFile) -> Path | str:
    """A complete file: renamed into place if its digest matched (where it is now), else deleted; either
    way recorded in ``state.json``. A str is the reason it could not be kept."""
    item = state.files[index]
    if incoming.verified():
        target = state.final_path(index)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.resolve().is_relative_to(state.folder.resolve()):
                raise OSError(f"{target} would be outside the download folder")
            os.rename(state.partial_path(index), target)  # unique_path: never an existing file
        except OSError as exc:
            reason = f"cannot save {item.path}: {exc.strerror or exc}"
        else:
            item.status, item.saved_as, item.verified = "done", str(target), item.size
            state.save()
            return target
    else:
        state.partial_path(index).unlink(missing_ok=True)
        item.verified = 0
        reason = "content hash mismatch: the file was damaged on the way or on disk"
    record_failure(state, index, reason)
    return reason


def record_failure(state: IncomingTransfer, index: int, reason: str, *, discard: bool = False) -> None:
    """File ``index`` failed for ``reason``: recorded in ``state.json`` (its partial file deleted first
    with ``discard``), so that a re-offer skips it."""
    if discard:
        state.partial_path(index).unlink(missing_ok=True)
    item = state.files[index]
    item.status, item.reason = "failed", reason
    state.save()


def resume_points(state: IncomingTransfer) -> dict[int, tuple[int, Any]]:
    """For each partial file: its verified offset as read back from disk, and a running SHA-256 of the
    bytes before it (blocking: run it in a worker thread)."""
    return {
        index: state.resume_point(index) for index, item in state.files.items() if item.status == "partial"
    }


async def _checkpoint(state: IncomingTransfer, index: int, file: IO[bytes], position: int) -> None:
    """`_record_offset` with the fsync in a worker thread."""
    file.flush()
    await asyncio.to_thread(os.fsync, file.fileno())
    state.files[index].verified = position
    state.save()


def _record_offset(state: IncomingTransfer, index: int, file: IO[bytes], position: int) -> None:
    """Make the bytes so far durable, then record the offset (never the other way round)."""
    file.flush()
    os.fsync(file.fileno())
    state.files[index].verified = position
    state.save()


def _prefix_digest(file: IO[bytes], offset: int, expected: str) -> tuple[int, Any]:
    """Hash our first ``offset`` bytes: (offset, hash) if they match the receiver's, else (0, empty hash)."""
    hashed, digest = hash_prefix(file, offset)
    if hashed == offset and digest.hexdigest() == expected:
        return offset, digest
    if offset:
        log.info("resume point does not match our file: sending it again from the start")
    return 0, hashlib.sha256()
