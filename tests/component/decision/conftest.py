"""Decision built in memory for component tests: the service with the fakes of its ports
(`tests/fakes/`), and its HTTP API mounted on a FastAPI app over the same service. Nothing
here needs Kafka or a database."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from schemas.decision import Decision, decision_id
from schemas.incident import IncidentType
from services.common.access import Authenticator, Role, install_problem_handler
from services.common.links import CustomerLinks
from services.common.messaging import DeadLetters, Record
from services.decision import http, outage_http
from services.decision.domain.policy import Policy, ReviewTrigger, When, load_policy
from services.decision.service import DecisionMetrics, DecisionService
from services.decision.settings import DecisionSettings
from tests import auth
from tests.clock import FakeClock
from tests.fakes.common import FakePublisher
from tests.fakes.decision import FakeAudit, FakeBudget, FakeDecisions
from tests.kafka_tools import incident_events

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")
# Late deliveries are held for review (a 10-hour delay is worth 14.90 EUR of goodwill).
HOLD_LATE = DEFAULT.model_copy(update={"guards": DEFAULT.guards.model_copy(update={"review": [
    ReviewTrigger(id="late-held", reason="late deliveries wait for a reviewer in these tests",
                  when=When(type=[IncidentType.delivery_delayed]), total_above=Decimal(0))]})})


def tight(budget: str, policy: Policy = DEFAULT, version: str | None = None) -> Policy:
    return policy.model_copy(update={
        "version": version or policy.version,
        "guards": policy.guards.model_copy(update={"daily_budget": Decimal(budget)})})


@dataclass
class Decider:
    service: DecisionService
    store: FakeDecisions
    budget: FakeBudget
    publisher: FakePublisher
    audit: FakeAudit
    clock: FakeClock
    links: CustomerLinks
    app: FastAPI
    offset: int = 0

    @property
    def settings(self) -> DecisionSettings:
        return self.service.settings

    def records(self, incidents: Sequence[dict[str, Any]]) -> list[Record]:
        out = []
        for key, value in incident_events(incidents):
            out.append(Record(self.settings.incidents_topic, 0, self.offset, key.encode(),
                              value))
            self.offset += 1
        return out

    def raw(self, topic: str, value: bytes) -> Record:
        self.offset += 1
        return Record(topic, 0, self.offset, b"k", value)

    async def decide(self, *incidents: dict[str, Any]) -> list[Decision]:
        return await self.service.handle_incidents(self.records(incidents))

    def published(self) -> list[dict[str, Any]]:
        """The decision events published, in order."""
        return self.publisher.bodies(self.settings.decisions_topic)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.publisher.bodies(self.settings.deadletter_topic)

    def api(self, role: Role = Role.admin, tenant: str = "*", who: int = 1
            ) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://decision",
                                 headers=auth.headers(role, tenant, who))

    def failed_outcome(self, decided: Decision, position: int, value: str | None = None
                       ) -> Record:
        action = decided.actions[position]
        event = {"specversion": "1.0", "id": f"{action.idempotency_key}:outcome",
                 "source": "amends/fulfilment", "type": "amends.outcome.recorded",
                 "time": self.clock().isoformat(), "subject": decided.incident.customer.id,
                 "data": {"idempotency_key": action.idempotency_key,
                          "decision_id": decided.decision_id,
                          "incident_id": decided.incident.incident_id,
                          "customer_id": decided.incident.customer.id, "position": position,
                          "kind": action.kind.value, "status": "failed",
                          "value": {"amount": value or format(action.value.amount, "f"),
                                    "currency": "EUR"},
                          "restitution": action.restitution,
                          "completed_at": self.clock().isoformat(), "detail": "declined"}}
        return self.raw(self.settings.outcomes_topic, json.dumps(event).encode())


def build(policy: Policy = DEFAULT, *, clock: FakeClock | None = None,
          store: FakeDecisions | None = None, budget: FakeBudget | None = None,
          **overrides: Any) -> Decider:
    settings = DecisionSettings(**(auth.settings() | overrides))
    clock = clock or FakeClock(T0 + timedelta(minutes=1))
    registry = CollectorRegistry()
    publisher = FakePublisher()
    store = store or FakeDecisions()
    budget = budget or FakeBudget()
    audit = FakeAudit()
    service = DecisionService(
        settings=settings, policy=policy, store=store, budget=budget, publisher=publisher,
        dead_letters=DeadLetters("decision", settings.deadletter_topic, publisher, clock,
                                 registry),
        clock=clock, metrics=DecisionMetrics(registry), audit=audit)
    links = CustomerLinks(settings.customer_link_keys, settings.customer_link_kid,
                          timedelta(days=settings.customer_link_ttl_days))
    app = FastAPI()
    install_problem_handler(app)
    http.install_refusals(app)
    app.include_router(http.router(service, Authenticator(settings.auth), links))
    app.include_router(outage_http.router(service, Authenticator(settings.auth)))
    return Decider(service, store, budget, publisher, audit, clock, links, app)


@pytest.fixture
def decider() -> Decider:
    return build()


def did(body: dict[str, Any]) -> str:
    return decision_id(body["incident_id"])
