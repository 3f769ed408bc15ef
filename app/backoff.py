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


@dataclass(frozen=True)
class RetryPolicy:
    """How long an action waits for a contact who cannot be reached now, and how the pauses grow.

    The one policy for sends (the app and ``punchline-cli send``): pauses from 1 s doubling to 10 s (with
    the same jitter as reconnects), and giving up ``give_up_after`` seconds after the first failure.
    """

    backoff: BackoffPolicy = BackoffPolicy(initial=1.0, factor=2.0, maximum=10.0)
    give_up_after: float = 600.0


class Retry:
    """One action's retries under a `RetryPolicy`: `next_delay` until it says to give up. Sans-IO."""

    def __init__(self, policy: RetryPolicy, now: float, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._deadline = now + policy.give_up_after
        self._backoff = Backoff(policy.backoff, rng)

    def next_delay(self, now: float) -> float | None:
        """The pause before the next attempt, or None when it would end past the deadline: give up."""
        delay = self._backoff.next_delay()
        return None if now + delay > self._deadline else delay

    def succeeded(self, now: float) -> None:
        """Progress was made: the pauses start small again and the give-up time counts from ``now``."""
        self._backoff.reset()
        self._deadline = now + self.policy.give_up_after
