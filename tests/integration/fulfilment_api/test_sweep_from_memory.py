"""Fulfilment's sweep from memory on FerretDB (`adapters/unfinished_view.py`), on the real
database and broker: a claim a process left when it died is found by the next process's scan
at start and finished once its lease is out, and the frequent sweep sends no `find` to the
effect logs while nothing is unfinished (only the full sweep, at its long interval, does)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient, monitoring

from schemas.common import Channel
from schemas.decision import Decision, DecisionMade, RemedyKind, decision_id
from services.common.adapters.mongo import Doc
from services.common.messaging import Record
from services.fulfilment.adapters.ferretdb import TrackedEffectLog
from services.fulfilment.app import create_app as fulfilment_app
from services.fulfilment.errors import TransientError
from services.fulfilment.service import FulfilmentService
from services.fulfilment.settings import FulfilmentSettings
from tests.clock import FakeClock
from tests.decisions import APOLOGY, T0, decided, grant, made_incident
from tests.fakes.fulfilment import FakeChannel
from tests.infra import Infra
from tests.kafka_tools import collect, produce
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

EFFECT_LOGS = ["messages", "refunds"]


class _Finds(monitoring.CommandListener):
    """The collections read (`find`) through one client."""

    def __init__(self) -> None:
        self.collections: list[str] = []

    def of_effects(self) -> list[str]:
        return sorted(c for c in self.collections if c in EFFECT_LOGS)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.collections.append(event.command["find"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _settings(infra: Infra, suffix: str) -> tuple[Topics, FulfilmentSettings]:
    topics = Topics.unique(suffix)
    _, _, settings = settings_for(infra, topics, f"amends_test_{suffix}")
    return topics, settings.model_copy(update={"retry_attempts": 1, "retry_base_s": 0.0})


def _event(decision: Decision) -> bytes:
    return DecisionMade(id=decision_id(decision.incident.incident_id),
                        source="amends/decision", time=decision.decided_at,
                        subject=decision.incident.customer.id,
                        data=decision).model_dump_json().encode()


def _messages(service: FulfilmentService) -> TrackedEffectLog:
    log = service.stores.messages
    assert isinstance(log, TrackedEffectLog), "the FerretDB adapter keeps its view"
    return log


async def test_a_claim_left_by_a_dead_process_is_finished_after_the_next_ones_start(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics, settings = _settings(infra, suffix)
    clock = FakeClock(T0 + timedelta(minutes=5))
    decision = decided(made_incident(customer_id=f"c-{suffix}"), APOLOGY)
    key = decision.actions[0].idempotency_key

    # The first process claims the apology and dies while the channel has it.
    hanging = FakeChannel("email", clock)
    hanging.delay_s = 3600.0
    dead = fulfilment_app(settings, mongo=mongo, clock=clock,
                          channels={Channel.email: hanging})
    record = Record(settings.decisions_topic, 0, 0, decision.incident.customer.id.encode(),
                    _event(decision))
    work = asyncio.create_task(dead.state.service.handle_decisions([record]))
    db = mongo[settings.mongo_db]
    for _ in range(200):
        if await db["messages"].find_one({"_id": key, "status": "claimed"}) is not None:
            break
        await asyncio.sleep(0.05)
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    assert hanging.sent == []

    # The next process never saw it: its scan at start finds it.
    working = FakeChannel("email", clock)
    app = fulfilment_app(settings, clock=clock, channels={Channel.email: working})
    async with lifespans([app]):
        service: FulfilmentService = app.state.service
        assert key in _messages(service).view
        assert await service.finish_unfinished() == []  # its lease is not out yet
        clock.advance(timedelta(seconds=settings.claim_lease_seconds + 1))
        [finished] = await service.finish_unfinished()
        assert (finished.idempotency_key, finished.status.value) == (key, "succeeded")
        outcomes = await collect(infra.kafka_bootstrap, topics.outcomes,
                                 lambda seen: len(seen) >= 1, settle_s=0.5)
    assert [o["data"]["idempotency_key"] for o in outcomes] == [key]
    assert [m.idempotency_key for m in working.sent] == [key]
    assert (await db["messages"].find_one({"_id": key}) or {})["status"] == "succeeded"
    await mongo.drop_database(settings.mongo_db)


async def test_the_frequent_sweep_reads_no_effect_log_while_nothing_is_unfinished(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics, settings = _settings(infra, suffix)
    clock = FakeClock(T0 + timedelta(minutes=5))
    finds = _Finds()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(infra.mongo_url, tz_aware=True,
                                                     event_listeners=[finds])
    email = FakeChannel("email", clock)
    app = fulfilment_app(settings, mongo=client, clock=clock, channels={Channel.email: email})
    first = decided(made_incident(customer_id=f"c-{suffix}-1"), APOLOGY,
                    grant(RemedyKind.points, points=100))
    second = decided(made_incident(customer_id=f"c-{suffix}-2"), APOLOGY,
                     grant(RemedyKind.points, points=100))
    try:
        async with lifespans([app]):
            service: FulfilmentService = app.state.service
            assert finds.of_effects() == EFFECT_LOGS  # the scan at start
            await produce(infra.kafka_bootstrap, topics.decisions,
                          [(first.incident.customer.id, _event(first))])
            await collect(infra.kafka_bootstrap, topics.outcomes,
                          lambda seen: len(seen) >= 2)
            finds.collections.clear()
            assert await service.finish_unfinished() == []
            assert finds.of_effects() == []

            # The full sweep, at its interval, does read both logs.
            clock.advance(timedelta(seconds=settings.full_sweep_seconds))
            assert await service.finish_unfinished() == []
            assert finds.of_effects() == EFFECT_LOGS

            # An apology left for later is read when it is due, and only its log is.
            email.failures.append(TransientError("the relay is busy"))
            await produce(infra.kafka_bootstrap, topics.decisions,
                          [(second.incident.customer.id, _event(second))])
            await collect(infra.kafka_bootstrap, topics.outcomes,
                          lambda seen: len(seen) >= 3)
            key = second.actions[0].idempotency_key
            assert key in _messages(service).view
            finds.collections.clear()
            assert await service.finish_unfinished() == []  # not due yet: nothing read
            assert finds.of_effects() == []
            clock.advance(timedelta(seconds=settings.sweep_seconds))
            [finished] = await service.finish_unfinished()
            assert finished.idempotency_key == key
            assert finds.of_effects() == ["messages"]
            assert key not in _messages(service).view
    finally:
        await client.close()
    await mongo.drop_database(settings.mongo_db)
