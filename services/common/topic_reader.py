"""Reading a whole topic as it stands, outside any consumer group: what the dead-letter
tools, the audit trail and erasure need (they look at every record, and commit nothing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def partitions_of(bootstrap: str, options: Mapping[str, Any],
                        topic: str) -> list[TopicPartition]:
    """The topic's partitions; ValueError when the topic does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        # Asking for a topic by name creates it where the broker auto-creates topics: a
        # mistyped or deleted topic is looked for among the existing ones first.
        if topic not in await admin.list_topics():
            raise ValueError(f"topic {topic!r} does not exist")
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise ValueError(f"topic {topic!r} does not exist")
    return [TopicPartition(topic, p["partition"])
            for p in sorted(described["partitions"], key=lambda p: p["partition"])]


async def read_to_end(bootstrap: str, options: Mapping[str, Any],
                      topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` now, partition by partition (none when it does not exist)."""
    try:
        partitions = await partitions_of(bootstrap, options, topic)
    except ValueError:
        return []
    # "earliest": an offset reset racing the seek below must not start at the end.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest", **options)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        todo = {tp for tp in partitions if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batch.items():
                found.extend(r for r in records if r.offset < ends[tp])
                if records and records[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
            if not batch:
                # Compaction leaves gaps: a partition is done when its position is at its end.
                todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return found
