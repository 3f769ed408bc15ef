"""The main window: contacts on the left; on the right the selected contact (call, send files, connection
status), incoming offers and the transfers panel. It follows the hub's events and acts only through the hub.

`open_main_window` wires a signed-in client to a new `PeerHub` and this window; the app, the demo, the
tests and the screenshot script all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QPushButton,
    QSplitter,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from app.account.identity import DeviceIdentity
from app.errors import PunchlineError
from app.gui.call_window import CallWindow
from app.gui.contact_list import ContactList, dropped_paths
from app.gui.icons import icon
from app.gui.netcheck_dialog import NetworkCheckDialog
from app.gui.offer_banner import OfferBanner
from app.gui.status_panel import StatusPanel
from app.gui.transfers_panel import TransfersPanel
from app.netcheck.check import LIFETIME_STEPS, measure_lifetime, resolve_host, run_network_check
from app.netcheck.report import NetworkReport
from app.peers import events as pe
from app.peers.hub import Event, PeerHub
from app.peers.transfer_list import TransferList, TransferRecord, title_of
from app.signalling import events as sev
from app.signalling.client import SignallingClient, SignallingError
from app.transfer import events as tev
from app.transfer.inbox import Inbox
from app.transfer.outbox import NothingToSend
from app.voice.audio_backend import AudioBackend, call_media_for
from app.voice.call import CallLink
from app.voice.call_signalling import CallEnded, CallStarted
from rendezvous.wire.signalling import Contact


class ContactPane(QWidget):
    """The selected contact: name, Call and Send buttons; files dropped anywhere on it go to that contact."""

    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self.name = QLabel("Select a contact")
        self.name.setStyleSheet("font-size: 15pt; font-weight: 600;")
        self.call_button = QPushButton(icon("call"), "Call")
        self.send_button = QPushButton(icon("send"), "Send files…")
        self.accept_button = QPushButton("Accept request")
        self.decline_button = QPushButton("Decline request")
        self.hint = QLabel("Drop files or folders here, or on a contact, to send them.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid);")
        self.status = StatusPanel()
        buttons = QHBoxLayout()
        for button in (self.call_button, self.send_button, self.accept_button, self.decline_button):
            buttons.addWidget(button)
        buttons.addStretch()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.name)
        layout.addLayout(buttons)
        layout.addWidget(self.hint)
        layout.addWidget(self.status)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Files may be dropped while a contact is selected and can receive them."""
        if event.mimeData().hasUrls() and self.send_button.isEnabled():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        """Send the dropped files to the selected contact."""
        paths = dropped_paths(event.mimeData())
        if paths and self.send_button.isEnabled():
            event.acceptProposedAction()
            self.files_dropped.emit(paths)
        else:
            event.ignore()


class MainWindow(QMainWindow):
    """Signed in as someone: see the module docstring. `attach` a hub before showing it."""

    #: The session with the server ended for good (signed out elsewhere, account gone): back to sign-in.
    session_ended = Signal(str)
    #: The user chose Quit (as opposed to closing the window into the tray).
    quit_requested = Signal()
    #: The user chose Sign out: the app revokes the session and shows the sign-in window.
    sign_out_requested = Signal()

    def __init__(
        self, client: SignallingClient, transfers: TransferList, audio: AudioBackend, downloads: Path
    ) -> None:
        super().__init__()
        self._tasks: set[asyncio.Future[object]] = set()
        self.client = client
        self.transfers = transfers
        self.audio = audio
        self.downloads = downloads
        self.hub: PeerHub | None = None
        self.contacts: dict[str, Contact] = dict(client.contacts)
        self.states: dict[str, pe.PeerState] = {}
        self.offers: dict[str, OfferBanner] = {}
        self.calls: dict[str, CallWindow] = {}
        self.close_to_tray = False
        #: Closing the window quits the app, unless the app closes it itself (after Sign out).
        self.quit_on_close = True
        self.network_report: NetworkReport | None = None
        self._checking: asyncio.Future[None] | None = None
        self._lifetime: asyncio.Future[None] | None = None
        self.network_dialog = NetworkCheckDialog(self)
        self.network_dialog.again.clicked.connect(self.start_network_check)
        # During a call the status panel shows the call's live numbers (jitter, loss), refreshed each second.
        self._live_status = QTimer(self)
        self._live_status.setInterval(1000)
        self._live_status.timeout.connect(self.refresh_pane)
        self.setWindowTitle(f"Punchline — {client.username}")
        self.setWindowIcon(icon("punchline"))
        self._build()
        self._build_menus()
        self.tray = self._build_tray()
        self.refresh_contacts()
        self.transfers_panel.show_records(self.transfers.ordered())
        self.resize(900, 620)

    # --- construction ----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.heading = QLabel(f"Signed in as <b>{self.client.username}</b>")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search contacts")
        self.search.setAccessibleName("Search contacts")
        self.search.setClearButtonEnabled(True)
        self.contact_list = ContactList()
        self.add_field = QLineEdit()
        self.add_field.setPlaceholderText("Add a contact by name")
        self.add_field.setAccessibleName("Name of the contact to add")
        self.add_button = QPushButton("Add")
        self.add_button.setAccessibleName("Send a contact request")
        adding = QHBoxLayout()
        adding.addWidget(self.add_field)
        adding.addWidget(self.add_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.heading)
        left_layout.addWidget(self.search)
        left_layout.addWidget(self.contact_list)
        left_layout.addLayout(adding)

        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setAccessibleName("Notice")
        self.notice.hide()
        self.offers_area = QVBoxLayout()
        self.pane = ContactPane()
        self.transfers_panel = TransfersPanel(
            self._cancel_transfer, self._resume_transfer, self._reveal, self._clear_finished
        )
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.notice)
        right_layout.addLayout(self.offers_area)
        right_layout.addWidget(self.pane)
        right_layout.addWidget(self.transfers_panel, 1)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([300, 600])
        self.setCentralWidget(splitter)
        self.statusBar().showMessage(f"Connected to {self.client.url}")

        self.search.textChanged.connect(self._search)
        self.contact_list.currentItemChanged.connect(lambda *_: self.refresh_pane())
        self.contact_list.files_dropped.connect(self.send_files)
        self.contact_list.itemActivated.connect(lambda _item: self._call_selected())
        self.pane.files_dropped.connect(self._send_to_selected)
        self.pane.call_button.clicked.connect(self._call_selected)
        self.pane.send_button.clicked.connect(self._choose_files)
        self.pane.accept_button.clicked.connect(lambda: self._contact_action(SignallingClient.accept_contact))
        self.pane.decline_button.clicked.connect(
            lambda: self._contact_action(SignallingClient.decline_contact)
        )
        self.add_button.clicked.connect(self._add_contact)
        self.add_field.returnPressed.connect(self._add_contact)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&Punchline")
        self.tray_option = QAction("Keep running in the tray when closed", self, checkable=True)
        self.tray_option.setEnabled(QSystemTrayIcon.isSystemTrayAvailable())
        self.tray_option.toggled.connect(self._set_close_to_tray)
        menu.addAction(self.tray_option)
        self._action(menu, "&Network check…", None, self.show_network_check)
        menu.addSeparator()
        self._action(menu, "&Sign out", None, self.sign_out_requested.emit)
        self._action(menu, "&Quit", "Ctrl+Q", self.quit_requested.emit)
        contact = self.menuBar().addMenu("&Contact")
        self._action(contact, "&Find…", "Ctrl+F", self.search.setFocus)
        self._action(contact, "&Add contact…", "Ctrl+N", self.add_field.setFocus)
        self._action(contact, "&Call", "Ctrl+Shift+C", self._call_selected)
        self._action(contact, "&Send files…", "Ctrl+O", self._choose_files)
        self._action(contact, "Send a &folder…", "Ctrl+Shift+O", self._choose_folder)
        contact.addSeparator()
        remove, block = SignallingClient.remove_contact, SignallingClient.block_contact
        self._action(contact, "&Remove", None, lambda: self._contact_action(remove))
        self._action(contact, "&Block", None, lambda: self._contact_action(block))

    def _action(self, menu: QMenu, text: str, shortcut: str | None, slot: object) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_tray(self) -> QSystemTrayIcon | None:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return None
        tray = QSystemTrayIcon(icon("punchline"), self)
        tray.setToolTip(f"Punchline — {self.client.username}")
        menu = QMenu(self)
        menu.addAction("Show Punchline", self._bring_back)
        menu.addAction("Quit", self.quit_requested.emit)
        tray.setContextMenu(menu)
        tray.activated.connect(lambda _reason: self._bring_back())
        tray.show()
        return tray

    def attach(self, hub: PeerHub) -> None:
        """The hub this window drives (its events come to `handle`)."""
        self.hub = hub

    # --- the network check -----------------------------------------------------------------------------

    def start_network_check(self) -> None:
        """Run the network check quietly (after sign-in, and on "Check again")."""
        if self._checking is None or self._checking.done():
            self.network_dialog.checking()
            self._checking = asyncio.ensure_future(self._network_check())

    async def _network_check(self) -> None:
        stun_server = self.client.stun_server
        if stun_server is None:
            self.network_dialog.show_report(
                None, "The server runs no STUN service: nothing to check against."
            )
            return
        try:
            server = await resolve_host(stun_server)
            self.network_report = await run_network_check(server)
        except (OSError, SignallingError) as exc:
            self.network_dialog.show_report(None, f"The network check could not run: {exc}")
            return
        self.network_dialog.show_report(self.network_report)
        if self.hub is not None:
            self.hub.set_network_report(self.network_report)
        if self.network_report.server_addresses and (self._lifetime is None or self._lifetime.done()):
            self._lifetime = asyncio.ensure_future(self._measure_lifetime(server))

    async def _measure_lifetime(self, server: tuple[str, int]) -> None:
        """In the background, idle mappings at growing idle times: "at least N s" (minutes in all)."""
        lifetime = await measure_lifetime(server, LIFETIME_STEPS)
        if self.network_report is not None:
            self.network_report = replace(self.network_report, mapping_lifetime=lifetime)
            if self._checking is None or self._checking.done():
                self.network_dialog.show_report(self.network_report)

    def show_network_check(self) -> None:
        """Open the Network check window (it shows the latest report)."""
        self.network_dialog.show()
        self.network_dialog.raise_()

    # --- the hub's events ------------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """One event from the hub: update whatever shows it."""
        if isinstance(event, sev.ContactChanged):
            self.contacts[event.contact.username] = event.contact
            self.refresh_contacts()
        elif isinstance(event, sev.PresenceChanged):
            old = self.contacts.get(event.username)
            if old is not None:
                self.contacts[event.username] = Contact(
                    old.username, old.relation, event.status, event.devices
                )
                self.refresh_contacts()
        elif isinstance(event, sev.Disconnected):
            self.statusBar().showMessage(
                f"Lost the server ({event.reason}); retrying in {event.retry_in:.0f} s…"
            )
        elif isinstance(event, sev.SignedIn):
            self.contacts = {c.username: c for c in event.contacts}
            self.refresh_contacts()
            self.statusBar().showMessage(f"Connected to {self.client.url}")
        elif isinstance(event, sev.SessionEnded):
            self.session_ended.emit(event.reason)
        elif isinstance(event, pe.PeerUpdated):
            self.states[event.state.peer] = event.state
            self.refresh_contacts()
        elif isinstance(event, pe.CallUpdate):
            self._call_update(event)
        elif not isinstance(event, sev.SignalReceived):
            self._transfer_event(event)

    def _transfer_event(self, event: tev.TransferEvent | pe.HubEvent) -> None:
        record = self.transfers.apply(event)
        if record is None:
            return
        if isinstance(event, pe.SendQueued | tev.OfferReceived) or not self.transfers_panel.update_record(
            record
        ):
            self.transfers_panel.show_records(self.transfers.ordered())
        if isinstance(event, tev.TransferFinished) and event.direction == "receive" and event.completed:
            self.notify(f"Received {record.title} from {record.peer}", record.detail)

    # --- contacts --------------------------------------------------------------------------------------

    def refresh_contacts(self) -> None:
        """Redraw the list and the selected contact's pane."""
        self.contact_list.show_contacts(self.contacts, self.states)
        self.refresh_pane()

    def refresh_pane(self) -> None:
        """The selected contact's name, buttons and connection status."""
        name = self.contact_list.selected_name()
        contact = self.contacts.get(name) if name else None
        pane = self.pane
        mutual = contact is not None and contact.relation == "mutual"
        pane.name.setText(name or "Select a contact")
        pane.call_button.setEnabled(mutual and (self.hub is None or self.hub.desk.current is None))
        pane.send_button.setEnabled(mutual)
        pane.call_button.setAccessibleName(f"Call {name}" if name else "Call")
        pane.send_button.setAccessibleName(f"Send files to {name}" if name else "Send files")
        incoming = contact is not None and contact.relation == "incoming"
        pane.accept_button.setVisible(incoming)
        pane.decline_button.setVisible(incoming)
        pane.status.setVisible(mutual)
        if mutual and name is not None:
            self.show_status(name)

    def show_status(self, name: str) -> None:
        """Fill the status panel for ``name`` (with the call's numbers when in a call with them)."""
        state = self.states.get(name) or pe.PeerState(name)
        call = self.hub.desk.current if self.hub is not None else None
        stats = call.media.stats() if call is not None and call.machine.peer == name and call.media else None
        self.pane.status.show_state(state, stats)

    def select(self, name: str) -> None:
        """Select contact ``name`` in the list."""
        row = self.contact_list.row_of(name)
        if row is not None:
            self.contact_list.setCurrentItem(row)

    def _search(self, text: str) -> None:
        self.contact_list.filter = text.strip().lower()
        self.refresh_contacts()

    def _add_contact(self) -> None:
        name = self.add_field.text().strip().lower()
        if name:
            self._run(self.client.add_contact(name), done=f"Contact request sent to {name}.")
            self.add_field.clear()

    def _contact_action(self, action: Callable[[SignallingClient, str], Awaitable[None]]) -> None:
        name = self.contact_list.selected_name()
        if name:
            self._run(action(self.client, name))

    def _spawn(self, awaitable: Awaitable[object]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run(self, coroutine: Awaitable[None], done: str | None = None) -> None:
        async def run() -> None:
            try:
                await coroutine
            except SignallingError as exc:
                self.say(str(exc))
            else:
                if done:
                    self.say(done)

        self._spawn(run())

    # --- files -----------------------------------------------------------------------------------------

    def send_files(self, peer: str, paths: list[Path]) -> None:
        """Send files and folders to ``peer`` (dropped on their row, or chosen)."""
        if self.hub is None:
            return
        contact = self.contacts.get(peer)
        if contact is None or contact.relation != "mutual":
            self.say(f"{peer} is not your contact yet: files go only to contacts who accepted you.")
            return
        try:
            self.hub.send_files(peer, paths)
        except NothingToSend as exc:
            self.say(str(exc))

    def _send_to_selected(self, paths: list[Path]) -> None:
        name = self.contact_list.selected_name()
        if name:
            self.send_files(name, paths)

    def _choose_files(self) -> None:
        name = self.contact_list.selected_name()
        if name and self.pane.send_button.isEnabled():
            files, _ = QFileDialog.getOpenFileNames(self, f"Send files to {name}")
            if files:
                self.send_files(name, [Path(f) for f in files])

    def _choose_folder(self) -> None:
        name = self.contact_list.selected_name()
        if name and self.pane.send_button.isEnabled():
            folder = QFileDialog.getExistingDirectory(self, f"Send a folder to {name}")
            if folder:
                self.send_files(name, [Path(folder)])

    async def ask_about_offer(self, offer: tev.OfferReceived) -> Path | str:
        """The inbox's question: a banner (and a tray message) until the user answers or it is withdrawn."""
        banner = OfferBanner(offer, self.downloads, self.client.username)
        self.offers[offer.transfer] = banner
        self.offers_area.addWidget(banner)
        self.notify(f"{offer.peer} wants to send you files", f"{title_of(offer.files)}")
        try:
            return await banner.answer
        finally:
            self.offers.pop(offer.transfer, None)
            banner.deleteLater()

    def _cancel_transfer(self, record: TransferRecord) -> None:
        if self.hub is not None:
            self._spawn(self.hub.cancel(record.transfer))

    def _resume_transfer(self, record: TransferRecord) -> None:
        if self.hub is None:
            return
        if not self.hub.resume(record.transfer):  # not from this run of the app: offer the same files again
            self.send_files(record.peer, [Path(p) for p in record.sources])

    def _reveal(self, record: TransferRecord) -> None:
        if record.folder:
            QDesktopServices.openUrl(QUrl.fromLocalFile(record.folder))

    def _clear_finished(self) -> None:
        self.transfers.forget_finished()
        self.transfers_panel.show_records(self.transfers.ordered())

    # --- calls -----------------------------------------------------------------------------------------

    def _call_selected(self) -> None:
        name = self.contact_list.selected_name()
        if name and self.pane.call_button.isEnabled():
            self._spawn(self.call(name))

    async def call(self, name: str) -> CallWindow | None:
        """Call ``name``; the call window opens at once and follows the call."""
        if self.hub is None:
            return None
        self.say(f"Calling {name}…")
        try:
            link = await self.hub.call(name)
        except (RuntimeError, PunchlineError) as exc:  # already in a call; offline, no path, refused
            self.say(f"Cannot call {name}: {exc}")
            return None
        self.notice.hide()
        return self._window_for(link)

    def _window_for(self, link: CallLink) -> CallWindow:
        window = self.calls.get(link.call)
        if window is None:
            window = CallWindow(link, self.audio)
            self.calls[link.call] = window
            window.destroyed.connect(lambda *_: self.calls.pop(link.call, None))
            window.show()
        return window

    def _call_update(self, update: pe.CallUpdate) -> None:
        window = self._window_for(update.link)
        window.event_happened(update.event)
        if isinstance(update.event, CallStarted):
            self._live_status.start()
        elif isinstance(update.event, CallEnded):
            self._live_status.stop()
        if window.incoming and window.phase == "incoming":
            window.raise_()
            window.activateWindow()
            self.notify(f"{update.peer} is calling", "Open Punchline to answer.")
        elif isinstance(update.event, CallEnded) and update.event.missed:
            # Rang unanswered: cancelled, no answer, or the session or path ended while it rang.
            self.say(f"Missed call from {update.peer}.")
            self.notify(f"Missed call from {update.peer}", update.event.text)
        elif isinstance(update.event, CallEnded) and not window.incoming:
            self.say(update.event.text)  # "bob did not answer.": still there once the call window closes
        self.refresh_pane()

    # --- desktop ---------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """A sentence at the top of the window (errors, confirmations); it stays until the next one."""
        self.notice.setText(text)
        self.notice.show()

    def notify(self, title: str, text: str) -> None:
        """A desktop notification through the tray icon, when the window is not in front."""
        if self.tray is not None and not self.isActiveWindow():
            self.tray.showMessage(title, text, icon("punchline"))

    def _set_close_to_tray(self, enabled: bool) -> None:
        self.close_to_tray = enabled

    def _bring_back(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Into the tray if the user chose so; otherwise closing the window quits."""
        if self.close_to_tray and self.tray is not None:
            event.ignore()
            self.hide()
            self.tray.showMessage("Punchline is still running", "Calls and files still reach you.")
            return
        event.accept()
        if self.quit_on_close:
            self.quit_requested.emit()

    async def sign_out(self) -> None:
        """Hang up, stop transfers (resumable), close the hub and the client."""
        for window in list(self.calls.values()):
            window.hide()
        for task in [self._checking, self._lifetime, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
        if self.hub is not None:
            await self.hub.close()
        with contextlib.suppress(Exception):
            await self.client.close()
        if self.tray is not None:
            self.tray.hide()


def open_main_window(
    client: SignallingClient,
    identity: DeviceIdentity,
    config_dir: Path,
    *,
    downloads: Path,
    audio: AudioBackend,
) -> MainWindow:
    """A `MainWindow` for ``client`` with a started `PeerHub` behind it."""
    window = MainWindow(client, TransferList(config_dir / "transfers.json"), audio, downloads)
    hub = PeerHub(
        client,
        identity,
        config_dir,
        inbox=Inbox(downloads, accept_from=(), ask=window.ask_about_offer),
        media=call_media_for(audio, on_problem=window.say),
        on_event=window.handle,
    )
    window.attach(hub)
    hub.start()
    return window
