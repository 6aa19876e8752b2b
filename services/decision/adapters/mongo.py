"""Decision's MongoDB collections and their indexes.

- `decisions`: one per incident under the deterministic decision id (the outbox of revision
  0), with the customer's history fields (type, detection, value, refunded, and the order
  or outage a later stage tops up), the current status, and what it books against the
  budget (`goodwill` on `budget_day`, under `reservation`): recorded before it is booked,
  so a redelivery books what was recorded;
- `revisions`: later revisions (a review, a customer's choice), the outbox of their events;
- `approvals`: one per decision and reviewer (four-eyes: the insert makes a second approval
  by the same person a duplicate);
- `reviews`, `choices`: one per decision, inserted once — the insert is what makes a
  verdict or a choice final when two people (or a person and the deadline) race;
- `outcomes`: the failed actions fulfilment reported (their budget is given back), once per
  action key;
- `incidents_seen` (by decision id) and `customers_decided` (by customer id): marks inserted
  before a batch is decided, so that only incidents and customers seen before are looked up.
  On FerretDB v1 a lookup by anything but one `_id` reads the whole collection, while an
  insert costs a few microseconds; a mark always precedes the decision it stands for, so a
  new mark proves there is nothing to look up.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from schemas.decision import Decision, RemedyKind
from schemas.incident import Detection, IncidentType
from services.common.adapters.mongo import Doc, insert_new, mark_all, stored
from services.common.adapters.outbox import MongoOutbox, as_document
from services.common.errors import describe
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.topup import given_by


class StoreWriteError(Exception):
    """A write the database refused, told by error codes and document ids only: PyMongo's
    own text of a bulk write error carries the failing documents, and with them customers'
    names and contact details, which must never reach a log or a dead letter."""


def _failed_id(error: Doc) -> object:
    op = error.get("op")
    if not isinstance(op, dict):
        return None
    query = op.get("q")
    return (query if isinstance(query, dict) else op).get("_id")


def reduced(exc: BulkWriteError) -> StoreWriteError:
    details = exc.details or {}
    errors = [f"code {e.get('code')} at {_failed_id(e)!r}"
              for e in details.get("writeErrors", [])[:20]]
    concern = [f"write concern {e.get('code')}"
               for e in details.get("writeConcernErrors", [])[:5]]
    return StoreWriteError("bulk write failed: " + ("; ".join(errors + concern) or
                                                    f"code {exc.code}"))


def without_documents(exc: Exception) -> Exception:
    """`exc` told without the documents or values its own text may carry: a bulk write
    error by codes and ids, another refusal of the database by its code (PyMongo appends
    the server's whole answer), a validation error by fields and problems (pydantic quotes
    the input)."""
    if isinstance(exc, BulkWriteError):
        return reduced(exc)
    if isinstance(exc, OperationFailure):
        name = (exc.details or {}).get("codeName", "")
        return StoreWriteError(f"the database refused: code {exc.code} {name}".rstrip())
    if isinstance(exc, ValidationError):
        return ValueError(f"{exc.title} is invalid: {describe(exc)}")
    return exc


@contextlib.contextmanager
def quiet_write_errors() -> Iterator[None]:
    """Re-raise a database refusal or a validation error without the documents or values
    its text carries (the original is not chained, so a traceback cannot print them
    either; an outage is left as it is, to be retried)."""
    try:
        yield
    except (OperationFailure, ValidationError) as exc:
        raise without_documents(exc) from None


def given_doc(decision: Decision) -> Doc:
    """What a decision grants, by measure (`topup.py`): a later stage of the same failure of
    the same order gives only the difference."""
    return {key: format(value, "f") for key, value in given_by(decision).items()}


def given_of(doc: Doc | None) -> tuple[tuple[str, Decimal], ...]:
    return tuple((key, Decimal(value)) for key, value in (doc or {}).items())


def goodwill(decision: Decision) -> Decimal:
    """What the decision books against the budget (all of it, for decisions that predate
    the split of goodwill from restitution)."""
    kept = decision.goodwill_value
    return (kept or decision.total_value).amount


def refunded(decision: Decision) -> Decimal:
    """The refunds a decision grants, or may still grant: its refund actions (a held one's
    too) and, until the customer chooses, the offer's option that refunds the most."""
    def refunds(actions: Sequence[Any]) -> Decimal:
        return sum((a.amount.amount for a in actions
                    if a.kind is RemedyKind.refund and a.amount is not None), Decimal(0))

    pending = (decision.offer.options
               if decision.offer is not None and decision.choice is None else [])
    return refunds(decision.actions) + max((refunds(o.actions) for o in pending),
                                           default=Decimal(0))


def decision_doc(decision: Decision, *, reservation: str | None) -> Doc:
    """The stored form of a decision: the contract plus the fields history and queues use.
    `reservation` is the key its goodwill is booked under (None: nothing to book)."""
    incident = decision.incident
    doc: Doc = {
        "_id": decision.decision_id, "incident_id": incident.incident_id,
        "customer_id": incident.customer.id, "order_id": incident.order_id,
        "outage_id": incident.outage_id, "tenant": incident.tenant,
        "type": incident.type.value,
        "detection": incident.detection.value, "status": decision.status.value,
        "revision": decision.revision, "decided_at": decision.decided_at,
        "value": format(decision.total_value.amount, "f"),
        "goodwill": format(goodwill(decision), "f"),
        "refunded": format(refunded(decision), "f"),
        "budget_day": decision.decided_at.date().isoformat(),
        "currency": decision.total_value.currency, "reservation": reservation,
        "given": given_doc(decision),
        "decision": decision.model_dump_json(),
    }
    if decision.offer is not None:
        doc["deadline"] = decision.offer.deadline
    return doc


def _outage_unknown(doc: Doc) -> bool:
    """Whether a history document predates the outage's id beside it (an outage's stage)."""
    return (doc["type"] == _OUTAGE and "outage_id" not in doc
            and doc.get("order_id") is None)


_OUTAGE = IncidentType.service_outage.value


class DecisionStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.decisions = MongoOutbox(db["decisions"], as_document)
        self.revisions = MongoOutbox(db["revisions"], as_document)
        self.reviews = db["reviews"]
        self.choices = db["choices"]
        self.approvals = db["approvals"]
        self.outcomes = db["outcomes"]
        self.incidents_seen = db["incidents_seen"]
        self.customers_decided = db["customers_decided"]

    async def create_indexes(self) -> None:
        decisions = self.db["decisions"]
        await decisions.create_index([("customer_id", ASCENDING), ("decided_at", DESCENDING)])
        await decisions.create_index([("status", ASCENDING), ("deadline", ASCENDING)])
        await self.outcomes.create_index([("decision_id", ASCENDING)])
        await self.approvals.create_index([("decision_id", ASCENDING)])
        for outbox in (self.decisions, self.revisions):
            await outbox.create_indexes()
        if await self.incidents_seen.find_one({}) is None:  # decisions of an older version
            await mark_all(self.incidents_seen, decisions.find({}, {"_id": 1}))
        if await self.customers_decided.find_one({}) is None:
            await mark_all(self.customers_decided, await decisions.aggregate(
                [{"$group": {"_id": "$customer_id"}}]))

    async def known(self, ids: Sequence[str]) -> dict[str, Doc]:
        """The decisions made before under these ids; marks each id seen."""
        new = await insert_new(self.incidents_seen, [{"_id": i} for i in ids])
        return await self.find([i for i in ids if i not in new])

    async def find(self, ids: Sequence[str]) -> dict[str, Doc]:
        if not ids:
            return {}
        return {doc["_id"]: doc async for doc in self.db["decisions"].find(
            {"_id": {"$in": list(ids)}})}

    async def get(self, decision_id: str) -> Doc | None:
        return await self.db["decisions"].find_one({"_id": decision_id})

    async def histories(self, customers: Sequence[str], since: datetime,
                        orders: Sequence[str] = (), outages: Sequence[str] = ()
                        ) -> dict[str, CustomerHistory]:
        """Each customer's decided incidents since `since`, and those of `orders` and
        `outages` however old (refunds for an order are bounded for good; a later stage of a
        failure is topped up whenever it comes), in one query for the customers seen before
        (marking each customer seen). `value` is the goodwill granted."""
        new = await insert_new(self.customers_decided, [{"_id": c} for c in customers])
        found: dict[str, list[PastIncident]] = {c: [] for c in customers if c not in new}
        if not found:
            return {c: CustomerHistory() for c in customers}
        either: list[Doc] = [{"decided_at": {"$gt": since}}]
        if orders:
            either.append({"order_id": {"$in": list(orders)}})
        if outages:
            either.append({"outage_id": {"$in": list(outages)}})
        when: Doc = either[0] if len(either) == 1 else {"$or": either}
        cursor = self.db["decisions"].find(
            {"customer_id": {"$in": list(found)}, **when},
            {"customer_id": 1, "incident_id": 1, "type": 1, "detection": 1, "decided_at": 1,
             "value": 1, "goodwill": 1, "order_id": 1, "outage_id": 1, "refunded": 1,
             "given": 1})
        docs = [doc async for doc in cursor]
        older = await self._outages_of([doc["_id"] for doc in docs if _outage_unknown(doc)])
        for doc in docs:
            found[doc["customer_id"]].append(PastIncident(
                incident_id=doc["incident_id"], type=IncidentType(doc["type"]),
                detection=Detection(doc["detection"]), decided_at=doc["decided_at"],
                value=Decimal(str(doc.get("goodwill", doc["value"]))),
                order_id=doc.get("order_id"), given=given_of(doc.get("given")),
                refunded=Decimal(doc.get("refunded", "0")),
                outage_id=doc.get("outage_id", older.get(doc["_id"]))))
        return {c: CustomerHistory(tuple(sorted(found.get(c, ()), key=lambda i: i.decided_at)))
                for c in customers}

    async def _outages_of(self, ids: Sequence[str]) -> dict[str, str | None]:
        """The outage of each of these decisions, from the decisions themselves: those
        recorded before decisions kept their outage's id beside them."""
        if not ids:
            return {}
        return {doc["_id"]: json.loads(doc["decision"])["incident"].get("outage_id")
                async for doc in self.db["decisions"].find({"_id": {"$in": list(ids)}},
                                                           {"decision": 1})}

    async def held(self, limit: int, tenants: Sequence[str | None] | None = None
                   ) -> list[Doc]:
        """The held decisions, oldest first; of `tenants` only when given (None in it: those
        without a tenant). Decisions recorded before the tenant was kept beside them are
        matched by the tenant in their body."""
        query: Doc = {"status": "held"}
        if tenants is not None:
            query["$or"] = [{"tenant": {"$in": list(tenants)}},
                            {"tenant": {"$exists": False}}]
        cursor = self.db["decisions"].find(query).sort("decided_at", ASCENDING).limit(limit)
        docs = [doc async for doc in cursor]
        if tenants is None:
            return docs
        return [doc for doc in docs
                if stored(doc["decision"])["incident"].get("tenant") in tenants]

    async def approve(self, decision_id: str, reviewer: str, reason: str,
                      at: datetime) -> tuple[bool, list[Doc]]:
        """Record `reviewer`'s approval of a decision (once per reviewer); returns whether it
        is new and every approval of the decision, oldest first."""
        new = await insert_new(self.approvals, [{
            "_id": f"{decision_id}|{reviewer}", "decision_id": decision_id,
            "reviewer": reviewer, "reason": reason, "at": at}])
        found = [doc async for doc in self.approvals.find({"decision_id": decision_id})]
        return bool(new), sorted(found, key=lambda doc: (doc["at"], doc["reviewer"]))

    async def offers_due(self, now: datetime, limit: int) -> list[Doc]:
        cursor = self.db["decisions"].find(
            {"status": "awaiting_choice", "deadline": {"$lte": now}}).limit(limit)
        return [doc async for doc in cursor]

    async def claim(self, collection: str, decision_id: str, fields: Doc) -> Doc | None:
        """Insert the one verdict or choice of a decision; returns the one that was there
        first when another won."""
        target = self.reviews if collection == "reviews" else self.choices
        try:
            await target.insert_one({"_id": decision_id, **fields})
        except DuplicateKeyError:
            return await target.find_one({"_id": decision_id})
        return None

    async def update_current(self, revision: Decision, reservation: str | None) -> None:
        """Point the decision at its newest revision (one writer: the claim's winner)."""
        fields: dict[str, Any] = {
            "status": revision.status.value, "revision": revision.revision,
            "reservation": reservation,
            "value": format(revision.total_value.amount, "f"),
            "given": given_doc(revision),
            "goodwill": format(goodwill(revision), "f"),
            "refunded": format(refunded(revision), "f"),
            "decision": revision.model_dump_json()}
        if revision.offer is not None:  # an approval after review may move the deadline
            fields["deadline"] = revision.offer.deadline
        await self.db["decisions"].update_one(
            {"_id": revision.decision_id, "revision": {"$lt": revision.revision}},
            {"$set": fields})

    async def record_outcomes(self, docs: Sequence[Doc]) -> set[Any]:
        return await insert_new(self.outcomes, docs)
