"""The services' publisher on the real broker: a call's messages packed per partition arrive
once each, on the partition a keyed send picks, in order per key, with their header; a
message larger than a batch goes alone without overtaking; every message is counted."""

from __future__ import annotations

from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from schemas.envelope import CONTENT_TYPE
from services.common.messaging import KafkaPublisher, Outgoing
from tests.infra import Infra

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def make_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, str, bytes, dict[
        str, bytes]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=16 * 1024 * 1024)
    await consumer.start()
    seen: list[tuple[int, str, bytes, dict[str, bytes]]] = []
    try:
        for _ in range(300):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                seen += [(r.partition, (r.key or b"").decode(), r.value or b"",
                          dict(r.headers or ())) for r in records]
            if len(seen) >= count:
                break
        batches = await consumer.getmany(timeout_ms=500)  # anything beyond would show here
        seen += [(r.partition, "", b"", {}) for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return seen


async def keyed_partitions(bootstrap: str, topic: str, keys: list[str]) -> dict[str, int]:
    """The partition aiokafka's own keyed send picks for each key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        picked = {}
        for key in keys:
            meta = await (await producer.send(topic, b"probe", key=key.encode()))
            picked[key] = meta.partition
    finally:
        await producer.stop()
    return picked


async def test_a_call_arrives_whole_in_order_per_key_and_counted(infra: Infra,
                                                                 suffix: str) -> None:
    topic, control = f"amends.test.publish.{suffix}", f"amends.test.publish.{suffix}.control"
    await make_topics(infra.kafka_bootstrap, topic, control)
    keys = [f"customer-{n}" for n in range(23)]
    big = b"x" * (300 * 1024)  # above the producer's batch size
    messages = [Outgoing(topic, keys[n % len(keys)], f"{n}:".encode() + b"y" * 5000)
                for n in range(400)]
    messages.insert(150, Outgoing(topic, keys[150 % len(keys)], b"big:" + big))
    registry = CollectorRegistry()
    broker = KafkaBroker(infra.kafka_bootstrap, enable_idempotence=True, acks="all",
                         max_batch_size=256 * 1024, max_request_size=2 * 1024 * 1024)
    await broker.connect()
    try:
        publisher = KafkaPublisher(broker, registry)
        await publisher.publish_all(messages[:200])
        await publisher.publish_all(messages[200:])
    finally:
        await broker.stop()

    seen = await read_all(infra.kafka_bootstrap, topic, len(messages))
    assert len(seen) == len(messages)
    assert all(headers == {"content-type": CONTENT_TYPE.encode()} for *_, headers in seen)
    assert sorted(value for _, _, value, _ in seen) == sorted(m.value for m in messages)

    picked = await keyed_partitions(infra.kafka_bootstrap, control, keys)
    per_key: dict[str, list[bytes]] = defaultdict(list)
    for partition, key, value, _ in seen:
        assert partition == picked[key], key
        per_key[key].append(value)
    for key, values in per_key.items():
        assert values == [m.value for m in messages if m.key == key], key

    assert registry.get_sample_value("amends_published_messages_total",
                                     {"topic": topic, "status": "success"}) == len(messages)
    assert registry.get_sample_value("amends_published_messages_total",
                                     {"topic": topic, "status": "error"}) in (None, 0.0)


async def test_a_call_that_fails_is_counted_as_errors_and_raises(infra: Infra) -> None:
    registry = CollectorRegistry()
    broker = KafkaBroker(infra.kafka_bootstrap)
    publisher = KafkaPublisher(broker, registry)  # never connected: nothing to publish with
    with pytest.raises(RuntimeError, match="not connected"):
        await publisher.publish_all([Outgoing("amends.test.never", "k", b"v")] * 3)
    assert registry.get_sample_value("amends_published_messages_total",
                                     {"topic": "amends.test.never", "status": "error"}) == 3
