"""The decision service on the real broker and database: decisions with explanations, review
holds, offers that fall back to their default, the budget under racing deciders, and replays
that create nothing new."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from schemas.decision import decision_id
from services.common.access import Role
from services.common.adapters.mongo import Doc
from services.common.messaging import Record
from services.decision.app import create_app as decision_app
from services.decision.domain.policy import load_policy
from services.decision.service import DecisionService
from tests import auth
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events, produce
from tests.pipeline import Topics, lifespans, running_pipeline, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


def api(app: Any, role: Role = Role.admin) -> httpx.AsyncClient:
    """A client of decision's API with the credentials of an operator of every tenant."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://decision",
                             headers=auth.headers(role))


def at_least(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda seen: len(seen) >= n


def kinds(outcomes: list[dict[str, Any]], customer: str) -> Counter[str]:
    return Counter(o["data"]["kind"] for o in outcomes if o["data"]["customer_id"] == customer)


async def test_decisions_are_published_with_explanations_and_replays_add_nothing(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    incidents = [
        incident("delivery_delayed", customer_id=f"{suffix}-a", delay_minutes=95,
                 at=T0, fact="o-1"),
        incident("item_defective", customer_id=f"{suffix}-b", tier="gold",
                 item_value=money("60.00"), detection="customer_reported", at=T0, fact="o-2"),
        incident("double_charge", customer_id=f"{suffix}-c", charged_amount=money("49.90"),
                 order_value=money("49.90"), at=T0, fact="o-3"),
    ]
    async with running_pipeline(infra, suffix, clock=FakeClock(T0 + timedelta(minutes=1))) as p:
        await produce(infra.kafka_bootstrap, p.topics.incidents, incident_events(incidents))
        decisions = await collect(infra.kafka_bootstrap, p.topics.decisions,
                                  lambda seen: len(seen) >= 3, settle_s=1.0)
        by_customer = {d["data"]["incident"]["customer"]["id"]: d["data"] for d in decisions}
        assert len(decisions) == 3
        late = by_customer[f"{suffix}-a"]
        assert late["status"] == "approved"
        assert late["policy_version"] == DEFAULT.version
        assert "200 loyalty points" in late["explanation"]
        assert [t["rule_id"] for t in late["rules"] if t["matched"]] == ["delay-30min-to-2h"]
        assert by_customer[f"{suffix}-b"]["status"] == "awaiting_choice"
        assert "choose between a replacement and a full refund" in (
            by_customer[f"{suffix}-b"]["explanation"])
        refund = next(a for a in by_customer[f"{suffix}-c"]["actions"] if a["kind"] == "refund")
        assert refund["amount"] == money("49.90")

        db = mongo[p.db("decision")]
        ledger_before = await db["budget_ledger"].count_documents({})
        # The whole incidents topic again, twice: no new decision, no new reservation.
        await produce(infra.kafka_bootstrap, p.topics.incidents,
                      incident_events(incidents) * 2)
        again = await collect(infra.kafka_bootstrap, p.topics.decisions,
                              lambda _: False, timeout_s=4.0)
        assert len(again) == 3
        assert await db["decisions"].count_documents({}) == 3
        assert await db["budget_ledger"].count_documents({}) == ledger_before
        spent = await db["budget_ledger"].find().sort("seq", -1).limit(1).to_list()
        # The budget books goodwill only: the double charge's refund is restitution.
        values = sum(Decimal(d["data"]["goodwill_value"]["amount"]) for d in decisions)
        assert Decimal(spent[0]["spent"]) / 100 == values
        assert values == sum(Decimal(d["data"]["total_value"]["amount"])
                             for d in decisions) - Decimal("49.90")


async def test_held_decisions_wait_for_a_reviewer(infra: Infra, suffix: str) -> None:
    customer = f"{suffix}-claims"
    # Three customer-reported claims in the window, then a fourth: held for review.
    claims = [incident("item_missing", customer_id=customer, detection="customer_reported",
                       item_value=money("10.00"), at=T0 - timedelta(days=5 - n), fact=f"o-{n}")
              for n in range(4)]
    clock = FakeClock(T0)
    async with running_pipeline(infra, suffix, clock=clock) as p:
        for n, claim in enumerate(claims):
            clock.now = T0 - timedelta(days=5 - n) + timedelta(minutes=1)
            await produce(infra.kafka_bootstrap, p.topics.incidents, incident_events([claim]))
            await collect(infra.kafka_bootstrap, p.topics.decisions, at_least(n + 1))
        decisions = await collect(infra.kafka_bootstrap, p.topics.decisions, at_least(4))
        assert [d["data"]["status"] for d in decisions] == ["awaiting_choice"] * 3 + ["held"]
        held = decisions[-1]["data"]
        assert held["status"] == "held"
        assert "more than 3 problems" in held["review_reason"]
        held_id = held["decision_id"]

        async with api(p.decision, Role.reviewer) as client:
            queue = (await client.get("/v1/review")).json()
            assert [d["decision_id"] for d in queue] == [held_id]
            # Nothing goes out for the held decision while it waits.
            outcomes = await collect(infra.kafka_bootstrap, p.topics.outcomes,
                                     lambda _: False, timeout_s=3.0)
            assert not [o for o in outcomes if o["data"]["decision_id"] == held_id]

            # The reviewer recorded is who is authenticated: a "reviewer" field is ignored.
            verdict = {"reviewer": "someone-else", "reason": "receipts checked"}
            approved = await client.post(f"/v1/review/{held_id}/approve", json=verdict)
            assert approved.status_code == 200, approved.text
            me = auth.subject(Role.reviewer)
            assert approved.json()["review"]["reviewer"] == me
            assert approved.json()["revision"] == 1
            # The same verdict again is harmless; the opposite one is refused.
            assert (await client.post(f"/v1/review/{held_id}/approve", json=verdict)
                    ).status_code == 200
            rejected = await client.post(f"/v1/review/{held_id}/reject", json=verdict)
            assert rejected.status_code == 409
            assert rejected.json()["check"] == "state"
            assert f"already approved by {me}" in rejected.text
            assert (await client.get("/v1/review")).json() == []

        outcomes = await collect(
            infra.kafka_bootstrap, p.topics.outcomes,
            lambda seen: any(o["data"]["decision_id"] == held_id for o in seen), settle_s=1.0)
    mine = [o["data"]["kind"] for o in outcomes if o["data"]["decision_id"] == held_id]
    assert "apology" in mine


async def test_offers_fall_back_to_their_default_after_the_deadline(
        infra: Infra, suffix: str) -> None:
    chooser, silent = f"{suffix}-chooser", f"{suffix}-silent"
    clock = FakeClock(T0)
    defective = [incident("item_defective", customer_id=c, item_value=money("30.00"),
                          detection="customer_reported", at=T0, fact=f"o-{c}")
                 for c in (chooser, silent)]
    async with running_pipeline(infra, suffix, clock=clock) as p:
        await produce(infra.kafka_bootstrap, p.topics.incidents, incident_events(defective))
        decisions = await collect(infra.kafka_bootstrap, p.topics.decisions,
                                  lambda seen: len(seen) >= 2)
        ids = {d["data"]["incident"]["customer"]["id"]: d["data"]["decision_id"]
               for d in decisions}
        links = p.decision.state.runtime.links
        async with api(p.decision) as client:
            token = links.sign(chooser, ids[chooser], clock())
            chosen = await client.post(f"/v1/customer/decisions/{ids[chooser]}/choice",
                                       json={"option": 1, "token": token})
            assert chosen.status_code == 200, chosen.text
            assert (await client.get(f"/v1/decisions/{ids[chooser]}")
                    ).json()["choice"]["by"] == "customer"
            assert (await client.post("/v1/offers/apply-defaults")).json() == {"settled": 0}
            clock.advance(timedelta(hours=73))
            late = await client.post(f"/v1/customer/decisions/{ids[silent]}/choice", json={
                "option": 1, "token": links.sign(silent, ids[silent], T0)})
            assert late.status_code == 409
            assert "deadline" in late.text
            assert (await client.post("/v1/offers/apply-defaults")).json() == {"settled": 1}
            settled = (await client.get(f"/v1/decisions/{ids[silent]}")).json()
            assert settled["choice"]["by"] == "default"
            assert settled["choice"]["option"] == 0

        outcomes = await collect(
            infra.kafka_bootstrap, p.topics.outcomes,
            lambda seen: {"refund"} <= set(kinds(seen, chooser))
            and {"replacement"} <= set(kinds(seen, silent)), settle_s=1.0)
    assert kinds(outcomes, chooser)["refund"] == 1
    assert kinds(outcomes, chooser)["replacement"] == 0
    assert kinds(outcomes, silent)["refund"] == 0
    assert kinds(outcomes, chooser)["apology"] == kinds(outcomes, silent)["apology"] == 1


async def test_racing_deciders_pass_the_daily_budget_by_at_most_their_batches_in_flight(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    tight = DEFAULT.model_copy(update={"guards": DEFAULT.guards.model_copy(
        update={"daily_budget": Decimal("100.00")})})
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    db = settings.mongo_db
    deciders = [decision_app(settings, clock=FakeClock(T0), policy=tight) for _ in range(4)]
    # A 10-hour delay is worth 14.90 EUR (a 10.00 voucher and free delivery): 60 of them are
    # worth far more than the budget, decided by four deciders at once in batches of five.
    incidents = [incident("delivery_delayed", customer_id=f"{suffix}-{n}", delay_minutes=600,
                          at=T0, fact=f"o-{n}") for n in range(60)]
    records = incident_events(incidents)

    async def run(app: Any, share: list[tuple[str, bytes]]) -> list[Any]:
        service: DecisionService = app.state.service
        batch = [Record(topics.incidents, 0, n, key.encode(), value)
                 for n, (key, value) in enumerate(share)]
        made = []
        for start in range(0, len(batch), 5):
            made += await service.handle_incidents(batch[start:start + 5])
        return made

    async with lifespans(deciders):
        results = await asyncio.gather(*(run(app, records[n::4])
                                         for n, app in enumerate(deciders)))
    made = [d for result in results for d in result]
    assert len(made) == 60
    granted = sum(d.total_value.amount for d in made)
    # A recorded decision is final and always booked: each decider read what was left just
    # before deciding, so the day passes its limit by at most the other deciders' batches in
    # flight (3 batches of 5 at 14.90).
    assert granted <= Decimal("100.00") + 3 * 5 * Decimal("14.90")
    assert granted >= Decimal("95.00"), "the budget should be used, not refused wholesale"
    assert any(c.cap == "budget" for d in made for c in d.caps)
    assert all(d.actions[0].kind.value == "apology" for d in made)
    last = await mongo[db]["budget_ledger"].find().sort("seq", -1).limit(1).to_list()
    assert Decimal(last[0]["spent"]) / 100 == granted



async def test_seen_marks_only_spare_lookups_and_are_rebuilt_for_older_data(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    app = decision_app(settings, clock=FakeClock(T0))
    customer = f"{suffix}-repeat"
    first, second = (incident("delivery_delayed", customer_id=customer, delay_minutes=95,
                              at=T0, fact=f"o-{n}") for n in (1, 2))
    records = [Record(topics.incidents, 0, n, key.encode(), value)
               for n, (key, value) in enumerate(incident_events([first, second]))]
    db = mongo[settings.mongo_db]
    async with lifespans([app]):
        service: DecisionService = app.state.service
        assert len(await service.handle_incidents(records[:1])) == 1
        # A decider marked the second incident seen, then died before deciding it: the mark
        # alone must not pass for a decision.
        await db["incidents_seen"].insert_one({"_id": decision_id(second["incident_id"])})
        [again] = await service.handle_incidents(records[1:])
        assert again.incident.incident_id == second["incident_id"]
        # The customer was marked when first decided: the second decision sees the first.
        assert "repeat-failure" in [t.rule_id for t in again.rules if t.matched]
        assert await service.handle_incidents(records) == []
        history = await service.store.histories([customer], T0 + timedelta(seconds=-1))
        assert len(history[customer].incidents) == 2
