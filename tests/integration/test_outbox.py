"""The outbox on the real database: each record stored once and published once, a batch's
"published" mark written as one document, and a crash between the steps repaired."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from services.common.adapters.outbox import MongoOutbox, as_document
from services.common.messaging import Outgoing
from services.common.outbox import record_then_publish

pytestmark = pytest.mark.integration


class Sent:
    """Collects what would go to Kafka (the outbox's behaviour is the database's here)."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        self.values += [m.value for m in messages]


def items(*ids: str) -> list[tuple[str, Doc, Outgoing]]:
    return [(i, {"n": i}, Outgoing("t", i, i.encode())) for i in ids]


async def test_records_are_published_once_and_a_crash_is_repaired(
        mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    db = mongo[f"amends_test_outbox_{suffix}"]
    outbox = MongoOutbox(db["records"], as_document, chunk=2)
    await outbox.create_indexes()
    sent = Sent()
    assert await record_then_publish(outbox, sent, items("a", "b", "c", "a")) == {"a", "b", "c"}
    assert sorted(sent.values) == [b"a", b"b", b"c"]
    assert await db["records_published"].count_documents({}) == 2  # one per chunk of 2
    assert await outbox.published(["a", "b", "c", "x"]) == {"a", "b", "c"}

    assert await record_then_publish(outbox, sent, items("a", "b", "c")) == set()
    assert len(sent.values) == 3

    # Recorded, then the process died before publishing: the redelivery publishes them.
    await outbox.add_new([("d", {}), ("e", {})])
    assert await record_then_publish(outbox, sent, items("d", "e", "f")) == {"f"}
    assert sorted(sent.values[3:]) == [b"d", b"e", b"f"]
    await mongo.drop_database(db.name)
