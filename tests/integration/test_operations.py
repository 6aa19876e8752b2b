"""Replay and dead-letter redrive on the real broker and database."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from amends import ops
from amends.cli import app as cli
from services.common.adapters.mongo import Doc
from tests.factories import late_and_on_time
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce, until_timeout
from tests.operator_api import operator_env
from tests.pipeline import Pipeline, decided_and_done, running_pipeline

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def _counts(mongo: AsyncMongoClient[Doc], pipeline: Pipeline) -> dict[str, int]:
    """Documents in every collection of every service."""
    counts = {}
    for db in pipeline.dbs:
        for name in await mongo[db].list_collection_names():
            counts[f"{db}.{name}"] = await mongo[db][name].count_documents({})
    return counts


async def test_replaying_the_incidents_topic_creates_nothing_new(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    late, on_time = late_and_on_time(suffix, BASE, late=6, on_time=2)
    async with running_pipeline(infra, suffix) as pipeline:
        await produce(infra.kafka_bootstrap, pipeline.topics.orders, as_json(late + on_time))
        _, before = await decided_and_done(infra, pipeline, decisions=6)
        counts = await _counts(mongo, pipeline)

        # The CLI, as an operator would run it, replays every incident into the pipeline.
        with operator_env(infra, AMENDS_AUDIT_TOPIC=pipeline.topics.audit) as operator:
            result = await asyncio.to_thread(
                CliRunner().invoke, cli,
                ["replay", "--topic", pipeline.topics.incidents, "--from", "earliest"],
                env={"AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap, **operator})
        assert result.exit_code == 0, result.output
        assert "published 6 messages" in result.output

        # and the upstream events too, filtered to one customer, at a bounded rate.
        one = late[0]["subject"]
        summary = await ops.replay(infra.kafka_bootstrap, pipeline.topics.orders,
                                   start=ops.Position.parse("earliest"),
                                   only=ops.ReplayFilter(customer=one), rate=50)
        assert (summary.scanned, summary.matched, summary.published) == (8, 1, 1)

        incidents = await collect(infra.kafka_bootstrap, pipeline.topics.incidents,
                                  lambda seen: len(seen) >= 12)
        assert len(incidents) == 12  # the six originals and their six replays
        after = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                              until_timeout, timeout_s=4.0)
        assert await _counts(mongo, pipeline) == counts
    assert len(after) == len(before)
    assert counts[f"{pipeline.db('intake')}.incidents"] == 6
    assert counts[f"{pipeline.db('decision')}.decisions"] == 6
    assert counts[f"{pipeline.db('fulfilment')}.messages"] == 6
    assert counts[f"{pipeline.db('fulfilment')}.outcomes"] == len(before)


async def test_a_dry_run_counts_without_publishing(infra: Infra, suffix: str) -> None:
    topic = f"dry.{suffix}"
    late, _ = late_and_on_time(suffix, BASE, late=5, on_time=0)
    await produce(infra.kafka_bootstrap, topic, as_json(late))
    summary = await ops.replay(infra.kafka_bootstrap, topic, start=ops.Position(offset=0),
                               only=ops.ReplayFilter(event_type="order.delivered"),
                               dry_run=True)
    assert (summary.scanned, summary.matched, summary.published) == (5, 5, 0)
    assert len(await collect(infra.kafka_bootstrap, topic, until_timeout, timeout_s=2)) == 5


async def test_dead_letters_are_listed_shown_and_redriven_byte_for_byte(
        infra: Infra, suffix: str) -> None:
    late, _ = late_and_on_time(suffix, BASE, late=1, on_time=0)
    broken = dict(late[0], id=f"broken-{suffix}")
    broken["data"] = dict(broken["data"], delivered_at="not a time")
    bad = [("c-garbage", b"\xff\x00 not json"), ("c-broken", json.dumps(broken).encode())]
    env = {"AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap, "AMENDS_MONGO_URL": infra.mongo_url,
           "AMENDS_DEADLETTER_TOPIC": f"deadletter.{suffix}", "AMENDS_OPS_DB": f"ops_{suffix}",
           "AMENDS_AUDIT_TOPIC": f"audit.{suffix}"}
    async with running_pipeline(infra, suffix) as pipeline, _operator_env(infra) as operator:
        env |= operator
        await produce(infra.kafka_bootstrap, pipeline.topics.orders, [*bad, *as_json(late)])
        await collect(infra.kafka_bootstrap, pipeline.topics.deadletter, lambda s: len(s) >= 2)
        letters = await ops.read_dead_letters(infra.kafka_bootstrap, pipeline.topics.deadletter)
        assert sorted((i.letter.service, i.letter.reason.value) for i in letters) == [
            ("intake", "invalid"), ("intake", "undecodable")]
        invalid = next(i for i in letters if i.letter.reason.value == "invalid")
        assert "data.delivered_at" in invalid.letter.error

        runner = CliRunner()
        listed = await asyncio.to_thread(runner.invoke, cli, ["dlq", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert "undecodable" in listed.output
        assert "invalid" in listed.output
        shown = await asyncio.to_thread(runner.invoke, cli,
                                        ["dlq", "show", invalid.letter.dead_letter_id], env=env)
        assert shown.exit_code == 0, shown.output
        assert "not a time" in shown.output

        ids = [i.letter.dead_letter_id for i in letters]
        redrive = ["dlq", "redrive", *ids]
        redriven = await asyncio.to_thread(runner.invoke, cli, redrive, env=env)
        assert "redrove 2 dead letters" in redriven.output, redriven.output
        again = await asyncio.to_thread(runner.invoke, cli, redrive, env=env)
        assert "redrove 0 dead letters" in again.output, again.output

        # Still broken, so the redriven copies come back as two new dead letters.
        all_letters = await collect(infra.kafka_bootstrap, pipeline.topics.deadletter,
                                    lambda s: len(s) >= 4, settle_s=1.0)
    assert len(all_letters) == 4
    raw = await _raw_values(infra.kafka_bootstrap, pipeline.topics.orders)
    assert raw.count(bad[0][1]) == 2
    assert raw.count(bad[1][1]) == 2


@contextlib.asynccontextmanager
async def _operator_env(infra: Infra) -> AsyncIterator[dict[str, str]]:
    with operator_env(infra) as operator:
        yield operator


async def _raw_values(bootstrap: str, topic: str) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        values: list[bytes] = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            values.extend(r.value for records in batch.values() for r in records)
        return values
    finally:
        await consumer.stop()
