"""Late deliveries become exactly one points credit and one apology each, through the real
broker and the real database; on-time deliveries become nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common.mongo import Doc
from tests.factories import late_and_on_time
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _outcomes_by_kind(messages: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((m["data"]["customer_id"], m["data"]["kind"]) for m in messages)


@pytest.mark.parametrize("copies", [1, 2], ids=["once", "every-event-twice"])
async def test_late_deliveries_get_one_credit_and_one_apology_each(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str, copies: int) -> None:
    late, on_time = late_and_on_time(suffix, BASE, late=12, on_time=8)
    async with running_pipeline(infra, suffix) as pipeline:
        events = as_json(late + on_time)
        for _ in range(copies):
            await produce(infra.kafka_bootstrap, pipeline.topics.orders, events)

        expected = 2 * len(late)
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= expected, settle_s=3.0)

    late_customers = {e["subject"] for e in late}
    by_kind = _outcomes_by_kind(outcomes)
    assert len(outcomes) == expected
    assert by_kind == Counter({(c, k): 1 for c in late_customers for k in ("points", "apology")})
    assert all(m["data"]["status"] == "succeeded" for m in outcomes)

    db = mongo[pipeline.db]
    credits = await db["points_ledger"].find({}).to_list()
    messages = await db["messages"].find({}).to_list()
    assert Counter(c["customer_id"] for c in credits) == Counter(late_customers)
    assert Counter(m["customer_id"] for m in messages) == Counter(late_customers)
    assert all(c["points"] > 0 for c in credits)
    assert await db["incidents"].count_documents({}) == len(late)
    assert await db["decisions"].count_documents({}) == len(late)
    apologies = [m["data"] for m in outcomes if m["data"]["kind"] == "apology"]
    assert all(a["time_to_apology_seconds"] is not None for a in apologies)
