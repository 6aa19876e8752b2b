"""The bench's bulk prefill: N stored late deliveries, each with its incident, decision and
effects, written into a run's databases before its services start.

Carried through the running pipeline, a prefill goes at about 600 incidents/s and slows as
the data grows, so a million would take hours. Here the three services' own service layers
and storage adapters (chosen by the server, as at start-up) handle the same late deliveries in
batches of thousands, in one process, with what each publishes handed straight to the next
instead of through Kafka. The documents are therefore exactly those the services write, and
the services read them as their own: a prefilled customer is a returning customer.

What differs from a pipeline run, on purpose:
- the clock: batches are spread evenly over the policy's window, ending an hour ago, so the
  histories count (they are inside the window) and today's budget is left to the measured
  run, as a day's budget is in a deployment that has stored this much;
- the records' offsets: there is no topic behind them (a fulfilment effect remembers the
  offset of its decision, read only to redrive a dead letter).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from schemas.topics import DEFAULT_PARTITIONS
from services.common.adapters.mongo import Client, make_client
from services.common.adapters.storage import server_of
from services.common.links import CustomerLinks
from services.common.messaging import DeadLetters, Outgoing, Record
from services.decision.adapters.storage import open_storage
from services.decision.domain.policy import load_policy
from services.decision.service import DecisionMetrics, DecisionService
from services.decision.settings import DecisionSettings
from services.fulfilment.adapters import ferretdb, mongodb
from services.fulfilment.edges import message_channels, payment_gateway
from services.fulfilment.service import FulfilmentMetrics, FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from services.intake.adapters.storage import open_store
from services.intake.service import IntakeMetrics, IntakeService
from services.intake.settings import IntakeSettings

BATCH = 2_000  # upstream events per batch: each service writes in chunks of 1,000
Progress = Callable[[int, int], None]  # (stored so far, of how many)
Events = Callable[[int, int, datetime], Sequence[tuple[str, bytes]]]  # (start, count, at)


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """`env` set while a service's settings are read (they read nothing else), then restored:
    the same settings the service's process gets from `bench.service_env`."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Relay:
    """The `Publisher` port of all three services: keeps what they publish, by topic, and
    hands it on as the records the next service would have consumed."""

    def __init__(self, partitions: int) -> None:
        self.partitions = list(range(partitions))
        self.sent: dict[str, list[Outgoing]] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self._partitioner = DefaultPartitioner()

    async def publish_all(self, messages: Sequence[Outgoing]) -> None:
        for message in messages:
            self.sent.setdefault(message.topic, []).append(message)

    def records(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> list[Record]:
        """Records on `topic`, each on the partition a keyed send picks."""
        out = []
        for key, value in messages:
            raw = key.encode()
            partition = self._partitioner(raw, self.partitions, self.partitions)
            offset = self.offsets.get((topic, partition), 0)
            self.offsets[(topic, partition)] = offset + 1
            out.append(Record(topic, partition, offset, raw, value))
        return out

    def take(self, topic: str) -> list[Record]:
        return self.records(topic, [(m.key, m.value) for m in self.sent.pop(topic, [])])


@dataclass
class Clock:
    """The services' clock, moved by the prefill from batch to batch."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Services:
    intake: IntakeService
    decision: DecisionService
    fulfilment: FulfilmentService
    relay: Relay
    clocks: dict[str, Clock]  # each service's own: they work on different batches at once
    window_days: int


async def _services(client: Client, envs: Mapping[str, Mapping[str, str]], partitions: int
                    ) -> Services:
    """The three service layers on their real adapters, as each app's start-up opens them."""
    relay = Relay(partitions)
    clocks = {name: Clock() for name in envs}
    registries = {name: CollectorRegistry() for name in envs}  # one each, as in a process

    def letters(settings: IntakeSettings | DecisionSettings | FulfilmentSettings
                ) -> DeadLetters:
        return DeadLetters(settings.service_name, settings.deadletter_topic, relay,
                           clocks[settings.service_name], registries[settings.service_name])

    with environment(envs["intake"]):
        intake_settings = IntakeSettings()
    intake_store = await open_store(client, intake_settings)
    await intake_store.create_indexes()
    intake = IntakeService(settings=intake_settings, store=intake_store, publisher=relay,
                           dead_letters=letters(intake_settings), clock=clocks["intake"],
                           metrics=IntakeMetrics(registries["intake"]))

    with environment(envs["decision"]):
        decision_settings = DecisionSettings()
    store, budget, _ = await open_storage(client, decision_settings.mongo_db,
                                          decision_settings.store_backend)
    await store.create_indexes()
    await budget.create_indexes()
    policy = load_policy(decision_settings.policy_path)
    decision = DecisionService(settings=decision_settings, policy=policy, store=store,
                               budget=budget, publisher=relay,
                               dead_letters=letters(decision_settings),
                               clock=clocks["decision"],
                               metrics=DecisionMetrics(registries["decision"]))

    with environment(envs["fulfilment"]):
        fulfilment_settings = FulfilmentSettings()
    server = await server_of(client, fulfilment_settings.store_backend)
    build = mongodb.stores if server.backend == "mongodb" else ferretdb.stores
    stores, create_indexes = build(client[fulfilment_settings.mongo_db])
    await create_indexes()
    s = fulfilment_settings
    fulfilment = FulfilmentService(
        settings=s, stores=stores, publisher=relay, dead_letters=letters(s),
        clock=clocks["fulfilment"],
        metrics=FulfilmentMetrics(registries["fulfilment"]), gateway=payment_gateway(s),
        channels=message_channels(s, clocks["fulfilment"]),
        links=CustomerLinks(s.customer_link_keys, s.customer_link_kid,
                            timedelta(days=s.customer_link_ttl_days)))
    return Services(intake, decision, fulfilment, relay, clocks, policy.window_days)


def batch_times(batches: int, now: datetime, window_days: int) -> list[datetime]:
    """When each batch happens: evenly over the window (but its last two days), in order,
    the last an hour before `now`, so that every prefilled incident is in the window."""
    span = timedelta(days=max(1, window_days - 2))
    end = now - timedelta(hours=1)
    if batches <= 1:
        return [end] * batches
    return [end - span + span * k / (batches - 1) for k in range(batches)]


@dataclass
class Prefill:
    """What a bulk prefill stored, and how fast."""

    stored: int
    seconds: float
    statuses: dict[str, int]  # decisions by status
    outcomes: int

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0


async def bulk_prefill(mongo_url: str, envs: Mapping[str, Mapping[str, str]],
                       events: Events, count: int, *, partitions: int = DEFAULT_PARTITIONS,
                       batch: int = BATCH, progress: Progress | None = None) -> Prefill:
    """Store `count` upstream events (`events(start, count, at)`: late deliveries) with what
    the three services make of them, into the databases `envs` name.

    The services work as stages, each on its batches in order, handing on through queues:
    while one waits for the database another computes, as their processes would."""
    client = make_client(mongo_url)
    try:
        s = await _services(client, envs, partitions)
        times = batch_times(-(-count // batch), datetime.now(UTC), s.window_days)
        statuses: Tally[str] = Tally()
        outcomes = 0
        began = time.monotonic()
        to_decide: asyncio.Queue[tuple[datetime, list[Record]] | None] = asyncio.Queue(2)
        to_fulfil: asyncio.Queue[tuple[datetime, list[Record]] | None] = asyncio.Queue(2)

        def handed(topic: str) -> list[Record]:
            letters = s.relay.sent.pop(s.intake.settings.deadletter_topic, [])
            if letters:
                raise RuntimeError(f"the prefill dead-lettered {len(letters)} messages: the "
                                   "stored data would not be the pipeline's")
            return s.relay.take(topic)

        async def intake() -> None:
            for k, at in enumerate(times):
                start = k * batch
                s.clocks["intake"].now = at
                await s.intake.handle_upstream(s.relay.records(
                    s.intake.settings.orders_topic, events(start, min(batch, count - start),
                                                           at)))
                await to_decide.put((at, handed(s.decision.settings.incidents_topic)))
            await to_decide.put(None)

        async def decision() -> None:
            while (item := await to_decide.get()) is not None:
                s.clocks["decision"].now = item[0]
                made = await s.decision.handle_incidents(item[1])
                statuses.update(d.status.value for d in made)
                await to_fulfil.put((item[0], handed(s.fulfilment.settings.decisions_topic)))
            await to_fulfil.put(None)

        async def fulfilment() -> None:
            nonlocal outcomes
            stored = 0
            while (item := await to_fulfil.get()) is not None:
                s.clocks["fulfilment"].now = item[0]
                done = await s.fulfilment.handle_decisions(item[1])
                outcomes += len(done)
                # Decision gives budget back for the failed ones (none, for late deliveries).
                await s.decision.handle_outcomes(handed(s.fulfilment.settings.outcomes_topic))
                s.relay.sent.pop(s.fulfilment.settings.tasks_topic, None)  # no consumer here
                stored += len(item[1])
                if progress is not None:
                    progress(min(stored, count), count)

        await asyncio.gather(intake(), decision(), fulfilment())
        return Prefill(count, time.monotonic() - began, dict(statuses), outcomes)
    finally:
        await client.close()
