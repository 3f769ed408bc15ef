"""Transfer rate and time left, from (time, bytes) samples: sans-IO, the caller supplies the clock."""

from __future__ import annotations

from collections import deque


class RateMeter:
    """The rate over the last ``window`` seconds, and whether a progress report is due."""

    def __init__(self, now: float, *, window: float = 3.0, interval: float = 0.25) -> None:
        self._samples: deque[tuple[float, int]] = deque([(now, 0)])
        self._window = window
        self._interval = interval
        self._last_report = now - interval
        self.count = 0

    def add(self, now: float, count: int) -> None:
        """``count`` more bytes moved at ``now``."""
        self.count += count
        self._samples.append((now, self.count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()

    def rate(self, now: float) -> float:
        """Bytes per second over the window (0 until there are two samples apart in time)."""
        first_time, first_count = self._samples[0]
        elapsed = now - first_time
        return (self.count - first_count) / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float, remaining: int) -> float | None:
        """Seconds to move ``remaining`` more bytes at the current rate, or None while the rate is 0."""
        rate = self.rate(now)
        return remaining / rate if rate > 0 else None

    def due(self, now: float) -> bool:
        """True at most once per ``interval``: time to report progress."""
        if now - self._last_report < self._interval:
            return False
        self._last_report = now
        return True


def human_size(count: float) -> str:
    """1234567 → '1.2 MB' (decimal units, as file managers show them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def human_duration(seconds: float | None) -> str:
    """Seconds as m:ss or h:mm:ss; '?' while unknown."""
    if seconds is None:
        return "?"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
