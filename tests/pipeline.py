"""Run the three services in this process against real Kafka and MongoDB, on topics and a
database of their own (for integration tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from services.decision.app import create_app as decision_app
from services.decision.settings import DecisionSettings
from services.fulfilment.app import create_app as fulfilment_app
from services.fulfilment.settings import FulfilmentSettings
from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from tests.infra import Infra


@dataclass(frozen=True)
class Topics:
    orders: str
    support: str
    payments: str
    outages: str
    incidents: str
    decisions: str
    outcomes: str
    tasks: str
    deadletter: str

    @classmethod
    def unique(cls, suffix: str) -> Topics:
        return cls(*(f"{name}.{suffix}" for name in (
            "orders", "support", "payments", "outages", "incidents", "decisions", "outcomes",
            "tasks", "deadletter")))


@dataclass(frozen=True)
class Pipeline:
    topics: Topics
    db: str
    intake: FastAPI
    decision: FastAPI
    fulfilment: FastAPI


def settings_for(infra: Infra, topics: Topics, db: str) -> tuple[
        IntakeSettings, DecisionSettings, FulfilmentSettings]:
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.kafka_bootstrap, "mongo_url": infra.mongo_url, "mongo_db": db,
        "deadletter_topic": topics.deadletter, "batch_timeout_ms": 20}
    return (
        IntakeSettings(**common, orders_topic=topics.orders, support_topic=topics.support,
                       payments_topic=topics.payments, outages_topic=topics.outages,
                       incidents_topic=topics.incidents),
        DecisionSettings(**common, incidents_topic=topics.incidents,
                         decisions_topic=topics.decisions, outcomes_topic=topics.outcomes),
        FulfilmentSettings(**common, decisions_topic=topics.decisions,
                           outcomes_topic=topics.outcomes, tasks_topic=topics.tasks),
    )


@contextlib.asynccontextmanager
async def running_pipeline(infra: Infra, suffix: str) -> AsyncIterator[Pipeline]:
    topics = Topics.unique(suffix)
    db = f"amends_test_{suffix}"
    intake_s, decision_s, fulfilment_s = settings_for(infra, topics, db)
    pipeline = Pipeline(topics, db, intake_app(intake_s), decision_app(decision_s),
                        fulfilment_app(fulfilment_s))
    async with contextlib.AsyncExitStack() as stack:
        for app in (pipeline.fulfilment, pipeline.decision, pipeline.intake):
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield pipeline
