"""Intake in memory: the service over the fake store and publisher, a clock moved by hand,
partitions whose progress a test sets, and the HTTP API mounted over the same service."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas.incident import Incident
from services.common.erasure import Pseudonyms
from services.common.messaging import BatchGuard, ConsumerMetrics, DeadLetters, Record
from services.intake import http
from services.intake.erasure import ErasedCustomers
from services.intake.service import IntakeMetrics, IntakeService
from services.intake.settings import IntakeSettings
from services.intake.watermark import EventTime, Partition, partition_of
from tests.clock import FakeClock
from tests.fakes.common import FakePublisher
from tests.fakes.intake import FakeIntakeStore
from tests.upstream import SECRETS, SOURCES

PARTITIONS = 4
TOPIC_OF = {"order": "orders", "payment": "payments", "support": "support",
            "outage": "outages"}


@dataclass
class FakeProgress:
    """The consumer's partitions: every partition of the upstream topics is assigned, and
    read to its end unless a test says otherwise."""

    lagging: set[Partition] = field(default_factory=set)
    unassigned: bool = False  # a rebalance gave every partition to another process

    def partitions(self, topic: str) -> int | None:
        return PARTITIONS if topic in TOPIC_OF.values() else None

    async def assigned(self) -> Mapping[Partition, bool]:
        if self.unassigned:
            return {}
        return {(topic, n): (topic, n) not in self.lagging
                for topic in TOPIC_OF.values() for n in range(PARTITIONS)}


@dataclass
class Intake:
    service: IntakeService
    store: FakeIntakeStore
    publisher: FakePublisher
    clock: FakeClock
    registry: CollectorRegistry
    progress: FakeProgress
    erased: ErasedCustomers
    offsets: dict[str, int] = field(default_factory=dict)

    def records(self, bodies: Sequence[dict[str, Any] | bytes], topic: str | None = None
                ) -> list[Record]:
        """Records as the consumer hands them: on the topic of their type and the
        partition of their customer (or of their subject), each at the next offset."""
        out = []
        for body in bodies:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            parsed = body if isinstance(body, dict) else {}
            on = topic or TOPIC_OF[str(parsed.get("type", "order")).split(".")[0]]
            key = str(parsed.get("subject") or "")
            offset = self.offsets.get(on, 0)
            self.offsets[on] = offset + 1
            out.append(Record(on, partition_of(key, PARTITIONS), offset, key.encode(), raw))
        return out

    async def consume(self, bodies: Sequence[dict[str, Any] | bytes],
                      topic: str | None = None) -> list[Incident]:
        return await self.service.handle_upstream(self.records(bodies, topic))

    def guard(self, attempts: int) -> BatchGuard:
        """The consumer's guard around the service, as `subscribe_batches` runs it."""

        async def handle(records: list[Record]) -> None:
            await self.service.handle_upstream(records)

        return BatchGuard(handle, self.service.dead_letters, name="intake",
                          metrics=ConsumerMetrics(self.registry), attempts=attempts,
                          pause=lambda _: 0)

    def incidents(self) -> list[dict[str, Any]]:
        """The incidents published, in order (their `data`)."""
        return [body["data"] for body in self.publisher.bodies("incidents")]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [body["data"] for body in self.publisher.bodies("deadletter")]

    def lag(self, topic: str, customer: str) -> None:
        """The partition of `customer` on `topic` is not read to its end."""
        self.progress.lagging.add((topic, partition_of(customer, PARTITIONS)))

    def client(self) -> httpx.AsyncClient:
        app = FastAPI()
        app.include_router(http.router(self.service, self.service.settings, self.clock,
                                       self.registry))
        http.install_openapi(app)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://intake")

    def metric(self, name: str, labels: dict[str, str]) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def intake(now: datetime, **overrides: Any) -> Intake:
    settings = IntakeSettings.model_validate({
        "deadletter_topic": "deadletter", "orders_topic": "orders", "support_topic": "support",
        "payments_topic": "payments", "outages_topic": "outages",
        "incidents_topic": "incidents", "delivery_grace_minutes": 10,
        "hmac_secrets": SECRETS, "sources": SOURCES, "max_body_bytes": 64 * 1024,
        "erasure_pseudonym_key": "component-pseudonym-key", **overrides})
    clock = FakeClock(now)
    registry = CollectorRegistry()
    store = FakeIntakeStore(chunk=settings.write_chunk)
    publisher = FakePublisher()
    progress = FakeProgress()
    event_time = EventTime(timedelta(seconds=settings.event_lateness_seconds),
                           timedelta(seconds=settings.idle_fallback_seconds), progress)
    service = IntakeService(
        settings=settings, store=store, publisher=publisher,
        dead_letters=DeadLetters("intake", settings.deadletter_topic, publisher, clock,
                                 registry),
        clock=clock, metrics=IntakeMetrics(registry), event_time=event_time)
    erased = service.erased = ErasedCustomers(
        store, Pseudonyms(settings.erasure_pseudonym_key), registry)
    return Intake(service, store, publisher, clock, registry, progress, erased)
