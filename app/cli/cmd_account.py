"""``register``, ``login`` and ``logout``: an account on the rendezvous server, and the saved session."""

from __future__ import annotations

import argparse

from app.account.signing_in import AccountError, register
from app.cli.command import Command
from app.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, CliError, Output
from app.cli.signed_in import read_password, require_user, saved_sessions, signed_in, ssl_context


async def cmd_register(args: argparse.Namespace, out: Output) -> None:
    """Create an account (does not sign in)."""
    user = require_user(args)
    password = read_password(args, confirm=True)
    try:
        await register(args.server, user, password, ssl_context=ssl_context(args))
    except AccountError as exc:
        if exc.code == "unreachable":
            raise CliError(exc.message, EXIT_UNREACHABLE) from exc
        raise CliError(exc.message, EXIT_REFUSED, exc.code) from exc
    out.emit("registered", f"Registered {user} on {args.server}. Sign in with 'login'.", user=user)


async def cmd_login(args: argparse.Namespace, out: Output) -> None:
    """Sign in with the password and save the session token for later commands."""
    async with signed_in(args, force_password=True) as client:
        out.emit("signed_in", f"Signed in as {client.username}.", user=client.username)


async def cmd_logout(args: argparse.Namespace, out: Output) -> None:
    """Revoke the saved session on the server and forget it here."""
    async with signed_in(args) as client:
        await client.sign_out()
    saved_sessions(args).forget(args.server, client.username)
    out.emit("signed_out", f"Signed out {client.username}.", user=client.username)


COMMANDS = [
    Command("register", "create an account", cmd_register),
    Command("login", "sign in with the password and remember the session", cmd_login),
    Command("logout", "sign out and forget the saved session", cmd_logout),
]
