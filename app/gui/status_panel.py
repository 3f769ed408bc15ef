"""The status panel: how we are connected to the selected contact (or the one in the call), row by row."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QWidget

from app.peers.events import PeerState
from app.peers.link_report import link_report
from app.voice.call_media import CallStats


class StatusPanel(QGroupBox):
    """Rows from `app.peers.link_report`; values are selectable (endpoints and safety numbers get copied)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Connection", parent)
        self.setAccessibleName("Connection status")
        self._form = QFormLayout(self)
        self._form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.values: dict[str, QLabel] = {}

    def show_state(self, state: PeerState, call: CallStats | None = None) -> None:
        """Show ``state`` (with the call's numbers when there is a call with this contact)."""
        self.setTitle(f"Connection with {state.peer}")
        rows = link_report(state, call)
        for label, value in rows:
            field = self.values.get(label)
            if field is None:
                field = QLabel()
                field.setWordWrap(True)
                field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                field.setAccessibleName(label)
                self.values[label] = field
                self._form.addRow(f"{label}:", field)
            field.setText(value)
        shown = {label for label, _ in rows}
        for label, field in self.values.items():
            field.setVisible(label in shown)
            partner = self._form.labelForField(field)
            if partner is not None:
                partner.setVisible(label in shown)

    def value(self, label: str) -> str:
        """The text shown for ``label`` (for tests)."""
        field = self.values.get(label)
        return field.text() if field is not None and field.isVisibleTo(self) else ""
