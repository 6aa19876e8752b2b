"""Intake's MongoDB collections and their indexes."""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Doc
from services.common.outbox import MongoOutbox


class IntakeStore:
    """`incidents`: every incident intake raised, by its deterministic id."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.incidents = MongoOutbox(db["incidents"])

    async def create_indexes(self) -> None:
        await self.db["incidents"].create_index([("customer_id", ASCENDING)])
