"""The audit store on MongoDB or FerretDB: one document per entry in the service's `audit`
collection, the entry as JSON text beside the fields a reader sorts and filters by."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from schemas.audit import AuditEntry
from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import MongoOutbox


def audit_doc(audit_id: str, entry: AuditEntry) -> Doc:
    return {"_id": audit_id, "at": entry.at, "action": entry.action.value,
            "actor": entry.actor, "entry": entry.model_dump_json()}


def audit_entries(db: AsyncDatabase[Doc]) -> MongoOutbox[AuditEntry]:
    """The `Outbox[AuditEntry]` an `AuditTrail` records into (call `create_indexes` at
    start)."""
    return MongoOutbox(db["audit"], audit_doc)
