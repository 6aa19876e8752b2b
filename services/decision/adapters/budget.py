"""The global daily compensation budget on FerretDB: an append-only ledger, reserved
atomically by inserts alone (`mongodb.py` keeps it with `$inc` on MongoDB).

Why inserts: a unique index is the one primitive that is atomic on every server Amends runs
on. FerretDB v1 applies an update by reading the document, changing it and writing it back,
so racing `$inc`s or conditional updates lose writes (see docs/adr/0002). An insert under a
unique key, though, succeeds for exactly one of the racers.

So each day and currency has a chain of ledger entries numbered 0, 1, 2, ...; entry 0 holds
the limit, every later entry the amount it takes (or gives back) and the running total spent.
To reserve, a decider reads the last entry and inserts the next one; if another decider
inserted that number first, the insert fails and it tries again on the new last entry. The
running total can therefore never pass the limit.

Decisions are booked, not reserved: a decision is recorded first (with its amount and its
day), then `book` appends it to its day's chain whatever is left, since a recorded decision
is final. Deciders read what is left just before deciding, so racing deciders can pass the
limit by at most the batches they decide at the same time (one per decider). A reviewer's
approval still `reserve`s, refused when it does not fit (unless it gives money back).

Each decider keeps the last entry of every chain it appended to (its number and running
total) in memory, and reads the chain only when it has none yet, when its insert is lost, or
before refusing a reservation (a release may have given money back): FerretDB reads every
ledger entry on each read. A head kept from an earlier batch can be behind what other deciders
booked since; the insert of the next number then fails and the decider reads again. So the
bound above holds: a batch is decided on what was left at this decider's last booking
(`state(cached=True)`), at most one batch per decider on a view that is behind. `state()`
without it reads the chain, for people.

Each decision's reservation is also recorded under its decision id (an "intent" first, then
a mark in `reserved`: an insert, not an update, since FerretDB updates cost milliseconds per
document), and each ledger entry lists the decisions it reserved for, so a batch that was
interrupted between the writes is finished, never booked twice, when it is redelivered.
Amounts are integer minor units (cents), which add exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.common import Money
from schemas.common import minor_exponent as exponent
from services.common.adapters.mongo import Doc, insert_new
from services.common.errors import TransientError
from services.decision.ports import BudgetMovement, BudgetState

MAX_ATTEMPTS = 200


def to_minor(money: Money) -> int:
    scaled = money.amount.scaleb(exponent(money.currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{money} has more decimals than {money.currency} allows")
    return int(scaled)


def from_minor(units: int, currency: str) -> Money:
    return Money(amount=Decimal(units).scaleb(-exponent(currency)), currency=currency)


class BudgetContentionError(TransientError, RuntimeError):
    """The ledger stayed too busy to append to; the batch is retried later."""


class FerretBudget:
    """`budget_ledger`: the chains of entries; `reservations`: one per decision (its amount
    and day); `reserved`: one per decision whose ledger entry is written."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.ledger = db["budget_ledger"]
        self.reservations = db["reservations"]
        self.reserved = db["reserved"]
        self._limits: dict[str, int] = {}  # a chain's limit never changes once opened
        self._heads: dict[str, Doc] = {}  # chain -> the last entry this decider knows of

    async def create_indexes(self) -> None:
        await self.ledger.create_index([("chain", ASCENDING), ("seq", DESCENDING)])
        await self.ledger.create_index([("op", ASCENDING)], unique=True)
        await self.ledger.create_index([("decisions", ASCENDING)])

    @staticmethod
    def _chain(day: date, currency: str) -> str:
        return f"{day.isoformat()}:{currency}"

    @staticmethod
    def _entry_id(chain: str, seq: int) -> str:
        return f"{chain}:{seq:012d}"

    async def _last(self, day: date, limit: Money) -> Doc:
        chain = self._chain(day, limit.currency)
        head = self._heads.get(chain)
        if head is None:
            last = await self._read_last(day, limit)
            head = self._heads[chain] = {"chain": chain, "seq": last["seq"],
                                         "spent": last["spent"]}
        return head

    async def _read_last(self, day: date, limit: Money) -> Doc:
        chain = self._chain(day, limit.currency)
        cursor = self.ledger.find({"chain": chain}, {"chain": 1, "seq": 1, "spent": 1}).sort(
            "seq", DESCENDING).limit(1)
        async for doc in cursor:
            return doc
        genesis = {"_id": self._entry_id(chain, 0), "chain": chain, "seq": 0,
                   "op": f"open:{chain}", "limit": to_minor(limit), "amount": 0, "spent": 0,
                   "decisions": []}
        try:
            await self.ledger.insert_one(genesis)
        except DuplicateKeyError:
            return await self._read_last(day, limit)  # another decider opened the day first
        return genesis

    async def _limit(self, chain: str) -> int:
        if chain not in self._limits:
            genesis = await self.ledger.find_one({"_id": self._entry_id(chain, 0)})
            assert genesis is not None
            self._limits[chain] = int(genesis["limit"])
        return self._limits[chain]

    async def state(self, day: date, limit: Money, *, cached: bool = False) -> BudgetState:
        if not cached:
            self._heads.pop(self._chain(day, limit.currency), None)
        last = await self._last(day, limit)
        chain_limit = await self._limit(last["chain"])
        return BudgetState(day, from_minor(chain_limit, limit.currency),
                           from_minor(int(last["spent"]), limit.currency))

    async def _append(self, day: date, limit: Money, op: str, units: int,
                      fields: Mapping[str, Any], *, enforce: bool = True) -> bool | None:
        """Append an entry taking `units` (negative gives back). True when appended, False
        when `op` was appended before, None when it would pass the limit (and `enforce`)."""
        chain_limit: int | None = None
        read = False  # whether `last` was read now, not kept from before
        for _ in range(MAX_ATTEMPTS):
            chain = self._chain(day, limit.currency)
            read = read or chain not in self._heads
            last = await self._last(day, limit)
            chain_limit = chain_limit or await self._limit(last["chain"])
            spent = int(last["spent"]) + units
            if enforce and units > 0 and spent > chain_limit:
                if not read:  # the kept head may miss a release: read before refusing
                    self._heads.pop(chain, None)
                    continue
                return None
            entry = {"_id": self._entry_id(last["chain"], int(last["seq"]) + 1),
                     "chain": last["chain"], "seq": int(last["seq"]) + 1, "op": op,
                     "amount": units, "spent": spent, **fields}
            try:
                await self.ledger.insert_one(entry)
            except DuplicateKeyError:
                self._heads.pop(last["chain"], None)  # behind: read the chain again
                if await self.ledger.find_one({"op": op}, {"_id": 1}) is not None:
                    return False
                continue  # another decider took this number; read the new last entry
            self._heads[last["chain"]] = {"chain": last["chain"], "seq": entry["seq"],
                                          "spent": spent}
            return True
        raise BudgetContentionError(f"could not append to the budget ledger {op!r}")

    async def reserve(self, day: date, limit: Money, amounts: Mapping[str, Money],
                      now: datetime) -> set[str] | None:
        return await self._take(day, limit, amounts, now, enforce=True)

    async def book(self, day: date, limit: Money, amounts: Mapping[str, Money],
                   now: datetime) -> set[str]:
        done = await self._take(day, limit, amounts, now, enforce=False)
        assert done is not None, "a booking is never refused"
        return done

    async def _take(self, day: date, limit: Money, amounts: Mapping[str, Money],
                    now: datetime, *, enforce: bool) -> set[str] | None:
        if not amounts:
            return set()
        ids = sorted(amounts)
        chain = self._chain(day, limit.currency)
        new = await insert_new(self.reservations, [
            {"_id": did, "chain": chain, "day": day.isoformat(),
             "amount": to_minor(amounts[did]), "currency": amounts[did].currency, "at": now}
            for did in ids])
        known = [did for did in ids if did not in new]
        done: set[str] = set()
        if known:
            done.update([doc["_id"] async for doc in self.reserved.find(
                {"_id": {"$in": known}}, {"_id": 1})])
            # An intent whose ledger entry was written before a crash is reserved already.
            async for entry in self.ledger.find({"decisions": {"$in": known}}, {"decisions": 1}):
                done.update(d for d in entry["decisions"] if d in amounts)
        todo = [did for did in ids if did not in done]
        if todo:
            units = sum(to_minor(amounts[did]) for did in todo)
            appended = await self._append(day, limit, f"reserve:{todo[0]}:{len(todo)}", units,
                                          {"decisions": todo, "at": now}, enforce=enforce)
            if appended is None:  # nothing was taken: the intents this call wrote go
                await self.reservations.delete_many({"_id": {"$in": list(new)}})
                return None
        await insert_new(self.reserved, [{"_id": did, "at": now} for did in ids])
        return done

    async def release(self, key: str, reason: str, amount: Money, now: datetime) -> bool:
        decision_id = key  # the reservation's key
        reservation = await self.reservations.find_one({"_id": decision_id})
        if reservation is None or await self.reserved.find_one({"_id": decision_id}) is None:
            return False
        given: int = 0
        async for entry in self.ledger.find({"release_of": decision_id}, {"amount": 1}):
            given -= int(entry["amount"])
        units = min(to_minor(amount), int(reservation["amount"]) - given)
        if units <= 0:
            return False
        day = date.fromisoformat(str(reservation["day"]))
        limit = from_minor(0, str(reservation["currency"]))  # the chain exists: limit unused
        appended = await self._append(day, limit, f"release:{decision_id}:{reason}", -units,
                                      {"release_of": decision_id, "decisions": [], "at": now})
        return bool(appended)

    async def movements(self, day: date, currency: str) -> list[BudgetMovement]:
        found = [BudgetMovement(doc["at"], from_minor(int(doc["amount"]), currency))
                 async for doc in self.ledger.find(
                     {"chain": self._chain(day, currency), "seq": {"$gt": 0}},
                     {"amount": 1, "at": 1})
                 if doc.get("at") is not None and int(doc["amount"]) != 0]
        return sorted(found, key=lambda m: m.at)
