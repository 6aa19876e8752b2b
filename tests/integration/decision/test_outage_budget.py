"""An outage's own budget on the real broker and database: a few hundred customers with a
budget smaller than the policy's grant are scaled as the policy says, booked in the outage's
ledger while the day's budget moves for nothing else; a double charge decided in the middle
is refunded in full; the cost preview reaches its topic once, redelivery or not, and
`GET /v1/outages/{id}` serves it. The outage store keeps one preview and books each
decision once, with either way of marking what was published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from schemas.common import Money
from schemas.decision import RemedyKind
from schemas.incident import Incident
from services.common.access import Role
from services.common.adapters.mongo import Doc
from services.common.messaging import Record
from services.decision.adapters.outages import MongoOutages
from services.decision.app import create_app as decision_app
from services.decision.domain.lifecycle import goodwill
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.preview import cost_preview
from services.decision.service import DecisionService
from tests import auth
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
AFFECTED = 300


def policy(partial: str) -> Policy:
    data = load_policy("deploy/policy/default.yaml").model_dump(mode="json")
    data["outages"] = {"budget": {"total": "150.00"}, "partial": partial}
    return Policy.model_validate(data)


def outage(suffix: str, n: int) -> dict[str, Any]:
    tier = "gold" if n % 5 == 0 else "standard"  # 60 gold, 240 standard
    body = incident("service_outage", customer_id=f"{suffix}-c{n}", tier=tier, at=T0,
                    severity="high", fact=f"{suffix}-out", outage_id=f"{suffix}-out",
                    outage_affected=AFFECTED, outage_tiers={"gold": 60, "standard": 240})
    body.pop("order_id")
    return body


@pytest.mark.parametrize(("partial", "expected"), [
    # 150.00 EUR for 300 grants of 1.00 EUR: every one scaled to 0.50 EUR (50 points)
    ("even", {"gold": {50}, "standard": {50}}),
    # gold's 60.00 first; the 90.00 left shared by 240 standard customers: 0.37 EUR each
    ("tiers", {"gold": {100}, "standard": {37}}),
])
async def test_an_outage_is_scaled_booked_apart_and_previewed_once(
        infra: Infra, suffix: str, partial: str, expected: dict[str, set[int]]) -> None:
    topics = Topics.unique(suffix)
    _, base, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    settings = base.model_copy(update={"outage_previews_topic": f"amends.outages.{suffix}"})
    clock = FakeClock(T0 + timedelta(minutes=1))
    app = decision_app(settings, clock=clock, policy=policy(partial))
    bodies = [outage(suffix, n) for n in range(AFFECTED)]
    double = incident("double_charge", customer_id=f"{suffix}-x", at=T0, fact=f"{suffix}-o",
                      charged_amount={"amount": "49.90", "currency": "EUR"},
                      order_value={"amount": "49.90", "currency": "EUR"})
    offset = 0

    def records(batch: list[dict[str, Any]]) -> list[Record]:
        nonlocal offset
        out = []
        for key, value in incident_events(batch):
            out.append(Record(topics.incidents, 0, offset, key.encode(), value))
            offset += 1
        return out

    async with lifespans([app]):
        service: DecisionService = app.state.service
        limit = service.limit
        made = []
        for batch in ([*bodies[:150], double], bodies[150:]):
            made += await service.handle_incidents(records(batch))
        granted: dict[str, set[int]] = {}
        for decision in made:
            if decision.incident.outage_id is not None:
                granted.setdefault(decision.incident.customer.tier.value, set()).update(
                    a.points or 0 for a in decision.actions if a.kind is RemedyKind.points)
        assert granted == expected
        [owed] = [d for d in made if d.incident.type.value == "double_charge"]
        refund = next(a for a in owed.actions if a.kind is RemedyKind.refund)
        assert (refund.restitution, refund.value.amount) == (True, Decimal("49.90"))

        # The day's budget moved once, for the double charge's goodwill; the outage's
        # ledger has each of its 300 decisions once, within its budget.
        moves = await service.budget.movements(clock().date(), "EUR")
        assert [m.amount.amount for m in moves] == [goodwill(owed)]
        paid, spent = await service.store.outages.booked(f"{suffix}-out")
        assert paid == AFFECTED
        assert Decimal("140.00") < spent <= Decimal("150.00")

        # Redelivered: nothing decided, nothing booked, no second preview.
        assert await service.handle_incidents(records(bodies[:20])) == []
        assert await service.store.outages.booked(f"{suffix}-out") == (paid, spent)
        published = await collect(infra.kafka_bootstrap, settings.outage_previews_topic,
                                   lambda seen: len(seen) >= 1, timeout_s=30, settle_s=2)
        assert [p["data"]["outage_id"] for p in published] == [f"{suffix}-out"]
        assert published[0]["data"]["outage_budget"] == {"amount": "150.00", "currency": "EUR"}

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://decision",
                                     headers=auth.headers(Role.viewer, "*", 1)) as api:
            answer = await api.get(f"/v1/outages/{suffix}-out")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["preview"] == published[0]["data"]
        assert body["decisions_paid"] == AFFECTED
        assert Money.model_validate(body["spent"]).amount == spent
        assert limit.amount == Decimal(body["preview"]["daily_budget"]["amount"])


@pytest.mark.parametrize("flags", [False, True], ids=["ferretdb-marks", "mongodb-flags"])
async def test_the_outage_store_keeps_one_preview_and_books_each_decision_once(
        mongo: AsyncMongoClient[Doc], suffix: str, flags: bool) -> None:
    store = MongoOutages(mongo[f"amends_test_{suffix}_outages"], flags=flags)
    await store.create_indexes()
    one = incident("service_outage", customer_id=f"{suffix}-c", at=T0, fact="o",
                   outage_id=f"{suffix}-out", outage_affected=2,
                   outage_tiers={"standard": 2}) | {"order_id": None}
    preview = cost_preview(Incident.model_validate(one), policy("even"), T0,
                           daily_limit=Decimal(100), daily_remaining=Decimal(40))
    assert preview is not None
    assert await store.preview(f"{suffix}-out") is None
    kept = [(preview.preview_id, preview)]
    assert await store.previews.add_new(kept) == {preview.preview_id}
    assert await store.previews.add_new(kept) == set()
    assert await store.previews.published([preview.preview_id]) == set()
    await store.previews.mark_published([preview.preview_id])
    assert await store.previews.published([preview.preview_id]) == {preview.preview_id}
    assert await store.preview(f"{suffix}-out") == preview

    eur = {"a": Money(amount=Decimal("0.50"), currency="EUR"),
           "b": Money(amount=Decimal("0.25"), currency="EUR")}
    assert await store.book(f"{suffix}-out", eur, T0) == {"a", "b"}
    assert await store.book(f"{suffix}-out", eur, T0) == set()
    assert await store.book(f"{suffix}-other", {"c": eur["a"]}, T0) == {"c"}
    assert await store.booked(f"{suffix}-out") == (2, Decimal("0.75"))
