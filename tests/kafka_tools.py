"""Small helpers for tests that talk to the real broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_compressed(bootstrap: str, topic: str,
                             messages: Sequence[tuple[str, bytes]]) -> None:
    """As an upstream producer with compression sends them: a record of 2 MB fits under the
    broker's 1 MiB limit once compressed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip",
                                max_request_size=8 * 1024 * 1024, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            await (await producer.send(topic, value, key=key.encode()))
    finally:
        await producer.stop()


def as_json(events: Sequence[Any]) -> list[tuple[str, bytes]]:
    """(key, bytes) pairs for CloudEvent dicts, keyed by their subject (the customer id)."""
    return [(e["subject"], json.dumps(e).encode()) for e in events]


async def collect(bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool],
                  *, timeout_s: float = 60.0, settle_s: float = 0.0) -> list[dict[str, Any]]:
    """Read `topic` from the start until `until(messages)` holds (or the timeout passes), then
    keep reading `settle_s` more seconds so that extra messages would be seen too."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        done_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen.extend(json.loads(r.value) for r in records)
            if done_at is None and until(seen):
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= settle_s:
                break
    finally:
        await consumer.stop()
    return seen


def until_timeout(_: list[dict[str, Any]]) -> bool:
    """A `collect` condition that never holds: read for the whole timeout."""
    return False


def incident_events(incidents: Sequence[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """(key, bytes) pairs of amends.incident.detected events for incident dicts."""
    return [(i["customer"]["id"], json.dumps({
        "specversion": "1.0", "id": i["incident_id"], "source": "amends/intake",
        "type": "amends.incident.detected", "time": i["detected_at"],
        "subject": i["customer"]["id"], "data": i}).encode()) for i in incidents]

