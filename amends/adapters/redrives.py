"""Which dead letters were redriven, and when: the operator CLI's own small store
(`amends_ops.redrives`, one document per letter id), so `amends dlq list` can say so."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient


class Redrives:
    def __init__(self, mongo_url: str, db: str) -> None:
        self.mongo_url = mongo_url
        self.db = db

    def _client(self) -> AsyncMongoClient[dict[str, Any]]:
        return AsyncMongoClient(self.mongo_url, serverSelectionTimeoutMS=3000, tz_aware=True)

    async def redriven(self) -> set[str]:
        """The ids of every dead letter redriven so far."""
        client = self._client()
        try:
            return {d["_id"] async for d in client[self.db]["redrives"].find({}, {"_id": 1})}
        finally:
            await client.close()

    async def record(self, ids: Sequence[str], now: datetime) -> None:
        """Each letter of `ids` was redriven once more, at `now`."""
        client = self._client()
        try:
            collection = client[self.db]["redrives"]
            for letter_id in ids:
                await collection.update_one({"_id": letter_id},
                                            {"$set": {"redriven_at": now},
                                             "$inc": {"times": 1}}, upsert=True)
        finally:
            await client.close()
