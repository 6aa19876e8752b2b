"""Event time: a partition's watermark from the events read, the idle fallback only when the
partition is read to its end, and the partition a customer's events are on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.intake.watermark import EventTime, Partition, partition_of

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeProgress:
    def __init__(self, assigned: Mapping[Partition, bool], partitions: int = 4) -> None:
        self.state = dict(assigned)
        self.count = partitions

    def partitions(self, topic: str) -> int | None:
        return self.count if topic == "orders" else None

    async def assigned(self) -> Mapping[Partition, bool]:
        return self.state


def event_time(progress: FakeProgress | None) -> EventTime:
    return EventTime(timedelta(seconds=60), timedelta(seconds=120), progress)


async def test_a_lagging_partition_is_read_only_as_far_as_its_events() -> None:
    clock = T0 + timedelta(hours=5)
    times = event_time(FakeProgress({("orders", 0): False, ("orders", 1): True}))
    times.read([("orders", 0, T0), ("orders", 0, T0 + timedelta(minutes=10)),
                ("orders", 0, T0 + timedelta(minutes=5))])
    marks = await times.watermarks(["orders"], clock)
    # The newest event less the lateness allowed: the wall clock plays no part while behind.
    assert marks.marks["orders", 0] == T0 + timedelta(minutes=10) - timedelta(seconds=60)
    # Read to its end and idle: the wall clock less the fallback.
    assert marks.marks["orders", 1] == clock - timedelta(seconds=120)


async def test_a_partition_is_not_read_to_its_end_while_its_batch_is_in_flight() -> None:
    times = event_time(FakeProgress({("orders", 1): True, ("orders", 2): True}))
    idle = T0 - timedelta(seconds=120)
    with times.in_flight({("orders", 1)}), times.in_flight({("orders", 1)}):
        # Another partition, idle meanwhile, still follows the clock.
        assert (await times.watermarks(["orders"], T0)).marks == {("orders", 2): idle}
    assert (await times.watermarks(["orders"], T0)).marks == {("orders", 1): idle,
                                                              ("orders", 2): idle}


async def test_a_partition_not_assigned_here_or_an_unknown_topic_has_no_watermark() -> None:
    times = event_time(FakeProgress({("orders", 1): True}))
    times.read([("orders", 2, T0)])
    marks = await times.watermarks(["orders", "support"], T0)
    assert set(marks.marks) == {("orders", 1)}
    key = next(k for k in (f"c-{n}" for n in range(100)) if partition_of(k, 4) == 2)
    assert marks.of("orders", key) is None
    assert marks.of("support", key) is None
    assert (await event_time(None).watermarks(["orders"], T0)).latest is None


async def test_event_times_ahead_of_the_wall_clock_do_not_run_checks_early() -> None:
    times = event_time(FakeProgress({("orders", 0): False}))
    times.read([("orders", 0, T0 + timedelta(days=1))])
    assert (await times.watermarks(["orders"], T0)).marks["orders", 0] == T0


def test_a_customers_partition_is_the_one_a_keyed_send_picks() -> None:
    partitioner = DefaultPartitioner()
    for n in range(50):
        key = f"customer-{n}"
        every = list(range(6))
        assert partition_of(key, 6) == partitioner(key.encode(), every, every)
