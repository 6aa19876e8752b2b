"""Each outage's cost preview and ledger on MongoDB or FerretDB, inserts only (FerretDB has no
atomic updates): `outage_previews` holds one preview per outage under its deterministic id
(the outbox of its event), `outage_ledger` one entry per decision its budget paid, under the
decision id, so a redelivery books nothing twice."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from schemas.common import Money
from schemas.outage import OutageCostPreview, preview_id
from services.common.adapters.mongo import Doc, insert_new
from services.common.adapters.outbox import FlagOutbox, MongoOutbox


def _document(key: str, preview: OutageCostPreview) -> Doc:
    return {"_id": key, "outage_id": preview.outage_id, "previewed_at": preview.previewed_at,
            "preview": preview.model_dump_json()}


class MongoOutages:
    """`flags`: mark published previews with a flag (MongoDB) or by inserting marks
    (FerretDB, where updates are slow and not atomic)."""

    def __init__(self, db: AsyncDatabase[Doc], *, flags: bool) -> None:
        collection = db["outage_previews"]
        self._previews = collection
        self.previews: FlagOutbox[OutageCostPreview] | MongoOutbox[OutageCostPreview] = (
            FlagOutbox(collection, _document) if flags else MongoOutbox(collection, _document))
        self.ledger = db["outage_ledger"]

    async def create_indexes(self) -> None:
        await self.ledger.create_index([("outage_id", ASCENDING)])
        if isinstance(self.previews, MongoOutbox):
            await self.previews.create_indexes()

    async def preview(self, outage_id: str) -> OutageCostPreview | None:
        doc = await self._previews.find_one({"_id": preview_id(outage_id)})
        return None if doc is None else OutageCostPreview.model_validate_json(doc["preview"])

    async def book(self, outage_id: str, amounts: Mapping[str, Money], at: datetime
                   ) -> set[str]:
        return await insert_new(self.ledger, [
            {"_id": did, "outage_id": outage_id, "amount": str(money.amount),
             "currency": money.currency, "at": at} for did, money in amounts.items()])

    async def booked(self, outage_id: str) -> tuple[int, Decimal]:
        count, total = 0, Decimal(0)
        async for doc in self.ledger.find({"outage_id": outage_id}, {"amount": 1}):
            count += 1
            total += Decimal(doc["amount"])
        return count, total
