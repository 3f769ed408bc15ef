"""Folders to send and the one way to compare what arrived: a digest of every file in a tree."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (its path relative to ``folder``, with ``/``) and its SHA-256 in hex."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_folder(root: Path, big_bytes: int = 2 * 1024 * 1024) -> Path:
    """``root/holiday``: a random video of ``big_bytes``, a small text, a random picture, an empty file."""
    folder = root / "holiday"
    (folder / "day 1").mkdir(parents=True)
    (folder / "day 1" / "video.mp4").write_bytes(os.urandom(big_bytes))
    (folder / "day 1" / "notes.txt").write_text("we went swimming\n")
    (folder / "map.png").write_bytes(os.urandom(70_000))
    (folder / "empty").write_bytes(b"")
    return folder
