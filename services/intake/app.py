"""Intake's app factory: the upstream consumer, the store, the sweep that runs scheduled
checks when they come due, and the HTTP API."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas.erasure import ErasureRequest
from services.common.adapters.mongo import Client
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.erasure import Pseudonyms, install_erasure
from services.common.messaging import Publisher, Record
from services.common.retention import install_retention, rules_of
from services.intake import http, retention
from services.intake.adapters.storage import open_store
from services.intake.erasure import ErasedCustomers
from services.intake.logs import keep_payloads_out_of_logs
from services.intake.ports import IntakeStore
from services.intake.service import IntakeMetrics, IntakeService
from services.intake.settings import IntakeSettings
from services.intake.watermark import EventTime, KafkaProgress

log = logging.getLogger(__name__)


class _NotOpen:
    """The store before the lifespan opens it (the adapter depends on the server)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("intake's store opens with the app's lifespan")


def create_app(settings: IntakeSettings | None = None, *,
               mongo: Client | None = None, store: IntakeStore | None = None,
               clock: Clock | None = None, registry: CollectorRegistry | None = None,
               publisher: Publisher | None = None, sweep: bool = True) -> FastAPI:
    """`store` replaces the adapter the lifespan would choose by the server, `publisher`
    the broker's;
    `sweep=False` leaves running the due checks to the caller (tests call
    `service.run_due_checks()` themselves)."""
    settings = settings or IntakeSettings()
    keep_payloads_out_of_logs()
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry,
                             publisher=publisher)
    given = store
    event_time = EventTime(
        event_lateness=timedelta(seconds=settings.event_lateness_seconds),
        idle_fallback=timedelta(seconds=settings.idle_fallback_seconds),
        progress=KafkaProgress(runtime.broker, settings.upstream_topics))
    service = IntakeService(settings=settings, store=given or cast(IntakeStore, _NotOpen()),
                            publisher=runtime.publisher,
                            dead_letters=runtime.dead_letters, clock=runtime.clock,
                            metrics=IntakeMetrics(runtime.registry), event_time=event_time)
    erased = service.erased = ErasedCustomers(
        service.store, Pseudonyms(settings.erasure_pseudonym_key), runtime.registry)

    async def open_the_store() -> None:
        chosen = given or await open_store(runtime.mongo, settings)
        service.store = erased.store = app.state.store = chosen
        await chosen.create_indexes()

    runtime.on_start.extend([open_the_store, erased.load, service.load_aftermath])
    # Pending checks and the customers seen (for outage segments) go: nothing is to be told
    # to an erased customer. The erased set itself holds pseudonyms only.
    async def before_erasure(request: ErasureRequest, pseudonym: str) -> int:
        return (await erased.add(request, pseudonym)
                + service.aftermath.rename_customer(request.customer_id, pseudonym))

    install_erasure(runtime, delete={"checks", "customers_seen"}, skip={"erased"},
                    before=before_erasure)
    runtime.every(settings.erased_refresh_seconds, erased.load, name="erased-refresh")
    install_retention(runtime, rules_of(settings, retention.RETENTION))

    async def prune_aftermath() -> None:
        service.prune_aftermath()

    runtime.every(settings.aftermath_prune_seconds, prune_aftermath, name="aftermath-prune")

    runtime.on_start.append(service.count_retention)  # after the load: gauges from the start
    runtime.every(settings.aftermath_gauge_seconds, service.count_retention,
                  name="retention-gauges")

    async def when_upstream_events_arrive(records: list[Record]) -> None:
        # Not read to their end while their records are processed.
        with event_time.in_flight({(r.topic, r.partition) for r in records}):
            await service.handle_upstream(records)

    runtime.consume(settings.upstream_topics,
                    when_upstream_events_arrive, name="when_upstream_events_arrive")

    async def run_checks() -> None:
        ran = await service.run_due_checks()
        if ran:
            log.info("ran %d scheduled checks that came due", ran)

    if sweep:
        runtime.every(settings.check_sweep_seconds, run_checks, name="due-checks")
    app = runtime.app(title="Amends intake", open_docs=True,
                      topics=[*settings.upstream_topics, settings.incidents_topic],
                      produces=[settings.incidents_topic])
    app.include_router(http.router(service, settings, runtime.clock, runtime.registry))
    http.install_openapi(app)
    app.state.service = service
    app.state.store = service.store
    return app
