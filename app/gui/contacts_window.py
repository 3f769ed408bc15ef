"""The main window, first part: who you are signed in as, and your contacts with who is online.

It follows the signalling client's events (contacts changing, presence); it opens no connection itself.
"""

from __future__ import annotations

import asyncio
import contextlib

from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from app.signalling import events as ev
from app.signalling.client import SignallingClient
from rendezvous.wire.signalling import Contact

_DOTS = {"online": ("●", "#2e7d32"), "away": ("●", "#f9a825"), "offline": ("○", "#9e9e9e")}


def describe(contact: Contact) -> str:
    """A contact's line in the list: presence, or the state of a contact request."""
    if contact.relation == "incoming":
        return f"{contact.username} — wants to be your contact"
    if contact.relation == "outgoing":
        return f"{contact.username} — request sent"
    return f"{contact.username} — {contact.status}"


class ContactsWindow(QMainWindow):
    """Signed in as someone: the contact list, searchable, kept current from the client's events."""

    def __init__(self, client: SignallingClient, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.contacts: dict[str, Contact] = dict(client.contacts)
        self.setWindowTitle(f"Punchline — {client.username}")
        self.heading = QLabel(f"Signed in as <b>{client.username}</b>")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search contacts")
        self.search.setAccessibleName("Search contacts")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setAccessibleName("Contacts")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.heading)
        layout.addWidget(self.search)
        layout.addWidget(self.list)
        self.setCentralWidget(central)
        self.resize(360, 520)
        self.search.textChanged.connect(lambda _text: self._refresh())
        self._refresh()
        self._events = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        while True:
            event = await self.client.next_event()
            if isinstance(event, ev.ContactChanged):
                self.contacts[event.contact.username] = event.contact
            elif isinstance(event, ev.PresenceChanged):
                old = self.contacts.get(event.username)
                if old is not None:
                    self.contacts[event.username] = Contact(
                        old.username, old.relation, event.status, event.devices
                    )
            self._refresh()

    def _refresh(self) -> None:
        wanted = self.search.text().strip().lower()
        self.list.clear()
        for contact in sorted(self.contacts.values(), key=lambda c: (c.status != "online", c.username)):
            if wanted and wanted not in contact.username.lower():
                continue
            dot, colour = _DOTS.get(contact.status, _DOTS["offline"])
            item = QListWidgetItem(f"{dot}  {describe(contact)}")
            item.setForeground(QColor(colour) if contact.relation == "mutual" else QColor("#757575"))
            item.setData(0x0100, contact.username)  # Qt.UserRole: the contact's name
            self.list.addItem(item)

    def rows(self) -> list[str]:
        """The list's lines as shown (for tests and accessibility checks)."""
        return [self.list.item(i).text() for i in range(self.list.count())]

    async def sign_out(self) -> None:
        """Stop following the client and close it."""
        self._events.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._events
        await self.client.close()
