"""The contact list: presence dot, name, how we are connected (LAN / direct / relayed); files drop on a row.

Rows are built from the signalling client's `Contact` records and the hub's `PeerState`s; the widget does
no networking. Dropping files or folders on a contact's row emits `files_dropped` with the name and paths.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from app.peers.events import PeerState
from rendezvous.wire.signalling import Contact

NAME_ROLE = Qt.ItemDataRole.UserRole
_DOTS = {"online": ("●", "#2e7d32"), "away": ("●", "#f9a825"), "offline": ("○", "#9e9e9e")}
_BADGES = {"lan": "LAN", "direct": "direct", "relayed": "relayed"}
_HOW = {"lan": "on your local network", "direct": "directly", "relayed": "through the relay"}


def describe(contact: Contact, state: PeerState | None = None) -> str:
    """A contact's line: presence (and path badge when connected), or the state of a contact request."""
    if contact.relation == "incoming":
        return f"{contact.username} — wants to be your contact"
    if contact.relation == "outgoing":
        return f"{contact.username} — request sent"
    if contact.relation == "blocked":
        return f"{contact.username} — blocked"
    line = f"{contact.username} — {contact.status}"
    if state is not None and state.state == "connected" and state.path is not None:
        line += f" · {_BADGES[state.path.kind]}"
    elif state is not None and state.state == "connecting":
        line += " · connecting…"
    return line


def dropped_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders in a drop (URLs that are not local files are ignored)."""
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class ContactList(QListWidget):
    """Contacts, online first; a drop of local files on a mutual contact's row emits `files_dropped`."""

    files_dropped = Signal(str, list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Contacts")
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.filter = ""

    def show_contacts(self, contacts: dict[str, Contact], states: dict[str, PeerState]) -> None:
        """Rebuild the rows (keeping the selection)."""
        selected = self.selected_name()
        self.clear()
        order = sorted(
            (c for c in contacts.values() if c.relation != "none"),
            key=lambda c: (c.relation != "incoming", c.status != "online", c.username),
        )
        for contact in order:
            if self.filter and self.filter not in contact.username.lower():
                continue
            dot, colour = _DOTS.get(contact.status, _DOTS["offline"])
            item = QListWidgetItem(f"{dot}  {describe(contact, states.get(contact.username))}")
            item.setForeground(QColor(colour) if contact.relation == "mutual" else QColor("#757575"))
            item.setData(NAME_ROLE, contact.username)
            item.setToolTip(_tooltip(contact, states.get(contact.username)))
            self.addItem(item)
            if contact.username == selected:
                self.setCurrentItem(item)

    def selected_name(self) -> str | None:
        """The selected contact's name."""
        item = self.currentItem()
        return str(item.data(NAME_ROLE)) if item is not None else None

    def rows(self) -> list[str]:
        """The lines as shown (for tests and accessibility checks)."""
        return [self.item(i).text() for i in range(self.count())]

    def row_of(self, name: str) -> QListWidgetItem | None:
        """The row of contact ``name``."""
        for i in range(self.count()):
            if self.item(i).data(NAME_ROLE) == name:
                return self.item(i)
        return None

    # --- drops -----------------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Files may be dropped here."""
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        """Only on a contact's row; the row under the pointer is highlighted."""
        item = self.itemAt(event.position().toPoint())
        if item is not None and event.mimeData().hasUrls():
            self.setCurrentItem(item)
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        """Send the dropped files to the contact on that row."""
        item = self.itemAt(event.position().toPoint())
        paths = dropped_paths(event.mimeData())
        if item is None or not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(str(item.data(NAME_ROLE)), paths)


def _tooltip(contact: Contact, state: PeerState | None) -> str:
    if contact.relation != "mutual":
        return describe(contact)
    if state is None or state.state != "connected" or state.path is None:
        return f"{contact.username} is {contact.status}. Drop files here to send them."
    how = {"lan": "on your local network", "direct": "directly", "relayed": "through the relay"}[
        state.path.kind
    ]
    return f"Connected {how}. Drop files here to send them."
