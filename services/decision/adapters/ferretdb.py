"""Decision's store on FerretDB v1 (the local stack's server), which scans a whole collection
on every read, has no transactions and applies updates non-atomically under concurrency.
So the hot path inserts under unique ids and reads only what it must:

- `decisions`: one per incident under the deterministic decision id (the outbox of revision
  0), its body as JSON text (stored four times faster than nested fields, and nothing queries
  inside it) beside the fields history and the queues query (`mongo.fields_of`);
- `revisions`: later revisions (a review, a choice), the outbox of their events;
- `approvals`: one per decision and reviewer (four-eyes: a second approval by the same person
  is a duplicate);
- `reviews`, `choices`: one per decision, inserted once: the insert makes a verdict or a
  choice final when two people (or a person and the deadline) race;
- `outcomes`: the failed actions fulfilment reported, once per action key;
- `incidents_seen` (by decision id): marks inserted before a batch is decided when the view
  below is not loaded (a caller outside the service), so only incidents seen before are
  looked up (a mark always precedes the decision it stands for, so a new mark proves there
  is nothing to look up).

The hot path reads nothing: `history_view.HistoryView` keeps every decision's id and history
entry in memory, loaded by one scan at start and fed by every decision this process records
or reads and by those other instances publish (`learn`, from `follower.py`). It answers
customers' histories and which incidents were decided before (only those are read). The
adapter once inserted marks per incident and per customer (`customers_decided`) each batch
instead; the service no longer writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.decision import Approval, Choice, Decision, Review
from schemas.outcome import Outcome
from services.common.adapters.mongo import Doc, insert_new
from services.common.adapters.outbox import MongoOutbox
from services.decision.adapters import mongo as reads
from services.decision.adapters.history_view import HistoryView
from services.decision.adapters.mongo import (
    HISTORY_FIELDS,
    fields_of,
)
from services.decision.adapters.outages import MongoOutages
from services.decision.domain.history import CustomerHistory


def _document(key: str, decision: Decision) -> Doc:
    return {**fields_of(decision), "_id": key, "decision": decision.model_dump_json()}


def _decision(doc: Doc) -> Decision:
    return Decision.model_validate_json(doc["decision"])


class _ViewedOutbox(MongoOutbox[Decision]):
    """The outbox of revision 0 that shows each decision it records to the view."""

    def __init__(self, collection: AsyncCollection[Doc], view: HistoryView) -> None:
        super().__init__(collection, _document)
        self.view = view

    async def add_new(self, records: Sequence[tuple[str, Decision]]) -> set[str]:
        new = await super().add_new(records)
        self.view.apply(d for key, d in records if key in new)
        return new


class FerretDecisions:
    follows_published = True  # `learn` wants the decisions other instances publish

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self._decisions = db["decisions"]
        self.view = HistoryView()
        self.decisions: MongoOutbox[Decision] = _ViewedOutbox(self._decisions, self.view)
        self.revisions: MongoOutbox[Decision] = MongoOutbox(db["revisions"], _document)
        self.outages = MongoOutages(db, flags=False)
        self.reviews = db["reviews"]
        self.choices = db["choices"]
        self.approvals = db["approvals"]
        self.outcomes = db["outcomes"]
        self.incidents_seen = db["incidents_seen"]

    async def create_indexes(self) -> None:
        await self._decisions.create_index([("customer_id", ASCENDING),
                                            ("decided_at", DESCENDING)])
        await self._decisions.create_index([("status", ASCENDING), ("deadline", ASCENDING)])
        await self.outcomes.create_index([("decision_id", ASCENDING)])
        await self.approvals.create_index([("decision_id", ASCENDING)])
        for outbox in (self.decisions, self.revisions):
            await outbox.create_indexes()
        await self.outages.create_indexes()

    async def load_histories(self) -> None:
        """The one scan of `decisions` the view needs, at start (or at the first history
        asked, for a caller that did not load it)."""
        self.view.load([doc async for doc in self._decisions.find(
            {}, {**HISTORY_FIELDS, "revision": 1})])

    def learn(self, decisions: Sequence[Decision]) -> None:
        self.view.apply(decisions)

    def knows(self, decision_id: str, revision: int) -> bool:
        return self.view.knows(decision_id, revision)

    def rename_customer(self, customer_id: str, pseudonym: str) -> int:
        return self.view.rename(customer_id, pseudonym)

    async def known(self, ids: Sequence[str]) -> dict[str, Decision]:
        if self.view.loaded:
            # The view holds every decision recorded here, loaded or followed; one it does
            # not hold yet (another instance's, in the follower's lag) makes the insert of
            # this decider's decision lost, and the service takes the recorded one then.
            return await self.find([i for i in ids if self.view.has(i)])
        new = await insert_new(self.incidents_seen, [{"_id": i} for i in ids])
        return await self.find([i for i in ids if i not in new])

    async def find(self, ids: Sequence[str]) -> dict[str, Decision]:
        if not ids:
            return {}
        found = {doc["_id"]: _decision(doc) async for doc in self._decisions.find(
            {"_id": {"$in": list(ids)}}, {"decision": 1})}
        self.view.apply(found.values())
        return found

    async def get(self, decision_id: str) -> Decision | None:
        found = await reads.get(self._decisions, _decision, decision_id)
        if found is not None:
            self.view.apply([found])
        return found

    async def histories(self, customers: Sequence[str], since: datetime,
                        orders: Sequence[str] = (), outages: Sequence[str] = ()
                        ) -> dict[str, CustomerHistory]:
        if not self.view.loaded:
            await self.load_histories()
        return self.view.histories(customers, since, orders, outages)

    async def between(self, start: datetime | None, stop: datetime | None) -> list[Decision]:
        return await reads.between(self._decisions, _decision, start, stop)

    async def held(self, limit: int, tenants: Sequence[str | None] | None = None
                   ) -> list[Decision]:
        return await reads.held(self._decisions, _decision, limit, tenants)

    async def customers_of_order(self, order_id: str,
                                 tenants: Sequence[str | None] | None = None) -> list[str]:
        return await reads.customers_of_order(self._decisions, order_id, tenants)

    async def offers_due(self, now: datetime, limit: int) -> list[Decision]:
        return await reads.offers_due(self._decisions, _decision, now, limit)

    async def approve(self, decision_id: str, approval: Approval
                      ) -> tuple[bool, list[Approval]]:
        new = await insert_new(self.approvals, [{
            "_id": f"{decision_id}|{approval.reviewer}", "decision_id": decision_id,
            "reviewer": approval.reviewer, "reason": approval.reason, "at": approval.at}])
        found = [Approval(reviewer=d["reviewer"], reason=d["reason"], at=d["at"])
                 async for d in self.approvals.find({"decision_id": decision_id})]
        return bool(new), sorted(found, key=lambda a: (a.at, a.reviewer))

    @staticmethod
    async def _claim(target: AsyncCollection[Doc], decision_id: str, fields: Doc) -> Doc:
        """Insert the one verdict or choice of a decision; the one there first wins."""
        try:
            await target.insert_one({"_id": decision_id, **fields})
        except DuplicateKeyError:
            winner = await target.find_one({"_id": decision_id})
            assert winner is not None, "claims are never deleted while their decision lives"
            return winner
        return {"_id": decision_id, **fields}

    async def claim_review(self, decision_id: str, review: Review) -> Review:
        won = await self._claim(self.reviews, decision_id, review.model_dump())
        return Review.model_validate({k: v for k, v in won.items() if k != "_id"})

    async def claim_choice(self, decision_id: str, choice: Choice) -> Choice:
        won = await self._claim(self.choices, decision_id, choice.model_dump())
        return Choice.model_validate({k: v for k, v in won.items() if k != "_id"})

    async def update_current(self, revision: Decision) -> None:
        # One writer per revision (the claim's winner); the precondition keeps a late retry
        # from moving the decision back.
        fields: dict[str, Any] = {k: v for k, v in fields_of(revision).items() if k != "_id"}
        fields["decision"] = revision.model_dump_json()
        await self._decisions.update_one(
            {"_id": revision.decision_id, "revision": {"$lt": revision.revision}},
            {"$set": fields})
        self.view.apply([revision])

    async def record_failures(self, outcomes: Sequence[Outcome], at: datetime) -> set[str]:
        return await insert_new(self.outcomes, [
            {"_id": o.idempotency_key, "decision_id": o.decision_id, "status": o.status.value,
             "kind": o.kind.value, "value": format(o.value.amount, "f"),
             "currency": o.value.currency, "at": at} for o in outcomes])

