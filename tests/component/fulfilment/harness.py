"""Fulfilment in memory: the service with fake stores, gateway and channels, a fake publisher
and a fake clock; decisions built as the decision service publishes them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from schemas.common import Channel, Money
from schemas.deadletter import REDRIVE_HEADER
from schemas.decision import (
    Action,
    Choice,
    Decision,
    DecisionMade,
    DecisionStatus,
    Offer,
    OfferOption,
    RemedyKind,
    Review,
    action_key,
    decision_id,
)
from schemas.incident import Incident
from services.common.links import CustomerLinks
from services.common.messaging import DeadLetters, Record
from services.fulfilment.remote import RemoteEffects
from services.fulfilment.service import FulfilmentMetrics, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from tests import auth
from tests.clock import FakeClock
from tests.factories import incident
from tests.fakes.common import FakePublisher
from tests.fakes.fulfilment import FakeChannel, FakeGateway, FakeStores

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


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


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def made_incident(kind: str = "double_charge", *, customer_id: str = "c-1",
                  locale: str = "en", paid: str | None = "20.00", tenant: str | None = None,
                  email: str | None = None, preferred: str = "email",
                  **fields: Any) -> Incident:
    data = incident(kind, customer_id=customer_id, at=T0, fact=f"o-{customer_id}", **fields)
    data["customer"]["locale"] = locale
    if email is not None:
        data["customer"]["contact"]["email"] = email or None
    data["customer"]["contact"]["preferred_channel"] = preferred
    if paid is not None:
        data["charged_amount"] = data["order_value"] = {"amount": paid, "currency": "EUR"}
    if tenant is not None:
        data["tenant"] = tenant
    return Incident.model_validate(data)


def grant(kind: RemedyKind, **fields: Any) -> dict[str, Any]:
    """One remedy of a decision (its position and key are given by `decided`)."""
    return {"kind": kind, **fields}


APOLOGY = grant(RemedyKind.apology)


def _actions(did: str, grants: Sequence[dict[str, Any]], start: int,
             restitution: Sequence[int] = ()) -> list[Action]:
    actions = []
    for position, given in enumerate(grants, start=start):
        value = given.get("value") or given.get("amount") or eur("0")
        actions.append(Action(position=position, idempotency_key=action_key(did, position),
                              value=value, restitution=position in restitution,
                              rule_id=given.get("rule_id", "rule"),
                              **{k: v for k, v in given.items()
                                 if k not in {"value", "rule_id"}}))
    return actions


def decided(made: Incident, *grants: dict[str, Any], restitution: Sequence[int] = (),
            **fields: Any) -> Decision:
    """The decision on `made` granting `grants` in order (the positions in `restitution`
    are restitution)."""
    did = decision_id(made.incident_id)
    actions = _actions(did, grants, 0, restitution)
    total = sum((a.value.amount for a in actions), start=eur("0").amount)
    values: dict[str, Any] = {
        "decision_id": did, "incident": made, "policy_version": "component-test",
        "decided_at": T0 + timedelta(minutes=1), "status": DecisionStatus.approved,
        "actions": actions, "total_value": eur(str(total)), "goodwill_value": eur(str(total)),
        "explanation": "granted by the component tests' policy"}
    return Decision.model_validate(values | fields)


def offered(decision: Decision, *options: Sequence[dict[str, Any]], default: int = 0,
            ) -> Decision:
    """`decision` offering a choice between these options (each a list of grants), its
    actions numbered after the decision's own."""
    start = len(decision.actions)
    made: list[OfferOption] = []
    for i, grants in enumerate(options):
        made.append(OfferOption(label=f"option {i}",
                                actions=_actions(decision.decision_id, grants, start)))
        start += len(grants)
    offer = Offer(offer_id=f"{decision.decision_id}:offer", options=made,
                  default_option=default, deadline=T0 + timedelta(days=3))
    return decision.model_copy(update={"offer": offer,
                                       "status": DecisionStatus.awaiting_choice})


def chosen(decision: Decision, option: int,
           by: Literal["customer", "default", "support"] = "customer") -> Decision:
    """The next revision: the customer's choice, whose actions join the decision's."""
    assert decision.offer is not None
    picked = decision.offer.options[option]
    return decision.model_copy(update={
        "revision": decision.revision + 1, "status": DecisionStatus.approved,
        "actions": [*decision.actions, *picked.actions],
        "choice": Choice(option=option, label=picked.label, by=by,
                         at=T0 + timedelta(hours=1))})


def approved(decision: Decision) -> Decision:
    """The next revision of a held decision: a reviewer approved it."""
    return decision.model_copy(update={
        "revision": decision.revision + 1, "status": DecisionStatus.approved,
        "review": Review(verdict="approved", reviewer="reviewer-1", reason="checked",
                         at=T0 + timedelta(hours=2))})


def body(record: Record) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(record.value)
    return loaded
