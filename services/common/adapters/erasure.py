"""Erasure in a service's database (services/common/erasure.py says what is erased and
why): every collection is searched for the customer's records and those linked to them, and
each is scrubbed in place (or deleted).

Every collection is read in full once or twice: an erasure is rare and off the hot path,
and on FerretDB v1 an indexed read costs the same."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from pymongo.asynchronous.database import AsyncDatabase

from schemas.erasure import ErasureRequest
from services.common.adapters.mongo import Doc, insert_new

if TYPE_CHECKING:
    from services.common.erasure import ErasureReport, Scrub

# Collections that hold no customer data: the outboxes' marks, lists of record ids.
SKIPPED_SUFFIXES = ("_published",)


def tenant_of(value: Any, depth: int = 0) -> str | None:
    """The first `tenant` named in a document or the JSON text inside it (None: none)."""
    if depth > 4:
        return None
    if isinstance(value, str) and value.lstrip()[:1] == "{":
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    tenant = value.get("tenant")
    if isinstance(tenant, str):
        return tenant
    for item in value.values():
        if isinstance(item, dict | str):
            found = tenant_of(item, depth + 1)
            if found is not None:
                return found
    return None


def belongs(doc: Doc, request: ErasureRequest, default_tenant: str) -> bool:
    """Whether a record of the customer's id is of the request's tenant (a record without a
    tenant is the default tenant's)."""
    return (tenant_of(doc) or default_tenant) == request.tenant


_LINKS = ("_id", "decision_id", "incident_id", "action_key", "key")


async def erase_in_database(db: AsyncDatabase[Doc], request: ErasureRequest, scrub: Scrub, *,
                            default_tenant: str, delete: Collection[str] = (),
                            skip: Collection[str] = (), text_scan: Collection[str] = (),
                            check_tenant: bool = True,
                            report: ErasureReport | None = None) -> ErasureReport:
    """Scrub (or, for the collections in `delete`, delete) every record of the customer in
    every collection of `db`: those naming the customer (`customer_id`, `customer.id`, or
    their `_id`), then those linked to them by id (a decision's review, its choice); in the
    collections of `text_scan`, every record whose text names the customer.

    Every collection is read in full once or twice: an erasure is rare and off the hot path,
    and on FerretDB v1 an indexed read costs the same."""
    if report is None:
        from services.common.erasure import ErasureReport  # noqa: PLC0415 (a cycle at import)

        report = ErasureReport()
    cid = request.customer_id
    names = [n for n in sorted(await db.list_collection_names())
             if n not in skip and not n.startswith("system.")
             and not n.endswith(SKIPPED_SUFFIXES)]
    matched: dict[str, list[Doc]] = {}
    linked: set[str] = set()
    for name in names:
        if name in text_scan:
            docs = [doc async for doc in db[name].find({})
                    if scrub.names_customer(json.dumps(doc, default=str))]
        else:
            docs = [doc async for doc in db[name].find(
                {"$or": [{"customer_id": cid}, {"customer.id": cid}, {"_id": cid}]})]
        if check_tenant:
            docs = [d for d in docs if belongs(d, request, default_tenant)]
        if docs:
            matched[name] = docs
            for doc in docs:
                linked.update(str(doc[k]) for k in _LINKS if isinstance(doc.get(k), str))
    linked.discard(cid)
    if linked:
        wanted = sorted(linked)
        for name in names:
            known = {d["_id"] for d in matched.get(name, [])}
            async for doc in db[name].find({"$or": [{"_id": {"$in": wanted}},
                                                    {"decision_id": {"$in": wanted}}]}):
                if doc["_id"] not in known:
                    matched.setdefault(name, []).append(doc)
    for name, docs in matched.items():
        collection = db[name]
        if name in delete:
            ids = [d["_id"] for d in docs]
            result = await collection.delete_many({"_id": {"$in": ids}})
            report.deleted[name] = report.deleted.get(name, 0) + result.deleted_count
            for doc in docs:  # what they held still marks the customer's dead letters
                scrub.value(doc)
            continue
        changed = 0
        for doc in docs:
            clean = scrub.value(doc)
            if clean == doc:
                continue
            if clean["_id"] != doc["_id"]:  # keyed by the customer: kept under the pseudonym
                await insert_new(collection, [clean])
                await collection.delete_one({"_id": doc["_id"]})
            else:
                await collection.replace_one({"_id": doc["_id"]}, clean)
            changed += 1
        if changed:
            report.scrubbed[name] = report.scrubbed.get(name, 0) + changed
    return report


class MongoErasure:
    """A service's stores, as erasure sees them: every collection of its database."""

    def __init__(self, db: AsyncDatabase[Doc], *, default_tenant: str) -> None:
        self.db = db
        self.default_tenant = default_tenant

    async def erase(self, request: ErasureRequest, scrub: Scrub, *,
                    delete: Collection[str] = (), skip: Collection[str] = (),
                    report: ErasureReport) -> None:
        """The customer's records in every collection but `skip`; those of `delete` go."""
        await erase_in_database(self.db, request, scrub, default_tenant=self.default_tenant,
                                delete=delete, skip=skip, report=report)

    async def erase_audit(self, request: ErasureRequest, scrub: Scrub, *,
                          report: ErasureReport) -> None:
        """The audit entries whose text names the customer, of any tenant (an operator may
        act across tenants)."""
        await erase_in_database(self.db, request, scrub, default_tenant=self.default_tenant,
                                skip=[n for n in await self.db.list_collection_names()
                                      if n != "audit"], text_scan={"audit"},
                                check_tenant=False, report=report)
