"""The aftermath of incidents on the real broker and database: the store adapters keep the
fake's contract, later upstream events update an incident's outcome record, and a replay of
the upstream topics (into a fresh intake that rebuilds its memory from the store) leaves
every record as it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from schemas.common import Money
from schemas.incident import Incident
from services.common.adapters.mongo import Doc
from services.intake.adapters.ferretdb import FerretAftermaths
from services.intake.adapters.mongodb import MongoAftermaths
from services.intake.domain.aftermath import Aftermath, Fact, FactKind, Followed, aftermath
from services.intake.ports import Aftermaths
from tests import factories as f
from tests.fakes.intake import FakeAftermaths
from tests.infra import Infra
from tests.integration.intake.helpers import Intake, read_to_the_end, running_intake
from tests.kafka_tools import as_json, produce

pytestmark = pytest.mark.integration

WINDOWS = (7, 30, 90)
# Recent enough that a restarted intake loads them (it follows the last 90 days).
T0 = (datetime.now(UTC) - timedelta(days=20)).replace(microsecond=0)
ADAPTERS: dict[str, Callable[[AsyncMongoClient[Doc], str], Aftermaths]] = {
    "ferretdb": lambda client, db: FerretAftermaths(client[db], chunk=2),
    "mongodb": lambda client, db: MongoAftermaths(client[db], chunk=2),
    "fake": lambda *_: FakeAftermaths(),
}


@pytest.fixture(params=list(ADAPTERS))
async def store(request: pytest.FixtureRequest, mongo: AsyncMongoClient[Doc],
                suffix: str) -> Aftermaths:
    store = ADAPTERS[request.param](mongo, f"amends_test_{suffix}_intake_aftermath")
    create = getattr(store, "create_indexes", None)
    if create is not None:
        await create()
    return store


def followed(n: int, at: datetime = T0) -> Followed:
    incident = Incident.model_validate(f.incident(customer_id=f"c-{n}", fact=f"o-{n}", at=at))
    return Followed.of(incident)


def order(of: Followed, key: str, days: float, amount: str) -> Fact:
    return Fact(of.incident_id, of.occurred_at, FactKind.order, key,
                of.occurred_at + timedelta(days=days),
                Money(amount=Decimal(amount), currency="EUR"))


async def test_the_adapters_keep_each_incident_and_each_fact_once(store: Aftermaths) -> None:
    first, second, old = followed(1), followed(2), followed(3, T0 - timedelta(days=200))
    assert await store.follow([first, second, old]) == {
        first.incident_id, second.incident_id, old.incident_id}
    later = Followed(**{**first.__dict__, "tier": "gold"})  # the same incident, told again
    assert await store.follow([later]) == set()
    facts = [order(first, "o-8", 2, "12.50"), order(first, "o-9", 40, "3.00"),
             order(second, "o-8", 1, "7.00")]
    await store.add(facts)
    await store.add([*facts, facts[0]])  # a redelivery
    found = {f.incident_id: (f, sorted(x.key for x in facts_))
             for f, facts_ in await store.since(T0 - timedelta(days=1))}
    assert set(found) == {first.incident_id, second.incident_id}
    assert found[first.incident_id] == (first, ["o-8", "o-9"])
    record = aftermath(first, [x for f, xs in await store.since(T0 - timedelta(days=1))
                               if f.incident_id == first.incident_id for x in xs], WINDOWS)
    assert record.window(30).value == {"EUR": Decimal("12.50")}
    assert record.window(90).value == {"EUR": Decimal("15.50")}
    assert await store.since(T0 - timedelta(days=1), T0) == []


def _events(customers: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per customer: an item reported (an incident), then an order 3 days later and one 12
    days later; for the first, a new ticket 2 days after."""
    orders: list[dict[str, Any]] = []
    support: list[dict[str, Any]] = []
    for n in range(customers):
        c = f"c-{n}"
        orders += [f.item_reported(c, f"o-{n}", at=T0),
                   f.order_placed(c, f"o-{n}-b", at=T0 + timedelta(days=3), promised=None,
                                  total="20.00"),
                   f.order_placed(c, f"o-{n}-c", at=T0 + timedelta(days=12), promised=None,
                                  total="5.00")]
    support.append(f.ticket_updated("c-0", "t-2", opened=T0 + timedelta(days=2),
                                    at=T0 + timedelta(days=2)))
    return orders, support


async def _records(intake: Intake, want_facts: int, timeout_s: float = 60.0
                   ) -> dict[str, Aftermath]:
    """The records in the store once it holds `want_facts` facts."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await intake.store.aftermaths.since(T0 - timedelta(days=1))
        if sum(len(facts) for _, facts in found) >= want_facts or time.monotonic() > deadline:
            return {f.incident_id: aftermath(f, facts, WINDOWS) for f, facts in found}
        await asyncio.sleep(0.2)


async def test_later_orders_update_the_record_and_a_replay_changes_nothing(
        infra: Infra, suffix: str, mongo: AsyncMongoClient[Doc]) -> None:
    customers = 5
    orders, support = _events(customers)
    want = customers * 2 + 1
    async with running_intake(infra, suffix) as intake:
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(orders))
        await produce(infra.kafka_bootstrap, intake.topics.support, as_json(support))
        before = await _records(intake, want)
        # A replay into the running intake: the same events again.
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(orders))
        await produce(infra.kafka_bootstrap, intake.topics.support, as_json(support))
        await read_to_the_end(intake.service)
        again = await _records(intake, want)
    assert len(before) == customers
    for record in before.values():
        assert (record.window(7).orders, record.window(30).orders) == (1, 2)
        assert record.window(30).value == {"EUR": Decimal("25.00")}
    assert sum(r.window(7).complained for r in before.values()) == 1
    assert again == before
    db = mongo[intake.db_name]
    counts = {name: await db[name].count_documents({})
              for name in ("followed", "aftermath_facts")}
    assert counts == {"followed": customers, "aftermath_facts": want}

    # A fresh intake on the same database, in a new consumer group: it rebuilds its memory
    # from the store and reads both topics from the start.
    async with running_intake(infra, suffix, consumer_group=f"{intake.db_name}-replay") as fresh:
        assert len(fresh.service.aftermath) == customers
        await read_to_the_end(fresh.service)
        after = await _records(fresh, want)
    assert after == before
    assert {name: await db[name].count_documents({})
            for name in ("followed", "aftermath_facts")} == counts
