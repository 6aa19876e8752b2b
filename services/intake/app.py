"""Intake's app factory: wires the consumer, the store and the HTTP endpoints."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.common.app import Runtime
from services.common.clock import Clock
from services.common.messaging import Record
from services.common.mongo import Doc
from services.intake.adapters.mongo import IntakeStore
from services.intake.service import IntakeMetrics, IntakeService
from services.intake.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None, *,
               mongo: AsyncMongoClient[Doc] | None = None, clock: Clock | None = None,
               registry: CollectorRegistry | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry)
    store = IntakeStore(runtime.db)
    service = IntakeService(settings=settings, incidents=store.incidents,
                            publisher=runtime.publisher, dead_letters=runtime.dead_letters,
                            clock=runtime.clock, metrics=IntakeMetrics(runtime.registry))
    runtime.on_start.append(store.create_indexes)

    async def when_upstream_events_arrive(records: list[Record]) -> None:
        await service.handle_upstream(records)

    runtime.consume(settings.upstream_topics,
                    when_upstream_events_arrive, name="when_upstream_events_arrive")
    app = runtime.app(title="Amends intake",
                      topics=[*settings.upstream_topics, settings.incidents_topic],
                      produces=[settings.incidents_topic])
    app.state.service = service
    return app
