"""Audio datagrams: one Opus frame with its sequence number and timestamp, plus copies of earlier frames.

Each QUIC DATAGRAM frame of a call carries (version 1, network byte order)::

    u8   kind          0xA1
    u8   flags         bit 0: 10 ms frames (otherwise 20 ms)
    u16  sequence      of the newest frame; wraps
    u32  timestamp     of the newest frame, in 48 kHz samples; wraps
    u8   r             how many earlier frames ride along (0-3): sequence-r .. sequence-1
    r x  u16           their lengths, oldest first
    r x  bytes         the earlier frames, oldest first
         bytes         the newest frame (the rest of the datagram)

The earlier frames are redundancy in the manner of RED (RFC 2198): Opus's in-band FEC alone scores about
2.8 PESQ at 5 % loss, whereas a frame lost only when r + 1 datagrams in a row are lost survives 5 % loss
almost always. The sender picks r from the loss the receiver reports (`redundancy_for_loss`).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from app.session.datagram_kinds import DatagramKind
from app.voice.opus_codec import SAMPLE_RATE

KIND = DatagramKind.AUDIO
MAX_REDUNDANCY = 3
_HEADER = struct.Struct("!BBHIB")
_LENGTH = struct.Struct("!H")
_FLAG_10MS = 0x01


class AudioPacketError(ValueError):
    """A datagram that is not a well-formed audio packet (from a peer: drop it)."""


@dataclass(frozen=True)
class AudioFrame:
    """One Opus frame as received: its sequence number and timestamp (both wrap) and the packet."""

    seq: int
    timestamp: int
    opus: bytes


@dataclass(frozen=True)
class AudioPacket:
    """A parsed audio datagram: the newest frame last, earlier copies before it."""

    frame_ms: int
    frames: tuple[AudioFrame, ...]

    @property
    def newest(self) -> AudioFrame:
        """The frame this datagram was sent for."""
        return self.frames[-1]


def redundancy_for_loss(loss: float) -> int:
    """Earlier frames to carry at the reported loss rate (0-1): none on a clean path, up to three."""
    if loss < 0.005:
        return 0
    if loss < 0.03:
        return 1
    if loss < 0.10:
        return 2
    return MAX_REDUNDANCY


def encode_packet(frame_ms: int, seq: int, timestamp: int, newest: bytes, earlier: list[bytes]) -> bytes:
    """The datagram for frame ``seq`` with ``earlier`` (oldest first) riding along."""
    if len(earlier) > MAX_REDUNDANCY:
        raise ValueError(f"at most {MAX_REDUNDANCY} earlier frames")
    flags = _FLAG_10MS if frame_ms == 10 else 0
    header = _HEADER.pack(KIND, flags, seq & 0xFFFF, timestamp & 0xFFFFFFFF, len(earlier))
    lengths = b"".join(_LENGTH.pack(len(frame)) for frame in earlier)
    return header + lengths + b"".join(earlier) + newest


def decode_packet(data: bytes) -> AudioPacket:
    """Parse an audio datagram; raise `AudioPacketError` if it is not one."""
    if len(data) < _HEADER.size:
        raise AudioPacketError("too short")
    kind, flags, seq, timestamp, count = _HEADER.unpack_from(data)
    if kind != KIND:
        raise AudioPacketError(f"not an audio packet (kind {kind:#x})")
    if count > MAX_REDUNDANCY:
        raise AudioPacketError(f"{count} earlier frames (at most {MAX_REDUNDANCY})")
    frame_ms = 10 if flags & _FLAG_10MS else 20
    step = SAMPLE_RATE * frame_ms // 1000
    offset = _HEADER.size + count * _LENGTH.size
    if len(data) < offset:
        raise AudioPacketError("truncated lengths")
    lengths = [_LENGTH.unpack_from(data, _HEADER.size + i * _LENGTH.size)[0] for i in range(count)]
    frames = []
    for i, length in enumerate(lengths):
        if offset + length > len(data):
            raise AudioPacketError("truncated frame")
        back = count - i
        frames.append(
            AudioFrame(
                (seq - back) & 0xFFFF, (timestamp - back * step) & 0xFFFFFFFF, data[offset : offset + length]
            )
        )
        offset += length
    if offset >= len(data):
        raise AudioPacketError("no newest frame")
    frames.append(AudioFrame(seq, timestamp, data[offset:]))
    return AudioPacket(frame_ms, tuple(frames))


class Packetizer:
    """The sending side: numbers frames and adds the earlier ones the reported loss calls for."""

    def __init__(self, frame_ms: int) -> None:
        self.frame_ms = frame_ms
        self.redundancy = 0
        self._seq = 0
        self._timestamp = 0
        self._history: deque[bytes] = deque(maxlen=MAX_REDUNDANCY)

    def set_loss(self, loss: float) -> None:
        """Follow the loss rate the receiver reports (0-1)."""
        self.redundancy = redundancy_for_loss(loss)

    def packet(self, opus: bytes) -> bytes:
        """The datagram for the next frame."""
        earlier = list(self._history)[len(self._history) - min(self.redundancy, len(self._history)) :]
        data = encode_packet(self.frame_ms, self._seq, self._timestamp, opus, earlier)
        self._history.append(opus)
        self._seq += 1
        self._timestamp += SAMPLE_RATE * self.frame_ms // 1000
        return data
