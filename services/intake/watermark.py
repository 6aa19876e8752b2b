"""Event time: how far intake has read each upstream partition, in the events' own times.

A scheduled check (a delivery promised by a time, a ticket's first answer) fires only once
intake has read the partition its subject's events arrive on past the check's due time, so an
event still queued behind consumer lag can settle the check first. Upstream events are keyed
by customer id: every event of one order (or ticket) is on the partition of its customer.

The watermark of a partition is the later of
- the newest event time read from it, less `event_lateness` (events of one partition may
  arrive a little out of order), and
- when the partition has been read to its end (no lag, none of its records in a batch being
  processed): the wall clock
  less `idle_fallback`, so an idle stream still fires its checks, at most that late;
and never later than the wall clock. A partition this process is not assigned has no
watermark: its checks are left to the process that reads it.

The state is in memory, per process: after a restart or a rebalance a partition's watermark
starts again from what is read (or from the fallback once it is read to its end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from aiokafka.partitioner import DefaultPartitioner

Partition = tuple[str, int]
_PARTITIONER = DefaultPartitioner()


def partition_of(key: str, partitions: int) -> int:
    """The partition a producer's keyed send picks for `key` (murmur2, as Kafka's clients)."""
    every = list(range(partitions))
    return int(_PARTITIONER(key.encode(), every, every))


class Progress(Protocol):
    """What the consumer knows of its partitions."""

    def partitions(self, topic: str) -> int | None:
        """How many partitions `topic` has (None while unknown)."""

    async def assigned(self) -> Mapping[Partition, bool]:
        """The partitions assigned to this process, each with whether every record published
        to it so far has been handed to the service."""


@dataclass(frozen=True)
class Watermarks:
    """A snapshot of the watermarks, taken at the start of a sweep."""

    counts: Mapping[str, int]
    marks: Mapping[Partition, datetime]

    def of(self, topic: str, key: str) -> datetime | None:
        """How far the partition of `key` on `topic` has been read (None: not ours)."""
        count = self.counts.get(topic)
        if not count:
            return None
        return self.marks.get((topic, partition_of(key, count)))

    @property
    def latest(self) -> datetime | None:
        return max(self.marks.values(), default=None)


@dataclass
class EventTime:
    event_lateness: timedelta
    idle_fallback: timedelta
    progress: Progress | None = None
    newest: dict[Partition, datetime] = field(default_factory=dict)
    _in_flight: dict[Partition, int] = field(default_factory=dict)

    def read(self, seen: Iterable[tuple[str, int, datetime]]) -> None:
        """Events of a batch that was processed: (topic, partition, event time)."""
        newest = self.newest
        for topic, partition, at in seen:
            known = newest.get((topic, partition))
            if known is None or at > known:
                newest[topic, partition] = at

    @contextlib.contextmanager
    def in_flight(self, partitions: Iterable[Partition]) -> Iterator[None]:
        """While a batch is being processed, its partitions do not count as read to their end
        (the consumer's position is past records not yet processed)."""
        held = set(partitions)
        for tp in held:
            self._in_flight[tp] = self._in_flight.get(tp, 0) + 1
        try:
            yield
        finally:
            for tp in held:
                left = self._in_flight[tp] - 1
                if left:
                    self._in_flight[tp] = left
                else:
                    del self._in_flight[tp]

    async def watermarks(self, topics: Sequence[str], now: datetime) -> Watermarks:
        """The watermark of each partition of `topics` assigned here (see the module)."""
        if self.progress is None:
            return Watermarks({}, {})
        assigned = await self.progress.assigned()
        busy = self._in_flight
        counts: dict[str, int] = {}
        for topic in topics:
            count = self.progress.partitions(topic)
            if count:
                counts[topic] = count
        marks: dict[Partition, datetime] = {}
        for tp, read_to_end in assigned.items():
            if tp[0] not in counts:
                continue
            candidates = []
            newest = self.newest.get(tp)
            if newest is not None:
                candidates.append(newest - self.event_lateness)
            if read_to_end and tp not in busy:
                candidates.append(now - self.idle_fallback)
            if candidates:
                marks[tp] = min(now, max(candidates))
        return Watermarks(counts, marks)


class KafkaProgress:
    """`Progress` from the aiokafka consumer of a FastStream subscriber (found when asked:
    the subscriber starts its consumer with the broker)."""

    def __init__(self, broker: Any, topics: Sequence[str]) -> None:
        self._broker = broker
        self._topics = set(topics)

    def _consumer(self) -> Any:
        for subscriber in self._broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            subscription = getattr(consumer, "subscription", None)
            if consumer is not None and subscription is not None and (
                    self._topics & set(subscription() or ())):
                return consumer
        return None

    def partitions(self, topic: str) -> int | None:
        consumer = self._consumer()
        if consumer is None:
            return None
        found = consumer.partitions_for_topic(topic)
        return len(found) if found else None

    async def assigned(self) -> dict[Partition, bool]:
        consumer = self._consumer()
        if consumer is None:
            return {}
        out: dict[Partition, bool] = {}
        for tp in list(consumer.assignment()):
            out[tp.topic, tp.partition] = await self._read_to_end(consumer, tp)
        return out

    @staticmethod
    async def _read_to_end(consumer: Any, tp: Any) -> bool:
        try:
            highwater = consumer.highwater(tp)
            if highwater is None:  # nothing fetched yet: unknown, so not read
                return False
            position = await asyncio.wait_for(consumer.position(tp), 0.5)
        except Exception:  # unassigned meanwhile, or no position yet: not read
            return False
        return bool(position >= highwater)
