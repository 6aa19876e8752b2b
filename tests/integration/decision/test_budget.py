"""The global budget on the real database: never overspent, however many deciders race,
and a batch interrupted half-way is finished, never booked twice. Both adapters run against
FerretDB; the MongoDB adapter's race and its transactions need a real MongoDB (FerretDB
applies updates non-atomically under concurrency and has no transactions)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pymongo import AsyncMongoClient, monitoring

from schemas.common import Money
from services.common.adapters.mongo import Doc, make_client
from services.decision.adapters.budget import FerretBudget, to_minor
from services.decision.adapters.mongodb import MongoBudget
from services.decision.ports import Budget
from tests.infra import Infra

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
LIMIT = Money.of("500.00", "EUR")


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


ADAPTERS = pytest.mark.parametrize("adapter", [FerretBudget, MongoBudget])


async def _budget(mongo: AsyncMongoClient[Doc], suffix: str,
                  adapter: type[FerretBudget | MongoBudget] = FerretBudget) -> Budget:
    budget = adapter(mongo[f"budget_{suffix}"])
    await budget.create_indexes()
    return budget


async def test_racing_deciders_never_overspend(infra: Infra, suffix: str) -> None:
    rng = random.Random(7)
    amounts = [eur(f"{rng.randint(100, 4000) / 100:.2f}") for _ in range(120)]
    # Several clients, so the reservations really race over separate connections.
    clients: list[AsyncMongoClient[Doc]] = [make_client(infra.mongo_url) for _ in range(4)]
    try:
        budgets = [FerretBudget(c[f"budget_{suffix}"]) for c in clients]
        await budgets[0].create_indexes()

        async def decide(i: int) -> bool:
            return await budgets[i % 4].reserve(DAY, LIMIT, {f"d-{i}": amounts[i]}, NOW) == set()

        granted_flags = await asyncio.gather(*(decide(i) for i in range(len(amounts))))
        state = await budgets[0].state(DAY, LIMIT)
        entries = await budgets[0].ledger.count_documents({})
    finally:
        for client in clients:
            await client.close()
    granted = sum((a.amount for a, ok in zip(amounts, granted_flags, strict=True) if ok),
                  Decimal(0))
    assert any(granted_flags)
    assert not all(granted_flags)
    assert granted <= LIMIT.amount
    assert state.spent.amount == granted
    assert entries == 1 + sum(granted_flags)
    refused = [a.amount for a, ok in zip(amounts, granted_flags, strict=True) if not ok]
    # Refusals are real: whatever was refused did not fit in what was left at the end.
    assert min(refused) > LIMIT.amount - granted


@ADAPTERS
async def test_a_batch_is_all_or_nothing_and_reserved_once(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: type[FerretBudget | MongoBudget]
) -> None:
    budget = await _budget(mongo, suffix, adapter)
    batch = {"d-1": eur("100.00"), "d-2": eur("150.00")}
    assert await budget.reserve(DAY, LIMIT, batch, NOW) == set()
    assert await budget.reserve(DAY, LIMIT, batch, NOW) == {"d-1", "d-2"}
    assert await budget.reserve(DAY, LIMIT, {"d-3": eur("200.00"), "d-4": eur("60.00")},
                                NOW) is None
    assert (await budget.state(DAY, LIMIT)).remaining.amount == Decimal("250.00")
    # The refused ones left nothing behind, so they can be decided again for less.
    assert await budget.reserve(DAY, LIMIT, {"d-3": eur("200.00")}, NOW) == set()


async def test_an_interrupted_batch_is_finished_not_repeated(
        mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    budget = FerretBudget(mongo[f"budget_{suffix}"])
    await budget.create_indexes()
    await budget.reserve(DAY, LIMIT, {"d-0": eur("1.00")}, NOW)
    # A decider wrote its intents and its ledger entry, then died before marking them.
    await budget.reservations.insert_many([
        {"_id": d, "chain": f"{DAY}:EUR", "day": DAY.isoformat(),
         "amount": 3000, "currency": "EUR", "at": NOW} for d in ("d-5", "d-6")])
    await budget.ledger.insert_one({"_id": f"{DAY}:EUR:000000000002", "chain": f"{DAY}:EUR",
                                    "seq": 2, "op": "reserve:d-5:2", "amount": 6000,
                                    "spent": 6100, "decisions": ["d-5", "d-6"]})
    assert await budget.reserve(DAY, LIMIT, {"d-5": eur("30.00"), "d-6": eur("30.00"),
                                             "d-7": eur("10.00")}, NOW) == {"d-5", "d-6"}
    state = await budget.state(DAY, LIMIT)
    assert state.spent.amount == Decimal("71.00")
    assert await budget.reserved.count_documents({}) == 4


@ADAPTERS
async def test_releases_give_back_once_per_action_and_never_more(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: type[FerretBudget | MongoBudget]
) -> None:
    budget = await _budget(mongo, suffix, adapter)
    await budget.reserve(DAY, LIMIT, {"d-2": eur("50.00")}, NOW)
    assert await budget.release("d-2", "d-2:1", eur("20.00"), NOW)
    assert not await budget.release("d-2", "d-2:1", eur("20.00"), NOW)
    assert await budget.release("d-2", "d-2:2", eur("99.00"), NOW)
    assert not await budget.release("d-2", "d-2:3", eur("1.00"), NOW)
    assert not await budget.release("unknown", "unknown:0", eur("1.00"), NOW)
    assert (await budget.state(DAY, LIMIT)).remaining == LIMIT
    assert to_minor(eur("12.34")) == 1234


@ADAPTERS
async def test_a_recorded_decision_is_booked_past_the_limit_once(
        mongo: AsyncMongoClient[Doc], suffix: str, adapter: type[FerretBudget | MongoBudget]
) -> None:
    budget = await _budget(mongo, suffix, adapter)
    assert await budget.reserve(DAY, LIMIT, {"d-1": eur("480.00")}, NOW) == set()
    # A decision recorded while another decider took the rest is final: booked all the same.
    assert await budget.book(DAY, LIMIT, {"d-2": eur("30.00"), "d-3": eur("5.00")}, NOW) == set()
    assert await budget.book(DAY, LIMIT, {"d-2": eur("30.00"), "d-4": eur("1.00")}, NOW) == {
        "d-2"}
    state = await budget.state(DAY, LIMIT)
    assert state.spent.amount == Decimal("516.00")
    assert state.remaining.amount == Decimal("-16.00")
    # ... while a reservation (a reviewer's approval) is still refused when it does not fit.
    assert await budget.reserve(DAY, LIMIT, {"d-5": eur("0.01")}, NOW) is None


class _Reads(monitoring.CommandListener):
    """The collections a client reads, in order."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in {"find", "aggregate", "count"}:
            self.reads.append(str(event.command[event.command_name]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_decider_reads_the_ledger_only_when_it_is_behind(
        infra: Infra, suffix: str) -> None:
    reads = _Reads()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(infra.mongo_url, tz_aware=True,
                                                     event_listeners=[reads])
    other = make_client(infra.mongo_url)
    try:
        mine = FerretBudget(client[f"budget_{suffix}"])
        theirs = FerretBudget(other[f"budget_{suffix}"])
        await mine.create_indexes()
        assert await mine.book(DAY, LIMIT, {"d-1": eur("300.00")}, NOW) == set()
        reads.reads.clear()
        # Batch after batch, the hot path neither reads what it booked nor the chain.
        for i in range(2, 6):
            assert (await mine.state(DAY, LIMIT, cached=True)).spent.amount == Decimal(
                300 + 10 * (i - 2))
            assert await mine.book(DAY, LIMIT, {f"d-{i}": eur("10.00")}, NOW) == set()
        assert reads.reads == []

        # Another decider books and gives back; this one's kept view is behind until its
        # next insert is lost, then it reads the chain once and books on the true total.
        assert await theirs.book(DAY, LIMIT, {"d-9": eur("100.00")}, NOW) == set()
        assert await theirs.release("d-1", "d-1:0", eur("250.00"), NOW)
        assert (await mine.state(DAY, LIMIT, cached=True)).spent.amount == Decimal("340.00")
        assert (await theirs.state(DAY, LIMIT)).spent.amount == Decimal("190.00")
        assert await theirs.book(DAY, LIMIT, {"d-10": eur("1.00")}, NOW) == set()
        reads.reads.clear()
        # A reservation that only fits after the release is not refused on the kept view
        # (340 spent there, 191 in truth).
        assert await mine.reserve(DAY, LIMIT, {"d-11": eur("300.00")}, NOW) == set()
        assert "budget_ledger" in reads.reads
        assert (await theirs.state(DAY, LIMIT)).spent.amount == Decimal("491.00")
        assert await mine.reserve(DAY, LIMIT, {"d-12": eur("10.00")}, NOW) is None
    finally:
        await client.close()
        await other.close()
