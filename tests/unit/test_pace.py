"""The token bucket that paces an outage's remedies and messages, on a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.fulfilment.domain.pace import BURST_S, TokenBucket, shares
from services.fulfilment.pacing import Pacer
from services.fulfilment.settings import FulfilmentSettings
from tests.clock import FakeClock
from tests.decisions import T0

pytestmark = pytest.mark.unit


def test_a_burst_then_one_turn_per_interval() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert [bucket.take(T0) for _ in range(4)] == [0.0, 0.0, pytest.approx(0.1),
                                                    pytest.approx(0.2)]


def test_the_bucket_refills_with_time_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    bucket.take(T0, 2)
    assert bucket.take(T0 + timedelta(seconds=0.1)) == 0.0
    assert bucket.take(T0 + timedelta(seconds=10)) == 0.0
    assert bucket.take(T0 + timedelta(seconds=10)) == 0.0
    assert bucket.take(T0 + timedelta(seconds=10)) == pytest.approx(0.1)


def test_turns_given_back_are_taken_by_the_next_caller() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    bucket.take(T0)
    assert bucket.take(T0) == pytest.approx(1.0)
    bucket.give_back()
    assert bucket.take(T0) == pytest.approx(1.0)


def test_a_clock_going_back_takes_nothing_twice() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    bucket.take(T0 + timedelta(seconds=5))
    assert bucket.take(T0) == pytest.approx(1.0)


@pytest.mark.parametrize("rate", [0.5, 7, 50, 400])
async def test_a_thousand_turns_take_a_thousand_over_the_rate(rate: float) -> None:
    """Observed rate over many turns is the setting (within the one burst at the start)."""
    clock = FakeClock(T0)

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    pacer = Pacer({"email": TokenBucket.at_rate(rate)}, clock, sleep)
    for _ in range(1000):
        assert await pacer.turn("email")
    took = (clock() - T0).total_seconds()
    burst = max(1.0, rate * BURST_S)
    assert took == pytest.approx((1000 - burst) / rate, rel=1e-6)


async def test_an_unpaced_provider_never_waits_and_a_deadline_gives_turns_back() -> None:
    clock = FakeClock(T0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = Pacer({"payments": TokenBucket(rate=1, burst=1)}, clock, sleep)
    assert await pacer.turn("email", 1000)
    assert await pacer.turn("payments")
    assert not await pacer.turn("payments", deadline=0.0)  # the loop's clock is past it
    assert slept == []
    assert pacer.buckets["payments"].take(T0) == pytest.approx(1.0)  # nothing was kept


def test_each_instance_paces_at_its_share() -> None:
    buckets = shares({"email": 90.0, "payments": 3.0}, instances=3)
    assert buckets["email"].rate == 30.0
    assert buckets["payments"].rate == 1.0


def test_unknown_providers_and_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown providers"):
        FulfilmentSettings(pace_per_second={"carrier-pigeon": 1.0})
    with pytest.raises(ValueError, match="positive"):
        FulfilmentSettings(pace_per_second={"email": 0.0})
