"""The transfers panel: each transfer with its progress bar, speed and time left, and its buttons.

Rows mirror `app.peers.transfer_list.TransferRecord`s; the buttons call back into the main window (cancel,
resume, show in folder). Finished, failed and interrupted transfers stay listed as history.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.icons import icon
from app.peers.transfer_list import TransferRecord

Action = Callable[[TransferRecord], None]


class TransferRow(QWidget):
    """One transfer: heading, progress bar, a sentence (speed and ETA, or the outcome), buttons."""

    def __init__(self, record: TransferRecord, cancel: Action, resume: Action, reveal: Action) -> None:
        super().__init__()
        self.record = record
        self.heading = QLabel()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(10)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.reveal_button = QPushButton(icon("folder"), "Show in folder")
        for button, action in (
            (self.cancel_button, cancel),
            (self.resume_button, resume),
            (self.reveal_button, reveal),
        ):
            button.clicked.connect(lambda _checked=False, act=action: act(self.record))
        buttons = QHBoxLayout()
        buttons.addWidget(self.detail, 1)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.reveal_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(self.heading)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        self.update_from(record)

    def update_from(self, record: TransferRecord) -> None:
        """Show ``record`` as it is now."""
        self.record = record
        self.heading.setText(f"<b>{html.escape(record.heading)}</b>")
        self.bar.setValue(round(record.fraction * 1000))
        self.bar.setAccessibleName(f"Progress of {record.title}")
        self.detail.setText(record.detail)
        self.cancel_button.setVisible(record.active)
        self.cancel_button.setAccessibleName(f"Cancel {record.title}")
        self.resume_button.setVisible(record.can_resume)
        self.reveal_button.setVisible(record.folder is not None and not record.active)


class TransfersPanel(QGroupBox):
    """All transfers, active first; "Clear finished" empties the history."""

    def __init__(self, cancel: Action, resume: Action, reveal: Action, clear: Callable[[], None]) -> None:
        super().__init__("Transfers")
        self.setAccessibleName("Transfers")
        self._actions = (cancel, resume, reveal)
        self.list = QListWidget()
        self.list.setAccessibleName("Transfers list")
        self.empty = QLabel("Drop files on a contact to send them.")
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.clicked.connect(clear)
        layout = QVBoxLayout(self)
        layout.addWidget(self.empty)
        layout.addWidget(self.list)
        layout.addWidget(self.clear_button)
        self.rows: dict[str, TransferRow] = {}

    def show_records(self, records: list[TransferRecord]) -> None:
        """Rebuild the list in ``records``' order (progress updates go through `update_record`)."""
        self.list.clear()
        kept: dict[str, TransferRow] = {}
        for record in records:
            row = TransferRow(record, *self._actions)
            item = QListWidgetItem()
            item.setSizeHint(row.sizeHint())
            self.list.addItem(item)
            self.list.setItemWidget(item, row)
            kept[record.transfer] = row
        self.rows = kept
        self.empty.setVisible(not records)
        self.clear_button.setEnabled(any(not r.active for r in records))

    def update_record(self, record: TransferRecord) -> bool:
        """Refresh one row in place; False if it has no row yet (the caller rebuilds)."""
        row = self.rows.get(record.transfer)
        if row is None:
            return False
        row.update_from(record)
        return True
