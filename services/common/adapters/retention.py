"""Retention on MongoDB or FerretDB: one `delete_many` per rule, by its time field."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc

if TYPE_CHECKING:
    from services.common.retention import Rule


class MongoPurge:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db

    async def delete_before(self, rule: Rule, cutoff: datetime) -> int:
        result = await self.db[rule.collection].delete_many(
            {rule.time_field: {"$lt": cutoff}, **rule.also})
        return result.deleted_count
