"""Run the three services in this process against real Kafka and MongoDB, on topics and a
database of their own (for integration tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from services.common.clock import Clock
from services.decision.app import create_app as decision_app
from services.decision.domain.policy import Policy
from services.decision.settings import DecisionSettings
from services.fulfilment.app import create_app as fulfilment_app
from services.fulfilment.settings import FulfilmentSettings
from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from tests import auth
from tests.infra import Infra
from tests.kafka_tools import collect


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
    audit: str
    erasures: str
    status_posts: str

    @classmethod
    def unique(cls, suffix: str) -> Topics:
        return cls(*(f"{name}.{suffix}" for name in (
            "orders", "support", "payments", "outages", "incidents", "decisions", "outcomes",
            "tasks", "deadletter", "audit", "erasures", "status-posts")))


@dataclass(frozen=True)
class Pipeline:
    topics: Topics
    prefix: str
    intake: FastAPI
    decision: FastAPI
    fulfilment: FastAPI

    def db(self, service: str) -> str:
        """Each service owns its database, as in production."""
        return f"{self.prefix}_{service}"

    @property
    def dbs(self) -> list[str]:
        return [self.db(s) for s in ("intake", "decision", "fulfilment")]


def settings_for(infra: Infra, topics: Topics, prefix: str) -> tuple[
        IntakeSettings, DecisionSettings, FulfilmentSettings]:
    common: dict[str, Any] = {
        "kafka_bootstrap": infra.kafka_bootstrap, "mongo_url": infra.mongo_url,
        "deadletter_topic": topics.deadletter, "audit_topic": topics.audit,
        "erasures_topic": topics.erasures, "batch_timeout_ms": 20} | auth.settings()
    return (
        IntakeSettings(**common, consumer_group=f"{prefix}_intake", mongo_db=f"{prefix}_intake",
                       orders_topic=topics.orders,
                       support_topic=topics.support, payments_topic=topics.payments,
                       outages_topic=topics.outages, incidents_topic=topics.incidents),
        DecisionSettings(**common, consumer_group=f"{prefix}_decision",
                         mongo_db=f"{prefix}_decision",
                         incidents_topic=topics.incidents, decisions_topic=topics.decisions,
                         outcomes_topic=topics.outcomes, status_posts_topic=topics.status_posts),
        FulfilmentSettings(**common, consumer_group=f"{prefix}_fulfilment",
                           mongo_db=f"{prefix}_fulfilment",
                           decisions_topic=topics.decisions, outcomes_topic=topics.outcomes,
                           tasks_topic=topics.tasks, feedback_topic=topics.support,
                           status_posts_topic=topics.status_posts),
    )


@contextlib.asynccontextmanager
async def running_pipeline(infra: Infra, suffix: str, *, clock: Clock | None = None,
                           policy: Policy | None = None,
                           fulfilment: Mapping[str, Any] | None = None,
                           decision: Mapping[str, Any] | None = None,
                           every: Mapping[str, Any] | None = None
                           ) -> AsyncIterator[Pipeline]:
    """The three services in this process; `fulfilment` overrides fulfilment's settings (a
    gateway, an SMTP relay), `decision` decision's (where fulfilment is, for the console),
    `every` those of all three (tracing)."""
    topics = Topics.unique(suffix)
    prefix = f"amends_test_{suffix}"
    intake_s, decision_s, fulfilment_s = settings_for(infra, topics, prefix)
    if every:
        intake_s, decision_s, fulfilment_s = (intake_s.model_copy(update=every),
                                              decision_s.model_copy(update=every),
                                              fulfilment_s.model_copy(update=every))
    if fulfilment:
        fulfilment_s = FulfilmentSettings(**{**fulfilment_s.model_dump(), **fulfilment})
    if decision:
        decision_s = DecisionSettings(**{**decision_s.model_dump(), **decision})
    pipeline = Pipeline(topics, prefix, intake_app(intake_s, clock=clock),
                        decision_app(decision_s, clock=clock, policy=policy),
                        fulfilment_app(fulfilment_s, clock=clock))
    async with lifespans([pipeline.fulfilment, pipeline.decision, pipeline.intake]):
        yield pipeline


@contextlib.asynccontextmanager
async def lifespans(apps: Sequence[FastAPI]) -> AsyncIterator[None]:
    """Start the apps (in order) as their server would, and stop them in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


async def decided_and_done(infra: Infra, pipeline: Pipeline, decisions: int, *,
                           settle_s: float = 1.0) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
    """Wait for `decisions` decisions and then for one outcome per action they carry."""
    made = await collect(infra.kafka_bootstrap, pipeline.topics.decisions,
                         lambda seen: len(seen) >= decisions, settle_s=settle_s)
    actions = sum(len(d["data"]["actions"]) for d in made)
    done = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                         lambda seen: len(seen) >= actions, settle_s=settle_s)
    return made, done
