"""Decision's two store adapters on the real database, with one contract: contracts in and
out, a duplicate id is "already done", a verdict or a choice is final once claimed, a newer
revision is never replaced by an older one. Both run against FerretDB here; the MongoDB
adapter's transactions need a real MongoDB replica set (FerretDB has none)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from schemas.decision import Approval, Choice, Decision, DecisionStatus, Review
from schemas.incident import Incident
from services.common.adapters.mongo import Doc
from services.decision.adapters.ferretdb import FerretDecisions
from services.decision.adapters.mongodb import MongoDecisions
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.lifecycle import goodwill
from services.decision.domain.policy import load_policy
from services.decision.ports import Decisions
from tests.factories import incident

pytestmark = [pytest.mark.integration,
              pytest.mark.parametrize("adapter", [FerretDecisions, MongoDecisions])]

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
POLICY = load_policy("deploy/policy/default.yaml")
Adapter = type[FerretDecisions | MongoDecisions]


def decided(customer: str, fact: str, at: datetime = T0, **fields: Any) -> Decision:
    body = incident(fields.pop("incident_type", "delivery_delayed"), customer_id=customer,
                    at=at, fact=fact, **({"delay_minutes": 600} | fields))
    return decide(Incident.model_validate(body), CustomerHistory(), POLICY, at)


async def store_of(mongo: AsyncMongoClient[Doc], suffix: str, adapter: Adapter) -> Decisions:
    store = adapter(mongo[f"amends_test_{suffix}_store"])
    await store.create_indexes()
    return store


async def test_decisions_go_in_and_come_out_as_contracts_once(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: Adapter) -> None:
    store = await store_of(mongo, suffix, adapter)
    a, b = decided("c-1", "o-1"), decided("c-2", "o-2", incident_type="item_defective",
                                          item_value={"amount": "30.00", "currency": "EUR"})
    # As the service does: asked first, so the FerretDB adapter marks the ids it was asked.
    assert await store.known([a.decision_id, b.decision_id]) == {}
    assert await store.decisions.add_new([(a.decision_id, a), (b.decision_id, b)]) == {
        a.decision_id, b.decision_id}
    assert await store.decisions.add_new([(a.decision_id, a)]) == set()
    assert await store.get(a.decision_id) == a
    assert await store.get("nothing") is None
    assert await store.known([a.decision_id, "nothing"]) == {a.decision_id: a}
    assert await store.find([a.decision_id, b.decision_id]) == {a.decision_id: a,
                                                                b.decision_id: b}
    assert await store.decisions.published([a.decision_id]) == set()
    await store.decisions.mark_published([a.decision_id])
    assert await store.decisions.published([a.decision_id, b.decision_id]) == {a.decision_id}
    assert {d.decision_id for d in await store.between(T0, T0 + timedelta(seconds=1))} == {
        a.decision_id, b.decision_id}
    assert await store.between(T0 + timedelta(seconds=1), None) == []
    assert b.offer is not None
    assert [d.decision_id for d in await store.offers_due(b.offer.deadline, 10)] == [
        b.decision_id]
    assert await store.offers_due(b.offer.deadline - timedelta(seconds=1), 10) == []


async def test_histories_hold_the_window_and_every_stage_of_the_same_order(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: Adapter) -> None:
    store = await store_of(mongo, suffix, adapter)
    old = decided("c-1", "o-1", at=T0 - timedelta(days=40))
    recent = decided("c-1", "o-2")
    other = decided("c-2", "o-3")
    assert (await store.histories(["c-1", "c-2"], T0))["c-1"].incidents == ()
    await store.decisions.add_new([(d.decision_id, d) for d in (old, recent, other)])
    since = T0 - timedelta(days=30)
    found = await store.histories(["c-1", "c-3"], since)
    assert [p.incident_id for p in found["c-1"].incidents] == [recent.incident.incident_id]
    assert found["c-3"].incidents == ()
    past = found["c-1"].incidents[0]
    assert past.value == goodwill(recent)
    assert past.order_id == "o-2"
    with_order = await store.histories(["c-1"], since, orders=["o-1"])
    assert [p.order_id for p in with_order["c-1"].incidents] == ["o-1", "o-2"]


async def test_held_decisions_are_listed_by_tenant_oldest_first(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: Adapter) -> None:
    store = await store_of(mongo, suffix, adapter)

    def held(customer: str, tenant: str | None, minutes: int) -> Decision:
        d = decided(customer, f"o-{customer}", at=T0 + timedelta(minutes=minutes),
                    **({"tenant": tenant} if tenant else {}))
        return d.model_copy(update={"status": DecisionStatus.held})

    a, b, c = held("c-a", "shop-a", 2), held("c-b", "shop-b", 1), held("c-c", None, 0)
    await store.decisions.add_new([(d.decision_id, d) for d in (a, b, c)])
    assert [d.decision_id for d in await store.held(10)] == [
        c.decision_id, b.decision_id, a.decision_id]
    assert [d.decision_id for d in await store.held(10, ["shop-a", None])] == [
        c.decision_id, a.decision_id]
    assert [d.decision_id for d in await store.held(1)] == [c.decision_id]


async def test_verdicts_choices_and_approvals_are_final_once_claimed(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: Adapter) -> None:
    store = await store_of(mongo, suffix, adapter)
    d = decided("c-1", "o-1")
    await store.decisions.add_new([(d.decision_id, d)])
    first = Approval(reviewer="rita", reason="fine", at=T0)
    assert await store.approve(d.decision_id, first) == (True, [first])
    again = Approval(reviewer="rita", reason="again", at=T0 + timedelta(seconds=1))
    second = Approval(reviewer="otto", reason="agreed", at=T0 + timedelta(seconds=2))
    assert await store.approve(d.decision_id, again) == (False, [first])
    assert await store.approve(d.decision_id, second) == (True, [first, second])

    verdicts = [Review(verdict=v, reviewer=who, reason="r", at=T0)  # type: ignore[arg-type]
                for v, who in (("approved", "rita"), ("rejected", "otto"))]
    if adapter is FerretDecisions:  # racing: the unique insert lets one win
        won = list(await asyncio.gather(*(store.claim_review(d.decision_id, v)
                                          for v in verdicts)))
        assert won[0] in verdicts
    else:
        # In turn: FerretDB applies conditional updates non-atomically under concurrency, so
        # the MongoDB adapter's race is for a real MongoDB to show.
        won = [await store.claim_review(d.decision_id, v) for v in verdicts]
        assert won[0] == verdicts[0]
    assert won[0] == won[1]
    choices = [Choice(option=n, label=f"option {n}", by="customer", at=T0) for n in (0, 1)]
    chosen = [await store.claim_choice(d.decision_id, c) for c in choices]
    assert chosen == [choices[0], choices[0]]


async def test_a_newer_revision_is_never_replaced_by_an_older_one(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: Adapter) -> None:
    store = await store_of(mongo, suffix, adapter)
    d = decided("c-1", "o-1")
    await store.decisions.add_new([(d.decision_id, d)])
    one = d.model_copy(update={"revision": 1, "status": DecisionStatus.rejected})
    two = d.model_copy(update={"revision": 2, "explanation": "later"})
    await store.update_current(two)
    await store.update_current(one)
    assert await store.get(d.decision_id) == two
    assert await store.revisions.add_new([(f"{d.decision_id}:2", two)]) == {
        f"{d.decision_id}:2"}
    assert await store.revisions.published([f"{d.decision_id}:2"]) == set()
