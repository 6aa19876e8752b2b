"""`amends dlq redrive` of a dead letter that carries only an excerpt of a record too large
for it: the original is re-read from its topic, partition and offset and sent back whole; a
letter whose original is gone is refused with the reason while the others go on. On the real
broker and database, with intake dead-lettering a 2 MB event that arrived compressed."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from typer.testing import CliRunner

from amends import ops
from amends.cli import app as cli
from schemas.deadletter import REDRIVE_HEADER, DeadLetter, DeadLetterReason
from tests import factories as f
from tests.infra import Infra
from tests.integration.intake.helpers import running_intake
from tests.kafka_tools import collect, produce_compressed
from tests.operator_api import operator_env

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def huge_report(customer_id: str, order_id: str, words: str) -> bytes:
    event = f.item_reported(customer_id, order_id, at=T0)
    event["data"]["description"] = words * 230_000  # 2 MB, far over the contract's limit
    return json.dumps(event).encode()


async def record_at(bootstrap: str, tp: TopicPartition, offset: int) -> tuple[
        bytes, dict[str, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for _ in range(50):
            for record in (await consumer.getmany(tp, timeout_ms=200)).get(tp, []):
                assert record.offset == offset
                assert record.value is not None
                return record.value, dict(record.headers)
    finally:
        await consumer.stop()
    raise AssertionError(f"nothing at {tp}@{offset}")


async def records_of(bootstrap: str, topic: str) -> list[
        tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Every record of `topic` (which holds one or a few)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    return [(r.key, r.value, dict(r.headers)) for records in batch.values() for r in records]


async def test_a_truncated_letter_is_redriven_whole_and_one_whose_original_is_gone_refused(
        infra: Infra, suffix: str) -> None:
    # The CLI checks its operator with a decision service over HTTP.
    with operator_env(infra) as operator:
        key = f"{suffix}-c1"
        first, second = (huge_report(key, "o-1", "it broke "),
                         huge_report(key, "o-2", "it broke again "))
        env = {**operator, "AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
               "AMENDS_MONGO_URL": infra.mongo_url, "AMENDS_OPS_DB": f"ops_{suffix}"}
        runner = CliRunner()
        async with running_intake(infra, suffix) as intake:
            topics = intake.topics
            env["AMENDS_DEADLETTER_TOPIC"] = topics.deadletter
            await produce_compressed(infra.kafka_bootstrap, topics.orders,
                                     [(key, first), (key, second)])
            await collect(infra.kafka_bootstrap, topics.deadletter, lambda s: len(s) >= 2)
            letters = await ops.read_dead_letters(infra.kafka_bootstrap, topics.deadletter)
            by_offset = {i.letter.offset: i.letter for i in letters}
            gone, kept = by_offset[0], by_offset[1]
            assert (gone.truncated, kept.truncated) == (True, True)
            assert kept.value_bytes == len(second)
            tp = TopicPartition(topics.orders, kept.partition)

            shown = await asyncio.to_thread(runner.invoke, cli, ["dlq", "show",
                                                                 kept.dead_letter_id], env=env)
            assert shown.exit_code == 0, shown.output
            assert "truncated:" in shown.output
            assert f"{len(second):,} bytes" in shown.output
            assert f"first {64 * 1024:,} bytes" in shown.output

            # Retention takes the first one away.
            admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
            await admin.start()
            try:
                await admin.delete_records({tp: RecordsToDelete(before_offset=1)})
            finally:
                await admin.close()

            redrive = ["dlq", "redrive", gone.dead_letter_id, kept.dead_letter_id]
            result = await asyncio.to_thread(runner.invoke, cli, redrive, env=env)
            assert result.exit_code == 1, result.output
            output = " ".join(result.output.split())
            assert (f"refused {gone.dead_letter_id}: its original at {topics.orders}"
                    f"[{tp.partition}]@0 is gone: the partition now begins at offset 1 "
                    "(retention or deleted records)") in output
            assert "redrove 1 dead letters" in output
            assert "refused 1: not sent back, not marked redriven" in output

            value, headers = await record_at(infra.kafka_bootstrap, tp, 2)
            assert value == second  # the whole 2 MB, not the 64 KiB excerpt
            assert headers[REDRIVE_HEADER] == kept.dead_letter_id.encode()

            # Intake reads it whole again (still too large for the contract), so it comes back
            # as a letter of its own with the original's full size.
            again = await collect(infra.kafka_bootstrap, topics.deadletter, lambda s: len(s) >= 3,
                                  settle_s=1)
            # (Letters are keyed by their own id, ADR 0007: the new one may come first.)
            first_two = {gone.dead_letter_id, kept.dead_letter_id}
            assert [(d["data"]["offset"], d["data"]["value_bytes"]) for d in again
                    if d["data"]["dead_letter_id"] not in first_two] == [(2, len(second))]

            # The redriven one is marked so; the refused one is not, and is refused again.
            result = await asyncio.to_thread(runner.invoke, cli, redrive, env=env)
            output = " ".join(result.output.split())
            assert result.exit_code == 1, result.output
            assert f"refused {gone.dead_letter_id}" in output
            assert "redrove 0 dead letters" in output


def _letter(suffix: str, name: str, topic: str, value: bytes, *, truncated: bool,
            value_bytes: int) -> ops.Letter:
    return ops.Letter(DeadLetter(
        dead_letter_id=f"dl-{suffix}-{name}", service="intake",
        reason=DeadLetterReason.invalid, error="too large", topic=topic, partition=0, offset=0,
        key_b64=base64.b64encode(b"k").decode(), value_b64=base64.b64encode(value).decode(),
        truncated=truncated, value_bytes=value_bytes, failed_at=T0), 0)


async def test_letters_whose_original_is_not_there_are_refused_and_the_others_redriven(
        infra: Infra, suffix: str) -> None:
    replaced, whole = f"replaced.{suffix}", f"whole.{suffix}"
    # Another record now stands where the original was (the topic was created again).
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(replaced, b"a shorter record", key=b"k", partition=0)
    finally:
        await producer.stop()
    letters = [
        _letter(suffix, "missing", f"missing.{suffix}", b"x" * 10, truncated=True,
                value_bytes=2_000_000),
        _letter(suffix, "replaced", replaced, b"a shorter", truncated=True,
                value_bytes=2_000_000),
        _letter(suffix, "whole", whole, b"carried whole", truncated=False, value_bytes=13),
    ]
    summary = await ops.redrive(infra.kafka_bootstrap, letters)
    reasons = {r.letter.letter.dead_letter_id: r.reason for r in summary.refused}
    assert set(reasons) == {f"dl-{suffix}-missing", f"dl-{suffix}-replaced"}
    assert reasons[f"dl-{suffix}-missing"] == (
        f"its original at missing.{suffix}[0]@0 is gone: the topic no longer exists")
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        assert f"missing.{suffix}" not in await admin.list_topics()  # not created by looking
    finally:
        await admin.close()
    assert reasons[f"dl-{suffix}-replaced"].startswith(
        f"the record at {replaced}[0]@0 is not its original: 16 bytes where the letter says "
        "2000000")
    assert [i.letter.dead_letter_id for i in summary.redriven] == [f"dl-{suffix}-whole"]
    assert [(key, value, headers[REDRIVE_HEADER])
            for key, value, headers in await records_of(infra.kafka_bootstrap, whole)] == [
        (b"k", b"carried whole", f"dl-{suffix}-whole".encode())]


async def test_a_replay_republishes_a_record_that_came_compressed_whole(
        infra: Infra, suffix: str) -> None:
    source, scratch = f"big.{suffix}", f"scratch.{suffix}"
    big = huge_report(f"{suffix}-c1", "o-1", "it broke ")
    await produce_compressed(infra.kafka_bootstrap, source, [(f"{suffix}-c1", big)])
    summary = await ops.replay(infra.kafka_bootstrap, source, start=ops.Position(offset=0),
                               into=scratch)
    assert (summary.scanned, summary.published) == (1, 1)
    assert [value for _, value, _ in await records_of(infra.kafka_bootstrap, scratch)] == [big]
