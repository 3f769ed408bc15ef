"""The adaptive jitter buffer: audio frames in as they arrive, one frame out per playback tick.

Sans-IO: `put` takes parsed packets and their arrival time, `pull` is called by the playback once per frame
period and says what to play (`Play`, `Recover`, `Conceal` or `Silence`); it never reads a clock.

How much it holds:

* **Target.** Every new frame's transit time (arrival minus its media time) is kept for the last
  `JitterConfig.window` frames; the target delay is the `percentile` of how far each lies above the fastest,
  rounded up to whole frames, and never below one frame. Frames that arrive with no jitter are played one
  frame after arrival; a path whose delay wanders by 30 ms gets about 30 ms more.
* **Growing.** When the next frame has not arrived and nothing newer has either (an underrun), the buffer
  conceals one frame and waits for it: playout slips back by a frame, as the target asks.
* **Shrinking.** When the buffer has held more frames than the target for a whole `calm` period (its
  minimum depth over that time is above the target), it drops one frame — a silent one if it can — so
  delay goes back down once the network calms.
* **Losses.** A missing frame with newer ones behind it is lost: if the next frame is there, Opus rebuilds
  the lost one from that packet's in-band FEC (`Recover`); otherwise it is concealed. Copies of earlier
  frames that ride along in packets (`app.voice.audio_packet`) fill gaps before they are due.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from app.voice.audio_packet import AudioPacket

#: Frames further ahead of playout than this are not kept.
_AHEAD = 3000


@dataclass(frozen=True)
class Play:
    """Decode this Opus packet."""

    opus: bytes


@dataclass(frozen=True)
class Recover:
    """The frame is lost; decode it from the in-band FEC of the next packet, this one."""

    next_opus: bytes


@dataclass(frozen=True)
class Conceal:
    """The frame is lost or late; let the decoder conceal it."""


@dataclass(frozen=True)
class Silence:
    """Nothing has started yet: play silence (the decoder is not involved)."""


Playout = Play | Recover | Conceal | Silence


@dataclass(frozen=True)
class JitterConfig:
    """How the buffer adapts (defaults suit 20 ms frames on home connections)."""

    #: Frames whose transit time is remembered for the target.
    window: int = 150
    #: Share of recent frames that should arrive in time.
    percentile: float = 0.95
    #: Seconds the buffer must have held more than its target before it gives a frame back.
    calm: float = 1.0
    #: The target never exceeds this many seconds (a path worse than that is better concealed).
    max_delay: float = 0.4


@dataclass
class JitterStats:
    """Counters for call statistics (see the status panel)."""

    played: int = 0
    recovered_fec: int = 0
    recovered_copy: int = 0
    concealed: int = 0
    late: int = 0
    dropped: int = 0
    underruns: int = 0
    #: The delay the buffer aims for, and what it holds now (seconds).
    target_delay: float = 0.0
    delay: float = 0.0


@dataclass
class _Slot:
    opus: bytes
    from_copy: bool


class JitterBuffer:
    """Frames of one call's incoming audio, reordered, delayed just enough, and played out one per tick."""

    def __init__(self, frame_ms: int = 20, config: JitterConfig | None = None) -> None:
        self.frame = frame_ms / 1000
        self.config = config or JitterConfig()
        self.stats = JitterStats(target_delay=self.frame)
        self._slots: dict[int, _Slot] = {}
        self._next: int | None = None  # the sequence number the next pull plays
        self._highest: int | None = None
        self._first_seq: int | None = None
        self._transits: deque[float] = deque(maxlen=self.config.window)
        self._target_frames = 1
        self._first_arrival: float | None = None
        self._depths: deque[int] = deque(maxlen=max(1, round(self.config.calm / self.frame)))
        self._shrink = False

    @property
    def first_seq(self) -> int | None:
        """The (extended) sequence number of the first frame received."""
        return self._first_seq

    @property
    def highest_seq(self) -> int | None:
        """The highest (extended) sequence number received so far."""
        return self._highest

    # --- input -------------------------------------------------------------------------------------------

    def put(self, packet: AudioPacket, now: float) -> None:
        """Take one received audio packet (its newest frame and any copies of earlier frames)."""
        newest = packet.newest
        seq = self._extend(newest.seq)
        if self._first_arrival is None:
            self._first_arrival = now
            self._next = self._first_seq = seq
        assert self._next is not None
        if self._highest is None or seq > self._highest:
            self._highest = seq
            self._transits.append(now - seq * self.frame)
            self._retarget()
        last = len(packet.frames) - 1
        for i, frame in enumerate(packet.frames):
            frame_seq = seq - (last - i)
            if frame_seq > self._next + _AHEAD:
                continue  # minutes ahead of playout: a broken sender; do not hoard it
            if frame_seq < self._next:
                if i == last:
                    self.stats.late += 1
                continue
            if frame_seq not in self._slots:
                self._slots[frame_seq] = _Slot(frame.opus, from_copy=i != last)

    def _extend(self, seq16: int) -> int:
        # 16-bit sequence numbers, extended around the highest seen (RFC 3550 appendix A.1, simplified).
        if self._highest is None:
            return seq16
        return self._highest + ((seq16 - self._highest + 0x8000) & 0xFFFF) - 0x8000

    def _retarget(self) -> None:
        fastest = min(self._transits)
        spread = sorted(t - fastest for t in self._transits)
        index = min(len(spread) - 1, math.ceil(self.config.percentile * len(spread)) - 1)
        wanted = min(spread[max(0, index)], self.config.max_delay)
        self._target_frames = max(1, math.ceil(wanted / self.frame - 1e-9))
        self.stats.target_delay = self._target_frames * self.frame

    # --- output ------------------------------------------------------------------------------------------

    def pull(self, now: float) -> Playout:
        """What to play for the next frame period."""
        if self._next is None or self._first_arrival is None or self._highest is None:
            return Silence()
        if self.stats.played == 0 and now - self._first_arrival < self._target_frames * self.frame:
            return Silence()  # fill to the target before the first frame
        seq = self._next
        slot = self._slots.pop(seq, None)
        if slot is None and self._highest < seq:
            self.stats.underruns += 1  # nothing newer either: wait for it, one frame more delay
            self.stats.concealed += 1
            self._depths.clear()
            return Conceal()
        if slot is not None and self._shrink and self._can_drop(slot):
            self._shrink = False
            self.stats.dropped += 1
            self._next = seq = seq + 1
            slot = self._slots.pop(seq, None)
            if slot is None and self._highest < seq:
                self.stats.concealed += 1
                return Conceal()
        self._next = seq + 1
        self._measure_depth()
        self.stats.played += 1
        if slot is not None:
            if slot.from_copy:
                self.stats.recovered_copy += 1
            return Play(slot.opus)
        following = self._slots.get(seq + 1)
        if following is not None:
            self.stats.recovered_fec += 1
            return Recover(following.opus)
        self.stats.concealed += 1
        return Conceal()

    def _can_drop(self, slot: _Slot) -> bool:
        # A silent frame (DTX sends 1-2 bytes) goes unnoticed; speech only when two or more frames too many.
        return len(slot.opus) <= 2 or self._depth() > self._target_frames + 1

    def _depth(self) -> int:
        assert self._next is not None
        assert self._highest is not None
        return max(0, self._highest - self._next + 1)

    def _measure_depth(self) -> None:
        depth = self._depth()
        self.stats.delay = (depth + 1) * self.frame
        self._depths.append(depth)
        if len(self._depths) == self._depths.maxlen and min(self._depths) > self._target_frames:
            self._shrink = True
            self._depths.clear()
