"""Handled offsets are committed in the background, in order, and before partitions go."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from services.common.messaging import OffsetCommits, Record

pytestmark = pytest.mark.unit

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class _Consumer:
    """Records each commit; a commit waits for `release` while `held`."""

    def __init__(self, *failures: BaseException) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned = {P0, P1}
        self.failures = list(failures)
        self.held = False
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.started.set()
        if self.held:
            await self.release.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.commits.append(dict(offsets))


def _records(partition: int, *offsets: int) -> list[Record]:
    return [Record("t", partition, offset, b"k", b"v") for offset in offsets]


def _as_consumer(fake: _Consumer) -> AIOKafkaConsumer:
    return cast("Any", fake)


async def test_noting_a_batch_does_not_wait_for_its_commit() -> None:
    fake = _Consumer()
    fake.held = True
    commits = OffsetCommits("t")
    commits.polling()
    commits.note(_as_consumer(fake), _records(0, 0, 1, 2))  # returns at once
    await asyncio.wait_for(fake.started.wait(), 1)
    assert fake.commits == []  # in flight while the next batch is polled and handled
    fake.release.set()
    await commits.drain()
    assert fake.commits == [{P0: 3}]
    await commits.close()


async def test_commits_go_one_at_a_time_in_order_the_latest_offset_of_each_partition() -> None:
    fake = _Consumer()
    fake.held = True
    commits = OffsetCommits("t")
    consumer = _as_consumer(fake)
    commits.polling()
    commits.note(consumer, _records(0, 0, 1))
    await asyncio.wait_for(fake.started.wait(), 1)
    # Handled while the first commit is in flight: gathered into the next one.
    for batch in (_records(0, 2, 3) + _records(1, 0), _records(0, 4), _records(1, 1, 2)):
        commits.polling()
        commits.note(consumer, batch)
    fake.release.set()
    await commits.drain()
    assert fake.commits == [{P0: 2}, {P0: 5, P1: 3}]
    await commits.close()


async def test_an_offset_already_due_never_moves_back() -> None:
    fake = _Consumer()
    fake.held = True
    commits = OffsetCommits("t")
    commits.polling()
    commits.note(_as_consumer(fake), _records(0, 0))
    await asyncio.wait_for(fake.started.wait(), 1)
    commits.note(_as_consumer(fake), _records(0, 5, 6))
    commits.note(_as_consumer(fake), _records(0, 3))  # an earlier record, handled again
    fake.release.set()
    await commits.drain()
    assert fake.commits == [{P0: 1}, {P0: 7}]
    await commits.close()


async def test_a_failed_commit_is_tried_again_unless_a_later_one_superseded_it() -> None:
    fake = _Consumer(KafkaConnectionError("coordinator away"))
    commits = OffsetCommits("t", retry_s=0.01)
    commits.polling()
    commits.note(_as_consumer(fake), _records(0, 0, 1) + _records(1, 7))
    await commits.drain()
    assert fake.commits == [{P0: 2, P1: 8}]
    await commits.close()


async def test_offsets_the_group_has_moved_past_are_dropped_not_retried() -> None:
    fake = _Consumer(CommitFailedError("rebalanced"))
    commits = OffsetCommits("t", retry_s=0.01)
    commits.polling()
    commits.note(_as_consumer(fake), _records(0, 0))
    await commits.drain()
    assert fake.commits == []  # redelivered to the partition's owner
    fake.assigned = {P1}
    commits.note(_as_consumer(fake), _records(0, 1) + _records(1, 4))
    await commits.drain()
    assert fake.commits == [{P1: 5}]  # no longer ours: not committed at all
    await commits.close()


async def test_revocation_commits_what_was_handled_first() -> None:
    fake = _Consumer()
    fake.held = True
    commits = OffsetCommits("t")
    commits.polling()
    commits.note(_as_consumer(fake), _records(0, 0, 1))
    await asyncio.wait_for(fake.started.wait(), 1)
    revoking = asyncio.create_task(commits.revoked({P0, P1}))
    await asyncio.sleep(0.01)
    assert not revoking.done()  # the rebalance waits for the commit
    fake.release.set()
    await revoking
    assert fake.commits == [{P0: 2}]
    await commits.close()


async def test_a_batch_polled_before_a_rebalance_and_handled_after_it_commits_nothing() -> None:
    fake = _Consumer()
    commits = OffsetCommits("t")
    commits.polling()
    await commits.revoked({P0, P1})  # while the batch is handled
    commits.note(_as_consumer(fake), _records(0, 0, 1))
    await commits.drain()
    assert fake.commits == []
    commits.polling()  # the next poll is of the new assignment
    commits.note(_as_consumer(fake), _records(0, 0, 1))
    await commits.drain()
    assert fake.commits == [{P0: 2}]
    await commits.close()


async def test_a_commit_that_never_answers_is_given_up_after_the_timeout() -> None:
    fake = _Consumer()
    fake.held = True
    commits = OffsetCommits("t", timeout_s=0.05)
    commits.polling()
    commits.note(_as_consumer(fake), _records(0, 0))
    await asyncio.wait_for(commits.drain(), 1)  # redelivered later, the stop goes on
    await commits.close()
    assert fake.commits == []
