"""The receiving side on disk: the folder files go to, and what unfinished transfers left there.

Files arrive as partial files in a hidden folder inside the download folder (so the final rename never
crosses file systems)::

    DOWNLOADS/.punchline-incoming/<transfer id>/state.json     offer, names chosen, verified offsets
    DOWNLOADS/.punchline-incoming/<transfer id>/<index>.part   the bytes so far

``state.json`` is replaced atomically and records, per file, the offset up to which the partial file has
been flushed to disk (fsync): after a crash, a dropped path or a restart of either side, the transfer
resumes from there. A file is moved to its final name only after its SHA-256 matched the sender's; an
existing file is never overwritten, and each top-level name of an offer is renamed as a whole ("photos
(2)") when the folder already has one.

A transfer has a state folder only once its offer was accepted (`Inbox.create`). That is how a re-offer of
a transfer accepted before (resumed without asking again) is told from one never accepted (asked again):
`app.transfer.machine` decides, from what `Inbox.load` finds.

A finished transfer keeps its ``state.json`` (no partial files) for `FINISHED_RETENTION`: a sender whose
connection dropped just before it heard the last results offers the same transfer again, and is told it is
done instead of sending duplicates ("photos (3)"). Old records are pruned when an `Inbox` opens.

An offer saved elsewhere ("Save as…" in the app) keeps its state in that folder's own state folder, and the
inbox notes where in ``DOWNLOADS/.punchline-incoming/elsewhere.json`` so that a re-offer resumes there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

from app.transfer.messages import SafeOffer
from app.transfer.names import unique_path
from app.transfer.progress import human_size

if TYPE_CHECKING:
    from app.transfer.events import OfferReceived

#: Asks the user about an offer: a folder to save it in, or the reason to decline (a sentence).
AskUser = Callable[["OfferReceived"], Awaitable[Path | str]]

STATE_FOLDER = ".punchline-incoming"
ELSEWHERE = "elsewhere.json"
#: Free space kept on top of the offer, so that accepting never fills the disk to the last byte.
FREE_SPACE_MARGIN = 64 * 1024 * 1024
#: Seconds a finished transfer's record is kept (a sender retries for 10 minutes by default).
FINISHED_RETENTION = 7 * 24 * 3600

FileStatus = Literal["partial", "done", "failed"]


def hash_prefix(file: IO[bytes], length: int) -> tuple[int, Any]:
    """SHA-256 of the first ``length`` bytes from ``file``'s position: (bytes hashed, running hash).

    Fewer bytes than asked are hashed when the file is shorter; the hash goes on with what follows.
    """
    digest = hashlib.sha256()
    remaining = length
    while remaining:
        chunk = file.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        digest.update(chunk)
        remaining -= len(chunk)
    return length - remaining, digest


@dataclass
class IncomingFileState:
    """One file of an accepted offer, as kept in ``state.json``."""

    path: str  # safe relative path from the offer
    size: int
    status: FileStatus = "partial"
    verified: int = 0  # bytes flushed to the partial file
    saved_as: str | None = None
    reason: str | None = None


class IncomingTransfer:
    """An accepted offer's files and their progress, kept in its state folder."""

    def __init__(
        self,
        folder: Path,
        transfer: str,
        peer: str,
        files: dict[int, IncomingFileState],
        roots: dict[str, str],
    ) -> None:
        self.folder = folder
        self.transfer = transfer
        self.peer = peer
        self.files = files
        self.roots = roots

    @property
    def directory(self) -> Path:
        """This transfer's state folder."""
        return self.folder / STATE_FOLDER / self.transfer

    def partial_path(self, index: int) -> Path:
        """Where file ``index``'s bytes are kept until they verify."""
        return self.directory / f"{index}.part"

    def final_path(self, index: int) -> Path:
        """A free name for file ``index`` in the download folder (its top-level name as chosen at accept)."""
        parts = PurePosixPath(self.files[index].path).parts
        relative = PurePosixPath(self.roots.get(parts[0], parts[0]), *parts[1:])
        return unique_path(self.folder, relative)

    @property
    def finished(self) -> bool:
        """No file is still partial."""
        return all(f.status != "partial" for f in self.files.values())

    def resume_point(self, index: int) -> tuple[int, Any]:
        """The verified offset of a partial file and a running SHA-256 of the bytes before it (from disk).

        A partial file shorter than its recorded offset (a crash before the data reached the disk) is
        trusted only as far as it goes; anything past the offset is cut off.
        """
        state = self.files[index]
        path = self.partial_path(index)
        digest = hashlib.sha256()
        try:
            with path.open("r+b") as file:
                offset = min(state.verified, os.fstat(file.fileno()).st_size)
                file.truncate(offset)
                offset, digest = hash_prefix(file, offset)
        except FileNotFoundError:
            offset = 0
        state.verified = offset
        return offset, digest

    def save(self) -> None:
        """Write ``state.json`` atomically."""
        data = {
            "version": 1,
            "transfer": self.transfer,
            "peer": self.peer,
            "roots": self.roots,
            "files": {str(i): vars(f) for i, f in self.files.items()},
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / "state.json.tmp"
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.directory / "state.json")

    def finish(self) -> None:
        """Keep only this finished transfer's record: partial files go, ``state.json`` stays (see above)."""
        self.save()
        for index in self.files:
            with contextlib.suppress(OSError):
                self.partial_path(index).unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the state folder and any partial files (the transfer is over or cancelled)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.folder / STATE_FOLDER).rmdir()  # only if no other transfer is pending


class Inbox:
    """Where accepted files go, and whose offers are accepted without asking.

    ``accept_from`` names the contacts whose offers are accepted automatically (None: every contact).
    Offers from anyone else are declined, or, with ``ask``, put to the user, who may choose another folder.
    """

    def __init__(
        self, folder: Path, accept_from: Collection[str] | None = None, ask: AskUser | None = None
    ) -> None:
        self.folder = folder
        self.accept_from = frozenset(accept_from) if accept_from is not None else None
        self.ask = ask
        self._owners: dict[str, tuple[object, Callable[[str], Awaitable[None]]]] = {}
        self.prune_finished()

    def asks(self, peer: str) -> bool:
        """Whether an offer from ``peer`` is put to the user rather than accepted at once."""
        return self.ask is not None and self.accept_from is not None and peer not in self.accept_from

    def prune_finished(self, now: float | None = None) -> None:
        """Delete the records of transfers that finished more than `FINISHED_RETENTION` seconds ago."""
        now = time.time() if now is None else now
        try:
            folders = list((self.folder / STATE_FOLDER).iterdir())
        except OSError:
            return
        for folder in folders:
            state = folder / "state.json"
            try:
                if now - state.stat().st_mtime < FINISHED_RETENTION:
                    continue
                files = json.loads(state.read_text(encoding="utf-8"))["files"].values()
                if all(f.get("status") != "partial" for f in files):
                    shutil.rmtree(folder, ignore_errors=True)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # leave what we do not understand
        elsewhere = self._elsewhere()
        kept = {t: f for t, f in elsewhere.items() if (Path(f) / STATE_FOLDER / t / "state.json").exists()}
        if kept != elsewhere:
            self._store_elsewhere(kept)
        with contextlib.suppress(OSError):
            (self.folder / STATE_FOLDER).rmdir()  # only if empty

    def _elsewhere(self) -> dict[str, str]:
        """Transfers saved in another folder: transfer id → that folder."""
        try:
            data = json.loads((self.folder / STATE_FOLDER / ELSEWHERE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _store_elsewhere(self, elsewhere: dict[str, str]) -> None:
        path = self.folder / STATE_FOLDER / ELSEWHERE
        if not elsewhere:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(elsewhere), encoding="utf-8")
        temporary.replace(path)

    async def claim(self, transfer: str, owner: object, let_go: Callable[[str], Awaitable[None]]) -> None:
        """Make ``owner`` (a session's endpoint) the one receiving ``transfer``.

        A sender that reconnects may re-offer before our old session has noticed it is dead; that session
        must stop writing and record its offset (``let_go``) before the new one reads the state.
        """
        previous = self._owners.get(transfer)
        self._owners[transfer] = (owner, let_go)
        if previous is not None and previous[0] is not owner:
            await previous[1](transfer)

    def release(self, transfer: str, owner: object) -> None:
        """``owner`` no longer receives ``transfer`` (finished, cancelled, or its session ended)."""
        if self._owners.get(transfer, (None,))[0] is owner:
            del self._owners[transfer]

    def load(self, transfer: str, peer: str) -> IncomingTransfer | None:
        """The transfer ``transfer`` from ``peer`` (unfinished, or finished recently), if it is on disk."""
        folder = Path(self._elsewhere().get(transfer, self.folder))
        path = folder / STATE_FOLDER / transfer / "state.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if data.get("peer") != peer:
                return None  # another contact cannot pick up someone else's transfer
            files = {int(i): IncomingFileState(**f) for i, f in data["files"].items()}
            return IncomingTransfer(folder, transfer, peer, files, dict(data["roots"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # damaged state: start over rather than trust it

    def refusal(
        self, peer: str, offer: SafeOffer, needed: int | None = None, folder: Path | None = None
    ) -> str | None:
        """Why this offer cannot be accepted into ``folder`` (a person-readable reason), or None.

        ``needed`` is the bytes still to come (less than the offer's total when resuming). Offers the user
        was asked about (``folder`` given) are not checked against ``accept_from``.
        """
        needed = offer.total if needed is None else needed
        if folder is None and self.accept_from is not None and peer not in self.accept_from:
            return f"not accepting files from {peer}"
        folder = folder or self.folder
        if not offer.files:
            return "none of the offered file names can be saved safely"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            return f"the download folder cannot be used: {exc.strerror or exc}"
        if needed + FREE_SPACE_MARGIN > free:
            return (
                f"not enough free disk space: the files need {human_size(needed)}, "
                f"the receiving disk has {human_size(free)} free"
            )
        return None

    def create(self, peer: str, offer: SafeOffer, folder: Path | None = None) -> IncomingTransfer:
        """Record a newly accepted offer (into ``folder``, else ours): choose names not taken yet."""
        folder = folder or self.folder
        roots: dict[str, str] = {}
        for item in offer.files:
            top = item.path.parts[0]
            if top not in roots:
                roots[top] = unique_path(folder, PurePosixPath(top)).name
        files = {f.index: IncomingFileState(str(f.path), f.size) for f in offer.files}
        transfer = IncomingTransfer(folder, offer.transfer, peer, files, roots)
        transfer.save()
        if folder != self.folder:
            self._store_elsewhere({**self._elsewhere(), offer.transfer: str(folder)})
        return transfer
