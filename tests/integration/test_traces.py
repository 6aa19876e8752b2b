"""Traces across the hops on the real broker and database: a late delivery carried through
intake, decision and fulfilment is one trace, with a span from each service, each the child
of the one before by the `traceparent` its record carried, and the trace id on the decision
and in the customer's case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from amends.cli_trace import spans_of
from schemas.common import trace_id
from services.common.access import Role
from tests import auth
from tests import factories as f
from tests.infra import Infra
from tests.kafka_tools import as_json, produce
from tests.pipeline import decided_and_done, running_pipeline

pytestmark = pytest.mark.integration


async def test_an_incident_is_one_trace_across_the_three_services(
        infra: Infra, suffix: str, tmp_path: Path) -> None:
    customer = f"{suffix}-late"
    now = datetime.now(UTC)
    traced = {"tracing": "file", "trace_dir": tmp_path}
    async with running_pipeline(infra, suffix, every=traced) as p:
        await produce(infra.kafka_bootstrap, p.topics.orders, as_json([f.delivered(
            customer, "o-1", at=now, promised=now - timedelta(hours=3))]))
        [decision], outcomes = await decided_and_done(infra, p, 1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=p.fulfilment),
                                     base_url="http://fulfilment",
                                     headers=auth.headers(Role.viewer)) as api:
            case = (await api.get(f"/v1/customers/{customer}/case")).json()
    # Leaving the pipeline stopped the services: their spans are in the files.

    incident_id = decision["data"]["incident"]["incident_id"]
    trace = decision["data"]["trace_id"]
    assert trace == trace_id(incident_id)
    assert [d["trace_id"] for d in case["decisions"]] == [trace]
    assert outcomes

    spans = spans_of(trace, tmp_path)
    # Decision's second span is its reading of the outcomes fulfilment published.
    assert [(s.service, s.name) for s in spans] == [
        ("intake", "when_upstream_events_arrive"), ("decision", "when_incidents_detected"),
        ("fulfilment", "when_decisions_made"), ("decision", "when_outcomes_recorded")]
    intake, decided, fulfilled, recorded = spans
    assert intake.parent_id is None  # the upstream event carried no traceparent
    assert decided.parent_id == intake.span_id
    assert fulfilled.parent_id == decided.span_id
    assert recorded.parent_id == fulfilled.span_id
    assert all(s.end_ns >= s.start_ns for s in spans)
    assert decided.attributes["amends.incident_id"] == incident_id
    # Ids, topics and counts only: nothing about the customer beyond their incident's id.
    keys = {k for s in spans for k in s.attributes}
    assert keys <= {"messaging.batch.message_count",
                    "messaging.destination.name", "amends.incident_id"}
    assert all(customer not in str(v) for s in spans for v in s.attributes.values())
