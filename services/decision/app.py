"""Decision's app factory: the incident and outcome consumers, the store and the budget (the
FerretDB or the MongoDB adapters, chosen in the lifespan by `store_backend` and what the
server says it is, unless a test passes its own), the review and choice endpoints, and the
sweep that applies offers' defaults."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas.erasure import ErasureRequest
from services.common.adapters.mongo import Client
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.erasure import install_erasure
from services.common.messaging import Publisher, Record
from services.common.retention import install_retention, rules_of
from services.decision import erasure, http, outage_http, reply_http, retention, status_console
from services.decision.adapters.budget import FerretBudget
from services.decision.adapters.ferretdb import FerretDecisions
from services.decision.adapters.follower import DecisionFollower
from services.decision.adapters.mongo import quiet_write_errors
from services.decision.adapters.status_posts import MongoStatusPosts
from services.decision.adapters.storage import open_storage
from services.decision.console import DeadLetterDesk, FulfilmentCases, create_console
from services.decision.console_retention import RetentionRows, retention_router, store_rows
from services.decision.domain.policy import Policy, load_policy
from services.decision.fairness import install_fairness
from services.decision.ports import Budget, Decisions, Replies
from services.decision.replies import install_replies
from services.decision.service import DecisionMetrics, DecisionService
from services.decision.settings import DecisionSettings
from services.decision.status_posts import StatusPostStore, install_status_posts

log = logging.getLogger(__name__)


def create_app(settings: DecisionSettings | None = None, *,  # noqa: PLR0915 - the one wiring
               mongo: Client | None = None, clock: Clock | None = None,
               registry: CollectorRegistry | None = None,
               policy: Policy | None = None, store: Decisions | None = None,
               budget: Budget | None = None, publisher: Publisher | None = None,
               cases: FulfilmentCases | None = None,
               dead_letters: DeadLetterDesk | None = None,
               replies: Replies | None = None,
               status_posts: StatusPostStore | None = None,
               retention_rows: RetentionRows | None = None) -> FastAPI:
    """Every keyword's default is production; tests replace the store, the budget and the
    publisher with fakes."""
    settings = settings or DecisionSettings()
    policy = policy or load_policy(settings.policy_path)
    runtime = Runtime.create(settings, mongo=mongo, clock=clock, registry=registry,
                             publisher=publisher)
    audit = runtime.audit_trail()
    # FerretDB's adapters until the lifespan learns what the server is.
    service = DecisionService(settings=settings, policy=policy,
                              store=store or FerretDecisions(runtime.db),
                              budget=budget or FerretBudget(runtime.db),
                              publisher=runtime.publisher, dead_letters=runtime.dead_letters,
                              clock=runtime.clock, metrics=DecisionMetrics(runtime.registry),
                              audit=audit, traced=runtime.tracing.enabled)
    posts = install_status_posts(runtime, settings, policy,
                                 status_posts or MongoStatusPosts(runtime.db))

    async def open_store() -> None:
        if store is None or budget is None:
            chosen, ledger, server = await open_storage(runtime.mongo, settings.mongo_db,
                                                        settings.store_backend)
            service.store, service.budget = store or chosen, budget or ledger
            log.info("decision keeps its records with the %s adapters", server.backend)
        await service.store.create_indexes()
        await service.budget.create_indexes()
        if service.store.follows_published:
            # Positions first, then the load: a decision published in between is followed.
            follower = DecisionFollower(settings, service.store)
            await follower.start()
            runtime.on_stop.append(follower.stop)
            await service.store.load_histories()
            follower.run()
            app.state.follower = follower

    runtime.on_start.append(open_store)
    reply_desk = install_replies(runtime, settings, service, replies)  # after open_store

    async def when_incidents_detected(records: list[Record]) -> None:
        with quiet_write_errors():
            made = await service.handle_incidents(records)
            await reply_desk.draft_for(records)  # a negative review's public reply, once decided
            await posts.when_decided([d.incident for d in made])

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
    async def forget(request: ErasureRequest, pseudonym: str) -> int:
        return service.store.rename_customer(request.customer_id, pseudonym)

    erasure_trail = install_erasure(runtime, before=forget)
    install_retention(runtime, rules_of(settings, retention.RETENTION))
    app = runtime.app(title="Amends decision",
                      topics=[settings.incidents_topic, settings.decisions_topic,
                              settings.outcomes_topic, settings.audit_topic,
                              settings.status_posts_topic, settings.outage_previews_topic,
                              settings.findings_topic],
                      # the audit topic: by install_erasure
                      produces=[settings.decisions_topic, settings.status_posts_topic,
                                settings.outage_previews_topic, settings.findings_topic])
    http.install_refusals(app)
    app.include_router(http.router(service, runtime.access, runtime.links))
    app.include_router(erasure.router(runtime, erasure_trail))
    app.include_router(outage_http.router(service, runtime.access))
    console, console_routes, web = create_console(service, runtime.access, settings,
                                                  runtime.registry, brand=settings.brand,
                                                  cases=cases, desk=dead_letters)
    app.include_router(console_routes)
    reply_http.mount(app, reply_desk, runtime.access, console)
    app.include_router(status_console.console_router(console, posts, audit))
    app.include_router(status_console.api_router(posts, runtime.access, audit))
    app.include_router(retention_router(console, retention_rows or store_rows(settings),
                                        settings))
    app.include_router(web.static_router())

    async def close_console() -> None:
        await console.cases.aclose()

    runtime.on_stop.append(close_console)
    app.state.service, app.state.replies, app.state.status_posts = service, reply_desk, posts
    app.state.fairness = install_fairness(runtime, settings, service)
    return app
