"""Decision's app factory: wires the incident consumer, the store and the HTTP endpoints."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.common.app import Runtime
from services.common.clock import Clock
from services.common.messaging import Record
from services.common.mongo import Doc
from services.decision.adapters.mongo import DecisionStore
from services.decision.service import DecisionMetrics, DecisionService
from services.decision.settings import DecisionSettings


def create_app(settings: DecisionSettings | None = None, *,
               mongo: AsyncMongoClient[Doc] | None = None, clock: Clock | None = None,
               registry: CollectorRegistry | None = None) -> FastAPI:
    settings = settings or DecisionSettings()
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry)
    store = DecisionStore(runtime.db)
    service = DecisionService(settings=settings, decisions=store.decisions,
                              publisher=runtime.publisher, dead_letters=runtime.dead_letters,
                              clock=runtime.clock, metrics=DecisionMetrics(runtime.registry))
    runtime.on_start.append(store.create_indexes)

    async def when_incidents_detected(records: list[Record]) -> None:
        await service.handle_incidents(records)

    runtime.consume([settings.incidents_topic],
                    when_incidents_detected, name="when_incidents_detected")
    app = runtime.app(title="Amends decision",
                      topics=[settings.incidents_topic, settings.decisions_topic,
                              settings.outcomes_topic],
                      produces=[settings.decisions_topic])
    app.state.service = service
    return app
