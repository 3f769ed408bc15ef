"""``contacts``, ``add``, ``accept``, ``decline``, ``remove``, ``block``, ``unblock``: your contacts."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from app.cli.command import Command, Run, add_name
from app.cli.output import Output
from app.cli.signed_in import signed_in
from app.signalling.client import SignallingClient
from rendezvous.wire.signalling import Contact


async def cmd_contacts(args: argparse.Namespace, out: Output) -> None:
    """List contacts with presence, and pending requests."""
    async with signed_in(args) as client:
        contacts = await client.list_contacts()
    if not contacts and not out.as_json:
        out.emit("contact", "No contacts yet. Add one with: punchline-cli add NAME")
    for contact in contacts:
        out.emit("contact", describe_contact(contact), **contact_fields(contact))


def _contact_action(action: Callable[[SignallingClient, str], Awaitable[None]], done: str, event: str) -> Run:
    async def command(args: argparse.Namespace, out: Output) -> None:
        async with signed_in(args) as client:
            await action(client, args.name)
            contact = client.contacts.get(args.name.lower())
        relation = contact.relation if contact else "none"
        out.emit(event, done.format(name=args.name), user=args.name.lower(), relation=relation)

    command.__doc__ = done
    return command


def describe_contact(contact: Contact) -> str:
    """A contact and its presence or pending request, in one line."""
    labels = {
        "mutual": contact.status,
        "incoming": "wants to be your contact (accept NAME / decline NAME)",
        "outgoing": "request sent, waiting for an answer",
        "blocked": "blocked",
        "none": "no longer a contact",
    }
    return f"{contact.username:<20} {labels[contact.relation]}"


def contact_fields(contact: Contact) -> dict[str, Any]:
    """A contact as JSON fields."""
    return {
        "user": contact.username,
        "relation": contact.relation,
        "status": contact.status,
        "devices": [asdict(d) for d in contact.devices],
    }


_ACTIONS: list[tuple[str, str, Callable[[SignallingClient, str], Awaitable[None]], str, str]] = [
    # (command, help, what it asks the server, what it prints, its JSON event)
    (
        "add",
        "send a contact request to NAME",
        SignallingClient.add_contact,
        "Contact request sent to {name}.",
        "requested",
    ),
    (
        "accept",
        "accept NAME's contact request",
        SignallingClient.accept_contact,
        "{name} is now a contact.",
        "accepted",
    ),
    (
        "decline",
        "decline NAME's contact request",
        SignallingClient.decline_contact,
        "Declined {name}'s request.",
        "declined",
    ),
    (
        "remove",
        "remove NAME from your contacts (or cancel your request)",
        SignallingClient.remove_contact,
        "Removed {name}.",
        "removed",
    ),
    ("block", "block NAME", SignallingClient.block_contact, "Blocked {name}.", "blocked"),
    ("unblock", "unblock NAME", SignallingClient.unblock_contact, "Unblocked {name}.", "unblocked"),
]

COMMANDS = [
    Command("contacts", "list contacts with presence, and pending requests", cmd_contacts),
    *(
        Command(name, help_text, _contact_action(method, done, event), add_name)
        for name, help_text, method, done, event in _ACTIONS
    ),
]
