"""The sending side: which files a command or a drop names, and the transfer id that lets them resume.

Dropping a folder sends every regular file under it, named by its path relative to the folder's parent
("photos/2024/a.jpg"); symbolic links and special files are skipped (following them could send files the
user never chose). The transfer id is remembered in the config directory under a key made of the peer
and the exact files (path, size, modification time): sending the same files to the same contact again,
after a crash or a restart, resumes the unfinished transfer instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from app.account.identity import write_private_file
from app.errors import FinalError


class NothingToSend(FinalError):
    """The paths named contain no regular file (or do not exist); the message says which."""


@dataclass(frozen=True)
class SourceFile:
    """A file to send: where it is here, the name the peer sees, and its size and mtime when listed."""

    source: Path
    name: str  # relative, "/"-separated
    size: int
    mtime_ns: int


def collect_files(paths: list[Path]) -> list[SourceFile]:
    """Every regular file in ``paths`` (folders walked in name order), named relative to its parent."""
    found: list[SourceFile] = []
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise NothingToSend(f"no such file or folder: {', '.join(missing)}")
    for given in paths:
        path = given.absolute()
        if path.is_file() and not path.is_symlink():
            found.append(_source(path, path.name))
        elif path.is_dir() and not path.is_symlink():
            for root, folders, names in os.walk(path):
                folders.sort()
                for name in sorted(names):
                    file = Path(root) / name
                    if file.is_file() and not file.is_symlink():
                        found.append(_source(file, file.relative_to(path.parent).as_posix()))
    if not found:
        raise NothingToSend("the paths given contain no regular files")
    return found


def _source(path: Path, name: str) -> SourceFile:
    info = path.stat()
    return SourceFile(path, name, info.st_size, info.st_mtime_ns)


class OutgoingTransfers:
    """Transfer ids of unfinished sends, kept in ``directory``/outgoing.json (owner-only)."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / "outgoing.json"

    def transfer_id(self, peer: str, files: list[SourceFile]) -> tuple[str, bool]:
        """The id for sending ``files`` to ``peer``, and whether it resumes an unfinished transfer."""
        key = self._key(peer, files)
        known = self._load()
        if key in known:
            return known[key], True
        transfer = secrets.token_hex(16)
        known[key] = transfer
        self._store(known)
        return transfer, False

    def finished(self, peer: str, files: list[SourceFile]) -> None:
        """Forget the transfer: it completed (or was declined or cancelled)."""
        known = self._load()
        if known.pop(self._key(peer, files), None) is not None:
            self._store(known)

    @staticmethod
    def _key(peer: str, files: list[SourceFile]) -> str:
        listing = [peer] + [f"{f.source}\0{f.name}\0{f.size}\0{f.mtime_ns}" for f in files]
        return hashlib.sha256("\n".join(listing).encode("utf-8", "surrogateescape")).hexdigest()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _store(self, known: dict[str, str]) -> None:
        write_private_file(self._path, json.dumps(known, indent=1).encode("utf-8"))
