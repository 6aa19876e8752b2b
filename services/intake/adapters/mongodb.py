"""Intake's store (`services/intake/ports.py`) on MongoDB: the native model.

Where the FerretDB adapter works around a server that scans every collection, has no
transactions and no atomic updates, this one uses what MongoDB offers:
- incidents and customer snapshots as nested documents, and "published" as a field of the
  incident set by one `update_many` over an indexed `$in` (no collection of marks);
- an order's captures in one document (`charges`, under the order's id): the first capture
  creates it, each further one is pushed by a conditional update on the order's next free
  slot, so instances racing on one order take slots one after another;
- settling a subject (its mark and the deletion of its pending checks) in one transaction
  when the server has them (a replica set or a sharded cluster).

The small flat records (scheduled checks, settled marks, order totals, outages, receipts,
erased customers) are the same documents in both adapters, kept by the FerretDB adapter's
code, which this one holds. The collections and the fields the retention sweep reads
(`detected_at`, `captured_at`, `hour`, ...) are the same in both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from schemas.common import CustomerSnapshot, Money
from schemas.incident import Incident
from services.common.adapters.mongo import (
    MAX_CHUNK,
    Doc,
    bulk_update,
    chunks,
    in_chunks,
    insert_new,
)
from services.common.adapters.outbox import FlagOutbox
from services.intake.adapters.ferretdb import (
    FerretIntakeStore,
    fact_doc,
    fact_of,
    followed_doc,
    followed_of,
    newest_seen,
    range_of,
    see_in,
)
from services.intake.domain.aftermath import Fact, Followed
from services.intake.domain.detection import (
    Capture,
    Check,
    CheckKind,
    OrderPayments,
    check_id,
    closed_id,
)
from services.intake.domain.outages import Declaration, Outage, Resolution


def _incident_document(key: str, incident: Incident) -> Doc:
    return {"_id": key, "customer_id": incident.customer.id, "type": incident.type.value,
            "detected_at": incident.detected_at, "outage_id": incident.outage_id,
            "published": False, "incident": incident.model_dump(mode="json")}


def _capture(capture: Capture, at: datetime) -> Doc:
    return {"payment_id": capture.payment_id, "amount": capture.amount.model_dump(mode="json"),
            "replaces": capture.replaces, "captured_at": at,
            "order_total": (capture.order_total.model_dump(mode="json")
                            if capture.order_total is not None else None)}


def _capture_of(doc: Doc) -> Capture:
    total = doc.get("order_total")
    return Capture(doc["payment_id"], Money.model_validate(doc["amount"]), doc.get("replaces"),
                   Money.model_validate(total) if total else None)


class MongoIntakeStore:
    def __init__(self, db: AsyncDatabase[Doc], chunk: int = MAX_CHUNK, *,
                 transactions: bool = False) -> None:
        self.db = db
        self.chunk = min(chunk, MAX_CHUNK)
        self.transactions = transactions
        self.flat = FerretIntakeStore(db, self.chunk)  # the records both adapters share
        self.incidents: FlagOutbox[Incident] = FlagOutbox(db["incidents"], _incident_document,
                                                           self.chunk)
        self.charges = db["charges"]
        self.customers = db["customers_seen"]
        self.aftermaths = MongoAftermaths(db, self.chunk)

    async def create_indexes(self) -> None:
        await self.db["incidents"].create_index([("customer_id", ASCENDING)])
        await self.db["incidents"].create_index([("outage_id", ASCENDING)])
        await self.db["checks"].create_index([("due_at", ASCENDING)])
        await self.customers.create_index([("hour", DESCENDING), ("tenant", ASCENDING)])
        await self.aftermaths.create_indexes()

    # --- scheduled checks ----------------------------------------------------------------

    async def schedule(self, checks: Sequence[Check]) -> set[str]:
        return await self.flat.schedule(checks)

    async def close(self, kind: CheckKind, keys: Sequence[str], at: datetime,
                    steps: int = 1) -> None:
        if not self.transactions:
            await self.flat.close(kind, keys, at, steps)
            return
        # The mark and the deletions together: no instance sees a subject half settled.
        async with self.db.client.start_session() as session, await session.start_transaction():
            for part in chunks(list(dict.fromkeys(keys)), self.chunk):
                # An upsert, not an insert: a duplicate key would abort the transaction.
                await self.db["settled"].bulk_write(
                    [UpdateOne({"_id": closed_id(kind, key)}, {"$setOnInsert": {"at": at}},
                               upsert=True) for key in part], ordered=False, session=session)
                await self.db["checks"].delete_many(
                    {"_id": {"$in": [check_id(kind, key, step)
                                     for key in part for step in range(steps)]}},
                    session=session)

    async def due(self, now: datetime, limit: int) -> list[Check]:
        return await self.flat.due(now, limit)

    async def closed(self, ids: Sequence[str]) -> set[str]:
        return await self.flat.closed(ids)

    async def ran(self, ids: Sequence[str]) -> None:
        await self.flat.ran(ids)

    async def promises(self, orders: Sequence[str], steps: int
                       ) -> dict[str, tuple[datetime, Money | None]]:
        return await self.flat.promises(orders, steps)

    # --- charges: one document per order -------------------------------------------------

    async def record_totals(self, totals: Sequence[tuple[str, Money]]) -> None:
        await self.flat.record_totals(totals)

    async def order_totals(self, orders: Sequence[str]) -> dict[str, Money]:
        return await self.flat.order_totals(orders)

    async def claim_first_captures(self, firsts: Sequence[tuple[str, Capture, datetime]]
                                   ) -> set[str]:
        docs = [{"_id": order, "captured_at": at, "next_slot": 0,
                 "captures": [_capture(capture, at)]} for order, capture, at in firsts]
        return await insert_new(self.charges, docs, self.chunk)

    async def order_payments(self, orders: Sequence[str]) -> dict[str, OrderPayments]:
        found = {order: OrderPayments() for order in orders}
        for part in chunks(list(found), self.chunk):
            async for doc in self.charges.find({"_id": {"$in": list(part)}}):
                payments = found[doc["_id"]]
                payments.captures = [_capture_of(c) for c in doc["captures"]]
                payments.next_slot = doc["next_slot"]
        for order, total in (await self.order_totals(list(found))).items():
            found[order].total = total
        return found

    async def record_captures(self, captures: Sequence[tuple[str, int, Capture, datetime]]
                              ) -> int:
        for claimed, (order, slot, capture, at) in enumerate(captures):
            # Matches only while `slot` is the order's next free one: a slot is taken once.
            result = await self.charges.update_one(
                {"_id": order, "next_slot": slot},
                {"$push": {"captures": _capture(capture, at)}, "$inc": {"next_slot": 1}})
            if result.modified_count == 0:
                return claimed
        return len(captures)

    # --- customers seen ------------------------------------------------------------------

    async def see(self, seen: Sequence[tuple[CustomerSnapshot, str | None, datetime]]
                  ) -> None:
        await see_in(self.customers, seen, lambda c: c.model_dump(mode="json"), self.chunk)

    def seen_since(self, since: datetime, tenant: str | None
                   ) -> AsyncIterator[list[CustomerSnapshot]]:
        return in_chunks(newest_seen(self.customers, since, tenant, self.chunk),
                         lambda doc: CustomerSnapshot.model_validate(doc["customer"]),
                         self.chunk)

    # --- outages -------------------------------------------------------------------------

    async def outage_declared(self, outage_id: str, declaration: Declaration) -> Outage:
        return await self.flat.outage_declared(outage_id, declaration)

    async def outage_resolved(self, outage_id: str, resolution: Resolution) -> Outage:
        return await self.flat.outage_resolved(outage_id, resolution)

    async def outage_fanned_out(self, outage_id: str, affected: int, told: bool) -> None:
        await self.flat.outage_fanned_out(outage_id, affected, told)

    async def duration_told(self, outage_id: str) -> None:
        await self.flat.duration_told(outage_id)

    async def outage(self, outage_id: str) -> Outage | None:
        return await self.flat.outage(outage_id)

    def outage_incidents(self, outage_id: str) -> AsyncIterator[list[Incident]]:
        return in_chunks(self.db["incidents"].find({"outage_id": outage_id}, {"incident": 1},
                                                   batch_size=self.chunk),
                         lambda doc: Incident.model_validate(doc["incident"]), self.chunk)

    # --- receipts, erased customers ------------------------------------------------------

    async def received_before(self, receipts: Sequence[str]) -> dict[str, list[str]]:
        return await self.flat.received_before(receipts)

    async def claim_receipts(self, receipts: Sequence[str], at: datetime) -> set[str]:
        return await self.flat.claim_receipts(receipts, at)

    async def release_receipts(self, receipts: Sequence[str]) -> None:
        await self.flat.release_receipts(receipts)

    async def mark_received(self, receipts: Sequence[tuple[str, list[str]]],
                            at: datetime) -> None:
        await self.flat.mark_received(receipts, at)

    async def erased(self) -> dict[str, datetime]:
        return await self.flat.erased()

    async def add_erased(self, pseudonym: str, at: datetime) -> None:
        await self.flat.add_erased(pseudonym, at)


class MongoAftermaths:
    """On MongoDB: one document per followed incident (`aftermath`) with its facts nested
    in it, added to the set of its facts (the same fact, a deterministic document, is not
    added twice, so a redelivery changes nothing; a different fact under a known id, which
    the fold ignores, would be), and reads use the index on `occurred_at`."""

    def __init__(self, db: AsyncDatabase[Doc], chunk: int = MAX_CHUNK) -> None:
        self.collection = db["aftermath"]
        self.chunk = chunk

    async def create_indexes(self) -> None:
        await self.collection.create_index([("occurred_at", ASCENDING)])
        await self.collection.create_index([("customer_id", ASCENDING)])

    async def follow(self, followed: Sequence[Followed]) -> set[str]:
        return await insert_new(self.collection,
                                [{**followed_doc(f), "facts": []} for f in followed],
                                self.chunk)

    async def add(self, facts: Sequence[Fact]) -> None:
        await bulk_update(self.collection, [
            UpdateOne({"_id": f.incident_id}, {"$addToSet": {"facts": fact_doc(f)}})
            for f in facts])

    async def since(self, start: datetime, stop: datetime | None = None
                    ) -> list[tuple[Followed, list[Fact]]]:
        return [(followed_of(doc), [fact_of(f) for f in doc.get("facts", [])])
                async for doc in self.collection.find({"occurred_at": range_of(start, stop)})]
