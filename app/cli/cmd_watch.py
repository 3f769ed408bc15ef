"""``watch``: stay signed in and print contact, presence and signal events until interrupted."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from app.cli.cmd_contacts import contact_fields, describe_contact
from app.cli.command import Command
from app.cli.output import EXIT_REFUSED, CliError, Output
from app.cli.signed_in import signed_in
from app.signalling import events as ev


async def cmd_watch(args: argparse.Namespace, out: Output) -> None:
    """Print the contacts, then every event, until Ctrl-C or the server ends the session."""
    async with signed_in(args) as client:
        for contact in client.contacts.values():
            out.emit("contact", describe_contact(contact), **contact_fields(contact))
        while True:
            event = await client.next_event()
            _print_event(event, out)
            if isinstance(event, ev.SessionEnded):
                raise CliError(event.reason, EXIT_REFUSED, "session_ended")


def _print_event(event: ev.SignallingEvent, out: Output) -> None:
    if isinstance(event, ev.ContactChanged):
        out.emit("contact", describe_contact(event.contact), **contact_fields(event.contact))
    elif isinstance(event, ev.PresenceChanged):
        out.emit(
            "presence",
            f"{event.username} is {event.status}",
            user=event.username,
            status=event.status,
            devices=[asdict(d) for d in event.devices],
        )
    elif isinstance(event, ev.SignalReceived):
        out.emit(
            "signal",
            f"signal from {event.sender}: {json.dumps(event.payload)}",
            sender=event.sender,
            sender_device=event.sender_device,
            payload=event.payload,
        )
    elif isinstance(event, ev.Disconnected):
        out.emit(
            "disconnected",
            f"Disconnected ({event.reason}); retrying in {event.retry_in:.1f} s",
            reason=event.reason,
            retry_in=round(event.retry_in, 2),
        )
    elif isinstance(event, ev.SignedIn):
        out.emit("signed_in", f"Signed in again as {event.username}.", user=event.username, reconnected=True)


COMMANDS = [Command("watch", "print contact, presence and signal events until Ctrl-C", cmd_watch)]
