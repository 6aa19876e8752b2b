"""Fulfilment's MongoDB collections: one document per effect, keyed by the action's
idempotency key, so an effect is applied at most once whatever is redelivered."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Doc, insert_new
from services.common.outbox import MongoOutbox


class FulfilmentStore:
    """`points_ledger` (append-only credits), `messages` (apologies) and `outcomes`."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.points_ledger = db["points_ledger"]
        self.messages = db["messages"]
        self.outcomes = MongoOutbox(db["outcomes"])

    async def create_indexes(self) -> None:
        for name in ("points_ledger", "messages", "outcomes"):
            await self.db[name].create_index([("customer_id", ASCENDING),
                                              ("created_at", DESCENDING)])

    async def credit_points(self, entries: Sequence[Doc]) -> set[str]:
        return await insert_new(self.points_ledger, entries)

    async def record_messages(self, messages: Sequence[Doc]) -> set[str]:
        return await insert_new(self.messages, messages)

    async def points_balance(self, customer_id: str) -> int:
        total = 0
        async for entry in self.points_ledger.find({"customer_id": customer_id}, {"points": 1}):
            total += int(entry["points"])
        return total
