"""A short scenario played through the running services: a few customers, some deliveries
late, some on time; then what happened to each, read back from the services' own records."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from schemas import topics
from schemas.common import deterministic_id

# (customer, tier, minutes late; negative = early)
SCENARIO: tuple[tuple[str, str, int], ...] = (
    ("ana", "gold", 95),
    ("boris", "standard", -20),
    ("chloe", "platinum", 310),
    ("dmitri", "silver", 45),
    ("elena", "standard", 0),
    ("farid", "standard", 1500),
    ("greta", "gold", -5),
    ("hugo", "silver", 4400),
)


@dataclass(frozen=True)
class Row:
    customer: str
    tier: str
    order: str
    minutes_late: int
    incident: str
    decision: str
    points: int
    apology: str
    event_to_apology_ms: float | None


def _events(run: str, now: datetime) -> list[dict[str, Any]]:
    events = []
    for name, tier, late in SCENARIO:
        customer_id = f"{name}-{run}"
        order_id = f"ord-{name}-{run}"
        promised = now - timedelta(minutes=max(late, 0) + 1)
        delivered = promised + timedelta(minutes=late)
        events.append({
            "specversion": "1.0", "id": deterministic_id("demo", order_id),
            "source": "demo/shop", "type": "order.delivered", "time": now.isoformat(),
            "subject": customer_id,
            "data": {
                "order_id": order_id,
                "customer": {"id": customer_id, "tier": tier, "locale": "en",
                             "contact": {"email": f"{name}@example.org"}},
                "delivered_at": delivered.isoformat(),
                "promised_delivery_at": promised.isoformat(),
                "total": {"amount": "48.90", "currency": "EUR"},
            },
        })
    return events


async def play(kafka_bootstrap: str, mongo_url: str, *, timeout_s: float = 60.0) -> list[Row]:
    now = datetime.now(UTC)
    run = now.strftime("%H%M%S")
    events = _events(run, now)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent_at = time.time()
        for event in events:
            await producer.send(topics.ORDERS, json.dumps(event).encode(),
                                key=event["subject"].encode())
        await producer.flush()
    finally:
        await producer.stop()

    late = sum(1 for _, _, minutes in SCENARIO if minutes > 0)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        customers = [e["subject"] for e in events]
        fulfilment = client["amends_fulfilment"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await fulfilment["messages"].count_documents(
                {"customer_id": {"$in": customers}})
            if done >= late:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # let the last outcomes land
        return await _rows(client, events, sent_at)
    finally:
        await client.close()


async def _rows(client: AsyncMongoClient[dict[str, Any]], events: list[dict[str, Any]],
                sent_at: float) -> list[Row]:
    customers = [e["subject"] for e in events]
    query = {"customer_id": {"$in": customers}}
    incidents = {d["customer_id"]: d
                 async for d in client["amends_intake"]["incidents"].find(query)}
    decisions = {d["customer_id"]: d
                 async for d in client["amends_decision"]["decisions"].find(query)}
    fulfilment = client["amends_fulfilment"]
    points: dict[str, int] = {}
    async for entry in fulfilment["points_ledger"].find(query):
        points[entry["customer_id"]] = points.get(entry["customer_id"], 0) + entry["points"]
    messages = {m["customer_id"]: m async for m in fulfilment["messages"].find(query)}
    rows = []
    for event, (_, tier, late) in zip(events, SCENARIO, strict=True):
        cid = event["subject"]
        incident = incidents.get(cid)
        decision = decisions.get(cid)
        message = messages.get(cid)
        latency = None
        if message is not None:
            latency = max(0.0, (message["sent_at"].timestamp() - sent_at) * 1000)
        rows.append(Row(
            customer=cid, tier=tier, order=event["data"]["order_id"], minutes_late=late,
            incident=(f"{incident['type']} ({incident['incident']['delay_band']})"
                      if incident else "-"),
            decision=(f"{decision['status']} ({decision['decision']['policy_version']})"
                      if decision else "-"),
            points=points.get(cid, 0),
            apology=f"sent by {message['channel']}" if message else "-",
            event_to_apology_ms=latency,
        ))
    return rows
