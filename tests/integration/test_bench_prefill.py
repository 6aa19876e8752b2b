"""The bench's bulk prefill (`devtools.bench_prefill`) stores what the pipeline would have: on
real Kafka and the real database, a customer stored in bulk is a returning customer to the
running services, decided exactly like one whose first incident went through the pipeline."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools import bench
from tests.infra import Infra

pytestmark = pytest.mark.integration


def _treatment(decision: dict[str, Any]) -> tuple[object, ...]:
    return (decision["status"],
            [(a["kind"], a.get("amount"), a.get("points"), a.get("quantity"))
             for a in decision["actions"]],
            sorted(r["rule_id"] for r in decision["rules"] if r["matched"]),
            sorted(c["cap"] for c in decision["caps"]))


async def _decided(infra: Infra, topic: str, count: int) -> dict[str, dict[str, Any]]:
    """The decisions on `topic` by order id, once there are `count`."""
    deadline = time.monotonic() + 120
    async with bench.Watch(infra.kafka_bootstrap) as watch:
        assert await watch.until(topic, count, deadline), "the decisions did not come"
    found = {}
    async for value in bench.read_all(infra.kafka_bootstrap, topic):
        data = json.loads(value)["data"]
        found[data["incident"]["order_id"]] = data
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_customer_stored_in_bulk_returns_like_one_carried_through(
        infra: Infra, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench's own HTTP ports may be taken by a bench someone runs on the same machine.
    monkeypatch.setattr(bench, "PORTS", {name: _free_port() for name in bench.SERVICES})
    boot, mongo = infra.kafka_bootstrap, infra.mongo_url
    stored = await bench.store(boot, mongo, 2)  # customers 0 and 1, order numbers 0 and 1
    run = stored.run
    try:
        async with bench.pipeline(boot, mongo, suffix, tmp_path, stored=stored) as running:
            t, now = running.topics, datetime.now(UTC)
            # Order numbers alike modulo 3 and 600 have the same tier and the same delay.
            await bench.produce(boot, t.upstream, [
                (f"bench-{run}-1000", bench.upstream_event(run, 1200, now, 1000))])
            await _decided(infra, t.decisions, running.warm_decisions + 1)
            await bench.produce(boot, t.upstream, [
                (f"bench-{run}-0", bench.upstream_event(run, 1201, now, 0)),
                (f"bench-{run}-1000", bench.upstream_event(run, 1801, now, 1000)),
                (f"bench-{run}-2000", bench.upstream_event(run, 2401, now, 2000))])
            decided = await _decided(infra, t.decisions, running.warm_decisions + 4)
    finally:
        await bench.forget_stored(boot, mongo, stored)
    after_bulk = decided[f"o-{run}-1201"]
    after_pipeline = decided[f"o-{run}-1801"]
    first_time = decided[f"o-{run}-2401"]
    assert after_bulk["incident"]["customer"]["id"] == f"bench-{run}-0"
    assert _treatment(after_bulk) == _treatment(after_pipeline)
    # The history made a difference, so the bulk prefill's was seen.
    assert _treatment(after_bulk) != _treatment(first_time)
