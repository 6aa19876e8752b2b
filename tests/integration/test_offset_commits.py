"""Offsets committed in the background, on the real broker: never ahead of what was handled,
in order, while the next batch is handled; a consumer killed with commits in flight has its
handled records redelivered, not lost; a stopped one commits what it handled."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.common.messaging import (
    ConsumerMetrics,
    Record,
    ensure_topics,
    make_broker,
    subscribe_batches,
)
from services.common.settings import ServiceSettings
from tests.infra import Infra
from tests.kafka_tools import produce
from tests.processes import REPO

pytestmark = pytest.mark.integration

PARTITIONS = 3
RECORDS = 240

Handled = set[tuple[int, int]]


async def _topic(infra: Infra, suffix: str) -> str:
    topic = f"commits.{suffix}"
    await ensure_topics(infra.kafka_bootstrap, [topic], PARTITIONS)
    await produce(infra.kafka_bootstrap, topic,
                  [(f"k{n % 24}", f"v{n}".encode()) for n in range(RECORDS)])
    return topic


async def _offsets(infra: Infra, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset and the end of each partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        committed = {tp.partition: await consumer.committed(tp) or 0 for tp in partitions}
    finally:
        await consumer.stop()
    return committed, {tp.partition: end for tp, end in ends.items()}


def _settings(infra: Infra, group: str) -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap=infra.kafka_bootstrap, consumer_group=group,
                           batch_max_records=5, batch_timeout_ms=20)


async def _wait(until: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_commits_follow_what_was_handled_in_order_while_the_next_batch_is_handled(
        infra: Infra, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    topic, group = await _topic(infra, suffix), f"commits-{suffix}"
    handled: dict[int, int] = {}  # partition -> next offset to handle
    commits: list[tuple[dict[int, int], dict[int, int]]] = []  # (committed, handled then)
    in_flight = 0
    batches_during_a_commit = 0
    commit = AIOKafkaConsumer.commit

    async def slow_commit(self: AIOKafkaConsumer, offsets: Any = None) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            await asyncio.sleep(0.05)  # a coordinator that takes its time
            seen = dict(handled)
            await commit(self, offsets)
            commits.append(({tp.partition: o for tp, o in offsets.items()}, seen))
        finally:
            in_flight -= 1

    monkeypatch.setattr(AIOKafkaConsumer, "commit", slow_commit)

    async def handle(records: list[Record]) -> None:
        nonlocal batches_during_a_commit
        batches_during_a_commit += in_flight > 0
        for record in records:
            assert record.offset == handled.get(record.partition, 0)  # in order, no gap
            handled[record.partition] = record.offset + 1

    registry = CollectorRegistry()
    broker = make_broker(_settings(infra, group), registry)
    subscribe_batches(broker, _settings(infra, group), [topic], handle, name="worker",
                      metrics=ConsumerMetrics(registry))
    await broker.start()
    try:
        await _wait(lambda: sum(handled.values()) >= RECORDS)
    finally:
        await broker.stop()

    committed, ends = await _offsets(infra, topic, group)
    assert committed == ends == handled  # the stop committed the last batches
    assert batches_during_a_commit > 0, "every batch waited for the commit before it"
    last: dict[int, int] = defaultdict(int)
    for offsets, seen in commits:
        for partition, offset in offsets.items():
            assert offset <= seen.get(partition, 0), "committed ahead of what was handled"
            assert offset >= last[partition], "a commit went back"
            last[partition] = offset
    assert len(commits) < RECORDS // 5  # gathered while one was in flight, not one a batch


def _start_worker(infra: Infra, topic: str, group: str, out: Path,
                  log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.commit_worker", infra.kafka_bootstrap, topic, group,
         str(out)], cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def test_a_consumer_killed_before_its_commits_land_has_its_records_redelivered(
        infra: Infra, suffix: str, tmp_path: Path) -> None:
    topic, group = await _topic(infra, suffix), f"commits-{suffix}"
    out, log = tmp_path / "handled.txt", tmp_path / "worker.log"
    out.touch()

    def handled_before() -> Handled:
        lines = out.read_text().splitlines()
        return {(int(p), int(o)) for p, o in (line.split() for line in lines if line)}

    worker = _start_worker(infra, topic, group, out, log)
    try:
        # Its first commit landed, and more was handled since, whose commits never land.
        await _wait(lambda: "committed" in log.read_text()
                    and len(handled_before()) >= RECORDS // 3)
    finally:
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    before = handled_before()
    committed, ends = await _offsets(infra, topic, group)
    assert 0 < sum(committed.values()) < len(before) < RECORDS, log.read_text()
    uncommitted = {(p, o) for p, o in before if o >= committed[p]}
    assert uncommitted, "nothing was handled past the commit: the kill proves nothing"

    after: Handled = set()

    async def handle(records: list[Record]) -> None:
        after.update((r.partition, r.offset) for r in records)

    registry = CollectorRegistry()
    broker = make_broker(_settings(infra, group), registry)
    subscribe_batches(broker, _settings(infra, group), [topic], handle, name="worker",
                      metrics=ConsumerMetrics(registry))
    await broker.start()
    remaining = {(p, o) for p, end in ends.items() for o in range(committed[p], end)}
    try:
        await _wait(lambda: remaining <= after)
    finally:
        await broker.stop()

    assert after == remaining  # from the last commit on, the handled ones included
    assert uncommitted <= after
    assert before | after == {(p, o) for p, end in ends.items() for o in range(end)}
    assert (await _offsets(infra, topic, group))[0] == ends
