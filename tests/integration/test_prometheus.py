"""A real Prometheus server scrapes intake's /metrics while a late delivery goes through the
real broker and database, and sees the incident it caused; the repository's rules load and
evaluate against the real series. The local stack's own Prometheus finds the three services
on the ports their settings give, with the repository's alerts loaded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devtools import stack
from devtools.gateway_peer import serving
from tests.factories import order_delivered
from tests.infra import Infra
from tests.kafka_tools import as_json, produce
from tests.pipeline import running_pipeline
from tests.processes import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "amends.rules.yml"
INSTALL_HINT = "install Debian's prometheus package (apt-get install prometheus)"

Result = list[dict[str, Any]]


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found:
        return found
    if os.environ.get("AMENDS_SKIP_PROMTOOL") == "1":
        pytest.skip("prometheus is not installed and AMENDS_SKIP_PROMTOOL=1")
    pytest.fail(f"prometheus is not on PATH: {INSTALL_HINT}, "
                "or set AMENDS_SKIP_PROMTOOL=1 to skip this test")


@contextlib.contextmanager
def prometheus(binary: str, workdir: Path, job: str, target_port: int) -> Iterator[str]:
    """A Prometheus server scraping one target every second with the repository's rules;
    yields its base URL and is killed on the way out."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": job,
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        process.kill()
        process.wait()
        print(f"--- prometheus log ---\n{log_path.read_text()}")  # noqa: T201 - shown on failure
        raise
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def query_until(client: httpx.AsyncClient, query: str, done: Callable[[Result], bool],
                      *, timeout_s: float = 60.0) -> Result:
    """Ask Prometheus `query` until `done(result)` holds; fails with the last answer."""
    deadline = time.monotonic() + timeout_s
    last: Result | str = "no answer"
    while time.monotonic() < deadline:
        try:
            response = await client.get("/api/v1/query", params={"query": query})
        except httpx.TransportError as exc:  # not listening yet
            last = repr(exc)
        else:
            if response.status_code != 200:  # 503 until its storage is open
                last = f"{response.status_code} {response.text.strip()}"
            elif (body := response.json()).get("status") == "success":
                result: Result = body["data"]["result"]
                if done(result):
                    return result
                last = result
            else:
                last = str(body)
        await asyncio.sleep(0.5)
    pytest.fail(f"{query}: not as expected within {timeout_s} s; last answer: {last}")


def values(result: Result) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


async def rule_health(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.get("/api/v1/rules")
    groups = response.json()["data"]["groups"]
    return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}


async def test_prometheus_sees_the_incident_a_late_delivery_caused(
        infra: Infra, suffix: str, tmp_path: Path) -> None:
    binary = prometheus_binary()
    now = datetime.now(UTC)
    late = order_delivered(f"{suffix}-late", f"{suffix}-o-late",
                           promised=now - timedelta(hours=2), delivered=now - timedelta(hours=1))

    async with (running_pipeline(infra, suffix) as pipeline,
                serving(pipeline.intake) as intake_url):
        port = int(intake_url.rsplit(":", 1)[1])
        with prometheus(binary, tmp_path, "amends-intake", port) as url:
            async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
                await query_until(client, 'up{job="amends-intake"}',
                                  lambda r: values(r) == [1.0])
                await produce(infra.kafka_bootstrap, pipeline.topics.orders, as_json([late]))

                incidents = await query_until(
                    client, 'amends_incidents_detected_total{type="delivery_delayed"}',
                    lambda r: values(r) == [1.0])
                assert incidents[0]["metric"]["job"] == "amends-intake"
                assert incidents[0]["metric"]["detection"] == "proactive"

                # the repository's rules run against the real series
                await query_until(
                    client, 'type_detection:amends_incidents_detected:rate5m'
                            '{type="delivery_delayed", detection="proactive"}',
                    lambda r: len(r) == 1)
                deadline = time.monotonic() + 30
                while "unknown" in (health := await rule_health(client)).values():
                    assert time.monotonic() < deadline, health
                    await asyncio.sleep(0.5)
                assert set(health.values()) == {"ok"}, health


async def test_the_local_stacks_prometheus_scrapes_the_services(
        infra: Infra, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prometheus_binary()
    settings = stack.StackSettings(state_dir=tmp_path / "state", prometheus_port=free_port(),
                                   cache_dir_override=tmp_path / "cache")
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}

    async with (running_pipeline(infra, suffix) as pipeline,
                serving(pipeline.intake) as intake_url,
                serving(pipeline.decision) as decision_url,
                serving(pipeline.fulfilment) as fulfilment_url):
        urls = {"intake": intake_url, "decision": decision_url, "fulfilment": fulfilment_url}
        # The stack reads each service's port from the service's settings, as `make up`
        # starts them.
        monkeypatch.delenv("AMENDS_HTTP_PORT", raising=False)
        for name, url in urls.items():
            monkeypatch.setenv(f"AMENDS_{name.upper()}_HTTP_PORT", url.rsplit(":", 1)[1])
        try:
            # Off the event loop: the services answer the scrapes on it meanwhile.
            assert await asyncio.to_thread(stack.start_prometheus, settings) == "started"
            deadline = time.monotonic() + 30
            while True:
                targets = await asyncio.to_thread(stack.scrape_targets, settings.prometheus_url)
                if targets and all(t.health == "up" for t in targets):
                    break
                assert time.monotonic() < deadline, targets
                await asyncio.sleep(0.5)
            assert {t.job: t.address for t in targets} == {
                f"amends-{name}": f"{url}/metrics" for name, url in urls.items()}
            loaded = await asyncio.to_thread(stack.alert_states, settings.prometheus_url)
            assert {a.name for a in loaded} == alerts
            assert await asyncio.to_thread(stack.start_prometheus, settings) == (
                "already running")
        finally:
            stopped = stack.down(settings, ["prometheus"])
    assert stopped == {"prometheus": "stopped"}
    assert (settings.state_dir / "prometheus-data").is_dir()
    assert not stack.port_open(settings.prometheus_port)
