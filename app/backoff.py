"""Exponential backoff with jitter, for reconnecting after a drop.

Sans-IO: it hands out delays and never sleeps. Jitter spreads the reconnects of thousands of clients after a
server restart so that they do not all arrive in the same millisecond ("equal jitter": half the delay is
fixed, half random).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Delays start at ``initial`` seconds and grow by ``factor`` per failure, up to ``maximum``."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0


class Backoff:
    """Hands out the next delay after each failed attempt; `reset` after a success."""

    def __init__(self, policy: BackoffPolicy = BackoffPolicy(), rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failed attempts since the last success."""
        return self._failures

    def next_delay(self) -> float:
        """The delay before the next attempt (counts one more failure)."""
        ceiling = min(self._policy.maximum, self._policy.initial * self._policy.factor**self._failures)
        self._failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Forget past failures after a success."""
        self._failures = 0
