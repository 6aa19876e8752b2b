"""Decision's MongoDB collections and their indexes."""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Doc
from services.common.outbox import MongoOutbox


class DecisionStore:
    """`decisions`: one per incident, under the deterministic decision id."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.decisions = MongoOutbox(db["decisions"])

    async def create_indexes(self) -> None:
        await self.db["decisions"].create_index([("customer_id", ASCENDING)])
