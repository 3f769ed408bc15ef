"""Signing in from the command line: who you are, the password or saved token, keys and TLS.

Passwords come from ``--password-file`` or ``PUNCHLINE_PASSWORD`` (or a prompt on a terminal), never from
the command line, where other users could read them. After a sign-in the session token is saved (owner-only)
so that later commands need no password.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import platformdirs

from app.account.identity import DeviceIdentity, IdentityError, load_or_create_identity
from app.account.saved_sessions import SavedSessions
from app.account.signing_in import AccountError, sign_in
from app.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from app.signalling.client import ClientOptions, Credentials, NotConnected, ServerError, SignallingClient


@contextlib.asynccontextmanager
async def signed_in(
    args: argparse.Namespace, *, force_password: bool = False
) -> AsyncIterator[SignallingClient]:
    """Sign in (saved token first, else the password), save the new token, and close at the end."""
    user = require_user(args)
    sessions = saved_sessions(args)
    token = None if force_password else sessions.token(args.server, user)
    password = None
    if token is None:
        password = read_password(args)
    try:
        client = await sign_in(
            args.server,
            Credentials(user, password=password, token=token),
            identity(args),
            options=ClientOptions(ssl_context=ssl_context(args)),
        )
    except AccountError as exc:
        if exc.unreachable:
            raise CliError(exc.message, EXIT_UNREACHABLE, "unreachable") from exc
        if token is not None and exc.code == "auth_failed":
            sessions.forget(args.server, user)
            raise CliError(f"{exc.message} (run 'punchline-cli login')", EXIT_REFUSED, exc.code) from exc
        raise CliError(exc.message, EXIT_REFUSED, exc.code) from exc
    if client.token:
        sessions.save(args.server, client.username, client.token)
    try:
        yield client
    except ServerError as exc:
        raise CliError(str(exc), EXIT_REFUSED, exc.code) from exc
    except NotConnected as exc:
        raise CliError(str(exc), EXIT_UNREACHABLE, "unreachable") from exc
    finally:
        await client.close()


def require_user(args: argparse.Namespace) -> str:
    """``--user`` (or PUNCHLINE_USER, or the last user signed in to this server from here)."""
    user: str | None = args.user or saved_sessions(args).last_user(args.server)
    if not user:
        raise CliError("Say who you are with --user NAME (or PUNCHLINE_USER).", EXIT_USAGE)
    return user.strip().lower()


def read_password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    """The password from ``--password-file``, PUNCHLINE_PASSWORD or a prompt on a terminal."""
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"Cannot read the password file: {exc}", EXIT_USAGE) from exc
    from_env = os.environ.get("PUNCHLINE_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Password again: ") != password:
            raise CliError("The two passwords differ.", EXIT_USAGE)
        return password
    raise CliError(
        "No password: use --password-file FILE or set PUNCHLINE_PASSWORD (or 'login' once).", EXIT_USAGE
    )


def config_dir(args: argparse.Namespace) -> Path:
    """Where keys, pins, saved sessions and unfinished transfers are kept."""
    return Path(args.config_dir) if args.config_dir else Path(platformdirs.user_config_dir("punchline"))


def identity(args: argparse.Namespace) -> DeviceIdentity:
    """This device's identity key (made on first use)."""
    try:
        return load_or_create_identity(config_dir(args))
    except IdentityError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def saved_sessions(args: argparse.Namespace) -> SavedSessions:
    """The session tokens saved by earlier sign-ins."""
    return SavedSessions(config_dir(args))


def ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """TLS for ``wss://`` servers (``--ca-file`` for a private CA)."""
    if not args.server.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=args.ca_file)
