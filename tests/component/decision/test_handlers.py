"""Decision's consumers in memory: incidents decided once (redelivery, a crash between
recording and booking), the budget and the caps, restitution outside the budget, history,
failed outcomes giving budget back, the defaults sweep, and bad records dead-lettered alone."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.common import Money
from schemas.decision import DecisionStatus, slim
from services.common.access import Role
from services.decision.domain.lifecycle import goodwill
from tests.clock import FakeClock
from tests.component.decision.conftest import T0, Decider, build, did, tight
from tests.factories import incident

pytestmark = pytest.mark.component

DAY = T0.date()
LIMIT = Money.of("25000", "EUR")


def late(customer: str, minutes: int = 600, fact: str = "o-1", **fields: Any
         ) -> dict[str, Any]:
    return incident("delivery_delayed", customer_id=customer, delay_minutes=minutes, at=T0,
                    fact=fact, **fields)


async def test_an_incident_is_decided_once_however_often_it_comes(decider: Decider) -> None:
    body = late("c-1")
    [made] = await decider.decide(body)
    assert made.decision_id == did(body)
    assert made.total_value.amount == Decimal("14.90")  # a 10.00 voucher, free delivery
    assert await decider.decide(body) == []
    assert await decider.decide(body, body) == []
    assert [e["data"]["decision_id"] for e in decider.published()] == [made.decision_id]
    assert decider.published()[0]["id"] == made.decision_id
    assert (await decider.budget.state(DAY, LIMIT)).spent.amount == Decimal("14.90")


async def test_the_event_carries_the_rules_that_matched_and_the_api_every_rule(
        decider: Decider) -> None:
    [made] = await decider.decide(late("c-1"))
    [event] = decider.published()
    published = [(t["rule_id"], t["matched"]) for t in event["data"]["rules"]]
    assert published == [(t.rule_id, True) for t in made.rules if t.matched] != []
    async with decider.api(Role.viewer) as viewer:
        shown = (await viewer.get(f"/v1/decisions/{made.decision_id}")).json()
    assert [t["rule_id"] for t in shown["rules"]] == [t.rule_id for t in made.rules]
    assert any(not t["matched"] for t in shown["rules"])  # why the others did not apply
    assert {k: v for k, v in shown.items() if k not in {"rules", "incident"}} == {
        k: v for k, v in event["data"].items() if k not in {"rules", "incident"}}


async def test_a_redelivery_after_a_crash_reuses_the_recorded_decision_and_books_it_once(
        ) -> None:
    before = build(tight("20", version="tight"))
    [spent] = await before.decide(late("c-1", fact="o-1"))
    second = late("c-2", fact="o-2")
    # 5.10 left: the second is cut to it, recorded, and the decider dies before booking.
    before.budget.failing = RuntimeError("killed between recording and booking")
    with pytest.raises(RuntimeError, match="killed"):
        await before.decide(second)
    recorded = await before.store.get(did(second))
    assert recorded is not None
    assert goodwill(recorded) == Decimal("5.10")
    assert before.published() == [before.published()[0]]  # the second never went out
    before.budget.failing = None
    # Redelivered after midnight to a decider with another policy and a roomy budget.
    after = build(tight("25000", version="roomy"), store=before.store, budget=before.budget,
                  clock=FakeClock(T0.replace(hour=23, minute=58) + timedelta(minutes=7)))
    assert await after.decide(second) == []
    assert await after.decide(second) == []
    day_1 = await after.budget.state(DAY, Money.of("20", "EUR"))
    day_2 = await after.budget.state(DAY + timedelta(days=1), LIMIT)
    assert day_1.spent.amount == Decimal("20.00")  # 14.90 + 5.10, on the day decided
    assert day_2.spent.amount == 0
    [event] = after.published()
    assert event["data"] == slim(recorded).model_dump(mode="json")
    assert event["data"]["policy_version"] == "tight"
    assert [c["cap"] for c in event["data"]["caps"]] == ["budget"]
    assert spent.total_value.amount == Decimal("14.90")


async def test_the_budget_and_the_caps_cut_goodwill_but_never_restitution() -> None:
    decider = build(tight("10"))
    [first, second] = await decider.decide(late("c-1", fact="o-1"), late("c-2", fact="o-2"))
    assert first.total_value.amount == Decimal("10.00")  # cut to the budget
    assert [c.cap for c in first.caps] == ["budget"]
    assert goodwill(second) == 0
    double = incident("double_charge", customer_id="c-3", at=T0, fact="o-3",
                      charged_amount={"amount": "49.90", "currency": "EUR"},
                      order_value={"amount": "49.90", "currency": "EUR"})
    [owed] = await decider.decide(double)
    refund = next(a for a in owed.actions if a.kind.value == "refund")
    assert refund.restitution
    assert refund.value.amount == Decimal("49.90")
    assert owed.restitution_value is not None
    assert owed.restitution_value.amount == Decimal("49.90")
    assert (await decider.budget.state(DAY, LIMIT)).spent.amount == Decimal("10.00")


async def test_a_repeat_failure_sees_the_customers_history(decider: Decider) -> None:
    await decider.decide(late("c-1", minutes=95, fact="o-1"))
    [again] = await decider.decide(late("c-1", minutes=95, fact="o-2"))
    assert "repeat-failure" in [t.rule_id for t in again.rules if t.matched]


async def test_bad_records_are_dead_lettered_alone(decider: Decider) -> None:
    good = decider.records([late("c-1")])
    bad = decider.raw(decider.settings.incidents_topic, b'{"not": "an incident"}')
    made = await decider.service.handle_incidents([bad, *good])
    assert len(made) == 1
    [letter] = decider.dead_letters()
    assert letter["data"]["reason"] == "invalid"
    assert letter["data"]["offset"] == bad.offset
    assert len(decider.published()) == 1


async def test_a_failed_goodwill_action_gives_its_budget_back_once(decider: Decider) -> None:
    [made] = await decider.decide(late("c-1"))
    voucher = next(a for a in made.actions if a.kind.value == "voucher")
    outcome = decider.failed_outcome(made, voucher.position)
    assert await decider.service.handle_outcomes([outcome]) == 1
    assert await decider.service.handle_outcomes([outcome]) == 0
    assert (await decider.budget.state(DAY, LIMIT)).spent.amount == Decimal("4.90")
    bad = decider.raw(decider.settings.outcomes_topic, b"not json")
    assert await decider.service.handle_outcomes([bad]) == 0
    assert [d["data"]["reason"] for d in decider.dead_letters()] == ["invalid"]


async def test_a_failed_restitution_gives_nothing_back(decider: Decider) -> None:
    double = incident("double_charge", customer_id="c-3", at=T0, fact="o-3",
                      charged_amount={"amount": "49.90", "currency": "EUR"},
                      order_value={"amount": "49.90", "currency": "EUR"})
    [owed] = await decider.decide(double)
    refund = next(a for a in owed.actions if a.kind.value == "refund")
    before = (await decider.budget.state(DAY, LIMIT)).spent
    assert await decider.service.handle_outcomes(
        [decider.failed_outcome(owed, refund.position)]) == 0
    assert (await decider.budget.state(DAY, LIMIT)).spent == before


async def test_offers_past_their_deadline_get_their_default(decider: Decider) -> None:
    [offer] = await decider.decide(late("c-1", minutes=1500))
    assert offer.status is DecisionStatus.awaiting_choice
    assert offer.offer is not None
    assert await decider.service.apply_due_defaults() == 0  # not yet
    decider.clock.now = offer.offer.deadline + timedelta(seconds=1)
    assert await decider.service.apply_due_defaults() == 1
    settled = await decider.store.get(offer.decision_id)
    assert settled is not None
    assert settled.choice is not None
    assert (settled.choice.by, settled.choice.option) == ("default", 0)
    # The default (a 15.00 voucher) is cheaper than the points kept for: 5.00 goes back.
    spent = (await decider.budget.state(date(2026, 11, 23), LIMIT)).spent.amount
    assert spent == goodwill(offer) - Decimal("5.00")
    assert await decider.service.apply_due_defaults() == 0
    assert [e["id"] for e in decider.published()] == [offer.decision_id,
                                                       f"{offer.decision_id}:1"]

