"""The call window: ringing (with the ringtone) or calling, then the call itself, then how it ended.

In a call it shows the time, a mute button, hang up, the microphone's level, the speaker volume, device
pickers (a change takes effect at once) and a quality indicator (the E-model estimate from `CallStats`).
It acts only through the `CallLink` (accept, decline, hang up) and the call's `CallMedia`.
"""

from __future__ import annotations

import asyncio
import contextlib

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.gui.icons import icon
from app.peers.link_report import quality_words
from app.voice.audio_backend import AudioBackend
from app.voice.call import CallLink
from app.voice.call_media import MediaConfig
from app.voice.call_signalling import CallEnded, CallEvent, CallRinging, CallStarted
from app.voice.ringtone import ring
from app.voice.sound_devices import AudioDeviceError

#: Seconds the window stays up after the call ended, showing why.
LINGER = 4.0


def headline(ended: CallEnded) -> str:
    """The ended call's window title: what happened, in two words (the line below says why)."""
    if ended.missed:
        return "Missed call"
    return {"no answer": "No answer", "declined": "Declined", "busy": "Busy", "cancelled": "Cancelled"}.get(
        ended.reason, "Call ended"
    )


class CallWindow(QWidget):
    """One call's window; `event` feeds it the call's events."""

    def __init__(self, link: CallLink, audio: AudioBackend, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.link = link
        self.audio = audio
        self.peer = link.machine.peer
        self.incoming = link.machine.role == "callee"
        self._started_at: float | None = None
        self._ringing: asyncio.Task[None] | None = None
        self.setWindowTitle(f"Call with {self.peer}")
        self.setWindowIcon(icon("punchline"))
        self.title = QLabel()
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setStyleSheet("font-size: 16pt;")
        self.state = QLabel()
        self.state.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state.setAccessibleName("Call state")
        self.accept_button = QPushButton(icon("call"), "Accept")
        self.decline_button = QPushButton(icon("hangup"), "Decline")
        self.hangup_button = QPushButton(icon("hangup"), "Hang up")
        self.hangup_button.setShortcut(QKeySequence("Ctrl+E"))
        self.mute_button = QPushButton(icon("mic"), "Mute")
        self.mute_button.setCheckable(True)
        self.mute_button.setShortcut(QKeySequence("Ctrl+M"))
        self.level = QProgressBar()
        self.level.setRange(0, 60)
        self.level.setTextVisible(False)
        self.level.setAccessibleName("Microphone level")
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(0, 150)
        self.volume.setValue(100)
        self.volume.setAccessibleName("Speaker volume")
        self.input_picker = QComboBox()
        self.input_picker.setAccessibleName("Microphone")
        self.output_picker = QComboBox()
        self.output_picker.setAccessibleName("Speaker")
        self.quality = QLabel("Quality: —")
        self.quality.setAccessibleName("Call quality")
        for button, name in (
            (self.accept_button, f"Accept the call from {self.peer}"),
            (self.decline_button, f"Decline the call from {self.peer}"),
            (self.hangup_button, "Hang up"),
            (self.mute_button, "Mute the microphone"),
        ):
            button.setAccessibleName(name)
        self._fill_pickers()
        answer = QHBoxLayout()
        answer.addWidget(self.decline_button)
        answer.addWidget(self.accept_button)
        controls = QHBoxLayout()
        controls.addWidget(self.mute_button)
        controls.addWidget(self.hangup_button)
        self.in_call = QWidget()
        form = QFormLayout(self.in_call)
        form.addRow("Microphone level", self.level)
        form.addRow("Volume", self.volume)
        form.addRow("Microphone", self.input_picker)
        form.addRow("Speaker", self.output_picker)
        form.addRow(self.quality)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.state)
        layout.addLayout(answer)
        layout.addWidget(self.in_call)
        layout.addLayout(controls)
        self.accept_button.clicked.connect(self._accept)
        self.decline_button.clicked.connect(self._decline)
        self.hangup_button.clicked.connect(link.hangup)
        self.mute_button.toggled.connect(self._mute)
        self.volume.valueChanged.connect(self._set_volume)
        self.input_picker.currentIndexChanged.connect(self._pick_input)
        self.output_picker.currentIndexChanged.connect(self._pick_output)
        QShortcut(QKeySequence("Escape"), self, self._escape)
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._tick)
        self._show_phase("incoming" if self.incoming else "calling")
        self.resize(340, 360)

    # --- the call's events -----------------------------------------------------------------------------

    def event_happened(self, event: CallEvent) -> None:
        """Follow the call: ringing, started, ended."""
        if isinstance(event, CallRinging) and self.incoming:
            self._start_ringtone()
        elif isinstance(event, CallRinging):
            self.state.setText("Ringing…")
        elif isinstance(event, CallStarted):
            self._stop_ringtone()
            self._started_at = asyncio.get_running_loop().time()
            self._show_phase("active")
            self._timer.start()
        elif isinstance(event, CallEnded):
            self._stop_ringtone()
            self._timer.stop()
            self._show_phase("ended")
            self.title.setText(headline(event))
            self.state.setText(event.text)
            QTimer.singleShot(int(LINGER * 1000), self.close)

    def _show_phase(self, phase: str) -> None:
        titles = {
            "incoming": f"{self.peer} is calling",
            "calling": f"Calling {self.peer}…",
            "active": self.peer,
            "ended": self.peer,
        }
        self.phase = phase
        self.title.setText(titles[phase])
        self.state.setText({"active": "00:00", "calling": "Connecting…"}.get(phase, ""))
        self.accept_button.setVisible(phase == "incoming")
        self.decline_button.setVisible(phase == "incoming")
        self.hangup_button.setVisible(phase in ("calling", "active"))
        self.mute_button.setVisible(phase == "active")
        self.in_call.setVisible(phase == "active")

    # --- controls --------------------------------------------------------------------------------------

    def _accept(self) -> None:
        self._stop_ringtone()
        self.link.accept()

    def _decline(self) -> None:
        self._stop_ringtone()
        self.link.decline()

    def _escape(self) -> None:
        if self.phase == "incoming":
            self._decline()

    def _mute(self, muted: bool) -> None:
        self.mute_button.setText("Unmute" if muted else "Mute")
        self.mute_button.setIcon(icon("mic-off" if muted else "mic"))
        if self.link.media is not None:
            self.link.media.muted = muted

    def _set_volume(self, value: int) -> None:
        if self.link.media is not None:
            self.link.media.volume = value / 100

    def _fill_pickers(self) -> None:
        devices = self.audio.devices()
        for picker, wanted in ((self.input_picker, "inputs"), (self.output_picker, "outputs")):
            picker.blockSignals(True)
            picker.addItem("System default", None)
            for device in devices:
                if getattr(device, wanted) > 0:
                    picker.addItem(device.name, device.name)
            picker.setEnabled(picker.count() > 1)
            picker.blockSignals(False)

    def _pick_input(self) -> None:
        self.audio.input_device = self.input_picker.currentData()
        media = self.link.media
        if media is not None:
            with contextlib.suppress(AudioDeviceError):
                media.use_devices(microphone=self.audio.microphone(media.config.codec))

    def _pick_output(self) -> None:
        self.audio.output_device = self.output_picker.currentData()
        media = self.link.media
        if media is not None:
            with contextlib.suppress(AudioDeviceError):
                media.use_devices(speaker=self.audio.speaker(media.config.codec))

    def _tick(self) -> None:
        media = self.link.media
        if media is None or self._started_at is None:
            return
        seconds = int(asyncio.get_running_loop().time() - self._started_at)
        self.state.setText(f"{seconds // 60:02d}:{seconds % 60:02d}")
        stats = media.stats()
        self.level.setValue(0 if stats.muted else max(0, min(60, round(stats.input_level + 60))))
        rtt = f"{stats.rtt_ms:.0f} ms" if stats.rtt_ms is not None else "— ms"
        loss = 100 * max(stats.loss_in, stats.loss_out)
        self.quality.setText(f"Quality: {quality_words(stats.quality)} · {rtt} · {loss:.1f} % loss")

    # --- ringtone --------------------------------------------------------------------------------------

    def _start_ringtone(self) -> None:
        if self._ringing is not None:
            return
        settings = MediaConfig().codec
        try:
            speaker = self.audio.speaker(settings)
        except (AudioDeviceError, OSError):
            return  # no sound: the window still shows the call
        self._ringing = asyncio.ensure_future(ring(speaker, settings))

    def _stop_ringtone(self) -> None:
        if self._ringing is not None:
            self._ringing.cancel()
            self._ringing = None

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing the window ends the call (or declines it)."""
        if self.phase == "incoming":
            self._decline()
        elif self.phase in ("calling", "active"):
            self.link.hangup()
        self._stop_ringtone()
        self._timer.stop()
        super().closeEvent(event)
