"""`make bench`: Amends' throughput and latency on the local stack, against the raw Kafka
ceiling measured in the same run with the same partitions and message sizes.

Each figure is measured several times; the table shows the median and the spread
(min to max), and a JSON file keeps every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from amends import stack
from schemas.common import deterministic_id
from services.common.messaging import ensure_topics

PARTITIONS = 6
Say = Callable[[str], None]


@dataclass
class Figure:
    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.runs), max(self.runs)) if self.runs else (float("nan"), float("nan"))


def upstream_event(run: str, i: int, now: datetime) -> bytes:
    """A late delivery for its own customer: the message every benchmark sends."""
    customer = f"bench-{run}-{i}"
    promised = now - timedelta(minutes=90 + i % 600)
    return json.dumps({
        "specversion": "1.0", "id": deterministic_id("bench", run, str(i)),
        "source": "bench/shop", "type": "order.delivered", "time": now.isoformat(),
        "subject": customer,
        "data": {"order_id": f"o-{run}-{i}",
                 "customer": {"id": customer, "tier": ("standard", "silver", "gold")[i % 3],
                              "locale": "en", "contact": {"email": f"{customer}@example.org"}},
                 "delivered_at": now.isoformat(), "promised_delivery_at": promised.isoformat(),
                 "total": {"amount": "48.90", "currency": "EUR"}},
    }).encode()


async def produce(bootstrap: str, topic: str, run: str, count: int,
                  rate: float | None = None) -> dict[str, float]:
    """Send `count` events (at `rate` per second if given); returns send time per customer."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        began = time.monotonic()
        pending = []
        for i in range(count):
            if rate:
                delay = began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            now = datetime.now(UTC)
            customer = f"bench-{run}-{i}"
            sent[customer] = time.time()
            pending.append(await producer.send(topic, upstream_event(run, i, now),
                                               key=customer.encode()))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def end_total(admin: AIOKafkaConsumer, topic: str) -> int:
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = await admin.end_offsets(partitions)
    return int(sum(ends.values()))


async def wait_for(bootstrap: str, topic: str, expected: int, timeout_s: float) -> float:
    """Poll the topic's end offsets until it holds `expected` messages; returns the moment."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await end_total(consumer, topic) >= expected:
                return time.monotonic()
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    raise TimeoutError(f"{topic} did not reach {expected} messages in {timeout_s:.0f}s")


@contextmanager
def processes(commands: list[tuple[list[str], dict[str, str]]], logs: Path) -> Iterator[None]:
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for i, (argv, env) in enumerate(commands):
            log = (logs / f"proc-{i}.log").open("wb")
            procs.append(subprocess.Popen(argv, env={**os.environ, **env}, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=stack.REPO_ROOT))
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass(frozen=True)
class Topics:
    upstream: str
    incidents: str
    decisions: str
    outcomes: str
    deadletter: str

    @classmethod
    def fresh(cls, run: str) -> Topics:
        return cls(*(f"bench.{name}.{run}" for name in
                     ("upstream", "incidents", "decisions", "outcomes", "deadletter")))


async def ceiling(bootstrap: str, count: int, logs: Path) -> float:
    """Messages per second through three plain consume-and-forward hops."""
    run = uuid.uuid4().hex[:8]
    t = Topics.fresh(run)
    await ensure_topics(bootstrap, [t.upstream, t.incidents, t.decisions, t.outcomes],
                        PARTITIONS)
    hops = [(t.upstream, t.incidents), (t.incidents, t.decisions), (t.decisions, t.outcomes)]
    commands: list[tuple[list[str], dict[str, str]]] = [
        ([sys.executable, "-m", "amends.bench_hop", a, b, f"hop-{run}-{n}", bootstrap],
         {}) for n, (a, b) in enumerate(hops)]
    with processes(commands, logs / f"ceiling-{run}"):
        await asyncio.sleep(3.0)  # let the three groups form
        began = time.monotonic()
        await produce(bootstrap, t.upstream, run, count)
        done = await wait_for(bootstrap, t.outcomes, count, timeout_s=600)
    return count / (done - began)


def service_env(bootstrap: str, mongo_url: str, t: Topics, run: str,
                ports: dict[str, int]) -> dict[str, dict[str, str]]:
    shared = {
        "AMENDS_KAFKA_BOOTSTRAP": bootstrap, "AMENDS_MONGO_URL": mongo_url,
        "AMENDS_DEADLETTER_TOPIC": t.deadletter, "AMENDS_INCIDENTS_TOPIC": t.incidents,
        "AMENDS_DECISIONS_TOPIC": t.decisions, "AMENDS_OUTCOMES_TOPIC": t.outcomes,
        "AMENDS_INTAKE_ORDERS_TOPIC": t.upstream, "AMENDS_LOG_LEVEL": "WARNING",
        "AMENDS_INTAKE_SUPPORT_TOPIC": f"bench.support.{run}",
        "AMENDS_INTAKE_PAYMENTS_TOPIC": f"bench.payments.{run}",
        "AMENDS_INTAKE_OUTAGES_TOPIC": f"bench.outages.{run}",
        "AMENDS_FULFILMENT_TASKS_TOPIC": f"bench.tasks.{run}",
    }
    return {name: {**shared, f"AMENDS_{name.upper()}_MONGO_DB": f"bench_{name}_{run}",
                   f"AMENDS_{name.upper()}_HTTP_PORT": str(port)}
            for name, port in ports.items()}


@contextmanager
def pipeline(bootstrap: str, mongo_url: str, run: str, logs: Path) -> Iterator[Topics]:
    t = Topics.fresh(run)
    ports = {"intake": 18001, "decision": 18002, "fulfilment": 18003}
    envs = service_env(bootstrap, mongo_url, t, run, ports)
    commands = [([sys.executable, "-m", f"services.{name}"], env) for name, env in envs.items()]
    with processes(commands, logs / f"pipeline-{run}"):
        deadline = time.monotonic() + 90
        for port in ports.values():
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service on {port} did not become healthy")
                time.sleep(0.2)
        time.sleep(2.0)  # let the consumer groups settle
        yield t


OUTCOMES_PER_INCIDENT = 2  # the default late-delivery remedy: an apology and points


async def pipeline_throughput(bootstrap: str, mongo_url: str, count: int, logs: Path) -> float:
    run = uuid.uuid4().hex[:8]
    with pipeline(bootstrap, mongo_url, run, logs) as t:
        began = time.monotonic()
        await produce(bootstrap, t.upstream, run, count)
        done = await wait_for(bootstrap, t.outcomes, count * OUTCOMES_PER_INCIDENT,
                              timeout_s=900)
    return count / (done - began)


async def _group_lag(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str,
                     topic: str) -> int:
    committed = await admin.list_consumer_group_offsets(group)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = await consumer.end_offsets(partitions)
    return int(sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0))
                   for tp in partitions))


async def latency(bootstrap: str, mongo_url: str, rate: float, seconds: float,
                  logs: Path) -> dict[str, float]:
    """Event-to-apology latency percentiles (ms) at a fixed offered load, and the largest
    consumer lag seen during the run."""
    run = uuid.uuid4().hex[:8]
    count = int(rate * seconds)
    with pipeline(bootstrap, mongo_url, run, logs) as t:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await admin.start()
        await probe.start()
        max_lag = 0
        sending = asyncio.create_task(produce(bootstrap, t.upstream, run, count, rate))
        try:
            while not sending.done():
                max_lag = max(max_lag, await _group_lag(admin, probe, "intake", t.upstream))
                await asyncio.sleep(0.5)
            sent = await sending
        finally:
            await admin.close()
            await probe.stop()
        apologies = await _apology_times(bootstrap, t.outcomes, count)
    delays = sorted((apologies[c] - sent[c]) * 1000 for c in apologies if c in sent)
    return {"p50": _pct(delays, 50), "p99": _pct(delays, 99), "p99.9": _pct(delays, 99.9),
            "max_lag": float(max_lag), "measured": float(len(delays))}


async def _apology_times(bootstrap: str, topic: str, expected: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 300
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    data = json.loads(record.value)["data"]
                    if data["kind"] == "apology":
                        found[data["customer_id"]] = datetime.fromisoformat(
                            data["completed_at"]).timestamp()
    finally:
        await consumer.stop()
    return found


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))
    return values[index]


async def repeat(times: int, measure: Callable[[], Awaitable[float]]) -> list[float]:
    return [await measure() for _ in range(times)]


def save(figures: list[Figure], out_dir: Path, settings: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(), "settings": settings,
        "cpus": os.cpu_count(),
        "figures": [asdict(f) | {"median": f.median, "spread": f.spread} for f in figures],
    }, indent=2) + "\n")
    return path
