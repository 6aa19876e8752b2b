"""Intake alone on the real broker and database, on topics and a database of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc
from services.common.clock import Clock
from services.intake.app import create_app
from services.intake.ports import IntakeStore
from services.intake.service import IntakeService
from services.intake.settings import IntakeSettings
from tests.infra import Infra
from tests.pipeline import Topics, lifespans
from tests.upstream import SECRETS, SOURCES


def intake_settings(infra: Infra, topics: Topics, db: str, **overrides: Any) -> IntakeSettings:
    return IntakeSettings.model_validate({
        "kafka_bootstrap": infra.kafka_bootstrap, "mongo_url": infra.mongo_url,
        "mongo_db": db, "deadletter_topic": topics.deadletter, "batch_timeout_ms": 20,
        "audit_topic": topics.audit, "erasures_topic": topics.erasures,
        "orders_topic": topics.orders, "support_topic": topics.support,
        "payments_topic": topics.payments, "outages_topic": topics.outages,
        "incidents_topic": topics.incidents, "delivery_grace_minutes": 10,
        "hmac_secrets": SECRETS, "sources": SOURCES, "max_body_bytes": 64 * 1024,
        # A group of the test's own: in the service's group it would share partitions with
        # every other session's intake (and a running demo's), rebalancing at each start.
        "consumer_group": db,
        **overrides})


@dataclass(frozen=True)
class Intake:
    app: FastAPI
    topics: Topics
    db_name: str
    settings: IntakeSettings

    @property
    def service(self) -> IntakeService:
        service: IntakeService = self.app.state.service
        return service

    @property
    def store(self) -> IntakeStore:
        store: IntakeStore = self.app.state.store
        return store

    def db(self, mongo: AsyncMongoClient[Doc]) -> AsyncDatabase[Doc]:
        return mongo[self.db_name]


@contextlib.asynccontextmanager
async def running_intake(infra: Infra, suffix: str, *, clock: Clock | None = None,
                         sweep: bool = False, **overrides: Any) -> AsyncIterator[Intake]:
    topics = Topics.unique(suffix)
    db = f"amends_test_{suffix}_intake"
    settings = intake_settings(infra, topics, db, **overrides)
    app = create_app(settings, clock=clock, sweep=sweep)
    async with lifespans([app]):
        yield Intake(app, topics, db, settings)


async def read_to_the_end(service: IntakeService, timeout_s: float = 30.0) -> None:
    """Wait until this intake has read every partition of the orders and support topics to
    its end (so that the idle fallback moves their watermarks with the clock)."""
    topics = [service.settings.orders_topic, service.settings.support_topic]
    want = service.settings.topic_partitions * len(topics)
    for _ in range(int(timeout_s / 0.05)):
        marks = await service.event_time.watermarks(topics, service.clock())
        if len(marks.marks) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"intake has not read its {want} partitions to their end")


