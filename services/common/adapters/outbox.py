"""Record, then publish: the idempotent step every service takes with what it produces.

A record is inserted once under its deterministic `_id` (a duplicate means "already done"),
then its message is published unless an earlier run already published it, then it is marked
published. A crash between the steps is repaired by the redelivery of the same input.

Only a redelivery asks whether a record was published: records that are new were not. So
"published" is written for a whole batch at once (one document listing its ids) and read
only for the records a batch found already there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from schemas.common import deterministic_id
from services.common.adapters.mongo import MAX_CHUNK, Doc, chunks, insert_new
from services.common.messaging import Outgoing, Publisher


class Outbox(Protocol):
    async def add_new(self, docs: Sequence[Doc]) -> set[Any]:
        """Insert the documents whose `_id` is new; return the ids inserted."""

    async def published(self, ids: Sequence[Any]) -> set[Any]:
        """Which of these ids were published already."""

    async def mark_published(self, ids: Sequence[Any]) -> None: ...


class MongoOutbox:
    """Records in `collection`; their "published" marks are inserts into a second collection
    (`<collection>_published` unless given), never updates: on FerretDB an update costs
    milliseconds per document, and an outage's fan-out marks thousands at once. One mark
    lists the ids of a published batch (up to `chunk`), under an id derived from them."""

    def __init__(self, collection: AsyncCollection[Doc],
                 marks: AsyncCollection[Doc] | None = None, chunk: int = MAX_CHUNK) -> None:
        self.collection = collection
        self.marks = (marks if marks is not None
                      else collection.database[f"{collection.name}_published"])
        self.chunk = chunk

    async def add_new(self, docs: Sequence[Doc]) -> set[Any]:
        new: set[Any] = set()
        for part in chunks(docs, self.chunk):
            new |= await insert_new(self.collection, part)
        return new

    async def create_indexes(self) -> None:
        await self.marks.create_index([("ids", ASCENDING)])

    async def published(self, ids: Sequence[Any]) -> set[Any]:
        found: set[Any] = set()
        for part in chunks(ids, self.chunk):
            wanted = list(part)
            # Marks of older versions are one document per id, under that id.
            async for mark in self.marks.find(
                    {"$or": [{"ids": {"$in": wanted}}, {"_id": {"$in": wanted}}]}):
                found |= set(mark.get("ids", [mark["_id"]])) & set(wanted)
        return found

    async def mark_published(self, ids: Sequence[Any]) -> None:
        for part in chunks(ids, self.chunk):
            listed = sorted(str(i) for i in part)
            await insert_new(self.marks, [{"_id": deterministic_id("published", *listed),
                                           "ids": list(part)}])


async def record_then_publish(outbox: Outbox, publisher: Publisher,
                              items: Sequence[tuple[Doc, Outgoing]]) -> set[Any]:
    """Store each document once and publish its message once; returns the ids that are new."""
    if not items:
        return set()
    # The same record twice in one batch (a duplicate upstream event) is one record.
    unique = list({doc["_id"]: (doc, msg) for doc, msg in items}.values())
    new = await outbox.add_new([doc for doc, _ in unique])
    seen_before = [doc["_id"] for doc, _ in unique if doc["_id"] not in new]
    done = await outbox.published(seen_before)
    to_publish = [(doc["_id"], msg) for doc, msg in unique if doc["_id"] not in done]
    await publisher.publish_all([msg for _, msg in to_publish])
    await outbox.mark_published([i for i, _ in to_publish])
    return new
