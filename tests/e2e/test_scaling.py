"""Three decision processes share a six-partition incidents topic in one consumer group; one is
killed (SIGKILL) mid-stream, its partitions move to the others, and every incident is still
decided exactly once."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from schemas.common import Money
from services.common.adapters.mongo import Doc
from services.decision.adapters.budget import FerretBudget
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import collect, incident_events, produce
from tests.pipeline import Topics
from tests.processes import free_port, service_env, start, wait_healthy

pytestmark = pytest.mark.e2e

INCIDENTS = 600
CONSUMERS = 3


async def test_a_consumer_killed_mid_stream_loses_and_repeats_no_decision(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str, tmp_path: Path) -> None:
    topics = Topics.unique(suffix)
    # Small batches, so that the stream takes long enough to kill a consumer in the middle.
    env = {**service_env(infra, topics, suffix), "AMENDS_DECISION_BATCH_MAX_RECORDS": "10"}
    incidents = [incident("delivery_delayed", customer_id=f"{suffix}-c{i}", fact=f"o-{i}",
                          delay_minutes=30 + i % 600, delay_band="late",
                          order_value={"amount": "40.00", "currency": "EUR"})
                 for i in range(INCIDENTS)]
    logs = [tmp_path / f"decision-{n}.log" for n in range(CONSUMERS)]
    ports = [free_port() for _ in range(CONSUMERS)]
    procs: list[subprocess.Popen[bytes]] = [start("decision", env, port, log)
                                            for port, log in zip(ports, logs, strict=True)]
    try:
        for port, log in zip(ports, logs, strict=True):
            wait_healthy(port, log)
        await produce(infra.kafka_bootstrap, topics.incidents, incident_events(incidents))
        before = await collect(infra.kafka_bootstrap, topics.decisions,
                               lambda seen: len(seen) >= INCIDENTS // 4, timeout_s=120)
        victim = procs[0]
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        assert len({d["id"] for d in before}) < INCIDENTS, "killed too late to prove anything"

        decisions = await collect(
            infra.kafka_bootstrap, topics.decisions,
            lambda seen: len({d["id"] for d in seen}) >= INCIDENTS, timeout_s=400,
            settle_s=3.0)
    finally:
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        for proc in procs[1:]:
            assert proc.wait(timeout=30) in {0, -signal.SIGTERM}

    # The killed consumer had partitions: work was shared before the kill.
    assert any("assigned to partitions" in log.read_text() for log in logs[:1])
    per_incident = Counter(d["data"]["incident"]["incident_id"] for d in decisions)
    assert set(per_incident) == {i["incident_id"] for i in incidents}
    # A decision published and then re-published after the kill carries the same id: Kafka
    # delivers at least once; what a consumer acts on is one decision per incident.
    ids_per_incident = {i: {d["id"] for d in decisions
                            if d["data"]["incident"]["incident_id"] == i} for i in per_incident}
    assert all(len(ids) == 1 for ids in ids_per_incident.values())
    db = mongo[f"e2e_decision_{suffix}"]
    assert await db["decisions"].count_documents({}) == INCIDENTS
    # Each decision booked its cost against the day's budget once: what the budget says is
    # spent is the sum of the decisions' totals.
    unique = {d["id"]: d["data"] for d in decisions}
    days = {date.fromisoformat(d["decided_at"][:10]) for d in unique.values()}
    assert len(days) == 1
    spent = await FerretBudget(db).state(days.pop(), Money.of("1000000", "EUR"))
    assert spent.spent.amount == sum(Decimal(d["total_value"]["amount"])
                                     for d in unique.values())
    repeats = sum(per_incident.values()) - INCIDENTS
    assert repeats <= INCIDENTS // 4, f"{repeats} repeated publications: more than one batch"
