"""Fulfilment in memory: the service with fake stores, gateway and channels, a fake publisher
and a fake clock (the decisions it is given are built by tests/decisions.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from schemas.common import Channel
from schemas.deadletter import REDRIVE_HEADER
from schemas.decision import Decision, DecisionMade, decision_id
from services.common.links import CustomerLinks
from services.common.messaging import DeadLetters, Record
from services.fulfilment.remote import RemoteEffects
from services.fulfilment.service import FulfilmentMetrics, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from tests import auth
from tests.clock import FakeClock
from tests.decisions import T0
from tests.fakes.common import FakePublisher
from tests.fakes.fulfilment import FakeChannel, FakeGateway, FakeStores


async def no_sleep(_: float) -> None:
    """Retries and refund polls wait on the fake clock's terms: not at all."""


def settings(**overrides: Any) -> FulfilmentSettings:
    return FulfilmentSettings(**{**auth.settings(), "retry_base_s": 0.0, "retry_cap_s": 0.0,
                                 "refund_poll_interval_s": 0.0, **overrides})


@dataclass
class Fulfilment:
    """One fulfilment service in memory, and everything it talks to."""

    settings: FulfilmentSettings = field(default_factory=settings)
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0 + timedelta(minutes=5)))
    fakes: FakeStores = field(default_factory=FakeStores)
    publisher: FakePublisher = field(default_factory=FakePublisher)
    gateway: FakeGateway = field(default_factory=FakeGateway)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    channels: dict[Channel, FakeChannel] = field(default_factory=dict)
    offset: int = 0

    def __post_init__(self) -> None:
        metrics = FulfilmentMetrics(self.registry)
        self.links = CustomerLinks(self.settings.customer_link_keys,
                                   self.settings.customer_link_kid,
                                   timedelta(days=self.settings.customer_link_ttl_days))
        self.service = FulfilmentService(
            settings=self.settings, stores=self.fakes.stores, publisher=self.publisher,
            dead_letters=DeadLetters("fulfilment", self.settings.deadletter_topic,
                                     self.publisher, self.clock, self.registry),
            clock=self.clock, metrics=metrics, gateway=self.gateway,
            channels=dict(self.channels), links=self.links,
            remote=RemoteEffects(self.settings, self.clock, sleep=no_sleep,
                                 metrics=metrics.effects))

    @classmethod
    def with_email(cls, **fields: Any) -> Fulfilment:
        made = cls(**fields)
        email = FakeChannel("email", made.clock)
        made.channels[Channel.email] = email
        made.service.channels = dict(made.channels)
        return made

    @property
    def email(self) -> FakeChannel:
        return self.channels[Channel.email]

    def record(self, decision: Decision, *, redrive: str | None = None) -> Record:
        self.offset += 1
        event = DecisionMade(id=decision_id(decision.incident.incident_id),
                             source="amends/decision", time=decision.decided_at,
                             subject=decision.incident.customer.id,
                             tenant=decision.incident.tenant, data=decision)
        headers = ((REDRIVE_HEADER, redrive.encode()),) if redrive else ()
        return Record(self.settings.decisions_topic, 0, self.offset,
                      decision.incident.customer.id.encode(),
                      event.model_dump_json().encode(), headers)

    async def deliver(self, *decisions: Decision, redrive: str | None = None) -> list[Any]:
        return await self.service.handle_decisions(
            [self.record(d, redrive=redrive) for d in decisions])

    def outcomes(self) -> list[dict[str, Any]]:
        """The outcomes published, as their events' `data`."""
        return [b["data"] for b in self.publisher.bodies(self.settings.outcomes_topic)]

    def outcome(self, key: str) -> dict[str, Any]:
        [found] = [o for o in self.outcomes() if o["idempotency_key"] == key]
        return found

    def dead_letters(self) -> list[dict[str, Any]]:
        return [b["data"] for b in self.publisher.bodies(self.settings.deadletter_topic)]

    def tasks(self) -> list[dict[str, Any]]:
        return [b["data"] for b in self.publisher.bodies(self.settings.tasks_topic)]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def body(record: Record) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(record.value)
    return loaded
