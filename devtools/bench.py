"""`python -m devtools bench` on the local stack: the raw Kafka ceiling, the pipeline's
throughput and event-to-apology latency, and an outage's fan-out, each run on fresh topics and
databases.

The ceiling is three plain consume-and-forward hops (`devtools.bench_hop`) over the same
partitions with messages the size of the pipeline's own. The pipeline is the three services
as processes (`python -m services.<name>`), exactly as deployed. A run that does not finish
within its time limit is reported as unfinished, with how far it got, instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devtools import stack
from devtools.bench_cpu import Meter, spent
from devtools.bench_prefill import Prefill, Progress, bulk_prefill
from devtools.bench_stats import Window, first_and_last, percentile
from schemas.common import deterministic_id
from schemas.incident import IncidentType, incident_id
from schemas.topics import DEFAULT_PARTITIONS

PARTITIONS = DEFAULT_PARTITIONS  # what the services create their topics with
SERVICES = ("intake", "decision", "fulfilment")
# The services' HTTP ports, 18101 to 18103 unless AMENDS_BENCH_HTTP_PORT_BASE moves them (two
# benches on one machine, each on its own stack).
_PORT_BASE = int(os.environ.get("AMENDS_BENCH_HTTP_PORT_BASE") or 18100)
PORTS = {name: _PORT_BASE + n for n, name in enumerate(SERVICES, start=1)}
Say = Callable[[str], None]

# The pipeline's own message sizes (docs/performance.md): the ceiling moves the same bytes.
INCIDENT_BYTES = 1_100
DECISION_BYTES = 7_000
OUTCOME_BYTES = 600
OUTCOMES_PER_INCIDENT = 3  # an apology, points and free delivery for most late deliveries


def _quiet(_: str) -> None:
    pass


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


# --- what the benchmark sends ----------------------------------------------------------


def upstream_event(run: str, i: int, now: datetime, customer_no: int | None = None) -> bytes:
    """A late delivery of order `i`, for customer `customer_no` (by default a customer of its
    own): the event the throughput and latency runs send. Each becomes one incident, one
    decision and its outcomes (no review trigger fires for a proactive late delivery)."""
    customer = f"bench-{run}-{i if customer_no is None else customer_no}"
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


def outage_incident(run: str, i: int, started: datetime, now: datetime) -> bytes:
    """The incident intake makes for one customer affected by an outage (as
    `outage_incidents` does), as an `amends.incident.detected` event."""
    outage = f"bench-outage-{run}"
    customer = f"bench-{run}-{i}"
    iid = incident_id(IncidentType.service_outage, outage, customer)
    return json.dumps({
        "specversion": "1.0", "id": iid, "source": "bench/status-page",
        "type": "amends.incident.detected", "time": now.isoformat(), "subject": customer,
        "data": {"incident_id": iid, "type": "service_outage", "detection": "proactive",
                 "severity": "high",
                 "customer": {"id": customer, "tier": ("standard", "silver", "gold")[i % 3],
                              "locale": "en", "contact": {"email": f"{customer}@example.org"}},
                 "occurred_at": started.isoformat(), "detected_at": now.isoformat(),
                 "source": "bench/status-page", "outage_id": outage, "outage_minutes": 90,
                 "summary": "checkout was unavailable (major outage)"},
    }).encode()


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[str, bytes]],
                  rate: float | None = None) -> dict[str, float]:
    """Send (key, value) messages, at `rate` per second if given; returns when each key was
    sent (wall clock, as the broker's record timestamps are)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        began = time.monotonic()
        pending = []
        for i, (key, value) in enumerate(messages):
            if rate:
                delay = began + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent[key] = time.time()
            pending.append(await producer.send(topic, value, key=key.encode()))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def late_deliveries(run: str, count: int, *, start: int = 0, returning: int = 0,
                    at: datetime | None = None) -> Iterator[tuple[str, bytes]]:
    """Orders `start` to `start + count`, each for a customer of its own; with `returning`
    (the customers stored before, `bench-<run>-0` to `returning - 1`), every other one is
    instead for one of the even-numbered half of those, each at most once, spread over all
    of them (old and recent), while they last."""
    now = at or datetime.now(UTC)
    pool = (returning + 1) // 2
    step = max(1, pool // max(1, (count + 1) // 2))
    for i in range(start, start + count):
        j = i - start
        back = j // 2 * step
        who = 2 * back if j % 2 == 0 and back < pool else i
        yield f"bench-{run}-{who}", upstream_event(run, i, now, who)


# --- watching topics -------------------------------------------------------------------


async def topic_total(consumer: AIOKafkaConsumer, topic: str) -> int:
    """Messages in `topic` (the sum of its partitions' end offsets)."""
    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    return int(sum(ends.values()))


@dataclass
class Watch:
    """End offsets of the pipeline's topics, polled without joining any group."""

    bootstrap: str
    consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Watch:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def total(self, topic: str) -> int:
        assert self.consumer is not None
        return await topic_total(self.consumer, topic)

    async def until(self, topic: str, expected: int, deadline: float) -> bool:
        """Wait until `topic` holds `expected` messages; False if the deadline passed."""
        while time.monotonic() < deadline:
            if await self.total(topic) >= expected:
                return True
            await asyncio.sleep(0.05)
        return False


async def read_all(bootstrap: str, topic: str) -> AsyncIterator[bytes]:
    """Every message now in `topic`, from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        left = {tp for tp in partitions if ends[tp] > 0}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.value is not None:
                        yield record.value
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()


async def actions_to_carry_out(bootstrap: str, topic: str) -> tuple[int, int]:
    """(decisions, actions) on the decisions topic: the outcomes fulfilment will publish are
    the actions of every decision that is not held for review."""
    decisions = actions = 0
    async for value in read_all(bootstrap, topic):
        data = json.loads(value)["data"]
        decisions += 1
        if data["status"] != "held":
            actions += len(data["actions"])
    return decisions, actions


@dataclass
class Carried:
    """How far a throughput run got: all the way (`finished`) or until its time limit."""

    seconds: float
    incidents: int
    decided: int
    outcomes: int
    expected_outcomes: int | None
    cpu_s: dict[str, float] = field(default_factory=dict)  # by process, over `seconds`

    @property
    def finished(self) -> bool:
        return self.expected_outcomes is not None and self.outcomes >= self.expected_outcomes

    @property
    def rate(self) -> float:
        """Incidents per second from the first event sent to the last outcome, or while
        unfinished an estimate from the outcomes so far."""
        if self.finished:
            return self.incidents / self.seconds
        per_incident = (self.expected_outcomes / self.incidents if self.expected_outcomes
                        else OUTCOMES_PER_INCIDENT)
        return self.outcomes / per_incident / self.seconds

    def note(self) -> str:
        if self.finished:
            return ""
        return (f"unfinished after {self.seconds:.0f} s: {self.decided:,} of "
                f"{self.incidents:,} decided, {self.outcomes:,} outcomes; rate estimated")


async def carried_out(bootstrap: str, t: Topics, incidents: int, began: float, *,
                      limit_s: float, say: Say = _quiet, warm: Running | None = None
                      ) -> Carried:
    """Wait until every incident is decided and every action's outcome is published (the
    warm-up's decision and outcomes, already there, not counted)."""
    deadline = began + limit_s
    warm_decisions = warm.warm_decisions if warm else 0
    warm_outcomes = warm.warm_outcomes if warm else 0
    async with Watch(bootstrap) as watch:

        async def until(topic: str, before: int, target: int, what: str) -> int:
            """Messages on `topic` beyond `before`, once they reach `target` or time is up."""
            while time.monotonic() < deadline:
                seen = await watch.total(topic) - before
                say(f"{seen:,} of {target:,} {what}")
                if seen >= target:
                    return seen
                await asyncio.sleep(0.05)
            return await watch.total(topic) - before

        decided = await until(t.decisions, warm_decisions, incidents, "decided")
        expected = None
        if decided >= incidents:
            _, actions = await actions_to_carry_out(bootstrap, t.decisions)
            expected = actions - warm_outcomes
            await until(t.outcomes, warm_outcomes, expected, "outcomes")
        outcomes = await watch.total(t.outcomes) - warm_outcomes
        done = time.monotonic()
    return Carried(done - began, incidents, decided, outcomes, expected)


# --- processes ---------------------------------------------------------------------------


@contextmanager
def processes(commands: list[tuple[list[str], dict[str, str]]], logs: Path
              ) -> Iterator[dict[str, int]]:
    """Run the commands (each with its own log); stop them all on the way out. Yields their
    pids by name."""
    procs: list[subprocess.Popen[bytes]] = []
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for i, (argv, env) in enumerate(commands):
            name = env.get("AMENDS_BENCH_NAME", f"proc-{i}")
            with (logs / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(argv, env={**os.environ, **env}, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              cwd=stack.REPO_ROOT))
        yield {env.get("AMENDS_BENCH_NAME", f"proc-{i}"): proc.pid
               for i, ((_, env), proc) in enumerate(zip(commands, procs, strict=True))}
    finally:
        for proc in procs:
            # A profiled service is stopped like Ctrl-C: pyinstrument writes its profile on
            # KeyboardInterrupt, not when uvicorn re-raises a SIGTERM.
            proc.send_signal(signal.SIGINT if os.environ.get(PROFILE_ENV) == "1"
                             else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def ceiling(bootstrap: str, count: int, logs: Path, *, limit_s: float,
                  say: Say = _quiet) -> Carried:
    """Three plain consume-and-forward hops: upstream → incidents → decisions → outcomes."""
    run = uuid.uuid4().hex[:8]
    t = Topics.fresh(run)
    from services.common.messaging import ensure_topics  # noqa: PLC0415 - heavy import

    await ensure_topics(bootstrap, [t.upstream, t.incidents, t.decisions, t.outcomes],
                        PARTITIONS)
    hops = [(t.upstream, t.incidents, INCIDENT_BYTES, 1),
            (t.incidents, t.decisions, DECISION_BYTES, 1),
            (t.decisions, t.outcomes, OUTCOME_BYTES, OUTCOMES_PER_INCIDENT)]
    commands: list[tuple[list[str], dict[str, str]]] = [
        ([sys.executable, "-m", "devtools.bench_hop", a, b, f"hop-{run}-{n}", bootstrap,
          str(size), str(copies)], {"AMENDS_BENCH_NAME": f"hop-{n}"})
        for n, (a, b, size, copies) in enumerate(hops)]
    try:
        with processes(commands, logs / f"ceiling-{run}"):
            say("warming up: one event through the three hops")
            warm = [(f"warm-{run}", upstream_event(f"warm-{run}", 0, datetime.now(UTC)))]
            async with Watch(bootstrap) as watch:
                await produce(bootstrap, t.upstream, warm)
                deadline = time.monotonic() + 60
                if not await watch.until(t.outcomes, OUTCOMES_PER_INCIDENT, deadline):
                    raise TimeoutError(f"the ceiling's hops did not start; see {logs}")
                events = list(late_deliveries(run, count))
                say(f"sending {count:,} events")
                began = time.monotonic()
                await produce(bootstrap, t.upstream, events)
                expected = (count + 1) * OUTCOMES_PER_INCIDENT
                await watch.until(t.outcomes, expected, began + limit_s)
                outcomes = await watch.total(t.outcomes) - OUTCOMES_PER_INCIDENT
            seconds = time.monotonic() - began
    finally:  # after the hops stopped: a running consumer would create its topic again
        await stack.forget(bootstrap, "", [],
                           [t.upstream, t.incidents, t.decisions, t.outcomes])
    return Carried(seconds, count, count, outcomes, count * OUTCOMES_PER_INCIDENT)


# --- the pipeline ------------------------------------------------------------------------


def service_env(bootstrap: str, mongo_url: str, t: Topics, run: str,
                db_run: str | None = None) -> dict[str, dict[str, str]]:
    """Each service's environment: the run's own topics and databases (as in
    tests/processes.py; those of `db_run` when given: a prefill's), and batches as
    deployed."""
    shared = {
        "AMENDS_KAFKA_BOOTSTRAP": bootstrap, "AMENDS_MONGO_URL": mongo_url,
        "AMENDS_DEADLETTER_TOPIC": t.deadletter, "AMENDS_INCIDENTS_TOPIC": t.incidents,
        "AMENDS_DECISIONS_TOPIC": t.decisions, "AMENDS_OUTCOMES_TOPIC": t.outcomes,
        "AMENDS_INTAKE_ORDERS_TOPIC": t.upstream, "AMENDS_LOG_LEVEL": "WARNING",
        "AMENDS_INTAKE_SUPPORT_TOPIC": f"bench.support.{run}",
        "AMENDS_INTAKE_PAYMENTS_TOPIC": f"bench.payments.{run}",
        "AMENDS_INTAKE_OUTAGES_TOPIC": f"bench.outages.{run}",
        "AMENDS_FULFILMENT_TASKS_TOPIC": f"bench.tasks.{run}",
        # The fan-out measures how fast an outage is carried out, not its abort window
        # (ADR 0015): the remedies are released as soon as they are decided, unpaced.
        "AMENDS_DECISION_OUTAGE_ABORT_WINDOW_S": "0",
    }
    return {name: {**shared, f"AMENDS_{name.upper()}_MONGO_DB": f"bench_{name}_{db_run or run}",
                   f"AMENDS_{name.upper()}_HTTP_PORT": str(PORTS[name]),
                   "AMENDS_BENCH_NAME": name}
            for name in SERVICES}


PROFILE_ENV = "AMENDS_BENCH_PROFILE"


def profiled(logs: Path, service: str) -> list[str]:
    """The interpreter arguments that run `service`; with AMENDS_BENCH_PROFILE=1 under
    pyinstrument and with its database commands timed (`devtools.bench_mongo`), both written
    next to its log when it stops."""
    if os.environ.get(PROFILE_ENV) != "1":
        return ["-m", f"services.{service}"]
    return ["-m", "pyinstrument", "--renderer", "text", "--outfile",
            str(logs / f"{service}.profile.txt"), "-m", "devtools.bench_mongo",
            str(logs / f"{service}.mongo.json"), service]


@dataclass(frozen=True)
class Running:
    """The pipeline's topics, and what its warm-up left on them."""

    topics: Topics
    warm_decisions: int
    warm_outcomes: int
    meter: Meter  # the CPU of the services, the broker and the database


@asynccontextmanager
async def pipeline(bootstrap: str, mongo_url: str, run: str, logs: Path, *,
                   services: Sequence[str] = SERVICES, say: Say = _quiet,
                   stored: Stored | None = None) -> AsyncIterator[Running]:
    """The services as processes on the run's topics, healthy, and warmed up by one event
    carried all the way through (consumer groups joined, collections and indexes made). With
    `stored`, on its databases (kept when the run ends), else on the run's own."""
    t = Topics.fresh(run)
    envs = service_env(bootstrap, mongo_url, t, run, stored.run if stored else None)
    here = logs / f"pipeline-{run}"
    for env in envs.values():  # the run's spans beside its logs (AMENDS_TRACING=off: none)
        env["AMENDS_TRACE_DIR"] = os.environ.get("AMENDS_TRACE_DIR") or str(here / "traces")
    commands = [([sys.executable, *profiled(here, name)], envs[name]) for name in services]
    try:
        with processes(commands, here) as pids:
            say("starting " + ", ".join(services))
            async with httpx.AsyncClient(timeout=1.0) as http:
                deadline = time.monotonic() + 90
                for name in services:
                    while True:
                        with suppress(httpx.HTTPError):
                            reply = await http.get(f"http://127.0.0.1:{PORTS[name]}/health")
                            if reply.status_code == 200:
                                break
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{name} did not become healthy; see {logs}")
                        await asyncio.sleep(0.2)
            say("warming up: one incident through the pipeline")
            key = f"warm-{run}"
            if "intake" in services:
                topic, value = t.upstream, upstream_event(key, 0, datetime.now(UTC))
            else:
                now = datetime.now(UTC)
                topic, value = t.incidents, outage_incident(key, 0, now, now)
            await produce(bootstrap, topic, [(key, value)])
            warm = await carried_out(bootstrap, t, 1, time.monotonic(), limit_s=120)
            if not warm.finished:
                raise TimeoutError(f"the warm-up incident was not carried out; see {logs}")
            yield Running(t, warm.decided, warm.outcomes, Meter(pids, _stack_sessions()))
    finally:  # after the services stopped: a running consumer would create its topic again
        await _forget(bootstrap, mongo_url, [envs[n] for n in services],
                      databases=stored is None)


def _stack_sessions() -> dict[str, int]:
    """The broker's and the database's sessions (each runs in its own, led by its pid)."""
    run_dir = stack.StackSettings().run_dir
    found = {name: stack.Process(name, run_dir).pid() for name in ("kafka", "ferretdb")}
    return {name: pid for name, pid in found.items() if pid is not None}


async def _forget(bootstrap: str, mongo_url: str, envs: Sequence[dict[str, str]], *,
                  databases: bool = True) -> None:
    """Drop a run's databases (unless a prefill's, kept for the next run) and topics."""
    await stack.forget(
        bootstrap, mongo_url,
        sorted({v for env in envs for k, v in env.items()
                if databases and k.endswith("_MONGO_DB")}),
        sorted({v for env in envs for k, v in env.items() if k.endswith("_TOPIC")}))


async def pipeline_throughput(bootstrap: str, mongo_url: str, count: int, logs: Path, *,
                              limit_s: float, prefill: int = 0, stored: Stored | None = None,
                              say: Say = _quiet) -> Carried:
    """Incidents per second from the first upstream event sent to the last outcome. With
    `stored` (a bulk prefill) or `prefill` (that many incidents carried through the pipeline
    first), half of the measured events are for customers stored before: the reads that
    grow with what is stored and with returning customers show."""
    run = uuid.uuid4().hex[:8]
    async with pipeline(bootstrap, mongo_url, run, logs, say=say, stored=stored) as started:
        running = started if not prefill else await _prefilled(
            bootstrap, started, run=run, count=prefill, limit_s=limit_s, say=say)
        if stored is not None:
            events = list(late_deliveries(stored.run, count, start=stored.take(count),
                                          returning=stored.count))
        else:
            events = list(late_deliveries(run, count, start=prefill, returning=prefill))
        say(f"sending {count:,} events")
        began, cpu = time.monotonic(), running.meter.read()
        await produce(bootstrap, running.topics.upstream, events)
        carried = await carried_out(bootstrap, running.topics, count, began, limit_s=limit_s,
                                    say=say, warm=running)
        carried.cpu_s = spent(cpu, running.meter.read())
        return carried


async def _prefilled(bootstrap: str, running: Running, *, run: str, count: int,
                     limit_s: float, say: Say) -> Running:
    say(f"prefilling {count:,} incidents")
    began = time.monotonic()
    await produce(bootstrap, running.topics.upstream,
                  list(late_deliveries(run, count)))
    filled = await carried_out(bootstrap, running.topics, count, began, limit_s=limit_s,
                               warm=running,
                               say=lambda text: say(f"prefill: {text}"))
    if not filled.finished:
        raise TimeoutError(f"the prefill of {count:,} was not carried out in {limit_s:.0f} s")
    return Running(running.topics, running.warm_decisions + filled.decided,
                   running.warm_outcomes + filled.outcomes, running.meter)


@dataclass
class Stored:
    """Databases a bulk prefill filled (`devtools.bench_prefill`) with `count` late
    deliveries of customers `bench-<run>-0` onwards; the runs on them go on numbering
    orders from `next_order`, so that each is new."""

    run: str
    count: int
    prefill: Prefill
    next_order: int = 0

    def take(self, count: int) -> int:
        """The first of `count` new order numbers."""
        first = max(self.next_order, self.count)
        self.next_order = first + count
        return first


async def store(bootstrap: str, mongo_url: str, count: int, *,
                progress: Progress | None = None) -> Stored:
    """`count` late deliveries stored in bulk before any service starts on them (the
    services read what is stored at start-up, as after a restart); `forget_stored` drops
    them."""
    run = uuid.uuid4().hex[:8]
    envs = service_env(bootstrap, mongo_url, Topics.fresh(run), run)
    try:
        done = await bulk_prefill(
            mongo_url, envs, lambda start, n, at: list(late_deliveries(run, n, start=start,
                                                                       at=at)),
            count, partitions=PARTITIONS, progress=progress)
    except BaseException:
        await _forget(bootstrap, mongo_url, list(envs.values()))
        raise
    return Stored(run, count, done)


async def forget_stored(bootstrap: str, mongo_url: str, stored: Stored) -> None:
    envs = service_env(bootstrap, mongo_url, Topics.fresh(stored.run), stored.run)
    await _forget(bootstrap, mongo_url, list(envs.values()))


# --- latency -----------------------------------------------------------------------------

INPUTS = {"intake": "upstream", "decision": "incidents", "fulfilment": "decisions"}


async def group_lags(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer,
                     t: Topics) -> dict[str, int]:
    """Each service's consumer lag on its input topic (messages not yet committed)."""
    lags = {}
    for group, attr in INPUTS.items():
        topic = getattr(t, attr)
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
        lags[group] = int(sum(
            max(0, ends[tp] - (committed[tp].offset if tp in committed
                               and committed[tp].offset >= 0 else 0))
            for tp in partitions))
    return lags


@dataclass
class Latency:
    sent: int
    apologised: int
    delays_ms: list[float]  # one per event sent; inf for an apology not seen in time
    max_lag: dict[str, int] = field(default_factory=dict)
    max_total_lag: int = 0

    def pct(self, pct: float) -> float:
        return percentile(self.delays_ms, pct)

    def note(self) -> str:
        if self.apologised >= self.sent:
            return ""
        return f"{self.sent - self.apologised:,} of {self.sent:,} not apologised in time"


async def _apologies(bootstrap: str, topic: str, found: dict[str, float],
                     stop: asyncio.Event) -> None:
    """When each customer's apology outcome was published (the record's timestamp)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batch.values():
                for record in records:
                    if record.value is None or b'"apology"' not in record.value:
                        continue
                    data = json.loads(record.value)["data"]
                    if data["kind"] == "apology":
                        found.setdefault(data["customer_id"], record.timestamp / 1000)
    finally:
        await consumer.stop()


async def _lags(bootstrap: str, t: Topics, out: Latency, stop: asyncio.Event) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        while not stop.is_set():
            lags = await group_lags(admin, probe, t)
            for group, lag in lags.items():
                out.max_lag[group] = max(out.max_lag.get(group, 0), lag)
            out.max_total_lag = max(out.max_total_lag, sum(lags.values()))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await admin.close()
        await probe.stop()


async def latency(bootstrap: str, mongo_url: str, rate: float, seconds: float, logs: Path, *,
                  drain_s: float, say: Say = _quiet) -> Latency:
    """Event-to-apology latency at a fixed offered load, and the services' largest consumer
    lag meanwhile. Apologies not seen `drain_s` after the last event count as unfinished."""
    run = uuid.uuid4().hex[:8]
    count = max(1, int(rate * seconds))
    async with pipeline(bootstrap, mongo_url, run, logs, say=say) as running:
        t = running.topics
        result = Latency(count, 0, [])
        found: dict[str, float] = {}
        stop = asyncio.Event()
        watchers = [asyncio.create_task(_apologies(bootstrap, t.outcomes, found, stop)),
                    asyncio.create_task(_lags(bootstrap, t, result, stop))]
        try:
            say(f"sending {count:,} events at {rate:,.0f}/s")
            sent = await produce(bootstrap, t.upstream, list(late_deliveries(run, count)), rate)
            deadline = time.monotonic() + drain_s
            while len(found) < count and time.monotonic() < deadline:
                say(f"{len(found):,} of {count:,} apologised")
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*watchers, return_exceptions=True)
    result.apologised = sum(1 for c in sent if c in found)
    result.delays_ms = [(found[c] - at) * 1000 if c in found else math.inf
                        for c, at in sent.items()]
    return result


# --- outage fan-out ----------------------------------------------------------------------


@dataclass
class FanOut:
    customers: int
    decided_s: float  # inf when not all were decided in time
    apologised_s: float  # inf when not all outcomes were published in time
    carried: Carried


async def fan_out(bootstrap: str, mongo_url: str, customers: int, logs: Path, *,
                  limit_s: float, say: Say = _quiet) -> FanOut:
    """One outage affecting `customers` customers: its incidents (one per customer, as intake
    makes them) go onto the incidents topic at once; measured until every customer is decided
    and every outcome, apologies included, is published."""
    run = uuid.uuid4().hex[:8]
    async with pipeline(bootstrap, mongo_url, run, logs, services=("decision", "fulfilment"),
                        say=say) as running:
        t = running.topics
        started = datetime.now(UTC) - timedelta(minutes=90)
        now = datetime.now(UTC)
        say(f"preparing {customers:,} incidents")
        incidents = [(f"bench-{run}-{i}", outage_incident(run, i, started, now))
                     for i in range(customers)]
        say(f"sending {customers:,} incidents")
        began, cpu = time.monotonic(), running.meter.read()
        await produce(bootstrap, t.incidents, incidents)
        deadline = began + limit_s
        async with Watch(bootstrap) as watch:
            decided_all = await watch.until(t.decisions, customers + running.warm_decisions,
                                            deadline)
            decided_s = time.monotonic() - began if decided_all else math.inf
        carried = await carried_out(bootstrap, t, customers, began, limit_s=limit_s,
                                    say=say, warm=running)
        carried.cpu_s = spent(cpu, running.meter.read())
    return FanOut(customers, decided_s, carried.seconds if carried.finished else math.inf,
                  carried)


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including the load others put on it."""
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "load_average_1_5_15": [round(v, 2) for v in load]}


# --- soak --------------------------------------------------------------------------------


@dataclass
class Soak:
    rate: float
    seconds: float
    first: Window
    last: Window
    sent: int
    apologised: int
    carried: Carried  # the CPU of each process over the whole run


async def soak(bootstrap: str, mongo_url: str, rate: float, seconds: float, logs: Path, *,
               drain_s: float, stored: Stored | None = None, say: Say = _quiet) -> Soak:
    """The pipeline at a steady offered load for `seconds` (on `stored`'s databases, with
    half the customers returning, when given): throughput and event-to-apology p99 of the
    first and the last minute, to show whether it slows down as it runs and stores more."""
    run = uuid.uuid4().hex[:8]
    count = max(1, int(rate * seconds))
    async with pipeline(bootstrap, mongo_url, run, logs, say=say, stored=stored) as running:
        t = running.topics
        found: dict[str, float] = {}
        stop = asyncio.Event()
        lags = Latency(count, 0, [])
        watchers = [asyncio.create_task(_apologies(bootstrap, t.outcomes, found, stop)),
                    asyncio.create_task(_lags(bootstrap, t, lags, stop))]
        events = (list(late_deliveries(stored.run, count, start=stored.take(count),
                                       returning=stored.count))
                  if stored is not None else list(late_deliveries(run, count)))
        cpu = running.meter.read()
        try:
            say(f"soak: {count:,} events at {rate:,.0f}/s for {seconds:,.0f} s")
            sending = asyncio.create_task(produce(bootstrap, t.upstream, events, rate))
            while not sending.done():
                say(f"soak: {len(found):,} of {count:,} apologised")
                await asyncio.wait({sending}, timeout=1.0)
            sent = sending.result()
            deadline = time.monotonic() + drain_s
            while len(found) < count and time.monotonic() < deadline:
                say(f"soak: {len(found):,} of {count:,} apologised (draining)")
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.gather(*watchers, return_exceptions=True)
        used = spent(cpu, running.meter.read())
    began = min(sent.values())
    first, last = first_and_last(sent, found, began, seconds)
    apologised = sum(1 for key in sent if key in found)
    # CPU per incident carried out: when the pipeline falls behind, per event sent would
    # spread it over events it never handled.
    carried = Carried(seconds, max(1, apologised), apologised, apologised, count, used)
    return Soak(rate, seconds, first, last, count, apologised, carried)
