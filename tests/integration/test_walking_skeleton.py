"""Late deliveries become exactly one outcome per decided action (an apology and the
remedies of their delay band), through the real broker and the real database; on-time
deliveries become nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from tests.factories import late_and_on_time
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

BASE = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _outcomes_by_kind(messages: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((m["data"]["customer_id"], m["data"]["kind"]) for m in messages)


@pytest.mark.parametrize("copies", [1, 2], ids=["once", "every-event-twice"])
async def test_late_deliveries_get_one_outcome_per_action(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str, copies: int) -> None:
    late, on_time = late_and_on_time(suffix, BASE, late=12, on_time=8)
    async with running_pipeline(infra, suffix) as pipeline:
        events = as_json(late + on_time)
        for _ in range(copies):
            await produce(infra.kafka_bootstrap, pipeline.topics.orders, events)

        decisions = await collect(infra.kafka_bootstrap, pipeline.topics.decisions,
                                  lambda seen: len(seen) >= len(late), settle_s=1.0)
        actions = [(d["data"]["incident"]["customer"]["id"], a["kind"])
                   for d in decisions for a in d["data"]["actions"]]
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= len(actions), settle_s=3.0)

    late_customers = {e["subject"] for e in late}
    assert len(decisions) == len(late)
    assert {c for c, _ in actions} == late_customers
    for customer in late_customers:  # an apology and at least one remedy each
        mine = [k for c, k in actions if c == customer]
        assert mine.count("apology") == 1
        assert len(mine) >= 2
    assert len(outcomes) == len(actions)
    assert _outcomes_by_kind(outcomes) == Counter(actions)
    assert all(m["data"]["status"] == "succeeded" for m in outcomes)

    fulfilment = mongo[pipeline.db("fulfilment")]
    credits = await fulfilment["points_ledger"].find({}).to_list()
    messages = await fulfilment["messages"].find({}).to_list()
    assert Counter(c["customer_id"] for c in credits) == Counter(
        c for c, k in actions if k == "points")
    assert Counter(m["customer_id"] for m in messages) == Counter(late_customers)
    assert all(c["points"] > 0 for c in credits)
    assert await mongo[pipeline.db("intake")]["incidents"].count_documents({}) == len(late)
    assert await mongo[pipeline.db("decision")]["decisions"].count_documents({}) == len(late)
    apologies = [m["data"] for m in outcomes if m["data"]["kind"] == "apology"]
    assert all(a["time_to_apology_seconds"] is not None for a in apologies)
