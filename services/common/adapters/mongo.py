"""MongoDB helpers: the client, insert-once semantics on unique `_id`s, and bodies kept as
JSON text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

Doc = dict[str, Any]
Client = AsyncMongoClient[Doc]  # what app factories take, so they need not name documents
DUPLICATE_KEY = 11000

# Update statements per bulk write. FerretDB v1 (the local stack's server) stops answering
# for good when one bulk write carries 100 or more update statements (measured: 99 pass,
# 100 hang every time); MongoDB takes any number. Smaller writes cost a round trip each.
BULK_STATEMENTS = 64
# Documents per insert or per `$in` list: bounded, so no single request grows without limit.
MAX_CHUNK = 1000

T = TypeVar("T")


class StoreWriteError(PyMongoError):
    """A bulk write the server refused for a reason other than a duplicate key, told by its
    error codes and the ids of the refused documents only: the driver's own error text
    quotes the documents, personal data included, and would end up in logs and dead
    letters."""


def write_failure(exc: BulkWriteError, ids: Sequence[Any] = ()) -> StoreWriteError:
    """`exc` reduced to codes and ids (by each error's index into `ids`)."""
    errors = exc.details.get("writeErrors", [])
    codes = sorted({int(e.get("code", 0)) for e in errors})
    refused = [ids[e["index"]] for e in errors
               if isinstance(e.get("index"), int) and e["index"] < len(ids)]
    concern = sorted({int(e.get("code", 0)) for e in exc.details.get("writeConcernErrors", [])})
    shown = ", ".join(str(i) for i in refused[:10]) + (" …" if len(refused) > 10 else "")
    return StoreWriteError(f"bulk write refused: {len(errors)} write errors, codes {codes}"
                           + (f", write concern codes {concern}" if concern else "")
                           + (f", ids {shown}" if refused else ""))


def stored(body: str | Doc) -> Doc:
    """A contract's body as kept in a document: its JSON text, exactly as published, or (from
    older versions) a nested document. Text is what is written now: FerretDB v1 stores a
    string four times faster than the same 5 kB as nested fields, and nothing queries inside
    the body (the fields queries need sit beside it)."""
    return json.loads(body) if isinstance(body, str) else body


def chunks(items: Sequence[T], size: int = MAX_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def in_chunks(docs: AsyncIterable[Doc], decode: Callable[[Doc], T],
                    size: int = MAX_CHUNK) -> AsyncIterator[list[T]]:
    """What `decode` makes of `docs`, `size` at a time: a large read never sits in memory."""
    chunk: list[T] = []
    async for doc in docs:
        chunk.append(decode(doc))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def make_client(url: str) -> AsyncMongoClient[Doc]:
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000,
                            uuidRepresentation="standard")


async def insert_new(collection: AsyncCollection[Doc], docs: Sequence[Doc],
                     chunk: int = MAX_CHUNK) -> set[Any]:
    """Insert every document whose `_id` is new, `chunk` at a time; a duplicate key means
    "already done".

    Returns the ids inserted by this call. Any error other than a duplicate key is raised,
    as a `StoreWriteError` (codes and ids, no document).
    """
    new: set[Any] = set()
    for part in chunks(docs, chunk):
        new |= await _insert_new(collection, part)
    return new


async def _insert_new(collection: AsyncCollection[Doc], docs: Sequence[Doc]) -> set[Any]:
    ids = [d["_id"] for d in docs]
    try:
        await collection.insert_many(list(docs), ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if other or exc.details.get("writeConcernErrors"):
            raise write_failure(exc, ids) from None
        duplicate = {ids[e["index"]] for e in errors}
        return {i for i in ids if i not in duplicate}
    return set(ids)


async def bulk_update(collection: AsyncCollection[Doc], ops: Sequence[UpdateOne]) -> None:
    """Apply update statements in unordered bulk writes of at most `BULK_STATEMENTS`."""
    for start in range(0, len(ops), BULK_STATEMENTS):
        try:
            await collection.bulk_write(list(ops[start:start + BULK_STATEMENTS]),
                                        ordered=False)
        except BulkWriteError as exc:
            raise write_failure(exc) from None


async def mark_all(marks: AsyncCollection[Doc], ids: AsyncIterable[Doc]) -> int:
    """Insert a mark `{"_id": ...}` for each document's `_id` (in chunks); returns how many
    were new. Used to fill a collection of marks from the records that predate it."""
    added = 0
    part: list[Doc] = []
    async for doc in ids:
        part.append({"_id": doc["_id"]})
        if len(part) == MAX_CHUNK:
            added += len(await insert_new(marks, part))
            part = []
    return added + len(await insert_new(marks, part))
