"""The pace of bulk data during a call (sans-IO, fake clock)."""

from __future__ import annotations

import pytest

from app.session.bulk_pacer import BulkPacer, PacerConfig


def test_pacing_starts_with_a_call_and_ends_a_second_after_it() -> None:
    pacer = BulkPacer()
    assert not pacer.active(0.0)
    pacer.realtime_sent(1.0)
    assert pacer.active(1.5)
    assert not pacer.active(2.01)


def test_the_rate_grows_while_the_queue_is_short_and_falls_when_it_builds() -> None:
    config = PacerConfig()
    pacer = BulkPacer(config)
    now = 0.0
    pacer.realtime_sent(now)
    for _ in range(40):  # 40 ms round trip, no queue: the rate climbs
        now += 0.06
        pacer.realtime_sent(now)
        pacer.rtt_sample(0.040, now)
    grown = pacer.rate
    assert grown > 10 * config.start_rate
    for _ in range(10):  # 60 ms: 20 ms of queue, over the 10 ms target
        now += 0.06
        pacer.realtime_sent(now)
        pacer.rtt_sample(0.060, now)
    assert pacer.queue_delay == pytest.approx(0.020)
    assert pacer.rate < grown * (5 / 6) ** 9


def test_stream_data_waits_for_its_turn() -> None:
    pacer = BulkPacer(PacerConfig(start_rate=100_000))
    pacer.realtime_sent(0.0)
    assert pacer.delay_for(0.0) == 0
    pacer.sent(10_000, 0.0)
    assert pacer.delay_for(0.0) == pytest.approx(0.1)  # 10 kB at 100 kB/s
    assert pacer.delay_for(0.1) == pytest.approx(0.0)
