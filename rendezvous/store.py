"""Durable server state in SQLite (WAL mode): accounts, session tokens, devices and contact edges.

Contact relations are directed edges ``src → dst`` of one kind each:

* ``requested`` — src asked dst to be a contact and dst has not answered;
* ``contact``   — one half of a mutual contact (a mutual pair is always stored as both edges);
* ``blocked``   — src blocked dst.

Every statement is short and indexed, so the store is called directly from the event loop; only password
hashing (not here) goes to a thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EdgeKind = Literal["requested", "contact", "blocked"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    digest     TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    device_id  TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens(username);
CREATE TABLE IF NOT EXISTS devices (
    username     TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    identity_key TEXT NOT NULL,
    last_seen    REAL NOT NULL,
    PRIMARY KEY (username, device_id)
);
CREATE TABLE IF NOT EXISTS edges (
    src        TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    dst        TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('requested', 'contact', 'blocked')),
    created_at REAL NOT NULL,
    PRIMARY KEY (src, dst)
);
CREATE INDEX IF NOT EXISTS edges_by_dst ON edges(dst);
"""

DATABASE_NAME = "rendezvous.sqlite3"


class UsernameTaken(Exception):
    """`Store.create_user` was asked for a name that exists."""


@dataclass(frozen=True)
class TokenOwner:
    """Whose session a token is."""

    username: str
    device_id: str


class Store:
    """The server's SQLite database. ``path=None`` keeps it in memory (for tests of a single process)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:", isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA foreign_keys = ON")
        if path is not None:
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives an application crash; a power cut may lose the last ones.
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA busy_timeout = 5000")
        # executescript() would commit on its own; run the statements inside one transaction instead.
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Checkpoint the WAL and close the file."""
        if self.path is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------------------------------ accounts

    def create_user(self, username: str, password_hash: str) -> None:
        """Add an account; raise `UsernameTaken` if the name exists."""
        try:
            self._db.execute(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                (username, password_hash, time.time()),
            )
        except sqlite3.IntegrityError as exc:
            raise UsernameTaken(username) from exc

    def user_exists(self, username: str) -> bool:
        """Whether an account of that name exists."""
        row = self._db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
        return row is not None

    def password_hash(self, username: str) -> str | None:
        """The stored argon2 hash of an account, or None if there is no such account."""
        row = self._db.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()
        return str(row[0]) if row else None

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace an account's password hash."""
        self._db.execute("UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username))

    # ------------------------------------------------------------------------------------------ tokens

    def add_token(self, digest: str, username: str, device_id: str) -> None:
        """Remember a session token (by its digest) for one device of an account."""
        now = time.time()
        self._db.execute(
            "INSERT OR REPLACE INTO tokens (digest, username, device_id, created_at, last_used)"
            " VALUES (?, ?, ?, ?, ?)",
            (digest, username, device_id, now, now),
        )

    def use_token(self, digest: str, max_age_days: float) -> TokenOwner | None:
        """Who holds this token, or None if unknown or unused for longer than ``max_age_days``."""
        now = time.time()
        row = self._db.execute(
            "SELECT username, device_id, last_used FROM tokens WHERE digest = ?", (digest,)
        ).fetchone()
        if row is None:
            return None
        if now - float(row[2]) > max_age_days * 86400:
            self.delete_token(digest)
            return None
        self._db.execute("UPDATE tokens SET last_used = ? WHERE digest = ?", (now, digest))
        return TokenOwner(str(row[0]), str(row[1]))

    def delete_token(self, digest: str) -> None:
        """Revoke one token."""
        self._db.execute("DELETE FROM tokens WHERE digest = ?", (digest,))

    def delete_tokens_except(self, username: str, keep_digest: str | None) -> None:
        """Revoke every token of an account but ``keep_digest``."""
        self._db.execute("DELETE FROM tokens WHERE username = ? AND digest IS NOT ?", (username, keep_digest))

    # ------------------------------------------------------------------------------------------ devices

    def register_device(self, username: str, device_id: str, identity_key: str) -> None:
        """Record (or update) the identity key a device of ``username`` signed in with."""
        self._db.execute(
            "INSERT INTO devices (username, device_id, identity_key, last_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (username, device_id)"
            " DO UPDATE SET identity_key = excluded.identity_key, last_seen = excluded.last_seen",
            (username, device_id, identity_key, time.time()),
        )

    # ------------------------------------------------------------------------------------------ contacts

    def edge(self, src: str, dst: str) -> EdgeKind | None:
        """The kind of the edge ``src → dst``, if any."""
        row = self._db.execute("SELECT kind FROM edges WHERE src = ? AND dst = ?", (src, dst)).fetchone()
        return row[0] if row else None  # an EdgeKind: the CHECK constraint keeps it one

    def set_edges(self, *edges: tuple[str, str, EdgeKind]) -> None:
        """Create or replace edges, all in one transaction."""
        now = time.time()
        with self._transaction():
            for src, dst, kind in edges:
                self._db.execute(
                    "INSERT OR REPLACE INTO edges (src, dst, kind, created_at) VALUES (?, ?, ?, ?)",
                    (src, dst, kind, now),
                )

    def delete_edges(self, *pairs: tuple[str, str]) -> None:
        """Delete the edges ``src → dst`` named, all in one transaction."""
        with self._transaction():
            for src, dst in pairs:
                self._db.execute("DELETE FROM edges WHERE src = ? AND dst = ?", (src, dst))

    def edges_from(self, username: str) -> list[tuple[str, EdgeKind]]:
        """Every edge leaving ``username``: (other user, kind)."""
        rows = self._db.execute("SELECT dst, kind FROM edges WHERE src = ?", (username,)).fetchall()
        return [(str(dst), kind) for dst, kind in rows]

    def edges_to(self, username: str) -> list[tuple[str, EdgeKind]]:
        """Every edge arriving at ``username``: (other user, kind)."""
        rows = self._db.execute("SELECT src, kind FROM edges WHERE dst = ?", (username,)).fetchall()
        return [(str(src), kind) for src, kind in rows]

    def mutual_contacts(self, username: str) -> list[str]:
        """Usernames that are mutual contacts of ``username``."""
        rows = self._db.execute(
            "SELECT dst FROM edges WHERE src = ? AND kind = 'contact'", (username,)
        ).fetchall()
        return [str(row[0]) for row in rows]
