"""The three services as processes of their own (`python -m services.<name>`), configured
only through the environment, against the real broker and database; apologies go by e-mail
to a real SMTP server."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.factories import late_and_on_time
from tests.infra import Infra
from tests.kafka_tools import as_json, collect, produce
from tests.mail import Inbox, body, parsed
from tests.pipeline import Topics
from tests.processes import free_port, service_env, start, wait_healthy

pytestmark = pytest.mark.e2e

@pytest.fixture
def services(infra: Infra, suffix: str, tmp_path: Path,
             inbox: tuple[Inbox, int]) -> Iterator[tuple[Topics, dict[str, int]]]:
    topics = Topics.unique(suffix)
    env = {**service_env(infra, topics, suffix), "AMENDS_FULFILMENT_SMTP_HOST": "127.0.0.1",
           "AMENDS_FULFILMENT_SMTP_PORT": str(inbox[1]),
           "AMENDS_FULFILMENT_SMTP_FROM": "Customer care <care@shop.example>"}
    ports = {name: free_port() for name in ("intake", "decision", "fulfilment")}
    procs = [start(name, env, port, tmp_path / f"{name}.log") for name, port in ports.items()]
    try:
        for name, port in ports.items():
            wait_healthy(port, tmp_path / f"{name}.log")
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
        infra: Infra, suffix: str, services: tuple[Topics, dict[str, int]],
        inbox: tuple[Inbox, int]) -> None:
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

    # Each late customer got one e-mail: the rendered apology for their order.
    mails = [parsed(envelope) for envelope in inbox[0].envelopes]
    late_orders = {e["data"]["customer"]["contact"]["email"]: e["data"]["order_id"]
                   for e in late}
    assert sorted(str(m["To"]) for m in mails) == sorted(late_orders)
    for mail in mails:
        assert mail["Subject"] == "We're sorry your order was late"
        text = body(mail, "plain")
        assert text.startswith("Hello"), text
        assert f"We're sorry: your order {late_orders[str(mail['To'])]} arrived" in text
        assert body(mail, "html").lstrip().lower().startswith("<!doctype html>")
