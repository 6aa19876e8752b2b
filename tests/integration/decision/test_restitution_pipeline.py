"""Restitution through intake, decision and fulfilment on the real broker and database: a
double charge is refunded in full with the budget used up and above every cap, never held for
its size, and refunded once when an agent reports it again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.decision.app import create_app as decision_app
from services.decision.domain.policy import Policy, load_policy
from services.fulfilment.app import create_app as fulfilment_app
from services.intake.app import create_app as intake_app
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import intake_settings
from tests.kafka_tools import as_json, collect, produce
from tests.pipeline import Topics, lifespans, settings_for
from tests.upstream import signed

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")


@dataclass(frozen=True)
class Running:
    topics: Topics
    intake: FastAPI
    decision: FastAPI


@contextlib.asynccontextmanager
async def pipeline(infra: Infra, suffix: str, policy: Policy) -> AsyncIterator[Running]:
    """Intake (taking signed reports over HTTP too), decision and fulfilment."""
    topics = Topics.unique(suffix)
    prefix = f"amends_test_{suffix}"
    _, decision_s, fulfilment_s = settings_for(infra, topics, prefix)
    clock = FakeClock(T0 + timedelta(minutes=5))
    apps = [fulfilment_app(fulfilment_s, clock=clock),
            decision_app(decision_s, clock=clock, policy=policy),
            intake_app(intake_settings(infra, topics, f"{prefix}_intake"), clock=clock)]
    async with lifespans(apps):
        yield Running(topics, apps[2], apps[1])


def double_charged(customer: str, order: str, amount: str) -> list[dict[str, Any]]:
    """An order paid once, then captured a second time for the same amount."""
    return [f.order_placed(customer, order, at=T0, promised=None, total=amount),
            f.payment_captured(customer, order, f"{order}-p1", at=T0 + timedelta(seconds=5),
                               amount=amount),
            f.payment_captured(customer, order, f"{order}-p2", at=T0 + timedelta(seconds=9),
                               amount=amount)]


def of(customer: str, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["data"] for m in seen
            if customer in (m["data"].get("customer_id"),
                            m["data"].get("incident", {}).get("customer", {}).get("id"))]


def refunds_of(customer: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda seen: any(o["kind"] == "refund" for o in of(customer, seen))


async def metric(app: FastAPI, name: str) -> float:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://decision") as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


async def test_a_double_charge_is_refunded_in_full_with_the_budget_used_up_and_never_held(
        infra: Infra, suffix: str) -> None:
    spent = DEFAULT.model_copy(update={"guards": DEFAULT.guards.model_copy(
        update={"daily_budget": Decimal("10.00")})})
    late, small, large = f"{suffix}-late", f"{suffix}-small", f"{suffix}-large"
    async with pipeline(infra, suffix, spent) as p:
        # A ten-hour delay (14.90 of goodwill) uses up the day's 10.00 first.
        await produce(infra.kafka_bootstrap, p.topics.orders, as_json([f.delivered(
            late, "o-late", at=T0, promised=T0 - timedelta(hours=10))]))
        await collect(infra.kafka_bootstrap, p.topics.decisions,
                      lambda seen: bool(of(late, seen)))
        await produce(infra.kafka_bootstrap, p.topics.orders, as_json(
            double_charged(small, "o-small", "129.00")[:1]
            + double_charged(large, "o-large", "640.00")[:1]))
        await produce(infra.kafka_bootstrap, p.topics.payments, as_json(
            double_charged(small, "o-small", "129.00")[1:]
            + double_charged(large, "o-large", "640.00")[1:]))
        outcomes = await collect(
            infra.kafka_bootstrap, p.topics.outcomes,
            lambda seen: refunds_of(small)(seen) and refunds_of(large)(seen), settle_s=1.0)
        decisions = await collect(infra.kafka_bootstrap, p.topics.decisions,
                                  lambda seen: len(seen) >= 3)
        restitution = await metric(p.decision, "amends_restitution_decided_total{")
        booked = await metric(p.decision, "amends_budget_reserved_total{")

    [late_decision] = of(late, decisions)
    assert late_decision["goodwill_value"]["amount"] == "10.00"
    for customer, amount in ((small, "129.00"), (large, "640.00")):
        [decision] = of(customer, decisions)
        assert decision["status"] == "approved", decision.get("review_reason")
        refund = [a for a in decision["actions"] if a["kind"] == "refund"]
        assert [(a["amount"]["amount"], a["restitution"]) for a in refund] == [(amount, True)]
        # The 500 points are goodwill: the empty budget cut them, and nothing else.
        assert [a["kind"] for a in decision["actions"]] == ["apology", "refund"]
        assert [c["cap"] for c in decision["caps"]] == ["budget"]
        assert decision["goodwill_value"]["amount"] == "0"
        assert decision["restitution_value"]["amount"] == amount
        done = [o for o in of(customer, outcomes) if o["kind"] == "refund"]
        assert [(o["status"], o["value"]["amount"]) for o in done] == [("succeeded", amount)]
    # Counted apart: restitution on its own counter, the budget's counts goodwill only.
    assert restitution == 769.0
    assert booked == 10.0


async def test_a_detected_and_a_reported_double_charge_are_refunded_once(
        infra: Infra, suffix: str) -> None:
    customer = f"{suffix}-twice"
    async with pipeline(infra, suffix, DEFAULT) as p:
        events = double_charged(customer, "o-1", "129.00")
        await produce(infra.kafka_bootstrap, p.topics.orders, as_json(events[:1]))
        await produce(infra.kafka_bootstrap, p.topics.payments, as_json(events[1:]))
        await collect(infra.kafka_bootstrap, p.topics.decisions,
                      lambda seen: bool(of(customer, seen)))
        # An agent reports the same double charge through the API: its own incident.
        report = {"report_id": "ticket-77", "type": "double_charge",
                  "detection": "agent_reported", "customer": f.customer(customer),
                  "occurred_at": T0.isoformat(), "order_id": "o-1",
                  "order_value": f.eur("129.00"), "charged_amount": f.eur("129.00")}
        raw, headers = signed("desk", report, int(T0.timestamp()) + 300)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=p.intake),
                                     base_url="http://intake") as client:
            answer = await client.post("/v1/incidents", content=raw, headers=headers)
        assert answer.status_code == 202, answer.text
        decisions = await collect(infra.kafka_bootstrap, p.topics.decisions,
                                  lambda seen: len(of(customer, seen)) >= 2)
        outcomes = await collect(
            infra.kafka_bootstrap, p.topics.outcomes,
            lambda seen: sum(o["kind"] == "apology" for o in of(customer, seen)) >= 2,
            settle_s=1.5)

    detected, reported = of(customer, decisions)
    assert detected["incident"]["detection"] == "proactive"
    assert reported["incident"]["detection"] == "agent_reported"
    assert detected["incident"]["incident_id"] != reported["incident"]["incident_id"]
    assert [a["amount"]["amount"] for a in detected["actions"] if a["kind"] == "refund"] == [
        "129.00"]
    assert not [a for a in reported["actions"] if a["kind"] == "refund"]
    assert "129.00 EUR of the 129.00 EUR charged twice for order o-1 is refunded already" in (
        reported["explanation"])
    refunds = [o for o in of(customer, outcomes) if o["kind"] == "refund"]
    assert [(o["status"], o["value"]["amount"]) for o in refunds] == [("succeeded", "129.00")]
