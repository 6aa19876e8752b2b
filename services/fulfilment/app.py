"""Fulfilment's app factory: wires the decision consumer, the ledgers and the HTTP endpoints."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas.common import Channel
from schemas.decision import Decision
from services.common.adapters.mongo import Client
from services.common.adapters.storage import server_of
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.erasure import install_erasure
from services.common.messaging import Publisher, Record
from services.common.retention import install_retention, rules_of
from services.common.web import Web
from services.fulfilment import http, outage_http, page, retention
from services.fulfilment.adapters import ferretdb, mongodb
from services.fulfilment.channels import MessageChannel
from services.fulfilment.edges import message_channels, payment_gateway
from services.fulfilment.gateway import PaymentGateway
from services.fulfilment.page import Chooser, CustomerPages, DecisionClient
from services.fulfilment.ports import Stores
from services.fulfilment.service import FulfilmentMetrics, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from services.fulfilment.status_posts import install_status_posts

log = logging.getLogger(__name__)


def create_app(settings: FulfilmentSettings | None = None, *,
               mongo: Client | None = None, stores: Stores | None = None,
               publisher: Publisher | None = None, gateway: PaymentGateway | None = None,
               channels: Mapping[Channel, MessageChannel] | None = None,
               clock: Clock | None = None,
               registry: CollectorRegistry | None = None,
               choose: Chooser | None = None) -> FastAPI:
    """The fulfilment app; every keyword's default is production, and each is what a test
    may replace (`stores` with the fakes: then no database is touched; `choose` with a fake
    of decision's customer-choice endpoint)."""
    settings = settings or FulfilmentSettings()
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry,
                             publisher=publisher)
    gateway = gateway if gateway is not None else payment_gateway(settings)
    channels = channels if channels is not None else message_channels(settings, runtime.clock)
    service = FulfilmentService(settings=settings,
                                stores=stores or ferretdb.stores(runtime.db)[0],
                                publisher=runtime.publisher,
                                dead_letters=runtime.dead_letters,
                                clock=runtime.clock, metrics=FulfilmentMetrics(runtime.registry),
                                gateway=gateway, channels=channels, links=runtime.links)
    if stores is None:
        async def choose_stores() -> None:
            """FerretDB's adapter or MongoDB's, by the setting or by what the server is."""
            server = await server_of(runtime.mongo, settings.store_backend)
            build = mongodb.stores if server.backend == "mongodb" else ferretdb.stores
            service.stores, create_indexes = build(runtime.db)
            await create_indexes()
            log.info("fulfilment stores: %s adapter", server.backend)

        runtime.on_start.append(choose_stores)

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

    # The one scan at start for what a process that died left unfinished; then the sweep
    # asks what the logs know, and scans whole every `full_sweep_seconds`.
    runtime.on_start.append(service.recall_unfinished)
    runtime.every(settings.sweep_seconds, finish_unfinished, name="unfinished-effects")
    # Remedies held for an outage's abort window: what a restart forgot is held again at
    # start, and each window's end releases them at the providers' pace (ADR 0015).
    runtime.on_start.append(service.recall_held)
    runtime.every(settings.release_seconds, service.release_held, name="release-held")

    async def when_decisions_made(records: list[Record]) -> None:
        await service.handle_decisions(records)

    runtime.consume([settings.decisions_topic],
                    when_decisions_made, name="when_decisions_made")
    status = install_status_posts(runtime, settings, service.effects)
    install_erasure(runtime)
    install_retention(runtime, rules_of(settings, retention.RETENTION))
    app = runtime.app(title="Amends fulfilment",
                      topics=[settings.decisions_topic, settings.outcomes_topic,
                              settings.tasks_topic, settings.status_posts_topic],
                      produces=[settings.outcomes_topic, settings.tasks_topic,
                                settings.feedback_topic])
    decision_client = DecisionClient(settings.decision_url, settings.decision_timeout_s)

    async def close_decision_client() -> None:
        await decision_client.aclose()

    runtime.on_stop.append(close_decision_client)
    # The stores are chosen when the app starts: looked up at each request, not now.
    async def newest(decision_id: str) -> Decision | None:
        return await service.stores.decisions.newest(decision_id)

    async def view(decision: Decision, now: datetime, expires: datetime) -> http.CustomerPage:
        return await http.customer_view(service.stores, decision, now, expires)

    web = Web(settings.brand, package="services.fulfilment", brands=settings.brands,
              words=page.WORDS)
    pages = CustomerPages(
        web=web, links=runtime.links, clock=runtime.clock,
        newest=newest, view=view,
        choose=choose if choose is not None else decision_client.choose,
        publisher=runtime.publisher, feedback_topic=settings.feedback_topic,
        metrics=page.PageMetrics(runtime.registry))
    app.include_router(web.static_router())
    app.include_router(http.router(lambda: service.stores, runtime, pages))
    app.include_router(outage_http.router(service.held, runtime.access))
    app.state.service = service
    app.state.status_posts = status
    return app
