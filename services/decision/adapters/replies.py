"""The reply queue's two adapters (ADR 0017). Both only insert: a draft under its reply id,
each step under its key (`domain.replies.step_key`), so a duplicate key is "already done" for
a draft and "someone got there first" for a step. They differ in encoding only:

- FerretDB keeps the draft and a step's text as JSON text beside the few fields queries use
  (FerretDB v1 scans on every read anyway, and stores text fastest);
- MongoDB keeps them as native fields and indexes the reads (open replies by tenant and
  review time, steps by reply).

The open replies are the drafts with no `posted` step: one read of the posted keys, then the
drafts not among them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.adapters.mongo import Doc, insert_new
from services.decision.domain.replies import Reply, ReplyStep, ReplyStepKind


def _tenant_filter(tenants: Sequence[str | None] | None) -> Doc:
    return {} if tenants is None else {"tenant": {"$in": list(tenants)}}


def _aware(moment: datetime) -> datetime:
    # A client opened without tz_aware gives naive UTC datetimes back.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _ReplyStore:
    """What both encodings share: the collections, the insert-only writes, the reads."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.replies = db["public_replies"]
        self.steps = db["public_reply_steps"]

    # Encoding, per adapter.
    def _reply_doc(self, reply: Reply) -> Doc:
        raise NotImplementedError

    def _reply(self, doc: Doc) -> Reply:
        raise NotImplementedError

    def _step_doc(self, step: ReplyStep) -> Doc:
        return {"_id": step.key, "reply_id": step.reply_id, "kind": step.kind.value,
                "number": step.number, "by": step.by, "at": step.at, "text": step.text,
                "public_url": step.public_url}

    @staticmethod
    def _step(doc: Doc) -> ReplyStep:
        return ReplyStep(reply_id=doc["reply_id"], kind=ReplyStepKind(doc["kind"]),
                         number=doc["number"], by=doc["by"], at=_aware(doc["at"]),
                         text=doc["text"], public_url=doc.get("public_url"))

    async def create_indexes(self) -> None:
        await self.steps.create_index([("reply_id", ASCENDING)])

    async def add(self, replies: Sequence[Reply]) -> set[str]:
        if not replies:
            return set()
        return await insert_new(self.replies, [self._reply_doc(r) for r in replies])

    async def add_step(self, step: ReplyStep) -> bool:
        return bool(await insert_new(self.steps, [self._step_doc(step)]))

    async def _steps_of(self, ids: Sequence[str]) -> dict[str, list[ReplyStep]]:
        found: dict[str, list[ReplyStep]] = {i: [] for i in ids}
        if ids:
            async for doc in self.steps.find({"reply_id": {"$in": list(ids)}}):
                found[doc["reply_id"]].append(self._step(doc))
        return found

    async def get(self, reply_id: str) -> tuple[Reply, list[ReplyStep]] | None:
        doc = await self.replies.find_one({"_id": reply_id})
        if doc is None:
            return None
        return self._reply(doc), (await self._steps_of([reply_id]))[reply_id]

    async def listing(self, tenants: Sequence[str | None] | None, *, posted: bool,
                      limit: int) -> list[tuple[Reply, list[ReplyStep]]]:
        done = [d["reply_id"] async for d in self.steps.find(
            {"kind": ReplyStepKind.posted.value}, {"reply_id": 1})]
        query = {**_tenant_filter(tenants), "_id": {"$in" if posted else "$nin": done}}
        order = -1 if posted else 1
        docs = await self.replies.find(query).sort(
            [("review_posted_at", order), ("_id", ASCENDING)]).limit(limit).to_list()
        replies = [self._reply(d) for d in docs]
        steps = await self._steps_of([r.reply_id for r in replies])
        return [(r, steps[r.reply_id]) for r in replies]


_FIELDS = ("decision_id", "incident_id", "customer_id", "tenant", "review_posted_at")


def _body(reply: Reply) -> dict[str, Any]:
    return {"locale": reply.locale, "platform": reply.platform, "review_url": reply.review_url,
            "rating": reply.rating, "drafted_at": reply.drafted_at.isoformat(),
            "draft": reply.draft, "remedies": list(reply.remedies)}


def _from(doc: Doc, body: dict[str, Any]) -> Reply:
    return Reply(reply_id=doc["_id"], decision_id=doc["decision_id"],
                 incident_id=doc["incident_id"], customer_id=doc["customer_id"],
                 tenant=doc["tenant"], locale=body["locale"], platform=body["platform"],
                 review_url=body["review_url"], rating=body["rating"],
                 review_posted_at=_aware(doc["review_posted_at"]),
                 drafted_at=(datetime.fromisoformat(body["drafted_at"])
                             if isinstance(body["drafted_at"], str)
                             else _aware(body["drafted_at"])),
                 draft=body["draft"], remedies=tuple(body["remedies"]))


class FerretReplies(_ReplyStore):
    """FerretDB v1: the draft as JSON text beside the queried fields."""

    def _reply_doc(self, reply: Reply) -> Doc:
        return {"_id": reply.reply_id, **{f: getattr(reply, f) for f in _FIELDS},
                # Not "body": erasure takes a field of that name for free text and would
                # blank it; under this name it reads the JSON inside and scrubs that.
                "reply": json.dumps(_body(reply), ensure_ascii=False)}

    def _reply(self, doc: Doc) -> Reply:
        return _from(doc, json.loads(doc["reply"]))


class MongoReplies(_ReplyStore):
    """MongoDB: native fields, and the open replies' read indexed."""

    def _reply_doc(self, reply: Reply) -> Doc:
        body = {**_body(reply), "drafted_at": reply.drafted_at}
        return {"_id": reply.reply_id, **{f: getattr(reply, f) for f in _FIELDS}, **body}

    def _reply(self, doc: Doc) -> Reply:
        return _from(doc, doc)

    async def create_indexes(self) -> None:
        await super().create_indexes()
        await self.replies.create_index([("tenant", ASCENDING),
                                         ("review_posted_at", ASCENDING)])
        await self.steps.create_index([("kind", ASCENDING)])
