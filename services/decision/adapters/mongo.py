"""What decision's two storage adapters share: the fields kept beside a decision's body
(what history and the queues query), and refusals of the database told without the
documents their text carries."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import ValidationError
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure

from schemas.decision import Decision
from schemas.incident import Detection, IncidentType
from services.common.adapters.mongo import Doc
from services.common.errors import describe
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.lifecycle import goodwill, refunded
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


# The errors a request may meet in the store whose text can carry documents or values: the
# HTTP API logs them through `without_documents`.
STORE_ERRORS: tuple[type[Exception], ...] = (OperationFailure, ValidationError)


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


def fields_of(decision: Decision) -> Doc:
    """The fields kept beside a decision's body: what histories and queues query and read
    without parsing the body."""
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
        "given": given_doc(decision),
    }
    if decision.offer is not None:
        doc["deadline"] = decision.offer.deadline
    return doc


HISTORY_FIELDS = {"customer_id": 1, "incident_id": 1, "type": 1, "detection": 1,
                  "decided_at": 1, "goodwill": 1, "order_id": 1, "outage_id": 1,
                  "refunded": 1, "given": 1}


def past_incident(doc: Doc) -> PastIncident:
    """A history entry from the fields beside a decision."""
    return PastIncident(
        incident_id=doc["incident_id"], type=IncidentType(doc["type"]),
        detection=Detection(doc["detection"]), decided_at=doc["decided_at"],
        value=Decimal(doc["goodwill"]), order_id=doc.get("order_id"),
        given=given_of(doc.get("given")), refunded=Decimal(doc["refunded"]),
        outage_id=doc.get("outage_id"))


def history_query(customers: Sequence[str], since: datetime, orders: Sequence[str],
                  outages: Sequence[str]) -> Doc:
    either: list[Doc] = [{"decided_at": {"$gt": since}}]
    if orders:
        either.append({"order_id": {"$in": list(orders)}})
    if outages:
        either.append({"outage_id": {"$in": list(outages)}})
    when: Doc = either[0] if len(either) == 1 else {"$or": either}
    return {"customer_id": {"$in": list(customers)}, **when}


def histories_of(customers: Sequence[str], docs: Sequence[Doc]) -> dict[str, CustomerHistory]:
    found: dict[str, list[PastIncident]] = {c: [] for c in customers}
    for doc in docs:
        found[doc["customer_id"]].append(past_incident(doc))
    return {c: CustomerHistory(tuple(sorted(found[c], key=lambda i: i.decided_at)))
            for c in customers}


# The queues' and the window's reads of `decisions`, the same in both adapters; each passes
# how its bodies decode (JSON text on FerretDB, a nested document on MongoDB).
Decode = Callable[[Doc], Decision]


async def get(decisions: AsyncCollection[Doc], decode: Decode, decision_id: str
              ) -> Decision | None:
    doc = await decisions.find_one({"_id": decision_id}, {"decision": 1})
    return None if doc is None else decode(doc)


async def between(decisions: AsyncCollection[Doc], decode: Decode, start: datetime | None,
                  stop: datetime | None) -> list[Decision]:
    window = {k: v for k, v in (("$gte", start), ("$lt", stop)) if v is not None}
    query: Doc = {"decided_at": window} if window else {}
    return [decode(doc) async for doc in decisions.find(query, {"decision": 1})]


async def held(decisions: AsyncCollection[Doc], decode: Decode, limit: int,
               tenants: Sequence[str | None] | None) -> list[Decision]:
    query: Doc = {"status": "held"}
    if tenants is not None:
        query["tenant"] = {"$in": list(tenants)}
    cursor = decisions.find(query, {"decision": 1}).sort("decided_at", ASCENDING).limit(limit)
    return [decode(doc) async for doc in cursor]


async def customers_of_order(decisions: AsyncCollection[Doc], order_id: str,
                             tenants: Sequence[str | None] | None) -> list[str]:
    query: Doc = {"order_id": order_id}
    if tenants is not None:
        query["tenant"] = {"$in": list(tenants)}
    return sorted({doc["customer_id"] async for doc in decisions.find(query,
                                                                       {"customer_id": 1})})


async def offers_due(decisions: AsyncCollection[Doc], decode: Decode, now: datetime,
                     limit: int) -> list[Decision]:
    cursor = decisions.find({"status": "awaiting_choice", "deadline": {"$lte": now}},
                            {"decision": 1}).limit(limit)
    return [decode(doc) async for doc in cursor]
