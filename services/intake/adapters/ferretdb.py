"""Intake's store (`services/intake/ports.py`) on FerretDB v1: its collections and indexes.

- `incidents`: every incident intake raised, by its deterministic id (the outbox), and
  `incidents_published`: the ids of those published, a document per published batch;
- `checks`: the pending scheduled checks only (a check is deleted when it runs or its subject
  is settled), read by the index on `due_at`; `settled`: the markers that settle a subject
  (`<kind>:<key>`: delivered, cancelled, answered);
- `charges`: each order's captures, for double charges and what a refund may reach. The
  first capture of an order is claimed by inserting it under the order's id: a claim that
  is new proves there is nothing to read (ADR 0003), so an order captured once costs one
  insert. Each further capture takes the next free slot of its order
  (`capture:<order>:<slot>`), claimed by insert, so that every instance sees an order's
  captures in one order and judges each the same way; `order_totals`: each order's total,
  from its order.placed, read only for orders captured more than once;
- `customers_seen`: one entry per customer and hour seen, for outages declared as a segment;
- `outages`: one record per outage, with its duration once resolved, and whether its
  customers were told it (`duration_told`);
- `received`: events accepted over HTTP, by source and event id (webhook retries), and the
  claims (`claim:<receipt>`) of the instance processing one;
- `erased`: the customers erased, one document per pseudonym (never the id).

The hot paths only insert (claims under unique ids, ADR 0002) and delete by id: on FerretDB
an update costs milliseconds per document and large bulk updates stall it, and every read
scans the whole collection. Contracts (incidents, customer snapshots) are kept as JSON text:
FerretDB stores a string four times faster than the same body as nested fields, and nothing
queries inside them (the fields queries need sit beside them).
Bulk writes go in chunks of at most `chunk` (<= 1000) documents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from schemas.common import CustomerSnapshot, Money
from schemas.incident import Incident
from services.common.adapters.mongo import (
    DUPLICATE_KEY,
    MAX_CHUNK,
    Doc,
    chunks,
    in_chunks,
    insert_new,
)
from services.common.adapters.outbox import MongoOutbox
from services.intake.domain.aftermath import Fact, FactKind, Followed
from services.intake.domain.detection import (
    Capture,
    Check,
    CheckKind,
    OrderPayments,
    closed_id,
)
from services.intake.domain.outages import Declaration, Outage, Resolution


def _money(value: Money | None) -> Doc | None:
    return value.model_dump(mode="json") if value is not None else None


async def see_in(customers: AsyncCollection[Doc],
                 seen: Sequence[tuple[CustomerSnapshot, str | None, datetime]],
                 encode: Callable[[CustomerSnapshot], Any], chunk: int) -> None:
    """One insert per customer and hour seen (the first snapshot of the hour is kept), the
    snapshot as `encode` keeps it; both adapters' `customers_seen` have this shape."""
    docs = {f"{customer.id}|{hour_of(at).isoformat()}": {
                "customer_id": customer.id, "hour": hour_of(at), "tenant": tenant,
                "customer": encode(customer)}
            for customer, tenant, at in seen}
    await insert_new(customers, [{"_id": key, **doc} for key, doc in docs.items()], chunk)


async def newest_seen(customers: AsyncCollection[Doc], since: datetime, tenant: str | None,
                      chunk: int) -> AsyncIterator[Doc]:
    """The newest `customers_seen` entry of each customer seen since the hour of `since`
    (of `tenant`, when given), newest first."""
    query: Doc = {"hour": {"$gte": hour_of(since)}}
    if tenant is not None:
        query["tenant"] = tenant
    given: set[str] = set()
    async for doc in customers.find(query, {"customer": 1, "customer_id": 1},
                                    batch_size=chunk).sort("hour", DESCENDING):
        if doc["customer_id"] not in given:
            given.add(doc["customer_id"])
            yield doc


def check_doc(check: Check) -> Doc:
    return {"_id": check.check_id, "kind": check.kind.value, "key": check.key,
            "step": check.step, "due_at": check.due_at, "origin": check.origin,
            "customer": check.customer.model_dump(mode="json"), "tenant": check.tenant,
            "source": check.source, "source_event_id": check.source_event_id,
            "order_value": _money(check.order_value)}


def check_of(doc: Doc) -> Check:
    value = doc.get("order_value")
    return Check(kind=CheckKind(doc["kind"]), key=doc["key"], step=doc["step"],
                 due_at=doc["due_at"], origin=doc["origin"],
                 customer=CustomerSnapshot.model_validate(doc["customer"]),
                 tenant=doc.get("tenant"), source=doc["source"],
                 source_event_id=doc["source_event_id"],
                 order_value=Money.model_validate(value) if value else None)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def incident_text(incident_id: str, incident: Incident) -> Doc:
    """An incident in the outbox: its JSON text, as published, and the fields queried."""
    return {"_id": incident_id, "customer_id": incident.customer.id,
            "type": incident.type.value, "detected_at": incident.detected_at,
            "outage_id": incident.outage_id, "incident": incident.model_dump_json()}


def declaration_doc(declaration: Declaration) -> Doc:
    return {"service": declaration.service, "severity": declaration.severity,
            "started_at": declaration.started_at, "tenant": declaration.tenant,
            "declared_event_id": declaration.event_id,
            "declared_at": declaration.declared_at}


def resolution_doc(resolution: Resolution) -> Doc:
    return {"resolved_at": resolution.resolved_at, "resolved_source": resolution.source,
            "resolved_event_id": resolution.event_id,
            "resolved_prevention": resolution.prevention}


def outage_of(doc: Doc) -> Outage:
    """An outage from its flat document (both adapters keep it flat: it is small, and the
    retention sweep reads `declared_at`)."""
    declaration = None
    if doc.get("started_at") is not None:
        declaration = Declaration(
            service=doc["service"], severity=doc["severity"], started_at=doc["started_at"],
            tenant=doc.get("tenant"), event_id=doc["declared_event_id"],
            declared_at=doc["declared_at"])
    resolution = None
    if doc.get("resolved_at") is not None:
        resolution = Resolution(resolved_at=doc["resolved_at"], source=doc["resolved_source"],
                                event_id=doc["resolved_event_id"],
                                prevention=doc.get("resolved_prevention"))
    return Outage(outage_id=doc["_id"], declaration=declaration, resolution=resolution,
                  affected_customers=doc.get("affected_customers"),
                  duration_told=bool(doc.get("duration_told")))


class FerretIntakeStore:
    def __init__(self, db: AsyncDatabase[Doc], chunk: int = MAX_CHUNK) -> None:
        self.db = db
        self.chunk = min(chunk, MAX_CHUNK)
        self.incidents: MongoOutbox[Incident] = MongoOutbox(db["incidents"], incident_text,
                                                            chunk=self.chunk)
        self.checks = db["checks"]
        self.settled = db["settled"]
        self.charges = db["charges"]
        self.totals = db["order_totals"]
        self.customers = db["customers_seen"]
        self.outages = db["outages"]
        self.received = db["received"]
        self.erased_customers = db["erased"]
        self.aftermaths = FerretAftermaths(db, self.chunk)

    async def create_indexes(self) -> None:
        await self.db["incidents"].create_index([("customer_id", ASCENDING)])
        await self.db["incidents"].create_index([("outage_id", ASCENDING)])
        await self.checks.create_index([("due_at", ASCENDING)])
        await self.customers.create_index([("hour", DESCENDING)])
        await self.charges.create_index([("order_id", ASCENDING)])
        await self.incidents.create_indexes()
        await self.aftermaths.create_indexes()

    # --- scheduled checks ----------------------------------------------------------------

    async def schedule(self, checks: Sequence[Check]) -> set[str]:
        """Insert the checks that are new (a replayed order keeps its first check)."""
        return await insert_new(self.checks, [check_doc(c) for c in checks], self.chunk)

    async def close(self, kind: CheckKind, keys: Sequence[str], at: datetime,
                    steps: int = 1) -> None:
        """Settle every check of these subjects: a marker (so that a check scheduled again
        by a replay is dropped when it comes due) and no pending check left."""
        for part in chunks(list(dict.fromkeys(keys)), self.chunk):
            await insert_new(self.settled, [{"_id": closed_id(kind, key), "at": at}
                                            for key in part])
            ids = [f"{kind.value}:{key}:{step}" for key in part for step in range(steps)]
            for ids_part in chunks(ids, self.chunk):
                await self.checks.delete_many({"_id": {"$in": list(ids_part)}})

    async def due(self, now: datetime, limit: int) -> list[Check]:
        cursor = self.checks.find({"due_at": {"$lte": now}}).sort("due_at", ASCENDING)
        return [check_of(doc) for doc in await cursor.limit(limit).to_list()]

    async def closed(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        return {doc["_id"] async for doc in self.settled.find({"_id": {"$in": list(ids)}})}

    async def ran(self, ids: Sequence[str]) -> None:
        for part in chunks(ids, self.chunk):
            await self.checks.delete_many({"_id": {"$in": list(part)}})

    async def promises(self, orders: Sequence[str], steps: int
                       ) -> dict[str, tuple[datetime, Money | None]]:
        """The promised delivery time (and order value) of orders with a pending check."""
        found: dict[str, tuple[datetime, Money | None]] = {}
        ids = [f"{CheckKind.delivery.value}:{order}:{step}"
               for order in dict.fromkeys(orders) for step in range(steps)]
        for part in chunks(ids, self.chunk):
            async for doc in self.checks.find({"_id": {"$in": list(part)}},
                                              {"key": 1, "origin": 1, "order_value": 1}):
                value = doc.get("order_value")
                found[doc["key"]] = (doc["origin"],
                                     Money.model_validate(value) if value else None)
        return found

    # --- charges -------------------------------------------------------------------------

    async def record_totals(self, totals: Sequence[tuple[str, Money]]) -> None:
        """The total of each order placed (the first one seen is kept)."""
        docs = {order: {"_id": order, "total": _money(total)} for order, total in totals}
        await insert_new(self.totals, list(docs.values()), self.chunk)

    async def order_totals(self, orders: Sequence[str]) -> dict[str, Money]:
        found: dict[str, Money] = {}
        for part in chunks(list(dict.fromkeys(orders)), self.chunk):
            async for doc in self.totals.find({"_id": {"$in": list(part)}}):
                found[doc["_id"]] = Money.model_validate(doc["total"])
        return found

    async def claim_first_captures(self, firsts: Sequence[tuple[str, Capture, datetime]]
                                   ) -> set[str]:
        """Claim each order for its first capture; returns the orders claimed now (for the
        others a capture was recorded before: read them with `order_payments`)."""
        docs = [{"_id": order, "payment_id": capture.payment_id,
                 "amount": _money(capture.amount), "replaces": capture.replaces,
                 "order_total": _money(capture.order_total), "captured_at": at}
                for order, capture, at in firsts]
        return await insert_new(self.charges, docs, self.chunk)

    async def order_payments(self, orders: Sequence[str]) -> dict[str, OrderPayments]:
        """The total and the captures (the first, then slot by slot) of these orders."""
        found = {order: OrderPayments() for order in orders}
        slots: dict[str, list[tuple[int, Capture]]] = {order: [] for order in found}
        for part in chunks(list(found), self.chunk):
            wanted = list(part)
            async for doc in self.charges.find(
                    {"$or": [{"_id": {"$in": wanted}}, {"order_id": {"$in": wanted}}]}):
                first = doc.get("kind") is None
                order = doc["_id"] if first else doc["order_id"]
                if order not in found:
                    continue
                value = doc.get("order_total")
                slots[order].append((-1 if first else doc["slot"], Capture(
                    doc["payment_id"], Money.model_validate(doc["amount"]),
                    doc.get("replaces"), Money.model_validate(value) if value else None)))
        for order, total in (await self.order_totals(list(found))).items():
            found[order].total = total
        for order, taken in slots.items():
            taken.sort(key=lambda item: item[0])
            found[order].captures = [capture for _, capture in taken]
            found[order].next_slot = max((slot for slot, _ in taken), default=-1) + 1
        return found

    async def record_captures(self, captures: Sequence[tuple[str, int, Capture, datetime]]
                              ) -> int:
        """Claim slots (order, slot, capture, captured at) after the first capture, in this
        order; stops at the first slot another instance took first. Returns how many of
        them were claimed."""
        docs = [{"_id": f"capture:{order}:{slot:06d}", "kind": "capture", "order_id": order,
                 "slot": slot, "payment_id": capture.payment_id,
                 "amount": _money(capture.amount), "replaces": capture.replaces,
                 "order_total": _money(capture.order_total), "captured_at": at}
                for order, slot, capture, at in captures]
        claimed = 0
        for part in chunks(docs, self.chunk):
            try:
                await self.charges.insert_many(list(part), ordered=True)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if not errors or errors[0].get("code") != DUPLICATE_KEY:
                    raise
                return claimed + int(errors[0]["index"])
            claimed += len(part)
        return claimed

    # --- customers seen ------------------------------------------------------------------

    async def see(self, seen: Sequence[tuple[CustomerSnapshot, str | None, datetime]]) -> None:
        await see_in(self.customers, seen, CustomerSnapshot.model_dump_json, self.chunk)

    def seen_since(self, since: datetime, tenant: str | None
                   ) -> AsyncIterator[list[CustomerSnapshot]]:
        """The customers seen since the hour of `since` (of `tenant`, when given), newest
        snapshot first, a chunk at a time; a customer seen in several hours comes once."""
        return in_chunks(newest_seen(self.customers, since, tenant, self.chunk),
                         lambda doc: CustomerSnapshot.model_validate_json(doc["customer"]),
                         self.chunk)

    # --- outages -------------------------------------------------------------------------

    async def outage_declared(self, outage_id: str, declaration: Declaration) -> Outage:
        return await self._outage_set(outage_id, declaration_doc(declaration))

    async def outage_resolved(self, outage_id: str, resolution: Resolution) -> Outage:
        return await self._outage_set(outage_id, resolution_doc(resolution))

    async def _outage_set(self, outage_id: str, fields: Doc) -> Outage:
        await self.outages.update_one({"_id": outage_id}, {"$set": fields}, upsert=True)
        doc = await self.outages.find_one({"_id": outage_id})
        outage = outage_of(doc or {"_id": outage_id, **fields})
        if outage.minutes is not None:  # for the operators reading the collection
            await self.outages.update_one({"_id": outage_id},
                                          {"$set": {"outage_minutes": outage.minutes}})
        return outage

    async def outage_fanned_out(self, outage_id: str, affected: int, told: bool) -> None:
        fields: Doc = {"affected_customers": affected}
        if told:
            fields["duration_told"] = True
        await self.outages.update_one({"_id": outage_id}, {"$set": fields})

    async def duration_told(self, outage_id: str) -> None:
        await self.outages.update_one({"_id": outage_id}, {"$set": {"duration_told": True}})

    async def outage(self, outage_id: str) -> Outage | None:
        doc = await self.outages.find_one({"_id": outage_id})
        return outage_of(doc) if doc is not None else None

    def outage_incidents(self, outage_id: str) -> AsyncIterator[list[Incident]]:
        """The incidents raised for an outage, a chunk at a time. One read of what grows,
        for a rare event: an outage resolved after its customers were told of it."""
        return in_chunks(self.db["incidents"].find({"outage_id": outage_id}, {"incident": 1},
                                                   batch_size=self.chunk),
                         lambda doc: Incident.model_validate_json(doc["incident"]), self.chunk)

    # --- events received over HTTP -------------------------------------------------------

    async def received_before(self, receipts: Sequence[str]) -> dict[str, list[str]]:
        """Of these receipts, those completed before, with the incident ids they produced."""
        ids = receipts
        if not ids:
            return {}
        cursor = self.received.find({"_id": {"$in": list(ids)}, "done": True})
        return {doc["_id"]: list(doc["incident_ids"]) async for doc in cursor}

    async def claim_receipts(self, receipts: Sequence[str], at: datetime) -> set[str]:
        """Claim these receipts for processing; returns those claimed now (the others are
        being processed, or were, by another request)."""
        claimed: set[str] = set()
        for part in chunks(list(dict.fromkeys(receipts)), self.chunk):
            new = await insert_new(self.received, [{"_id": f"claim:{receipt}", "at": at}
                                                   for receipt in part])
            claimed |= {str(i).removeprefix("claim:") for i in new}
        return claimed

    async def release_receipts(self, receipts: Sequence[str]) -> None:
        for part in chunks(list(receipts), self.chunk):
            await self.received.delete_many({"_id": {"$in": [f"claim:{r}" for r in part]}})

    async def mark_received(self, receipts: Sequence[tuple[str, list[str]]],
                            at: datetime) -> None:
        """Record each receipt once (a racing retry recorded the same incident ids)."""
        docs = [{"_id": receipt, "done": True, "incident_ids": incident_ids, "received_at": at}
                for receipt, incident_ids in dict(receipts).items()]
        await insert_new(self.received, docs, self.chunk)

    # --- customers erased ----------------------------------------------------------------

    async def erased(self) -> dict[str, datetime]:
        # Read whole, and only by the refresh sweep: it grows by one document per erasure.
        return {doc["_id"]: doc["at"] async for doc in self.erased_customers.find({})}

    async def add_erased(self, pseudonym: str, at: datetime) -> None:
        await insert_new(self.erased_customers, [{"_id": pseudonym, "at": at}])


# --- the aftermath of incidents (ADR 0013) ---------------------------------------------


def followed_doc(followed: Followed) -> Doc:
    """A followed incident as flat fields (both adapters): a few hundred bytes, no body."""
    return {"_id": followed.incident_id, "customer_id": followed.customer_id,
            "type": followed.type, "detection": followed.detection, "tier": followed.tier,
            "locale": followed.locale, "tenant": followed.tenant,
            "occurred_at": followed.occurred_at, "detected_at": followed.detected_at,
            "order_id": followed.order_id, "ticket_id": followed.ticket_id}


def followed_of(doc: Doc) -> Followed:
    return Followed(incident_id=doc["_id"], customer_id=doc["customer_id"], type=doc["type"],
                    detection=doc["detection"], tier=doc["tier"], locale=doc["locale"],
                    tenant=doc.get("tenant"), occurred_at=_utc(doc["occurred_at"]),
                    detected_at=_utc(doc["detected_at"]), order_id=doc.get("order_id"),
                    ticket_id=doc.get("ticket_id"))


def fact_doc(fact: Fact) -> Doc:
    return {"id": fact.fact_id, "incident_id": fact.incident_id,
            "followed_at": fact.followed_at, "kind": fact.kind.value,
            "key": fact.key, "at": fact.at,
            "amount": str(fact.amount.amount) if fact.amount else None,
            "currency": fact.amount.currency if fact.amount else None, "rating": fact.rating}


def fact_of(doc: Doc) -> Fact:
    amount = (Money(amount=Decimal(doc["amount"]), currency=doc["currency"])
              if doc.get("amount") is not None else None)
    return Fact(incident_id=doc["incident_id"], followed_at=_utc(doc["followed_at"]),
                kind=FactKind(doc["kind"]), key=doc["key"], at=_utc(doc["at"]), amount=amount,
                rating=doc.get("rating"))


def _utc(at: datetime) -> datetime:
    # The driver gives times back in UTC; a fake or an older client may give them naive.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def range_of(start: datetime, stop: datetime | None) -> Doc:
    return {"$gte": start, **({"$lt": stop} if stop is not None else {})}


class FerretAftermaths:
    """On FerretDB (ADR 0003): `followed`, one document per incident, and `aftermath_facts`,
    one per fact under its id, both insert-only; a fact carries its incident's `occurred_at`
    so that a range of incidents is read with its facts in two scans, at start and for
    reports only."""

    def __init__(self, db: AsyncDatabase[Doc], chunk: int = MAX_CHUNK) -> None:
        self.followed = db["followed"]
        self.facts = db["aftermath_facts"]
        self.chunk = chunk

    async def create_indexes(self) -> None:
        await self.followed.create_index([("occurred_at", ASCENDING)])
        await self.facts.create_index([("occurred_at", ASCENDING)])

    async def follow(self, followed: Sequence[Followed]) -> set[str]:
        return await insert_new(self.followed, [followed_doc(f) for f in followed], self.chunk)

    async def add(self, facts: Sequence[Fact]) -> None:
        await insert_new(self.facts, [{"_id": f.fact_id, **fact_doc(f),
                                       "occurred_at": f.followed_at} for f in facts],
                         self.chunk)

    async def since(self, start: datetime, stop: datetime | None = None
                    ) -> list[tuple[Followed, list[Fact]]]:
        found: dict[str, tuple[Followed, list[Fact]]] = {}
        async for doc in self.followed.find({"occurred_at": range_of(start, stop)}):
            followed = followed_of(doc)
            found[followed.incident_id] = (followed, [])
        async for doc in self.facts.find({"occurred_at": range_of(start, stop)}):
            if doc["incident_id"] in found:
                found[doc["incident_id"]][1].append(fact_of(doc))
        return list(found.values())
