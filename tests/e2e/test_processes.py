"""The three services as processes of their own (`python -m services.<name>`), configured
only through the environment, against the real broker and database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.factories import late_and_on_time
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.pipeline import Topics

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(infra: Infra, topics: Topics, suffix: str) -> dict[str, str]:
    return {
        **os.environ,
        "AMENDS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "AMENDS_MONGO_URL": infra.mongo_url,
        "AMENDS_DEADLETTER_TOPIC": topics.deadletter,
        "AMENDS_INTAKE_MONGO_DB": f"e2e_intake_{suffix}",
        "AMENDS_DECISION_MONGO_DB": f"e2e_decision_{suffix}",
        "AMENDS_FULFILMENT_MONGO_DB": f"e2e_fulfilment_{suffix}",
        "AMENDS_INTAKE_ORDERS_TOPIC": topics.orders,
        "AMENDS_INTAKE_SUPPORT_TOPIC": topics.support,
        "AMENDS_INTAKE_PAYMENTS_TOPIC": topics.payments,
        "AMENDS_INTAKE_OUTAGES_TOPIC": topics.outages,
        "AMENDS_INCIDENTS_TOPIC": topics.incidents,
        "AMENDS_DECISIONS_TOPIC": topics.decisions,
        "AMENDS_OUTCOMES_TOPIC": topics.outcomes,
        "AMENDS_FULFILMENT_TASKS_TOPIC": topics.tasks,
    }


@pytest.fixture
def services(infra: Infra, suffix: str, tmp_path: Path) -> Iterator[tuple[Topics, dict[str, int]]]:
    topics = Topics.unique(suffix)
    env = _env(infra, topics, suffix)
    ports = {name: _free_port() for name in ("intake", "decision", "fulfilment")}
    procs = []
    for name, port in ports.items():
        log = (tmp_path / f"{name}.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, env={**env, f"AMENDS_{name.upper()}_HTTP_PORT": str(port)}))
    try:
        deadline = time.monotonic() + 60
        for name, port in ports.items():
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()
                time.sleep(0.2)
        yield topics, ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert proc.wait(timeout=30) in {0, -signal.SIGTERM}
        for name in ports:
            assert "Application shutdown complete" in (tmp_path / f"{name}.log").read_text()


async def test_services_as_processes_apologise_for_late_deliveries(
        infra: Infra, suffix: str, services: tuple[Topics, dict[str, int]]) -> None:
    topics, ports = services
    late, on_time = late_and_on_time(suffix, datetime(2026, 11, 2, 9, tzinfo=UTC), 5, 3)
    await produce(infra.kafka_bootstrap, topics.orders, as_json(late + on_time))
    decisions = await collect(infra.kafka_bootstrap, topics.decisions,
                              lambda seen: len(seen) >= len(late), settle_s=1.0)
    actions = sorted((d["data"]["incident"]["customer"]["id"], a["kind"])
                     for d in decisions for a in d["data"]["actions"])
    outcomes = await collect(infra.kafka_bootstrap, topics.outcomes,
                             lambda seen: len(seen) >= len(actions), settle_s=1.0)
    assert sorted((m["data"]["customer_id"], m["data"]["kind"]) for m in outcomes) == actions
    assert {c for c, k in actions if k == "apology"} == {e["subject"] for e in late}

    async with httpx.AsyncClient() as client:
        alive = await client.get(f"http://127.0.0.1:{ports['decision']}/alive")
        metrics = (await client.get(f"http://127.0.0.1:{ports['fulfilment']}/metrics")).text
    assert alive.json() == {"status": "alive"}
    assert 'amends_actions_total{kind="apology",result="succeeded"} 5.0' in metrics
    assert "amends_time_to_apology_seconds_count 5.0" in metrics
    assert 'amends_consumer_lag_messages{partition=' in metrics
