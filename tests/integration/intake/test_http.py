"""Intake's HTTP API on the real broker and database: signed events and reports accepted once,
posted again or at once to one or two instances (the claims are the server's), and the
served OpenAPI document. Each refusal (400, 401, 403, 413, 422, 429) is decided before the
store or the broker is reached and is tested in memory, in tests/component/intake/test_http.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from services.intake.app import create_app
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import Intake, running_intake
from tests.kafka_tools import collect
from tests.pipeline import lifespans
from tests.upstream import signed

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = int(T0.timestamp())
OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "api" / "intake.openapi.json"


@pytest.fixture
async def intake(infra: Infra, suffix: str) -> AsyncIterator[Intake]:
    async with running_intake(infra, suffix, clock=FakeClock(T0)) as running:
        yield running


@pytest.fixture
async def client(intake: Intake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.app),
                                 base_url="http://intake") as http:
        yield http


async def post(client: httpx.AsyncClient, path: str, body: Any, source: str = "shop",
               **options: Any) -> httpx.Response:
    raw, headers = signed(source, body, options.pop("at", NOW), **options)
    return await client.post(path, content=raw, headers=headers)


def late(suffix: str, order: str = "o-1", **options: Any) -> dict[str, Any]:
    return f.delivered(f"{suffix}-c", order, at=T0 - timedelta(minutes=1),
                       promised=T0 - timedelta(hours=2), tenant="brand-a", **options)


async def test_a_signed_event_is_accepted_once_with_its_incident(
        client: httpx.AsyncClient, intake: Intake, mongo: AsyncMongoClient[Doc],
        suffix: str) -> None:
    first = await post(client, "/v1/events", late(suffix))
    assert first.status_code == 202, first.text
    (accepted,) = first.json()["events"]
    assert not accepted["duplicate"]
    assert len(accepted["incident_ids"]) == 1
    again = await post(client, "/v1/events", late(suffix))  # a webhook retry
    assert again.status_code == 202
    assert again.json()["events"][0] == {**accepted, "duplicate": True}
    batch = [late(suffix), late(suffix, "o-2"),
             f.order_placed(f"{suffix}-c", "o-3", at=T0, promised=None, tenant="brand-a")]
    answer = await post(client, "/v1/events", batch)
    assert answer.status_code == 202
    assert [e["duplicate"] for e in answer.json()["events"]] == [True, False, False]
    assert len(answer.json()["incident_ids"]) == 2
    db = intake.db(mongo)
    assert await db["incidents"].count_documents({}) == 2


async def test_a_reported_incident_is_accepted_once(client: httpx.AsyncClient,
                                                    suffix: str) -> None:
    report = {"report_id": "r-1", "type": "item_missing", "customer": f.customer(suffix),
              "occurred_at": T0.isoformat(), "order_id": "o-1", "item_sku": "s-1",
              "item_value": f.eur("9.90"), "tenant": "brand-b"}
    first = await post(client, "/v1/incidents", report, "desk")
    assert first.status_code == 202, first.text
    assert not first.json()["duplicate"]
    again = await post(client, "/v1/incidents", report, "desk")
    assert again.json() == {**first.json(), "duplicate": True}


async def test_the_same_webhook_posted_twice_at_once_publishes_its_incident_once(
        client: httpx.AsyncClient, intake: Intake, suffix: str) -> None:
    body = [late(suffix, f"o-{n}") for n in range(20)]
    answers = await asyncio.gather(*(post(client, "/v1/events", body) for _ in range(3)))
    assert [a.status_code for a in answers] == [202, 202, 202]
    ids = [a.json()["incident_ids"] for a in answers]
    assert len(ids[0]) == 20
    assert ids[1] == ids[2] == ids[0]
    duplicates = sorted(sum(e["duplicate"] for e in a.json()["events"]) for a in answers)
    assert duplicates == [0, 20, 20]
    published = await collect(intake.settings.kafka_bootstrap, intake.topics.incidents,
                              lambda seen: len(seen) >= 20, settle_s=2)
    assert sorted(m["id"] for m in published) == sorted(ids[0])


async def test_the_same_webhook_posted_at_once_to_two_instances_publishes_once(
        client: httpx.AsyncClient, intake: Intake, suffix: str) -> None:
    two = create_app(intake.settings, clock=FakeClock(T0), sweep=False)
    body = [late(suffix, f"o-{n}") for n in range(20)]
    async with lifespans([two]), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=two), base_url="http://intake-2") as other:
        answers = await asyncio.gather(post(client, "/v1/events", body),
                                       post(other, "/v1/events", body))
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json()["incident_ids"] == answers[1].json()["incident_ids"]
    duplicates = sorted(sum(e["duplicate"] for e in a.json()["events"]) for a in answers)
    assert duplicates == [0, 20]
    published = await collect(intake.settings.kafka_bootstrap, intake.topics.incidents,
                              lambda seen: len(seen) >= 20, settle_s=2)
    assert sorted(m["id"] for m in published) == sorted(answers[0].json()["incident_ids"])


async def test_the_same_report_posted_twice_at_once_publishes_its_incident_once(
        client: httpx.AsyncClient, intake: Intake, suffix: str) -> None:
    report = {"report_id": f"{suffix}-r", "type": "item_missing", "order_id": "o-1",
              "item_sku": "sku-1", "customer": f.customer(f"{suffix}-c"),
              "occurred_at": T0.isoformat(), "item_value": f.eur("19.99")}
    answers = await asyncio.gather(*(post(client, "/v1/incidents", report, source="desk")
                                     for _ in range(3)))
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert len({a.json()["incident_id"] for a in answers}) == 1
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True]
    published = await collect(intake.settings.kafka_bootstrap, intake.topics.incidents,
                              lambda seen: len(seen) >= 1, settle_s=2)
    assert len(published) == 1


async def test_the_served_openapi_document_is_the_committed_one(
        client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    assert served == json.loads(OPENAPI.read_text())
