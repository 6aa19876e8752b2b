"""A poor public review, end to end on the real broker and database: review.posted on the
support topic becomes an incident, a decision (an apology and store credit under the default
policy) and one succeeded outcome per action; the ledger holds the credit in euros, once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from tests import factories as f
from tests.infra import Infra
from tests.kafka_tools import as_json, produce
from tests.pipeline import decided_and_done, running_pipeline

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def review(customer: str, review_id: str, rating: int) -> dict[str, Any]:
    return f.event("review.posted", {
        "review_id": review_id, "customer": f.customer(customer), "posted_at": AT.isoformat(),
        "rating": rating, "text": "Never again.", "platform": "trustpilot",
        "url": f"https://reviews.example/{review_id}"}, subject=customer, at=AT)


async def test_a_poor_review_gets_an_apology_and_store_credit(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    poor, good = f"c-poor-{suffix}", f"c-good-{suffix}"
    async with running_pipeline(infra, suffix) as pipeline:
        events = as_json([review(poor, f"r-1-{suffix}", 1), review(good, f"r-2-{suffix}", 5)])
        await produce(infra.kafka_bootstrap, pipeline.topics.support, events + events)
        decisions, outcomes = await decided_and_done(infra, pipeline, 1, settle_s=2.0)
        ledger = await mongo[pipeline.db("fulfilment")]["points_ledger"].find({}).to_list()

    [decision] = [d["data"] for d in decisions]
    assert decision["incident"]["customer"]["id"] == poor
    assert decision["incident"]["type"] == "negative_review"
    assert [a["kind"] for a in decision["actions"]] == ["apology", "store_credit"]
    assert sorted((o["data"]["kind"], o["data"]["status"]) for o in outcomes) == [
        ("apology", "succeeded"), ("store_credit", "succeeded")]
    [entry] = ledger
    assert (entry["customer_id"], entry["amount"], entry["unit"]) == (poor, "10.00", "EUR")
