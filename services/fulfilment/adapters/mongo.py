"""Fulfilment's MongoDB collections: one document per effect, keyed by the action's
idempotency key, so an effect is applied at most once whatever is redelivered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from schemas.outcome import Outcome
from services.common.adapters.mongo import Doc, insert_new, stored
from services.common.adapters.outbox import MongoOutbox, as_document


class FulfilmentStore:
    """`decisions` (each revision as received), `points_ledger` (append-only credits),
    `messages` (apologies) and `refunds` (each with its delivery state, see `remote`), `perks`
    (free delivery), `tasks` (for humans, an outbox) and `outcomes` (an outbox)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.decisions = db["decisions"]
        self.points_ledger = db["points_ledger"]
        self.messages = db["messages"]
        self.refunds = db["refunds"]
        self.perks = db["perks"]
        self.tasks = MongoOutbox(db["tasks"], as_document)
        self.outcomes = MongoOutbox(db["outcomes"], as_document)

    async def create_indexes(self) -> None:
        for name in ("decisions", "points_ledger", "messages", "refunds", "perks", "tasks",
                     "outcomes"):
            await self.db[name].create_index([("customer_id", ASCENDING),
                                              ("created_at", DESCENDING)])
        for name in ("messages", "refunds"):  # the sweep looks for unfinished ones
            await self.db[name].create_index([("status", ASCENDING)])
        for outbox in (self.tasks, self.outcomes):
            await outbox.create_indexes()

    async def outcomes_of(self, keys: Sequence[str]) -> dict[str, Outcome]:
        """The outcomes already recorded for these action keys."""
        if not keys:
            return {}
        found: dict[str, Outcome] = {}
        async for doc in self.outcomes.collection.find({"_id": {"$in": list(set(keys))}},
                                                       {"outcome": 1}):
            found[doc["_id"]] = Outcome.model_validate(stored(doc["outcome"]))
        return found

    async def record_decisions(self, decisions: Sequence[Doc]) -> set[str]:
        return await insert_new(self.decisions, decisions)

    async def credit_points(self, entries: Sequence[Doc]) -> set[str]:
        return await insert_new(self.points_ledger, entries)

    async def record_messages(self, messages: Sequence[Doc]) -> set[str]:
        return await insert_new(self.messages, messages)

    async def points_balance(self, customer_id: str, now: datetime) -> int:
        """Points credited and not yet expired."""
        total = 0
        async for entry in self.points_ledger.find({"customer_id": customer_id,
                                                    "expires_at": {"$gt": now}},
                                                   {"points": 1}):
            total += int(entry["points"])
        return total
