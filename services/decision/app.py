"""Decision's app factory: the incident and outcome consumers, the store, the budget, the
review and choice endpoints, and the sweep that applies offers' defaults."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.erasure import install_erasure
from services.common.messaging import Record
from services.common.retention import install_retention, rules_of
from services.decision import erasure, http, retention
from services.decision.adapters.budget import MongoBudget
from services.decision.adapters.mongo import DecisionStore, quiet_write_errors
from services.decision.domain.policy import Policy, load_policy
from services.decision.service import DecisionMetrics, DecisionService
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)


def create_app(settings: DecisionSettings | None = None, *,
               mongo: AsyncMongoClient[Doc] | None = None, clock: Clock | None = None,
               registry: CollectorRegistry | None = None,
               policy: Policy | None = None) -> FastAPI:
    settings = settings or DecisionSettings()
    policy = policy or load_policy(settings.policy_path)
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry)
    store = DecisionStore(runtime.db)
    budget = MongoBudget(runtime.db)
    audit = runtime.audit_trail()
    service = DecisionService(settings=settings, policy=policy, store=store, budget=budget,
                              publisher=runtime.publisher, dead_letters=runtime.dead_letters,
                              clock=runtime.clock, metrics=DecisionMetrics(runtime.registry),
                              audit=audit)
    runtime.on_start.extend([store.create_indexes, budget.create_indexes])

    async def when_incidents_detected(records: list[Record]) -> None:
        with quiet_write_errors():
            await service.handle_incidents(records)

    async def when_outcomes_recorded(records: list[Record]) -> None:
        with quiet_write_errors():
            await service.handle_outcomes(records)

    runtime.consume([settings.incidents_topic], when_incidents_detected,
                    name="when_incidents_detected")
    runtime.consume([settings.outcomes_topic], when_outcomes_recorded,
                    name="when_outcomes_recorded")

    async def apply_defaults() -> None:
        with quiet_write_errors():
            settled = await service.apply_due_defaults()
        if settled:
            log.info("applied the default of %d offers past their deadline", settled)

    runtime.every(settings.offer_sweep_seconds, apply_defaults, name="offer-defaults")
    erasure_trail = install_erasure(runtime)
    install_retention(runtime, rules_of(settings, retention.RETENTION))
    app = runtime.app(title="Amends decision",
                      topics=[settings.incidents_topic, settings.decisions_topic,
                              settings.outcomes_topic, settings.audit_topic],
                      produces=[settings.decisions_topic])  # the audit topic: by install_erasure
    http.install_refusals(app)
    app.include_router(http.router(service, store, runtime.access, runtime.links))
    app.include_router(erasure.router(runtime, erasure_trail))
    app.state.service = service
    return app
