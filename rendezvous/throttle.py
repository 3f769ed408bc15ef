"""Sans-IO rate limiting: a token bucket per connection and a failure throttle per account and address.

Both are fed the current time by their caller; neither reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass


class TokenBucket:
    """Allows ``rate`` events per second on average, with bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one; False means the event is over the limit."""
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class FailureThrottle:
    """Locks a key (an account or an IP address) out after repeated failures, for exponentially longer.

    After ``free_failures`` failures in a row each further failure locks the key for 1, 2, 4 ... seconds,
    up to ``max_lockout``. A success clears the key. Keys are forgotten once their lock-out is long over, so
    the table does not grow without bound.
    """

    def __init__(self, free_failures: int, max_lockout: float) -> None:
        self._free = free_failures
        self._max = max_lockout
        self._keys: dict[str, _Failures] = {}

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may try now)."""
        entry = self._keys.get(key)
        return max(0.0, entry.locked_until - now) if entry else 0.0

    def failed(self, key: str, now: float) -> None:
        """Record one failure of ``key``."""
        entry = self._keys.setdefault(key, _Failures())
        entry.count += 1
        over = entry.count - self._free
        if over > 0:
            entry.locked_until = now + min(self._max, 2.0 ** (over - 1))
        if len(self._keys) > 100_000:
            self._forget_old(now)

    def succeeded(self, key: str) -> None:
        """Clear ``key`` after a success."""
        self._keys.pop(key, None)

    def _forget_old(self, now: float) -> None:
        stale = [k for k, e in self._keys.items() if e.locked_until + self._max < now]
        for key in stale:
            del self._keys[key]


class WindowCounter:
    """Counts events per key in fixed windows (for example: accounts created per IP per hour)."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._counts: dict[str, tuple[float, int]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Count one event for ``key``; False when the key already used its allowance in this window."""
        start, count = self._counts.get(key, (now, 0))
        if now - start >= self._window:
            start, count = now, 0
        if count >= self._limit:
            return False
        self._counts[key] = (start, count + 1)
        return True
