"""An outage's own budget in memory: its decisions are scaled as the policy says and booked in
its ledger, never in the day's budget; a double charge decided among them is refunded in
full; its cost preview is published once, before its remedies, and served over HTTP."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from amends.cli_outage import tables
from schemas.common import Money
from schemas.decision import DecisionStatus, RemedyKind
from services.common.access import Role
from services.decision.domain.lifecycle import goodwill
from services.decision.domain.policy import Policy
from tests.component.decision.conftest import DEFAULT, T0, build, tight
from tests.factories import incident as make_incident

pytestmark = pytest.mark.component

DAY = T0.date()
LIMIT = Money(amount=Decimal("25000.00"), currency="EUR")


def with_budget(per_customer: str, partial: str = "even", base: Policy = DEFAULT) -> Policy:
    data = base.model_dump(mode="json")
    data["outages"] = {"budget": {"per_customer": per_customer}, "partial": partial}
    return Policy.model_validate(data)


def outage_incident(n: int, *, tiers: dict[str, int], tier: str = "standard",
                    outage_id: str = "out-1") -> dict[str, Any]:
    body = make_incident("service_outage", customer_id=f"c-{n}", tier=tier, severity="high",
                         fact=outage_id, outage_id=outage_id,
                         outage_affected=sum(tiers.values()), outage_tiers=tiers)
    body.pop("order_id")
    return body


async def test_an_outage_is_scaled_booked_apart_and_previewed_once() -> None:
    decider = build(tight("3.00", with_budget("0.40")))  # a day's budget of 3.00 EUR
    tiers = {"standard": 150, "gold": 50}
    outage = [outage_incident(n, tiers=tiers, tier="gold" if n % 4 == 0 else "standard")
              for n in range(200)]
    double = make_incident("double_charge", customer_id="c-x", at=T0, fact="o-x",
                           charged_amount={"amount": "49.90", "currency": "EUR"},
                           order_value={"amount": "49.90", "currency": "EUR"})
    made = await decider.decide(*outage[:100], double, *outage[100:])
    decided = [d for d in made if d.incident.outage_id == "out-1"]
    assert len(decided) == 200
    # 100 points (1.00 EUR) each, scaled evenly to 0.40 EUR: 40 points, whoever came first
    points = {a.points for d in decided for a in d.actions if a.kind is RemedyKind.points}
    assert points == {40}
    assert all(d.outage_budget == "out-1" and [c.cap for c in d.caps] == ["outage"]
               for d in decided)
    assert "an outage budget of 80.00 EUR for 200 customers" in decided[-1].explanation
    # the double charge in the middle: refunded in full, from no budget
    [owed] = [d for d in made if d.incident.type.value == "double_charge"]
    refund = next(a for a in owed.actions if a.kind is RemedyKind.refund)
    assert (refund.restitution, refund.value.amount) == (True, Decimal("49.90"))
    # the day's budget moved for the double charge's goodwill only (an outage 26 times its
    # size left it whole); the outage's ledger has every grant once
    extra = goodwill(owed)
    assert extra > 0
    assert (await decider.budget.state(DAY, LIMIT)).spent.amount == extra
    assert [m.amount.amount for m in await decider.budget.movements(DAY, "EUR")] == [extra]
    assert await decider.store.outages.booked("out-1") == (200, Decimal("80.00"))

    # one preview, published before the decisions, also when the incidents come again
    await decider.decide(*outage[:10])
    topic = decider.settings.outage_previews_topic
    [preview] = decider.publisher.bodies(topic)
    assert preview["type"] == "amends.outage.cost_previewed"
    data = preview["data"]
    assert (data["affected_customers"], data["tiers"]) == (200, {"gold": 50, "standard": 150})
    assert data["full_cost"]["amount"] == "200.00"
    assert data["total"]["amount"] == data["outage_budget"]["amount"] == "80.00"
    assert data["scaled"] is True
    assert data["daily_budget"]["amount"] == "3.00"
    kinds = {r["kind"]: (r["customers"], r["value"]["amount"]) for r in data["remedies"]}
    assert kinds == {"apology": (200, "0.00"), "points": (200, "80.00")}
    order = [m.topic for m in decider.publisher.sent]
    assert order.index(topic) < order.index(decider.settings.decisions_topic)

    async with decider.api() as api:
        answer = await api.get("/v1/outages/out-1")
        missing = await api.get("/v1/outages/out-2")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["preview"]["preview_id"] == data["preview_id"]
    assert (body["decisions_paid"], body["spent"]["amount"], body["left"]["amount"]) == (
        200, "80.00", "0.00")
    assert missing.status_code == 404
    # `amends outage show` prints the answer as tables
    out = Console(record=True, width=120)
    for table in tables(body):
        out.print(table)
    text = out.export_text()
    for line in ("200 customers affected", "(standard 150, gold 50)", "points", "80.00 EUR",
                 "200.00 EUR", "grants scaled", "paid so far (200 decisions)"):
        assert line in text


async def test_tiers_cover_the_policy_s_order_first() -> None:
    decider = build(with_budget("0.40", partial="tiers"))
    tiers = {"standard": 150, "gold": 50}
    made = await decider.decide(*[
        outage_incident(n, tiers=tiers, tier="gold" if n < 50 else "standard")
        for n in range(200)])
    points = {d.incident.customer.tier.value: {a.points for a in d.actions
                                               if a.kind is RemedyKind.points} for d in made}
    # 80.00 EUR: gold's 50.00 in full, then the 30.00 left shared by 150 standard customers
    assert points == {"gold": {100}, "standard": {20}}
    assert await decider.store.outages.booked("out-1") == (200, Decimal("80.00"))


async def test_an_incident_without_the_outage_s_size_uses_the_day_s_budget() -> None:
    decider = build(tight("0.50", with_budget("0.40")))
    body = make_incident("service_outage", customer_id="c-1", severity="high", fact="out-9",
                         outage_id="out-9")
    body.pop("order_id")
    [made] = await decider.decide(body)
    assert made.outage_budget is None
    assert [c.cap for c in made.caps] == ["budget"]
    assert decider.publisher.bodies(decider.settings.outage_previews_topic) == []
    assert (await decider.budget.state(DAY, LIMIT)).spent.amount == Decimal("0.50")


async def test_a_held_outage_decision_approved_is_paid_by_the_outage_budget() -> None:
    data = with_budget("0.40").model_dump(mode="json")
    data["guards"]["review"] = [{"id": "outages-held", "reason": "outages wait here",
                                 "when": {"type": ["service_outage"]}}]
    decider = build(tight("0.10", Policy.model_validate(data)))
    body = outage_incident(1, tiers={"standard": 10})
    [held] = await decider.decide(body)
    assert held.status is DecisionStatus.held
    assert held.outage_budget == "out-1"
    assert await decider.store.outages.booked("out-1") == (0, Decimal(0))
    async with decider.api(Role.reviewer) as reviewer:
        answer = await reviewer.post(f"/v1/review/{held.decision_id}/approve",
                                     json={"reason": "checked"})
    assert answer.status_code == 200, answer.text  # the day's 0.10 EUR did not refuse it
    assert await decider.store.outages.booked("out-1") == (1, Decimal("0.40"))
    assert await decider.budget.movements(DAY, "EUR") == []
