"""The demo on the real broker and database, with the real clock: its proactive story (an
order whose promised time has passed with no delivery is apologised for as late and still on
its way, with what the policy grants for its delay), and the whole scenario read back through
fulfilment's case API as `make demo` reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from pymongo import AsyncMongoClient

from devtools.demo import FINE, SCENARIO, Scene, play
from schemas import topics
from services.common.adapters.mongo import Doc
from tests import auth
from tests.infra import Infra
from tests.kafka_tools import collect, produce
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration


async def test_the_demos_late_order_with_no_delivery_is_apologised_for_proactively(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    [(name, _, _, story)] = [s for s in SCENARIO if s[0] == "lena"]
    assert name not in FINE
    scene = Scene(suffix, datetime.now(UTC))
    events = story(scene)
    assert [(t, e["type"]) for t, e in events] == [(topics.ORDERS, "order.placed")]
    async with running_pipeline(infra, suffix) as pipeline:
        await produce(infra.kafka_bootstrap, pipeline.topics.orders,
                      [(e["subject"], json.dumps(e).encode()) for _, e in events])
        decisions = await collect(infra.kafka_bootstrap, pipeline.topics.decisions,
                                  lambda seen: len(seen) >= 1, timeout_s=60, settle_s=1.0)
        outcomes = await collect(infra.kafka_bootstrap, pipeline.topics.outcomes,
                                 lambda seen: len(seen) >= 2, timeout_s=60, settle_s=1.0)
        messages = await mongo[pipeline.db("fulfilment")]["messages"].find({}).to_list()

    [decision] = [d["data"] for d in decisions]
    incident = decision["incident"]
    assert (incident["type"], incident["detection"], incident["delay_band"],
            incident["delivered_at"]) == ("delivery_delayed", "proactive", "late_30m", None)
    assert 43 <= incident["delay_minutes"] <= 45  # as far as intake had read the stream
    assert [(a["kind"], a["points"]) for a in decision["actions"]] == [
        ("apology", None), ("points", 200)]
    assert {o["data"]["status"] for o in outcomes} == {"succeeded"}
    [message] = messages
    assert "still on its way" in message["text"]
    assert "arrived" not in message["text"]


async def test_the_whole_demo_is_read_back_through_fulfilments_api(
        infra: Infra, suffix: str) -> None:
    async with running_pipeline(infra, suffix) as pipeline:
        upstream = {topics.ORDERS: pipeline.topics.orders, topics.SUPPORT: pipeline.topics.support,
                    topics.PAYMENTS: pipeline.topics.payments,
                    topics.OUTAGES: pipeline.topics.outages}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=pipeline.fulfilment),
                                     base_url="http://fulfilment",
                                     headers=auth.headers()) as fulfilment:
            rows = await play(infra.kafka_bootstrap, fulfilment, topics_as=upstream,
                              timeout_s=90)

    by_name = {row.customer.rsplit("-", 1)[0]: row for row in rows}
    assert list(by_name) == [name for name, *_ in SCENARIO]
    for name in FINE:
        fine = by_name[name]
        assert (fine.incident, fine.decision, fine.remedies, fine.apology) == (
            "-", "-", "-", "-"), name
    let_down = {name: row for name, row in by_name.items() if name not in FINE}
    assert all(row.apology != "-" for row in let_down.values()), let_down
    assert all(row.event_to_apology_ms is not None for row in let_down.values())
    assert {name: row.incident.split()[0] for name, row in let_down.items()} == {
        "ana": "delivery_delayed", "chloe": "delivery_delayed", "dmitri": "double_charge",
        "elena": "item_defective", "farid": "order_cancelled",
        "greta": "support_wait_exceeded", "hugo": "service_outage",
        "ines": "service_outage", "jonas": "service_outage", "lena": "delivery_delayed"}
    assert let_down["lena"].incident == "delivery_delayed (proactive)"
    assert let_down["elena"].apology.endswith("(ro)")
