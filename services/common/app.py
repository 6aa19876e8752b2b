"""What every service's app factory shares: the broker, the database, the lifespan that opens
and closes them, and the operational endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.common.access import Authenticator, Role, install_problem_handler, operator
from services.common.adapters.audit import audit_entries
from services.common.adapters.mongo import Doc, make_client
from services.common.audit import AuditTrail
from services.common.clock import Clock, system_clock
from services.common.errors import redact_driver_errors
from services.common.http import ops_router
from services.common.links import CustomerLinks
from services.common.logs import install_log_privacy
from services.common.messaging import (
    BatchHandler,
    ConsumerMetrics,
    DeadLetters,
    KafkaPublisher,
    Publisher,
    ensure_topics,
    make_broker,
    subscribe_batches,
)
from services.common.settings import ServiceSettings
from services.common.tracing import Tracing

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The resources of one service process, opened in the lifespan, never at import."""

    settings: ServiceSettings
    registry: CollectorRegistry
    clock: Clock
    broker: KafkaBroker
    mongo: AsyncMongoClient[Doc]
    publisher: Publisher
    dead_letters: DeadLetters
    consumer_metrics: ConsumerMetrics
    owns_mongo: bool
    access: Authenticator
    links: CustomerLinks
    tracing: Tracing
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def db(self) -> AsyncDatabase[Doc]:
        return self.mongo[self.settings.mongo_db]

    @classmethod
    def create(cls, settings: ServiceSettings, *, mongo: AsyncMongoClient[Doc] | None = None,
               clock: Clock | None = None,
               registry: CollectorRegistry | None = None,
               publisher: Publisher | None = None) -> Runtime:
        """`publisher` replaces the broker's (tests give a fake): every message the service
        sends, dead letters and audit entries included, goes through it."""
        install_log_privacy()
        registry = registry or CollectorRegistry()
        clock = clock or system_clock
        redact_driver_errors()
        broker = make_broker(settings, registry)
        tracing = Tracing(settings)
        publisher = publisher or KafkaPublisher(broker, registry)
        if tracing.enabled:
            publisher = tracing.publisher(publisher)
        runtime = cls(
            settings=settings, registry=registry, clock=clock, broker=broker,
            mongo=mongo or make_client(settings.mongo_url), publisher=publisher,
            dead_letters=DeadLetters(settings.service_name, settings.deadletter_topic,
                                     publisher, clock, registry),
            consumer_metrics=ConsumerMetrics(registry),
            owns_mongo=mongo is None,
            access=Authenticator(settings.auth),
            links=CustomerLinks(settings.customer_link_keys, settings.customer_link_kid,
                                timedelta(days=settings.customer_link_ttl_days)),
            tracing=tracing,
        )

        async def start_tracing() -> None:
            tracing.start()

        async def stop_tracing() -> None:
            # Joins the export thread, which writes what is left: not on the event loop.
            await asyncio.to_thread(tracing.stop)

        runtime.on_start.append(start_tracing)
        runtime.on_stop.append(stop_tracing)
        return runtime

    def audit_trail(self) -> AuditTrail:
        """The service's audit trail, in its own `audit` store (indexed at start)."""
        entries = audit_entries(self.db)
        self.on_start.append(entries.create_indexes)
        return AuditTrail(self.settings.service_name, entries, self.publisher,
                          self.settings.audit_topic, self.clock)

    def consume(self, topics: Sequence[str], handle: BatchHandler, *, name: str) -> None:
        """Consume `topics` in batches in the service's consumer group (see
        `subscribe_batches`)."""
        subscribe_batches(self.broker, self.settings, topics, handle, name=name,
                          metrics=self.consumer_metrics, dead_letters=self.dead_letters,
                          tracing=self.tracing)

    def every(self, seconds: float, job: Callable[[], Awaitable[object]], *,
              name: str) -> None:
        """Run `job` every `seconds` while the service is up (first run after one interval).
        A failing run is logged and the next one tries again: a sweep never stops the
        service, and the service never stops in the middle of a sweep's write."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:
                    log.exception("%s failed; trying again in %.0f s", name, seconds)

        running: list[asyncio.Task[None]] = []

        async def start() -> None:
            running.append(asyncio.create_task(loop(), name=name))

        async def stop() -> None:
            for task in running:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            running.clear()

        self.on_start.append(start)
        self.on_stop.insert(0, stop)

    async def _ping_broker(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka does not answer")

    async def _ping_mongo(self) -> None:
        await self.mongo.admin.command("ping")

    def app(self, *, title: str, topics: Sequence[str], produces: Sequence[str],
            version: str = "1", open_docs: bool = False) -> FastAPI:
        """The service's ASGI app; `topics` are created at start when missing, `produces`
        are the topics it publishes to (declared so the AsyncAPI document lists them).
        Unless `open_docs` (intake's API is for upstream systems), the OpenAPI document is
        served to operators only and the browsable docs not at all: only /metrics, /health
        and /alive answer without credentials."""
        for topic in [*produces, self.settings.deadletter_topic]:
            self.broker.publisher(topic, title=f"{topic}:Publisher")

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            if self.settings.create_topics:
                await ensure_topics(self.settings.kafka_bootstrap,
                                    [*topics, self.settings.deadletter_topic],
                                    self.settings.topic_partitions,
                                    self.settings.topic_replication)
            for hook in self.on_start:
                await hook()
            await self.broker.start()
            try:
                yield
            finally:
                await self.broker.stop()
                for hook in self.on_stop:
                    await hook()
                if self.owns_mongo:
                    await self.mongo.close()

        docs: dict[str, Any] = {} if open_docs else {"openapi_url": None, "docs_url": None,
                                                      "redoc_url": None}
        app = FastAPI(title=title, version=version, lifespan=lifespan, **docs)
        install_problem_handler(app)
        if not open_docs:
            reader = operator(self.access, Role.viewer)

            @app.get("/openapi.json", include_in_schema=False)
            async def openapi(request: Request) -> JSONResponse:
                await reader(request, None)
                return JSONResponse(app.openapi())

        app.include_router(ops_router(self.registry, {"kafka": self._ping_broker,
                                                      "mongodb": self._ping_mongo}))
        app.state.runtime = self
        return app
