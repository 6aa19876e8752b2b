"""Decision's store and budget on MongoDB, in its native model: each decision one nested
document (its body as a sub-document beside the fields queries use), indexed `$in` lookups
instead of FerretDB's marks, verdicts, choices and approvals as conditional updates of the
decision itself, "published" as a flag, and the budget as one document per day and currency
moved by conditional `$inc`. Where the server has transactions (a replica set or a sharded
cluster), a budget movement and its key are written in one.

Run against FerretDB in the tests too, as far as FerretDB goes: nested documents, `$in` and
conditional updates work there; transactions cannot be exercised (FerretDB has none)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from schemas.common import Money
from schemas.decision import Approval, Choice, Decision, Review
from schemas.outcome import Outcome
from services.common.adapters.mongo import Doc, chunks, insert_new
from services.common.adapters.outbox import FlagOutbox
from services.decision.adapters import mongo as reads
from services.decision.adapters.budget import from_minor, to_minor
from services.decision.adapters.mongo import (
    HISTORY_FIELDS,
    fields_of,
    histories_of,
    history_query,
)
from services.decision.adapters.outages import MongoOutages
from services.decision.domain.history import CustomerHistory
from services.decision.ports import BudgetMovement, BudgetState, HistoriesRead


def _document(key: str, decision: Decision) -> Doc:
    return {**fields_of(decision), "_id": key, "decision": decision.model_dump(mode="json"),
            "published": False}


def _decision(doc: Doc) -> Decision:
    return Decision.model_validate(doc["decision"])


class MongoDecisions(HistoriesRead):
    """`decisions` (newest revision of each, with `approvals`, `verdict` and `chosen` beside
    the body), `revisions` (later revisions, the outbox of their events), `outcomes`."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._decisions = db["decisions"]
        self.decisions: FlagOutbox[Decision] = FlagOutbox(self._decisions, _document)
        self.revisions: FlagOutbox[Decision] = FlagOutbox(db["revisions"], _document)
        self.outages = MongoOutages(db, flags=True)
        self.outcomes = db["outcomes"]

    async def create_indexes(self) -> None:
        await self._decisions.create_index([("customer_id", ASCENDING),
                                            ("decided_at", DESCENDING)])
        await self._decisions.create_index([("order_id", ASCENDING)], sparse=True)
        await self._decisions.create_index([("outage_id", ASCENDING)], sparse=True)
        await self._decisions.create_index([("status", ASCENDING), ("deadline", ASCENDING)])
        await self._decisions.create_index([("status", ASCENDING), ("decided_at", ASCENDING)])
        await self.outcomes.create_index([("decision_id", ASCENDING)])
        await self.outages.create_indexes()

    async def known(self, ids: Sequence[str]) -> dict[str, Decision]:
        return await self.find(ids)

    async def find(self, ids: Sequence[str]) -> dict[str, Decision]:
        found: dict[str, Decision] = {}
        for part in chunks(ids):
            found.update({doc["_id"]: _decision(doc) async for doc in self._decisions.find(
                {"_id": {"$in": list(part)}}, {"decision": 1})})
        return found

    async def get(self, decision_id: str) -> Decision | None:
        return await reads.get(self._decisions, _decision, decision_id)

    async def between(self, start: datetime | None, stop: datetime | None) -> list[Decision]:
        return await reads.between(self._decisions, _decision, start, stop)

    async def histories(self, customers: Sequence[str], since: datetime,
                        orders: Sequence[str] = (), outages: Sequence[str] = ()
                        ) -> dict[str, CustomerHistory]:
        if not customers:
            return {}
        docs = [doc async for doc in self._decisions.find(
            history_query(customers, since, orders, outages), HISTORY_FIELDS)]
        return histories_of(customers, docs)

    async def held(self, limit: int, tenants: Sequence[str | None] | None = None
                   ) -> list[Decision]:
        return await reads.held(self._decisions, _decision, limit, tenants)

    async def customers_of_order(self, order_id: str,
                                 tenants: Sequence[str | None] | None = None) -> list[str]:
        return await reads.customers_of_order(self._decisions, order_id, tenants)

    async def offers_due(self, now: datetime, limit: int) -> list[Decision]:
        return await reads.offers_due(self._decisions, _decision, now, limit)

    async def approve(self, decision_id: str, approval: Approval
                      ) -> tuple[bool, list[Approval]]:
        # Pushed only if this reviewer has none: a second approval by the same person is
        # the same approval.
        doc = await self._decisions.find_one_and_update(
            {"_id": decision_id, "approvals.reviewer": {"$ne": approval.reviewer}},
            {"$push": {"approvals": approval.model_dump()}},
            return_document=ReturnDocument.AFTER)
        new = doc is not None
        if doc is None:
            doc = await self._decisions.find_one({"_id": decision_id}, {"approvals": 1})
        found = [Approval.model_validate(a) for a in (doc or {}).get("approvals", [])]
        return new, sorted(found, key=lambda a: (a.at, a.reviewer))

    async def _claim(self, decision_id: str, field: str, value: Doc) -> Doc:
        """Set the decision's one verdict or choice unless one is there; the one that won."""
        won = await self._decisions.find_one_and_update(
            {"_id": decision_id, field: None}, {"$set": {field: value}},
            return_document=ReturnDocument.AFTER)
        if won is None:
            won = await self._decisions.find_one({"_id": decision_id}, {field: 1})
        assert won is not None, f"no decision {decision_id}"
        return dict(won[field])

    async def claim_review(self, decision_id: str, review: Review) -> Review:
        return Review.model_validate(await self._claim(decision_id, "verdict",
                                                       review.model_dump()))

    async def claim_choice(self, decision_id: str, choice: Choice) -> Choice:
        return Choice.model_validate(await self._claim(decision_id, "chosen",
                                                       choice.model_dump()))

    async def update_current(self, revision: Decision) -> None:
        fields: dict[str, Any] = {k: v for k, v in fields_of(revision).items() if k != "_id"}
        fields["decision"] = revision.model_dump(mode="json")
        await self._decisions.update_one(
            {"_id": revision.decision_id, "revision": {"$lt": revision.revision}},
            {"$set": fields})

    async def record_failures(self, outcomes: Sequence[Outcome], at: datetime) -> set[str]:
        return await insert_new(self.outcomes, [
            {"_id": o.idempotency_key, "decision_id": o.decision_id, "status": o.status.value,
             "kind": o.kind.value, "value": format(o.value.amount, "f"),
             "currency": o.value.currency, "at": at} for o in outcomes])


class MongoBudget:
    """`budget_days`: one document per day and currency (`limit`, `spent` and what is left,
    `room`, in minor units), moved by conditional `$inc`; `budget_keys`: one per reservation
    or booking key (its amount, what was given back and for which reasons).

    With transactions the key and the day move together. Without them the key is written
    first: a crash between the two leaves the key counted as taken, so a redelivery never
    takes twice (at worst the day shows less than was given)."""

    def __init__(self, db: AsyncDatabase[Doc], *, transactions: bool = False) -> None:
        self.client = db.client
        self.days = db["budget_days"]
        self.keys = db["budget_keys"]
        self.transactions = transactions

    async def create_indexes(self) -> None:
        await self.keys.create_index([("chain", ASCENDING)])

    @staticmethod
    def _chain(day: date, currency: str) -> str:
        return f"{day.isoformat()}:{currency}"

    async def _open(self, day: date, limit: Money) -> Doc:
        # The first to open a day fixes its limit; a day's limit never changes after.
        doc = await self.days.find_one_and_update(
            {"_id": self._chain(day, limit.currency)},
            {"$setOnInsert": {"limit": to_minor(limit), "spent": 0, "room": to_minor(limit)}},
            upsert=True, return_document=ReturnDocument.AFTER)
        assert doc is not None
        return doc

    async def state(self, day: date, limit: Money, *, cached: bool = False) -> BudgetState:
        del cached  # one document read by its indexed `_id`: always current
        doc = await self._open(day, limit)
        return BudgetState(day, from_minor(int(doc["limit"]), limit.currency),
                           from_minor(int(doc["spent"]), limit.currency))

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
        chain = (await self._open(day, limit))["_id"]
        ids = sorted(amounts)
        done = {doc["_id"] async for doc in self.keys.find({"_id": {"$in": ids}}, {"_id": 1})}
        todo = [k for k in ids if k not in done]
        if not todo:
            return done
        units = sum(to_minor(amounts[k]) for k in todo)
        condition: Doc = {"_id": chain}
        if enforce and units > 0:
            # `room` (limit - spent) kept beside `spent`: a plain condition any server runs.
            condition["room"] = {"$gte": units}
        keys = [{"_id": k, "chain": chain, "amount": to_minor(amounts[k]), "released": 0,
                 "reasons": [], "at": now} for k in todo]

        async def move(session: AsyncClientSession | None) -> bool:
            if not self.transactions:  # the key first: never taken twice (see above)
                taken = await insert_new(self.keys, keys)
                units_now = sum(k["amount"] for k in keys if k["_id"] in taken)
                moved = await self.days.find_one_and_update(
                    condition, {"$inc": {"spent": units_now, "room": -units_now}})
                if moved is None:
                    await self.keys.delete_many({"_id": {"$in": list(taken)}})
                return moved is not None
            await self.keys.insert_many(keys, session=session)
            moved = await self.days.find_one_and_update(
                condition, {"$inc": {"spent": units, "room": -units}}, session=session)
            if moved is None:
                await session.abort_transaction()  # type: ignore[union-attr]
                return False
            return True

        if not await self._in_transaction(move):
            return None
        return done

    async def movements(self, day: date, currency: str) -> list[BudgetMovement]:
        found: list[BudgetMovement] = []
        async for doc in self.keys.find({"chain": self._chain(day, currency)}):
            found.append(BudgetMovement(doc["at"], from_minor(int(doc["amount"]), currency)))
            if int(doc.get("released", 0)):  # what was given back, at the last release
                found.append(BudgetMovement(doc.get("released_at") or doc["at"],
                                            from_minor(-int(doc["released"]), currency)))
        return sorted(found, key=lambda m: m.at)

    async def _in_transaction(self, move: Any) -> bool:
        if not self.transactions:
            return bool(await move(None))
        async with self.client.start_session() as session, await session.start_transaction():
            return bool(await move(session))

    async def release(self, key: str, reason: str, amount: Money, now: datetime) -> bool:
        kept = await self.keys.find_one({"_id": key})
        if kept is None or reason in kept["reasons"]:
            return False
        units = min(to_minor(amount), int(kept["amount"]) - int(kept["released"]))
        if units <= 0:
            return False

        async def move(session: AsyncClientSession | None) -> bool:
            # Conditional on what was read: a racing release of the same key retries nothing
            # and gives back nothing twice.
            moved = await self.keys.find_one_and_update(
                {"_id": key, "released": kept["released"], "reasons": {"$ne": reason}},
                {"$inc": {"released": units}, "$push": {"reasons": reason},
                 "$set": {"released_at": now}},
                session=session)
            if moved is None:
                return False
            await self.days.update_one({"_id": kept["chain"]},
                                       {"$inc": {"spent": -units, "room": units}},
                                       session=session)
            return True

        return await self._in_transaction(move)
