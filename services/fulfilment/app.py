"""Fulfilment's app factory: wires the decision consumer, the ledgers and the HTTP endpoints."""

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
from services.fulfilment import http, retention
from services.fulfilment.adapters.mongo import FulfilmentStore
from services.fulfilment.edges import message_channels, payment_gateway
from services.fulfilment.service import FulfilmentMetrics, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from services.fulfilment.vouchers import VoucherStore

log = logging.getLogger(__name__)


def create_app(settings: FulfilmentSettings | None = None, *,
               mongo: AsyncMongoClient[Doc] | None = None, clock: Clock | None = None,
               registry: CollectorRegistry | None = None) -> FastAPI:
    settings = settings or FulfilmentSettings()
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry)
    store = FulfilmentStore(runtime.db)
    vouchers = VoucherStore(runtime.db)
    gateway = payment_gateway(settings)
    channels = message_channels(settings, runtime.clock)
    service = FulfilmentService(settings=settings, store=store, vouchers=vouchers,
                                publisher=runtime.publisher, dead_letters=runtime.dead_letters,
                                clock=runtime.clock, metrics=FulfilmentMetrics(runtime.registry),
                                gateway=gateway, channels=channels, links=runtime.links)
    runtime.on_start.extend([store.create_indexes, vouchers.create_indexes])

    async def close_clients() -> None:
        for client in [gateway, *channels.values()]:
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()

    runtime.on_stop.append(close_clients)

    async def finish_unfinished() -> None:
        finished = await service.finish_unfinished()
        if finished:
            log.info("finished %d refunds and messages left unfinished", len(finished))

    runtime.every(settings.sweep_seconds, finish_unfinished, name="unfinished-effects")

    async def when_decisions_made(records: list[Record]) -> None:
        await service.handle_decisions(records)

    runtime.consume([settings.decisions_topic],
                    when_decisions_made, name="when_decisions_made")
    install_erasure(runtime)
    install_retention(runtime, rules_of(settings, retention.RETENTION))
    app = runtime.app(title="Amends fulfilment",
                      topics=[settings.decisions_topic, settings.outcomes_topic,
                              settings.tasks_topic],
                      produces=[settings.outcomes_topic, settings.tasks_topic])
    app.include_router(http.router(store, vouchers, runtime))
    app.state.service = service
    return app
