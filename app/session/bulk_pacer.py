"""Bulk data makes way for a call: a delay-based pace for stream data while audio flows on the session.

QUIC's CUBIC fills whatever queue sits at the bottleneck (a home router may hold 400 ms); audio datagrams
wait in the same queue, so a file transfer during a call added 420 ms to the call's delay in the NAT lab
(`tests/bench/call_quality.py`). While the session carries real-time datagrams, stream data is paced
instead, LEDBAT-style (RFC 6817): the queueing delay is the latest round trip minus the lowest seen
recently; while it stays under `PacerConfig.target_delay` the rate grows, above it the rate falls by a
sixth each `update_interval`, so the queue stays short and the call keeps its delay. A second after the
last audio datagram, stream data goes at QUIC's own pace again.

Sans-IO: fed with the time, RTT samples and what was sent; `delay_for` says how long to wait before more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PacerConfig:
    """How bulk data yields to a call."""

    #: Queueing delay stream data may cause while a call is on (seconds).
    target_delay: float = 0.010
    #: Pacing lasts this long after the last real-time datagram.
    realtime_hold: float = 1.0
    #: Rate changes at most this often (seconds).
    update_interval: float = 0.05
    #: Bytes per second: where pacing starts, and the floor it never goes under.
    start_rate: float = 250_000.0
    min_rate: float = 25_000.0
    #: The lowest round trip is remembered for this long (a path change must be able to raise it).
    base_window: float = 30.0


class BulkPacer:
    """The pace for stream data on one session."""

    def __init__(self, config: PacerConfig | None = None) -> None:
        self.config = config or PacerConfig()
        self.rate = self.config.start_rate
        self.queue_delay = 0.0
        self._realtime_until = -1.0
        self._tokens = 0.0
        self._refilled: float | None = None
        self._updated = -1.0
        self._base: list[tuple[float, float]] = []  # (window start, lowest rtt in it)

    def realtime_sent(self, now: float) -> None:
        """A call's datagram went out: pace bulk data for a while."""
        if not self.active(now):
            self.rate = self.config.start_rate
            self._tokens = 0.0
            self._refilled = now
        self._realtime_until = now + self.config.realtime_hold

    def active(self, now: float) -> bool:
        """Whether stream data is paced now."""
        return now < self._realtime_until

    def rtt_sample(self, rtt: float, now: float) -> None:
        """The latest round trip QUIC measured."""
        if rtt <= 0:
            return
        half = self.config.base_window / 2
        if not self._base or now - self._base[-1][0] >= half:
            self._base.append((now, rtt))
            self._base = self._base[-2:]
        elif rtt < self._base[-1][1]:
            self._base[-1] = (self._base[-1][0], rtt)
        base = min(low for _, low in self._base)
        self.queue_delay = max(0.0, rtt - base)
        if not self.active(now) or now - self._updated < self.config.update_interval:
            return
        self._updated = now
        if self.queue_delay > self.config.target_delay:
            self.rate = max(self.config.min_rate, self.rate * 5 / 6)
        else:
            # Grow faster the emptier the queue: up to an eighth per update.
            room = 1 - self.queue_delay / self.config.target_delay
            self.rate += self.rate * room / 8

    def delay_for(self, now: float) -> float:
        """Seconds to wait before more stream data may go (0: now; call `sent` with what went)."""
        self._refill(now)
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def sent(self, size: int, now: float) -> None:
        """``size`` bytes of stream data were handed to QUIC (the credit may go negative: a debt)."""
        self._refill(now)
        self._tokens -= size

    def _refill(self, now: float) -> None:
        if self._refilled is None:
            self._refilled = now
        # At most 10 ms of credit: a paused writer must not come back with a burst.
        self._tokens = min(self.rate * 0.010, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
