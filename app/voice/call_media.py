"""One call's audio over a peer session: microphone → Opus → datagrams → jitter buffer → speaker.

Three loops run while the call lasts: capture (one frame per period from the `Microphone`, encoded and sent
as an audio datagram at once — DATAGRAM frames leave ahead of queued file data), playout (one frame per
period from the `JitterBuffer`, decoded, concealed or rebuilt from FEC, to the `Speaker`) and reports.

Reports (a DATAGRAM each way every `MediaConfig.report_interval`)::

    u8   kind        0xA2
    u32  loss        newest frames lost on the way in, parts per million (before any repair)
    u32  jitter      the receiving jitter buffer's target delay, microseconds
    f64  sent_at     the sender's clock
    f64  echo        the last ``sent_at`` it received from the peer (0: none yet)
    f64  held        seconds between receiving that report and sending this one

Loss sets how many earlier frames each packet carries and the encoder's FEC; ``echo`` and ``held`` give
the round trip (as RTCP's LSR and DLSR do) without synchronised clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from dataclasses import dataclass, field, replace

from app.session.datagram_kinds import DatagramKind
from app.session.peer_session import PeerSession
from app.voice.audio_io import AudioProcessor, Microphone, Speaker, level_dbfs, scale
from app.voice.audio_packet import KIND as AUDIO_KIND
from app.voice.audio_packet import AudioPacketError, Packetizer, decode_packet
from app.voice.jitter_buffer import Conceal, JitterBuffer, JitterConfig, Play, Recover
from app.voice.opus_codec import SAMPLE_BYTES, SAMPLE_RATE, CodecSettings, VoiceDecoder, VoiceEncoder

REPORT_KIND = DatagramKind.AUDIO_REPORT
_REPORT = struct.Struct("!BIIddd")


@dataclass(frozen=True)
class MediaConfig:
    """A call's audio settings."""

    codec: CodecSettings = field(default_factory=CodecSettings)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    #: Seconds between reports to the peer.
    report_interval: float = 0.5


@dataclass(frozen=True)
class CallStats:
    """What the call looks like right now, for the UI's status panel and the CLI."""

    rtt_ms: float | None
    #: Share of the peer's frames lost on the way to us, and of ours on the way to them (before repair).
    loss_in: float
    loss_out: float
    #: Spread of arrival times (the jitter buffer's target) and the delay the buffer holds now.
    jitter_ms: float
    buffer_ms: float
    fec_recovered: int
    copies_used: int
    concealed: int
    #: Our sending bitrate (bits per second of Opus payload) and the earlier frames each packet carries.
    bitrate: float
    redundancy: int
    #: Loudness of the microphone (dBFS) and whether it is muted.
    input_level: float
    muted: bool
    #: Estimated mean opinion score, 1 (bad) to 4.5 (excellent), from the ITU-T G.107 E-model.
    quality: float


def estimate_mos(one_way_ms: float, residual_loss: float) -> float:
    """Mean opinion score from mouth-to-ear delay and the share of frames concealed (simplified E-model)."""
    delay_impairment = 0.024 * one_way_ms + (0.11 * (one_way_ms - 177.3) if one_way_ms > 177.3 else 0.0)
    percent = 100 * residual_loss
    loss_impairment = 95 * percent / (percent + 20)  # wideband Opus: Ie 0, robustness Bpl about 20
    r = max(0.0, min(100.0, 93.2 - delay_impairment - loss_impairment))
    return round(1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r), 2)


class CallMedia:
    """The audio of one call on ``session``; `run` it, `stop` it, read `stats`, set `muted` and `volume`."""

    def __init__(
        self,
        session: PeerSession,
        microphone: Microphone,
        speaker: Speaker,
        config: MediaConfig | None = None,
        *,
        processor: AudioProcessor | None = None,
    ) -> None:
        self.session = session
        self.config = config or MediaConfig()
        self.microphone = microphone
        self.speaker = speaker
        self.muted = False
        self.volume = 1.0
        #: Echo cancellation / noise suppression, when one is plugged in (see `AudioProcessor`).
        self.processor = processor
        self._last_played: bytes | None = None
        codec = self.config.codec
        self._encoder = VoiceEncoder(codec)
        self._decoder = VoiceDecoder(codec)
        self._packetizer = Packetizer(codec.frame_ms)
        self._buffer = JitterBuffer(codec.frame_ms, self.config.jitter)
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # Receiving counters, for our reports.
        self._received = 0
        self._reported_highest: int | None = None
        self._loss_in = 0.0
        self._peer_report: tuple[float, float] | None = None  # (their sent_at, when we got it)
        # From the peer's reports.
        self._loss_out = 0.0
        self._rtt: float | None = None
        self._bytes_sent = 0
        self._started = self._loop.time()
        self._level = -96.0
        #: Event-loop (monotonic) times of the first microphone sample sent and the first speaker sample
        #: played: with a recording they give mouth-to-ear delay across processes on one machine.
        self.first_capture_at: float | None = None
        self.first_playout_at: float | None = None
        self._first_arrival: float | None = None
        self._arrived = asyncio.Event()
        self._phased = False
        self._seconds_played = 0.0
        self._capture_task: asyncio.Task[None] | None = None

    # --- control -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Carry audio both ways until `stop` or the session ends."""
        self.session.set_datagram_receiver(AUDIO_KIND, self._audio_received)
        self.session.set_datagram_receiver(REPORT_KIND, self._report_received)
        self._capture_task = asyncio.create_task(self._capture())
        tasks = [asyncio.create_task(self._playout()), asyncio.create_task(self._reports())]
        try:
            await self.session.unless_closed(self._stopped.wait())
        finally:
            tasks.append(self._capture_task)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.session.set_datagram_receiver(AUDIO_KIND, None)
            self.session.set_datagram_receiver(REPORT_KIND, None)
            self.microphone.close()
            self.speaker.close()

    def stop(self) -> None:
        """End the audio (the call's signalling says why)."""
        self._stopped.set()

    def use_devices(self, microphone: Microphone | None = None, speaker: Speaker | None = None) -> None:
        """Go on with another microphone and/or speaker (the in-call device pickers); the old ones close."""
        if speaker is not None:
            old_speaker, self.speaker = self.speaker, speaker
            old_speaker.close()
        if microphone is not None:
            old_microphone, self.microphone = self.microphone, microphone
            if self._capture_task is not None and not self._capture_task.done():
                self._capture_task.cancel()  # it may wait on the old device, which sends no more
                self._capture_task = asyncio.create_task(self._capture())
            old_microphone.close()

    def stats(self) -> CallStats:
        """The call's numbers now."""
        jitter = self._buffer.stats
        frame = self.config.codec.frame_ms
        elapsed = max(1e-3, self._loop.time() - self._started)
        played = max(1, jitter.played + jitter.concealed)
        residual = jitter.concealed / played
        one_way = (self._rtt or 0.0) * 500 + jitter.delay * 1000 + frame
        return CallStats(
            rtt_ms=None if self._rtt is None else round(self._rtt * 1000, 1),
            loss_in=self._loss_in,
            loss_out=self._loss_out,
            jitter_ms=round(jitter.target_delay * 1000, 1),
            buffer_ms=round(jitter.delay * 1000, 1),
            fec_recovered=jitter.recovered_fec,
            copies_used=jitter.recovered_copy,
            concealed=jitter.concealed,
            bitrate=round(self._bytes_sent * 8 / elapsed),
            redundancy=self._packetizer.redundancy,
            input_level=round(self._level, 1),
            muted=self.muted,
            quality=estimate_mos(one_way, residual),
        )

    # --- sending -----------------------------------------------------------------------------------------

    async def _capture(self) -> None:
        silence = bytes(self.config.codec.frame_bytes)
        while True:
            pcm = await self.microphone.read()
            if self.first_capture_at is None:
                self.first_capture_at = self._loop.time() - self.config.codec.frame_ms / 1000
            if self.processor is not None:
                pcm = self.processor(pcm, self._last_played)
            self._level = level_dbfs(pcm)
            opus = self._encoder.encode(silence if self.muted else pcm)
            data = self._packetizer.packet(opus)
            self._bytes_sent += len(data)
            if self.session.is_closed:
                return
            self.session.send_datagram(data)

    # --- receiving ---------------------------------------------------------------------------------------

    def _audio_received(self, data: bytes) -> None:
        try:
            packet = decode_packet(data)
        except AudioPacketError:
            return  # not playable; a peer bug, not worth ending the call for
        self._received += 1
        now = self._loop.time()
        if self._first_arrival is None and packet.frame_ms != self._buffer.frame * 1000:
            # The peer chose another frame length (10 or 20 ms): play its frames at its pace.
            self._buffer = JitterBuffer(packet.frame_ms, self.config.jitter)
            self._decoder = VoiceDecoder(replace(self.config.codec, frame_ms=packet.frame_ms))
        self._buffer.put(packet, now)
        if self._first_arrival is None:
            self._first_arrival = now
            self._arrived.set()

    async def _playout(self) -> None:
        period = self.config.codec.frame_ms / 1000
        tick = self._loop.time() + period
        while True:
            wait = tick - self._loop.time()
            if wait > 0 and self._first_arrival is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), wait)
            if self._first_arrival is not None and not self._phased:
                # Play in step with the peer's packets: the first frame one target delay after it arrived,
                # not up to a frame later whenever our own clock happens to tick.
                self._phased = True
                period = self._buffer.frame
                tick = self._first_arrival + self._buffer.stats.target_delay
                continue
            if wait > 0:
                await asyncio.sleep(max(0.0, tick - self._loop.time()))
            tick += period
            item = self._buffer.pull(self._loop.time())
            if isinstance(item, Play):
                pcm = self._decoder.decode(item.opus)
            elif isinstance(item, Recover):
                pcm = self._decoder.recover(item.next_opus)
            elif isinstance(item, Conceal):
                pcm = self._decoder.conceal()
            else:
                pcm = bytes(round(period * SAMPLE_RATE) * SAMPLE_BYTES)
            if self.first_playout_at is None and self._phased:
                # The time the speaker's first sample would have played on the clock it plays by now.
                self.first_playout_at = self._loop.time() - self._seconds_played
            self._seconds_played += len(pcm) / (SAMPLE_RATE * SAMPLE_BYTES)
            self._last_played = pcm
            self.speaker.play(scale(pcm, self.volume))

    # --- reports -----------------------------------------------------------------------------------------

    async def _reports(self) -> None:
        while True:
            await asyncio.sleep(self.config.report_interval)
            self._measure_loss_in()
            now = self._loop.time()
            echo, held = (0.0, 0.0)
            if self._peer_report is not None:
                echo, held = self._peer_report[0], now - self._peer_report[1]
            jitter_us = round(self._buffer.stats.target_delay * 1e6)
            report = _REPORT.pack(REPORT_KIND, round(self._loss_in * 1e6), jitter_us, now, echo, held)
            if self.session.is_closed:
                return
            self.session.send_datagram(report)

    def _measure_loss_in(self) -> None:
        highest, first = self._buffer.highest_seq, self._buffer.first_seq
        if highest is None or first is None:
            return
        previous = first - 1 if self._reported_highest is None else self._reported_highest
        expected = highest - previous
        received, self._received = self._received, 0
        self._reported_highest = highest
        if expected > 0:
            self._loss_in = max(0.0, min(1.0, 1 - received / expected))

    def _report_received(self, data: bytes) -> None:
        if len(data) != _REPORT.size:
            return
        _, loss_ppm, _jitter_us, sent_at, echo, held = _REPORT.unpack(data)
        now = self._loop.time()
        self._peer_report = (sent_at, now)
        if echo > 0 and math.isfinite(echo) and math.isfinite(held):
            rtt = now - echo - held
            if 0 <= rtt < 10:
                self._rtt = rtt if self._rtt is None else 0.8 * self._rtt + 0.2 * rtt
        self._loss_out = min(1.0, loss_ppm / 1e6)
        self._packetizer.set_loss(self._loss_out)
        self._encoder.set_expected_loss(round(self._loss_out * 100))
