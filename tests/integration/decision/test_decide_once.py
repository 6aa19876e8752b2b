"""Decide once, on the real broker and database: a decision is recorded before its goodwill is
booked, and a redelivered incident reuses the recorded decision (remedies, amounts, budget
day), whatever the clock, the policy and the budget say when it comes back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from schemas.common import Money
from schemas.decision import decision_id, slim
from services.common.access import Principal, Role
from services.common.adapters.mongo import Doc
from services.common.messaging import Record
from services.decision.app import create_app as decision_app
from services.decision.domain.lifecycle import goodwill
from services.decision.domain.policy import Policy, load_policy
from services.decision.ports import Budget
from services.decision.service import DecisionService
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

DAY_1 = date(2026, 11, 23)
BEFORE_MIDNIGHT = datetime(2026, 11, 23, 23, 58, tzinfo=UTC)
AFTER_MIDNIGHT = BEFORE_MIDNIGHT + timedelta(minutes=7)
DEFAULT = load_policy("deploy/policy/default.yaml")


def tight(version: str, budget: str) -> Policy:
    return DEFAULT.model_copy(update={"version": version, "guards": DEFAULT.guards.model_copy(
        update={"daily_budget": Decimal(budget)})})


class CrashingBudget:
    """The budget of a decider that dies after recording its decisions, before booking."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self.budget, name)

    async def book(self, *_: Any) -> set[str]:
        raise RuntimeError("killed between recording and booking")


def records(topic: str, incidents: list[dict[str, Any]], start: int = 0) -> list[Record]:
    return [Record(topic, 0, start + n, key.encode(), value)
            for n, (key, value) in enumerate(incident_events(incidents))]


def failed_outcome(topic: str, decided: Any, position: int, value: str) -> Record:
    action = decided.actions[position]
    event = {"specversion": "1.0", "id": f"{action.idempotency_key}:outcome",
             "source": "amends/fulfilment", "type": "amends.outcome.recorded",
             "time": BEFORE_MIDNIGHT.isoformat(), "subject": decided.incident.customer.id,
             "data": {"idempotency_key": action.idempotency_key,
                      "decision_id": decided.decision_id,
                      "incident_id": decided.incident.incident_id,
                      "customer_id": decided.incident.customer.id, "position": position,
                      "kind": action.kind.value, "status": "failed",
                      "value": {"amount": value, "currency": "EUR"},
                      "completed_at": BEFORE_MIDNIGHT.isoformat(), "detail": "declined"}}
    return Record(topic, 0, 0, decided.incident.customer.id.encode(), json.dumps(event).encode())


async def test_a_redelivery_after_a_crash_reuses_the_recorded_decision_and_books_it_once(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    db = mongo[settings.mongo_db]
    # A 10-hour delay is worth 14.90 EUR (a 10.00 voucher, free delivery at 4.90).
    first, second = (incident("delivery_delayed", customer_id=f"{suffix}-{n}", delay_minutes=600,
                              at=BEFORE_MIDNIGHT, fact=f"o-{n}") for n in (1, 2))
    batch = records(topics.incidents, [second])
    crashed_id = decision_id(second["incident_id"])

    before = decision_app(settings, clock=FakeClock(BEFORE_MIDNIGHT), policy=tight("tight", "20"))
    async with lifespans([before]):
        service: DecisionService = before.state.service
        [spent] = await service.handle_incidents(records(topics.incidents, [first]))
        assert spent.total_value.amount == Decimal("14.90")
        # 5.10 left: the second is cut to it, recorded, and the decider dies before booking.
        service.budget = CrashingBudget(service.budget)
        with pytest.raises(RuntimeError, match="killed"):
            await service.handle_incidents(batch)
        recorded = await service.store.get(crashed_id)
        assert recorded is not None
        assert goodwill(recorded) == Decimal("5.10")
        assert recorded.decided_at.date() == DAY_1
        # Then the first decision's voucher fails: its 10.00 go back to the first day.
        service.budget = service.budget.budget
        assert await service.handle_outcomes(
            [failed_outcome(topics.outcomes, spent, 1, "10.00")]) == 1

    # Redelivered after midnight to a decider with another policy and a roomy budget.
    after = decision_app(settings, clock=FakeClock(AFTER_MIDNIGHT),
                         policy=tight("roomy", "25000"))
    async with lifespans([after]):
        service = after.state.service
        assert await service.handle_incidents(batch) == []
        ledger = await db["budget_ledger"].count_documents({})
        assert await service.handle_incidents(batch) == []  # and again: nothing more
        assert await db["budget_ledger"].count_documents({}) == ledger
        day_1 = await service.budget.state(DAY_1, Money.of("20", "EUR"))
        day_2 = await service.budget.state(DAY_1 + timedelta(days=1), Money.of("25000", "EUR"))

    # Booked once, at its recorded amount, on the day it was decided: 14.90 - 10.00 + 5.10.
    assert day_1.spent.amount == Decimal("10.00")
    assert day_2.spent.amount == 0
    published = await collect(infra.kafka_bootstrap, topics.decisions,
                              lambda seen: len(seen) >= 2, settle_s=1.0)
    mine = [d for d in published if d["data"]["decision_id"] == crashed_id]
    assert len(mine) == 1
    decided = mine[0]["data"]
    assert decided == json.loads(slim(recorded).model_dump_json())
    assert decided["policy_version"] == "tight"
    assert decided["decided_at"].startswith(DAY_1.isoformat())
    assert decided["total_value"] == {"amount": "5.10", "currency": "EUR"}
    assert [c["cap"] for c in decided["caps"]] == ["budget"]


async def test_a_failed_restitution_gives_no_goodwill_budget_back(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    charged = incident("double_charge", customer_id=f"{suffix}-c", at=BEFORE_MIDNIGHT,
                       charged_amount={"amount": "129.00", "currency": "EUR"},
                       order_value={"amount": "129.00", "currency": "EUR"})
    app = decision_app(settings, clock=FakeClock(BEFORE_MIDNIGHT), policy=DEFAULT)
    async with lifespans([app]):
        service: DecisionService = app.state.service
        [decided] = await service.handle_incidents(records(topics.incidents, [charged]))
        assert [(a.kind.value, a.restitution) for a in decided.actions] == [
            ("apology", False), ("refund", True), ("points", False)]
        limit = Money.of(str(DEFAULT.guards.daily_budget), "EUR")
        assert (await service.budget.state(DAY_1, limit)).spent.amount == Decimal("5.00")
        # The refund fails: it was never booked, so nothing goes back; the points do.
        assert await service.handle_outcomes(
            [failed_outcome(topics.outcomes, decided, 1, "129.00")]) == 0
        assert await service.handle_outcomes(
            [failed_outcome(topics.outcomes, decided, 2, "5.00")]) == 1
        assert (await service.budget.state(DAY_1, limit)).spent.amount == 0


async def test_an_approved_restitution_goes_out_even_when_the_budget_is_spent(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    customer = f"{suffix}-claims"
    # Three earlier claims make the fourth, a reported double charge, held for review.
    claims = [incident("item_missing", customer_id=customer, detection="customer_reported",
                       at=BEFORE_MIDNIGHT, fact=f"o-{n}",
                       item_value={"amount": "1.00", "currency": "EUR"}) for n in range(3)]
    charged = incident("double_charge", customer_id=customer, detection="customer_reported",
                       at=BEFORE_MIDNIGHT, fact="o-9",
                       charged_amount={"amount": "90.00", "currency": "EUR"},
                       order_value={"amount": "90.00", "currency": "EUR"})
    late = [incident("delivery_delayed", customer_id=f"{suffix}-late-{n}", delay_minutes=600,
                     at=BEFORE_MIDNIGHT, fact="o-late") for n in range(5)]
    app = decision_app(settings, clock=FakeClock(BEFORE_MIDNIGHT),
                       policy=tight("tight", "60"))
    async with lifespans([app]):
        service: DecisionService = app.state.service
        made = await service.handle_incidents(records(topics.incidents, [*claims, charged]))
        held = made[-1]
        assert held.status.value == "held"
        assert held.review_reason is not None
        assert "frequent-claims" in held.review_reason
        assert held.goodwill_value is not None
        extra = held.goodwill_value.amount  # its points and a repeat failure's extras
        assert extra > 0
        # The day's budget is spent meanwhile by late deliveries.
        await service.handle_incidents(records(topics.incidents, late, 10))
        limit = Money.of("60", "EUR")
        assert (await service.budget.state(DAY_1, limit)).remaining.amount == 0
        ana = Principal("ana", frozenset({Role.reviewer}), "*", "api_key")
        approved = await service.review(held.decision_id, "approved", ana,
                                        "the bank statement shows both captures")
        spent = await service.budget.state(DAY_1, limit)
    assert approved.status.value == "approved"
    # The refund is owed: the points that come with it are booked past the limit.
    assert spent.spent.amount == limit.amount + extra
    refund = [a for a in approved.actions if a.kind.value == "refund"]
    assert [(a.value.amount, a.restitution) for a in refund] == [(Decimal("90.00"), True)]
