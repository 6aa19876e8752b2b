"""Fulfilment's stores on a MongoDB-wire server: one document per effect, keyed by the
action's idempotency key, so an effect is applied at most once whatever is redelivered.

The pieces both servers share live here; `ferretdb.py` and `mongodb.py` put them together
with their own strategy for bodies (JSON text or nested documents) and for the outboxes'
"published" (marks or a flag). Every class takes and returns contracts or domain objects:
the documents stay in this package.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from schemas.decision import Decision, RemedyKind
from schemas.outcome import Outcome
from services.common.adapters.mongo import (
    BULK_STATEMENTS,
    Doc,
    chunks,
    insert_new,
    write_failure,
)
from services.common.outbox import Outbox
from services.fulfilment.adapters.vouchers import VoucherStore
from services.fulfilment.domain.effects import (
    EFFECT_FIELDS,
    UNFINISHED,
    Change,
    Effect,
    EffectState,
)
from services.fulfilment.domain.plan import POINTS, LedgerEntry, Perk
from services.fulfilment.ports import KeptOutcome, KeptTask, Received, Stores

Bodies = Literal["text", "nested"]

# FerretDB v1 stores a string four times faster than the same 5 kB as nested fields, and
# nothing queries inside a body (the fields queries need sit beside it): text there; on
# MongoDB the body is a nested document, readable in the shell and by aggregations.


def encode_body(body: str, bodies: Bodies) -> str | Doc:
    return body if bodies == "text" else dict(json.loads(body))


def as_decision(value: str | Doc) -> Decision:
    return (Decision.model_validate_json(value) if isinstance(value, str)
            else Decision.model_validate(value))


def as_outcome(value: str | Doc) -> Outcome:
    return (Outcome.model_validate_json(value) if isinstance(value, str)
            else Outcome.model_validate(value))


@dataclass
class MongoDecisionLog:
    collection: AsyncCollection[Doc]
    bodies: Bodies

    async def add_new(self, received: Sequence[Received]) -> set[str]:
        return await insert_new(self.collection, [{
            "_id": r.ref, "decision_id": r.decision.decision_id,
            "revision": r.decision.revision, "customer_id": r.decision.incident.customer.id,
            "tenant": r.decision.incident.tenant, "created_at": r.at, "origin": list(r.origin),
            "decision": encode_body(r.decision.model_dump_json(), self.bodies),
            **({"held_until": r.decision.hold.until} if r.decision.hold is not None else {})}
            for r in received])

    async def holding(self, since: datetime) -> dict[str, Received]:
        newest: dict[str, Doc] = {}
        async for doc in self.collection.find({"held_until": {"$gte": since}}):
            have = newest.get(doc["decision_id"])
            if have is None or doc["revision"] > have["revision"]:
                newest[doc["decision_id"]] = doc
        found: dict[str, Received] = {}
        for doc in newest.values():
            topic, partition, offset = doc["origin"]
            found[doc["_id"]] = Received(as_decision(doc["decision"]),
                                         (topic, partition, offset), doc["created_at"])
        return found

    async def revisions(self, refs: Sequence[str]) -> dict[str, Received]:
        found: dict[str, Received] = {}
        for part in chunks(sorted(set(refs))):
            async for doc in self.collection.find({"_id": {"$in": list(part)}}):
                topic, partition, offset = doc["origin"]
                found[doc["_id"]] = Received(as_decision(doc["decision"]),
                                             (topic, partition, offset), doc["created_at"])
        return found

    async def newest(self, decision_id: str) -> Decision | None:
        newest: Doc | None = None
        async for doc in self.collection.find({"decision_id": decision_id},
                                              {"revision": 1, "decision": 1}):
            if newest is None or doc["revision"] > newest["revision"]:
                newest = doc
        return None if newest is None else as_decision(newest["decision"])

    async def of_customer(self, customer_id: str) -> list[Decision]:
        newest: dict[str, Doc] = {}
        async for doc in self.collection.find({"customer_id": customer_id}):
            have = newest.get(doc["decision_id"])
            if have is None or doc["revision"] > have["revision"]:
                newest[doc["decision_id"]] = doc
        return [as_decision(doc["decision"]) for doc in newest.values()]

    async def create_indexes(self) -> None:
        await self.collection.create_index([("customer_id", ASCENDING),
                                            ("created_at", DESCENDING)])
        await self.collection.create_index([("decision_id", ASCENDING),
                                            ("revision", DESCENDING)])
        await self.collection.create_index([("held_until", ASCENDING)])


def outcome_encoder(bodies: Bodies) -> Callable[[str, KeptOutcome], Doc]:
    def encode(key: str, kept: KeptOutcome) -> Doc:
        return {"_id": key, "customer_id": kept.outcome.customer_id, "tenant": kept.tenant,
                "created_at": kept.at,
                "outcome": encode_body(kept.outcome.model_dump_json(), bodies)}
    return encode


def task_document(key: str, kept: KeptTask) -> Doc:
    task = kept.task
    return {"_id": key, "customer_id": task.customer_id, "tenant": kept.tenant,
            "decision_id": task.decision_id, "position": kept.position,
            "kind": task.kind.value, "due_by": task.due_by, "created_at": kept.at}


class Outcomes:
    """The outcome outbox (`outbox`, whichever strategy marks "published") and its reads."""

    def __init__(self, outbox: Outbox[KeptOutcome], collection: AsyncCollection[Doc]) -> None:
        self.outbox = outbox
        self.collection = collection

    async def add_new(self, records: Sequence[tuple[str, KeptOutcome]]) -> set[str]:
        new: set[str] = await self.outbox.add_new(records)
        return new

    async def published(self, ids: Sequence[str]) -> set[str]:
        done: set[str] = await self.outbox.published(ids)
        return done

    async def mark_published(self, ids: Sequence[str]) -> None:
        await self.outbox.mark_published(ids)

    async def outcomes_of(self, keys: Sequence[str]) -> dict[str, Outcome]:
        found: dict[str, Outcome] = {}
        for part in chunks(sorted(set(keys))):
            async for doc in self.collection.find({"_id": {"$in": list(part)}},
                                                  {"outcome": 1}):
                found[doc["_id"]] = as_outcome(doc["outcome"])
        return found

    async def of_customer(self, customer_id: str) -> list[KeptOutcome]:
        return [KeptOutcome(as_outcome(doc["outcome"]), doc["tenant"], doc["created_at"])
                async for doc in self.collection.find({"customer_id": customer_id})]


@dataclass
class MongoLedger:
    """One document per entry. Points keep the shape they always had (`points`, an integer);
    other units are `amount` (a decimal string, never a float) and `unit`."""

    collection: AsyncCollection[Doc]

    async def credit(self, entries: Sequence[LedgerEntry]) -> set[str]:
        return await insert_new(self.collection, [{
            "_id": e.key, "customer_id": e.customer_id, "tenant": e.tenant,
            "decision_id": e.decision_id, "position": e.position, **_quantity(e),
            "reason": e.reason, "expires_at": e.expires_at, "created_at": e.at}
            for e in entries])

    async def of_customer(self, customer_id: str, now: datetime) -> list[LedgerEntry]:
        return [LedgerEntry(d["_id"], d["customer_id"], d["tenant"], d["decision_id"],
                            d["position"],
                            Decimal(d["points"]) if "points" in d else Decimal(d["amount"]),
                            d.get("unit", POINTS), d["reason"], d["expires_at"],
                            d["created_at"])
                async for d in self.collection.find({"customer_id": customer_id,
                                                     "expires_at": {"$gt": now}})]


def _quantity(entry: LedgerEntry) -> Doc:
    if entry.unit == POINTS:
        return {"points": int(entry.quantity)}
    return {"amount": str(entry.quantity), "unit": entry.unit}


@dataclass
class MongoPerks:
    collection: AsyncCollection[Doc]

    async def grant(self, perks: Sequence[Perk]) -> set[str]:
        return await insert_new(self.collection, [{
            "_id": p.key, "customer_id": p.customer_id, "tenant": p.tenant,
            "decision_id": p.decision_id, "position": p.position, "kind": p.kind.value,
            "orders": p.orders, "expires_at": p.expires_at, "created_at": p.at}
            for p in perks])

    async def of_customer(self, customer_id: str) -> list[Perk]:
        return [Perk(d["_id"], d["customer_id"], d["tenant"], d["decision_id"], d["position"],
                     RemedyKind(d["kind"]), d["orders"], d["expires_at"], d["created_at"])
                async for d in self.collection.find({"customer_id": customer_id})]


def effect_document(effect: Effect) -> Doc:
    doc: Doc = {"_id": effect.key}
    for name in EFFECT_FIELDS[1:]:
        value = getattr(effect, name)
        if value is not None or name == "tenant":
            doc[name] = list(value) if name == "origin" else value
    return doc


def as_effect(doc: Doc) -> Effect:
    fields = {name: doc[name] for name in EFFECT_FIELDS[1:] if name in doc}
    if fields.get("origin") is not None:
        topic, partition, offset = fields["origin"]
        fields["origin"] = (topic, partition, offset)
    return Effect(key=doc["_id"], **fields)


@dataclass
class MongoEffectLog:
    """Refunds or messages with their delivery state (see `remote`). The same on both
    servers: claims are inserts under the idempotency key, every later write is a
    conditional update guarded by the claim (or by status and attempts), which FerretDB
    applies one document at a time."""

    collection: AsyncCollection[Doc]

    async def add_new(self, effects: Sequence[Effect]) -> set[str]:
        return await insert_new(self.collection, [effect_document(e) for e in effects])

    async def get(self, keys: Sequence[str]) -> list[Effect]:
        found: list[Effect] = []
        for part in chunks(sorted(set(keys))):
            found.extend([as_effect(doc) async for doc in self.collection.find(
                {"_id": {"$in": list(part)}})])
        return found

    async def settle(self, results: Sequence[tuple[Effect, Change]]) -> int:
        ops = [UpdateOne({"_id": effect.key, "claim": effect.claim},
                         {"$set": dict(change), "$inc": {"attempts": 1}})
               for effect, change in results]
        matched = 0
        for start in range(0, len(ops), BULK_STATEMENTS):
            try:
                result = await self.collection.bulk_write(
                    list(ops[start:start + BULK_STATEMENTS]), ordered=False)
            except BulkWriteError as exc:  # its text quotes the updates: codes only
                raise write_failure(exc) from None
            matched += result.matched_count
        return matched

    async def renew(self, keys: Sequence[str], claim: str | None, now: datetime) -> None:
        await self.collection.update_many(
            {"_id": {"$in": list(keys)}, "claim": claim, "status": EffectState.claimed.value},
            {"$set": {"claimed_at": now}})

    async def wake_paused(self, remote: str, now: datetime) -> None:
        await self.collection.update_many(
            {"status": EffectState.paused.value, "remote": remote},
            {"$set": {"next_attempt_at": now}})

    async def unfinished(self, limit: int,
                         ready: Callable[[Effect], bool] | None = None) -> list[Effect]:
        # By the `status` index on MongoDB.
        found = [as_effect(doc) async for doc in self.collection.find(
            {"status": {"$in": list(UNFINISHED)}}).limit(limit)]
        return [e for e in found if ready is None or ready(e)]

    async def recall(self) -> None:
        """Nothing to learn: `unfinished` asks the store each time."""

    async def take_over(self, effect: Effect, change: Change) -> bool:
        guard: Doc = {"_id": effect.key, "status": effect.status,
                      "attempts": effect.attempts}
        update: Doc = {"$set": dict(change)}
        if "redriven_by" in change:  # once per dead letter; the failed refund's id goes
            guard["redriven_by"] = {"$ne": change["redriven_by"]}
            update["$unset"] = {"gateway_id": ""}
        result = await self.collection.update_one(guard, update)
        return result.modified_count == 1

    async def failed(self, keys: Sequence[str]) -> list[Effect]:
        return [as_effect(doc) async for doc in self.collection.find(
            {"_id": {"$in": list(keys)}, "status": EffectState.failed.value})]

    async def of_customer(self, customer_id: str) -> list[Effect]:
        return [as_effect(doc) async for doc in self.collection.find(
            {"customer_id": customer_id})]

    async def create_indexes(self) -> None:
        await self.collection.create_index([("customer_id", ASCENDING),
                                            ("created_at", DESCENDING)])
        await self.collection.create_index([("status", ASCENDING)])  # the sweep's query



def assemble(db: AsyncDatabase[Doc], bodies: Bodies, outcomes: Outbox[KeptOutcome],
             tasks: Outbox[KeptTask],
             outbox_indexes: Sequence[Callable[[], Awaitable[None]]] = (),
             ) -> tuple[Stores, Callable[[], Awaitable[None]]]:
    """Fulfilment's stores in `db` around the outboxes a server's adapter chose, and what
    creates their indexes (`outbox_indexes`: those the outboxes need of their own)."""
    decisions = MongoDecisionLog(db["decisions"], bodies)
    refunds, messages = MongoEffectLog(db["refunds"]), MongoEffectLog(db["messages"])
    vouchers = VoucherStore(db)

    async def create_indexes() -> None:
        await decisions.create_indexes()
        for log in (refunds, messages):
            await log.create_indexes()
        for create in outbox_indexes:
            await create()
        for name in ("outcomes", "tasks", "points_ledger", "perks"):
            await db[name].create_index([("customer_id", ASCENDING),
                                         ("created_at", DESCENDING)])
        await vouchers.create_indexes()

    return Stores(decisions=decisions, outcomes=Outcomes(outcomes, db["outcomes"]),
                  tasks=tasks, ledger=MongoLedger(db["points_ledger"]),
                  perks=MongoPerks(db["perks"]), refunds=refunds, messages=messages,
                  vouchers=vouchers), create_indexes
