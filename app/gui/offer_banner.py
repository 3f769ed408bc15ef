"""An incoming file offer as a banner in the main window: Accept, Save as…, Decline.

The banner answers the question the hub asked (`app.transfer.inbox.AskUser`): its future gets the folder
to save into, or the reason to decline. If the sender cancels first, the question is withdrawn and the
banner goes away.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.gui.icons import icon
from app.peers.transfer_list import title_of
from app.transfer.events import OfferReceived
from app.transfer.progress import human_size


class OfferBanner(QFrame):
    """ "bob wants to send you photos (3 files, 1.2 MB)" with its three answers."""

    def __init__(self, offer: OfferReceived, downloads: Path, me: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.offer = offer
        self.answer: asyncio.Future[Path | str] = asyncio.get_running_loop().create_future()
        self._downloads = downloads
        self._me = me
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("offer")
        self.setStyleSheet("#offer { border: 1px solid palette(highlight); border-radius: 6px; }")
        self.setAccessibleName(f"File offer from {offer.peer}")
        # File names come from the sender: escaped, they cannot inject rich text.
        what = f"<b>{html.escape(title_of(offer.files))}</b> ({human_size(offer.total)})"
        text = f"<b>{offer.peer}</b> wants to send you {what}"
        if offer.refused:
            text += f"; {len(offer.refused)} file(s) with unsafe names will be skipped"
        self.text = QLabel(text)
        self.text.setWordWrap(True)
        self.accept_button = QPushButton(icon("folder"), "Accept")
        self.accept_button.setToolTip(f"Save into {downloads}")
        self.save_as_button = QPushButton("Save as…")
        self.decline_button = QPushButton("Decline")
        for button in (self.accept_button, self.save_as_button, self.decline_button):
            button.setAccessibleName(f"{button.text().rstrip('…')} the files from {offer.peer}")
        layout = QHBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.accept_button)
        layout.addWidget(self.save_as_button)
        layout.addWidget(self.decline_button)
        self.accept_button.clicked.connect(lambda: self._answer(self._downloads))
        self.save_as_button.clicked.connect(self._save_as)
        self.decline_button.clicked.connect(lambda: self._answer(f"{self._me} declined"))

    def _save_as(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the files in…", str(self._downloads))
        if folder:
            self._answer(Path(folder))

    def _answer(self, answer: Path | str) -> None:
        if not self.answer.done():
            self.answer.set_result(answer)
