"""``trust``: accept the new identity key a contact presented, after comparing the safety number."""

from __future__ import annotations

import argparse

from app.cli.command import Command, add_name
from app.cli.output import EXIT_USAGE, CliError, Output
from app.cli.signed_in import config_dir, identity
from app.session.trust import TrustStore, safety_number


async def cmd_trust(args: argparse.Namespace, out: Output) -> None:
    """Pin the key NAME presented last (or say the current pin's safety number)."""
    store = TrustStore(config_dir(args))
    ours = identity(args)
    pinned = store.get(args.name)
    if pinned is None:
        raise CliError(f"No key is pinned for {args.name} yet: it will be on your first session.", EXIT_USAGE)
    if pinned.pending is None:
        number = safety_number(ours.public_key_bytes, pinned.key)
        out.emit(
            "trusted",
            f"{args.name}'s key is pinned; safety number {number}.",
            user=args.name,
            safety_number=number,
            changed=False,
        )
        return
    number = safety_number(ours.public_key_bytes, pinned.pending)
    store.accept_pending(args.name)
    out.emit(
        "trusted",
        f"Accepted {args.name}'s new key; safety number {number}.",
        user=args.name,
        safety_number=number,
        changed=True,
    )


COMMANDS = [
    Command(
        "trust",
        "accept the new identity key NAME presented (compare the safety number first)",
        cmd_trust,
        add_name,
    )
]
