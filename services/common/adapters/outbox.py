"""The outbox (services/common/outbox.py) on MongoDB or FerretDB: records as documents under
their id; "published" either marks inserted into a second collection (`MongoOutbox`, for
FerretDB) or a flag on each record (`FlagOutbox`, MongoDB's native model)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from schemas.common import deterministic_id
from services.common.adapters.mongo import MAX_CHUNK, Doc, chunks, insert_new

R = TypeVar("R")


class MongoOutbox(Generic[R]):
    """Records in `collection`, each the document `encode(id, record)` makes (its `_id` is
    the id); their "published" marks are inserts into a second collection
    (`<collection>_published` unless given), never updates: on FerretDB an update costs
    milliseconds per document, and an outage's fan-out marks thousands at once. One mark
    lists the ids of a published batch (up to `chunk`), under an id derived from them."""

    def __init__(self, collection: AsyncCollection[Doc], encode: Callable[[str, R], Doc],
                 marks: AsyncCollection[Doc] | None = None, chunk: int = MAX_CHUNK) -> None:
        self.collection = collection
        self.encode = encode
        self.marks = (marks if marks is not None
                      else collection.database[f"{collection.name}_published"])
        self.chunk = chunk

    async def add_new(self, records: Sequence[tuple[str, R]]) -> set[str]:
        return await insert_new(self.collection, [self.encode(key, record)
                                                  for key, record in records], self.chunk)

    async def create_indexes(self) -> None:
        await self.marks.create_index([("ids", ASCENDING)])

    async def published(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in chunks(ids, self.chunk):
            wanted = list(part)
            async for mark in self.marks.find({"ids": {"$in": wanted}}):
                found |= set(mark["ids"]) & set(wanted)
        return found

    async def mark_published(self, ids: Sequence[str]) -> None:
        for part in chunks(ids, self.chunk):
            listed = sorted(part)
            await insert_new(self.marks, [{"_id": deterministic_id("published", *listed),
                                           "ids": list(part)}])


class FlagOutbox(Generic[R]):
    """Records in `collection`, each the document `encode(id, record)` makes; "published" a
    flag set on them by one conditional update per batch over an indexed `$in`."""

    def __init__(self, collection: AsyncCollection[Doc], encode: Callable[[str, R], Doc],
                 chunk: int = MAX_CHUNK) -> None:
        self.collection = collection
        self.encode = encode
        self.chunk = chunk

    async def add_new(self, records: Sequence[tuple[str, R]]) -> set[str]:
        return await insert_new(self.collection, [self.encode(key, record)
                                                  for key, record in records], self.chunk)

    async def published(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for part in chunks(ids, self.chunk):
            found |= {doc["_id"] async for doc in self.collection.find(
                {"_id": {"$in": list(part)}, "published": True}, {"_id": 1})}
        return found

    async def mark_published(self, ids: Sequence[str]) -> None:
        for part in chunks(ids, self.chunk):
            await self.collection.update_many({"_id": {"$in": list(part)},
                                               "published": {"$ne": True}},
                                              {"$set": {"published": True}})


def as_document(key: str, doc: Doc) -> Doc:
    """The encoder of an outbox whose records are documents already."""
    return {**doc, "_id": key}
