"""The "Network check" window: the verdict in words and what was measured, row by row (RFC 5780 tests).

The check itself is `app.netcheck.check` (no Qt); the main window runs it quietly after sign-in and
this window shows the latest report, or runs it again on request.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.netcheck.report import NetworkReport, describe_report


class NetworkCheckDialog(QDialog):
    """Verdict, rows, and a "Check again" button (the main window connects it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Network check")
        self.setAccessibleName("Network check")
        self.verdict = QLabel("Not checked yet.")
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.TextFormat.PlainText)
        self.verdict.setStyleSheet("font-weight: 600;")
        self.verdict.setAccessibleName("Verdict")
        self.rows = QFormLayout()
        self.values: dict[str, QLabel] = {}
        self.again = QPushButton("Check again")
        self.again.setAccessibleName("Run the network check again")
        layout = QVBoxLayout(self)
        layout.addWidget(self.verdict)
        layout.addLayout(self.rows)
        layout.addWidget(self.again)
        self.resize(460, 320)

    def checking(self) -> None:
        """A check is running."""
        self.verdict.setText("Checking how your router treats UDP (a few seconds)…")
        self.again.setEnabled(False)

    def show_report(self, report: NetworkReport | None, problem: str | None = None) -> None:
        """Show ``report`` (or why there is none)."""
        self.again.setEnabled(True)
        if report is None:
            self.verdict.setText(problem or "Not checked yet.")
            return
        self.verdict.setText(report.verdict())
        for label, value in describe_report(report):
            field = self.values.get(label)
            if field is None:
                field = QLabel()
                field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                field.setAccessibleName(label)
                self.values[label] = field
                self.rows.addRow(f"{label}:", field)
            field.setText(value)
