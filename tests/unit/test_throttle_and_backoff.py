"""The sans-IO limiters and the reconnect backoff, driven with a fake clock."""

from __future__ import annotations

import random

from app.backoff import Backoff, BackoffPolicy, Retry, RetryPolicy
from rendezvous.throttle import FailureThrottle, TokenBucket, WindowCounter


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.05)
    assert bucket.allow(0.1)  # one token back after 1/rate seconds
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]  # refills to burst, no more


def test_failure_throttle_locks_out_exponentially_and_clears_on_success() -> None:
    throttle = FailureThrottle(free_failures=2, max_lockout=5.0)
    for _ in range(2):
        throttle.failed("user:a", now=0.0)
    assert throttle.retry_after("user:a", 0.0) == 0.0
    lockouts = []
    for _ in range(5):
        throttle.failed("user:a", now=0.0)
        lockouts.append(throttle.retry_after("user:a", 0.0))
    assert lockouts == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert throttle.retry_after("user:a", 6.0) == 0.0
    assert throttle.retry_after("user:b", 0.0) == 0.0
    throttle.succeeded("user:a")
    assert throttle.retry_after("user:a", 0.0) == 0.0


def test_window_counter() -> None:
    counter = WindowCounter(limit=2, window=60.0)
    assert [counter.allow("ip", 0.0) for _ in range(3)] == [True, True, False]
    assert counter.allow("other", 1.0)
    assert counter.allow("ip", 60.0)


def test_backoff_equal_jitter_grows_to_the_cap_and_resets() -> None:
    backoff = Backoff(BackoffPolicy(initial=1.0, factor=2.0, maximum=8.0), rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(6)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_backoff_spreads_a_crowd() -> None:
    """Many clients dropped at once do not all come back in the same instant."""
    first_retries = sorted(Backoff(rng=random.Random(seed)).next_delay() for seed in range(1000))
    assert first_retries[0] >= 0.25
    assert first_retries[-1] <= 0.5
    assert first_retries[-1] - first_retries[0] > 0.2


def test_retry_gives_up_at_the_deadline_and_progress_restarts_the_clock() -> None:
    policy = RetryPolicy(BackoffPolicy(initial=1.0, factor=2.0, maximum=10.0), give_up_after=30.0)
    retry = Retry(policy, now=100.0, rng=random.Random(3))
    now, delays = 100.0, []
    while (delay := retry.next_delay(now)) is not None:
        delays.append(delay)
        now += delay
    assert now <= 130.0
    assert max(delays) <= 10.0
    assert 0.5 <= delays[0] <= 1.0
    retry.succeeded(now)
    first, second = retry.next_delay(now), retry.next_delay(now)  # a fresh 30 s and small pauses again
    assert first is not None
    assert second is not None
    assert second <= 2.0
