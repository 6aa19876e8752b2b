"""Customers' histories from memory on FerretDB (`history_view.py`, `follower.py`) on the real
database and broker: the view answers exactly what the store's query would, the hot path
reads nothing for it, and what another instance decides or revises reaches the view."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring

from schemas.decision import Decision
from schemas.incident import Incident
from services.common.access import Role
from services.common.adapters.mongo import Doc
from services.decision.adapters.ferretdb import FerretDecisions
from services.decision.adapters.mongo import HISTORY_FIELDS, histories_of, history_query
from services.decision.app import create_app as decision_app
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import load_policy
from tests import auth
from tests.clock import FakeClock
from tests.decisions import chosen
from tests.factories import incident
from tests.infra import Infra
from tests.integration.decision.test_access_api import voucher
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)  # microseconds: BSON keeps ms
POLICY = load_policy("deploy/policy/default.yaml")


class _Finds(monitoring.CommandListener):
    """The collections read (`find`) through one client."""

    def __init__(self) -> None:
        self.collections: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.collections.append(event.command["find"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def decided(customer: str, order: str, at: datetime, kind: str = "delivery_delayed",
            **fields: Any) -> Decision:
    body = incident(kind, customer_id=customer, at=at, fact=order,
                    **({"delay_minutes": 600} | fields))
    return decide(Incident.model_validate(body), CustomerHistory(), POLICY, at)


def spread(customers: int) -> list[Decision]:
    """Decisions over 60 days (some past the 30-day window), several per customer, some of
    one order, some offers (an item defective is offered a choice)."""
    made = []
    for n in range(customers * 3):
        customer, at = f"c-{n % customers}", T0 - timedelta(days=n % 60, minutes=n)
        order = f"o-{n // 2}"  # pairs share an order: two stages of one failure
        if n % 5 == 0:
            made.append(decided(customer, order, at, "item_defective",
                                item_value={"amount": "30.00", "currency": "EUR"}))
        else:
            made.append(decided(customer, order, at))
    return made


async def stored_histories(db: Any, customers: list[str], since: datetime,
                           orders: list[str]) -> dict[str, CustomerHistory]:
    """What the MongoDB adapter computes: the store's own query."""
    docs = [d async for d in db["decisions"].find(history_query(customers, since, orders, []),
                                                  HISTORY_FIELDS)]
    return histories_of(customers, docs)


async def test_the_view_answers_what_the_store_would_and_reads_nothing(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    db_name = f"amends_test_{suffix}_view"
    earlier = FerretDecisions(mongo[db_name])  # what a decider recorded before this start
    await earlier.create_indexes()
    made = spread(40)
    await earlier.decisions.add_new([(d.decision_id, d) for d in made])
    offers = [d for d in made if d.offer is not None]
    for offer in offers[::2]:
        await earlier.update_current(chosen(offer, 1))

    finds = _Finds()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(infra.mongo_url, tz_aware=True,
                                                     event_listeners=[finds])
    try:
        store = FerretDecisions(client[db_name])
        await store.load_histories()
        assert finds.collections == ["decisions"]  # the one scan at start
        finds.collections.clear()
        customers = [f"c-{n}" for n in range(45)]  # five never decided
        since = T0 - timedelta(days=30)
        for orders in ([], ["o-1", "o-30", "o-59"], [f"o-{n}" for n in range(60)]):
            assert await store.histories(customers, since, orders) == (
                await stored_histories(mongo[db_name], customers, since, orders))

        # What this decider records and revises is in the view at once, as in the store.
        later = [decided(f"c-{n}", f"o-new-{n}", T0 + timedelta(minutes=5)) for n in range(3)]
        # Which were decided before: none of these, known without a read or a mark.
        assert await store.known([d.decision_id for d in later]) == {}
        assert finds.collections == []
        assert await client[db_name]["incidents_seen"].count_documents({}) == 0
        await store.decisions.add_new([(d.decision_id, d) for d in later])
        for offer in offers[1::2][:3]:
            await store.update_current(chosen(offer, 0))
        since = T0 - timedelta(days=29)
        assert await store.histories(customers, since, ["o-3"]) == (
            await stored_histories(mongo[db_name], customers, since, ["o-3"]))
        assert finds.collections == []
        # A redelivered incident's decision is read, and only it.
        plain = made[1]  # no offer: never revised
        assert await store.known([plain.decision_id, "d-never"]) == {plain.decision_id: plain}
        assert finds.collections == ["decisions"]
    finally:
        await client.close()


async def test_a_decider_learns_what_another_instance_decided_and_revised(
        infra: Infra, suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    clock = FakeClock(datetime(2026, 11, 23, 12, tzinfo=UTC))
    mine, theirs = decision_app(settings, clock=clock), decision_app(settings, clock=clock)
    customer = f"{suffix}-rain"
    since = clock.now - timedelta(days=30)

    async def seen_by_mine(value: str) -> None:
        store = mine.state.service.store
        for _ in range(100):
            [past] = (await store.histories([customer], since))[customer].incidents or [None]
            if past is not None and past.value == Decimal(value):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the view never showed {value}")

    def client(role: Role, who: int = 1) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=theirs),
                                 base_url="http://decision", headers=auth.headers(role, "*", who))

    async with lifespans([mine, theirs]):
        async with client(Role.support) as agent, client(Role.reviewer) as reviewer:
            # 300.00 EUR is held for two reviewers: held, it counts in full against the cap.
            made = await agent.post("/v1/manual-vouchers",
                                    json=voucher("r-1", customer, amount="300.00"))
            assert made.json()["status"] == "held", made.text
            did = made.json()["decision_id"]
            await seen_by_mine("300.00")
            rejected = await reviewer.post(f"/v1/review/{did}/reject", json={"reason": "no"})
            assert rejected.json()["status"] == "rejected", rejected.text
            # The rejection (a revision made by the other instance) reaches this one's view.
            await seen_by_mine("0")
        assert mine.state.follower.followed >= 2
