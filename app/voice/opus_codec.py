"""Opus for calls: 48 kHz mono, 20 ms frames (10 ms selectable), the VoIP application, FEC and DTX.

A thin wrapper over opuslib (libopus): it fixes the settings a call uses and works around opuslib 3.0.1,
whose ``inband_fec`` and ``packet_loss_perc`` properties raise TypeError (the raw ``encoder_ctl`` works).
PCM is signed 16-bit little-endian, as the audio devices and WAV files give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import opuslib
import opuslib.api.ctl
import opuslib.api.encoder

SAMPLE_RATE = 48_000
CHANNELS = 1
SAMPLE_BYTES = 2
_BANDWIDTHS = {
    "wideband": opuslib.BANDWIDTH_WIDEBAND,
    "superwideband": opuslib.BANDWIDTH_SUPERWIDEBAND,
    "fullband": opuslib.BANDWIDTH_FULLBAND,
}


@dataclass(frozen=True)
class CodecSettings:
    """What the encoder is set to; the defaults are what a call uses."""

    #: Frame length in milliseconds: 20 (fewer packets) or 10 (less delay).
    frame_ms: int = 20
    #: Target bitrate in bits per second (Opus VoIP: 24-32 kbps is wideband speech at full quality).
    bitrate: int = 28_000
    #: Discontinuous transmission: tiny packets during silence.
    dtx: bool = True
    #: In-band forward error correction (a low-rate copy of the previous frame in each packet).
    inband_fec: bool = True
    #: Audio band: "wideband" (0-8 kHz, telephony's HD voice) puts every bit where speech lives. Measured
    #: with espeak-ng speech at 28 kbps, PESQ-WB 4.17 against 3.83 with Opus choosing the band itself.
    max_bandwidth: Literal["wideband", "superwideband", "fullband"] = "wideband"
    #: Encoder effort, 0-10 (10 costs ~64 µs per 20 ms frame here).
    complexity: int = 10

    def __post_init__(self) -> None:
        if self.frame_ms not in (10, 20):
            raise ValueError("frame_ms must be 10 or 20")

    @property
    def frame_samples(self) -> int:
        """Samples per frame (per channel)."""
        return SAMPLE_RATE * self.frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        """Bytes of 16-bit PCM per frame."""
        return self.frame_samples * CHANNELS * SAMPLE_BYTES


class VoiceEncoder:
    """Encodes one frame of PCM at a time into an Opus packet."""

    def __init__(self, settings: CodecSettings | None = None) -> None:
        self.settings = settings or CodecSettings()
        self._encoder = opuslib.Encoder(SAMPLE_RATE, CHANNELS, opuslib.APPLICATION_VOIP)
        self._encoder.bitrate = self.settings.bitrate
        self._ctl(opuslib.api.ctl.set_inband_fec, int(self.settings.inband_fec))
        self._ctl(opuslib.api.ctl.set_dtx, int(self.settings.dtx))
        self._ctl(opuslib.api.ctl.set_max_bandwidth, _BANDWIDTHS[self.settings.max_bandwidth])
        self._ctl(opuslib.api.ctl.set_complexity, self.settings.complexity)
        self._ctl(opuslib.api.ctl.set_signal, opuslib.SIGNAL_VOICE)
        self.set_expected_loss(0)

    def _ctl(self, request: object, value: int) -> None:
        opuslib.api.encoder.encoder_ctl(self._encoder.encoder_state, request, value)

    def set_expected_loss(self, percent: int) -> None:
        """Tell the encoder the loss the receiver reports: in-band FEC spends bits only when it helps."""
        self._ctl(opuslib.api.ctl.set_packet_loss_perc, max(0, min(100, percent)))

    def set_bitrate(self, bits_per_second: int) -> None:
        """Change the target bitrate (the call adapts it to the path)."""
        self._encoder.bitrate = max(6_000, min(510_000, bits_per_second))

    def encode(self, pcm: bytes) -> bytes:
        """One Opus packet for exactly one frame of PCM."""
        if len(pcm) != self.settings.frame_bytes:
            raise ValueError(f"a frame is {self.settings.frame_bytes} bytes of PCM, not {len(pcm)}")
        packet: bytes = self._encoder.encode(pcm, self.settings.frame_samples)
        return packet


class VoiceDecoder:
    """Decodes Opus packets to PCM, recovers a lost frame from the next packet's FEC, or conceals it."""

    def __init__(self, settings: CodecSettings | None = None) -> None:
        self.settings = settings or CodecSettings()
        self._decoder = opuslib.Decoder(SAMPLE_RATE, CHANNELS)

    def decode(self, packet: bytes) -> bytes:
        """The PCM of one packet (a damaged packet is concealed instead)."""
        try:
            pcm: bytes = self._decoder.decode(packet, self.settings.frame_samples)
        except opuslib.OpusError:
            return self.conceal()
        return pcm

    def recover(self, next_packet: bytes) -> bytes:
        """The frame before ``next_packet``, from the low-rate copy Opus put in it (in-band FEC)."""
        try:
            pcm: bytes = self._decoder.decode(next_packet, self.settings.frame_samples, decode_fec=True)
        except opuslib.OpusError:
            return self.conceal()
        return pcm

    def conceal(self) -> bytes:
        """A plausible frame where one is missing (Opus packet-loss concealment)."""
        pcm: bytes = self._decoder.decode(b"", self.settings.frame_samples)
        return pcm
