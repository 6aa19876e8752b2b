"""A poor public review, end to end on the real broker and database: review.posted on the
support topic becomes an incident, a decision (an apology and store credit under the default
policy) and one succeeded outcome per action; the ledger holds the credit in euros, once; and
the public reply is drafted for a person to approve and post (ADR 0017)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.common.access import Role
from services.common.adapters.mongo import Doc
from tests import auth
from tests import factories as f
from tests.clock import FakeClock
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


async def test_a_poor_review_gets_a_drafted_public_reply_beside_the_private_remedy(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    """The reply task is drafted from the decision as recorded (in the customer's language,
    naming the store credit the policy gave), kept by the FerretDB adapter, listed for
    support, and escalated with the overdue gauge once the SLA's target passes."""
    poor = f"c-poor-{suffix}"
    clock = FakeClock(AT + timedelta(minutes=1))
    event = review(poor, f"r-3-{suffix}", 1)
    event["data"]["customer"]["locale"] = "ro"
    async with running_pipeline(infra, suffix, clock=clock) as pipeline:
        await produce(infra.kafka_bootstrap, pipeline.topics.support, as_json([event] * 2))
        [decision], outcomes = await decided_and_done(infra, pipeline, 1, settle_s=2.0)
        transport = httpx.ASGITransport(app=pipeline.decision)
        async with httpx.AsyncClient(transport=transport, base_url="http://decision") as api:
            replies = await until(lambda: listed(api, "all"))
            stored = await mongo[pipeline.db("decision")]["public_replies"].find({}).to_list()
            clock.advance(timedelta(hours=5))  # past the 4-hour target, nothing posted
            await pipeline.decision.state.replies.refresh_gauges()
            escalated = await listed(api, "escalated")
            metrics = (await api.get("/metrics")).text

    assert sorted((o["data"]["kind"], o["data"]["status"]) for o in outcomes) == [
        ("apology", "succeeded"), ("store_credit", "succeeded")]
    [reply] = replies
    assert reply["decision_id"] == decision["data"]["decision_id"]
    assert (reply["customer_id"], reply["locale"], reply["state"]) == (poor, "ro", "drafted")
    assert reply["remedies"] == ["store_credit"]
    assert reply["text"].startswith("Ne cerem scuze.")
    assert "credit în cont" in reply["text"]
    [doc] = stored  # one reply for the review delivered twice, its body as JSON text
    assert doc["_id"] == reply["reply_id"]
    assert isinstance(doc["reply"], str)
    assert [r["reply_id"] for r in escalated] == [reply["reply_id"]]
    assert "amends_public_replies_overdue 1.0" in metrics
    assert 'amends_public_replies_open{queue="escalated"} 1.0' in metrics


async def listed(api: httpx.AsyncClient, queue: str) -> list[dict[str, Any]]:
    answer = await api.get(f"/v1/replies?queue={queue}", headers=auth.headers(Role.support))
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def until(ask: Callable[[], Awaitable[list[dict[str, Any]]]],
                timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Poll until `ask` finds something (the draft follows the decision's publication)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await ask()
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)
