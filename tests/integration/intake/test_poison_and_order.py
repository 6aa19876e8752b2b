"""One bad record never halts a partition, and the order in which an outage's events arrive
does not change what it grants: through the running pipeline on the real broker and
database."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from amends.ops import partitions_of
from schemas.upstream import upstream_event_adapter
from services.common.adapters.mongo import Doc
from services.common.messaging import (
    ConsumerMetrics,
    DeadLetters,
    KafkaPublisher,
    Record,
    make_broker,
    subscribe_batches,
)
from services.common.settings import ServiceSettings
from services.decision.domain.policy import load_policy
from services.decision.settings import DEFAULT_POLICY
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import running_intake
from tests.kafka_tools import (
    as_json,
    collect,
    incident_events,
    produce,
    produce_compressed,
)
from tests.pipeline import running_pipeline

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = "one-partition"


def keyed(events: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """The events under one key, so they share a partition, in this order."""
    return [(KEY, value) for _, value in as_json(events)]


async def test_bad_records_are_dead_lettered_while_the_later_ones_on_their_partition_get_apologies(
        infra: Infra, suffix: str) -> None:
    at = T0 + timedelta(hours=3)
    finer = f.delivered(f"{suffix}-x1", "o-x1", at=at, promised=T0)
    finer["data"]["total"] = f.eur("10.005")
    negative = f.payment_captured(f"{suffix}-x2", "o-x2", "p-x2", at=T0, amount="-42.00")
    negative_too = f.payment_captured(f"{suffix}-x2", "o-x2", "p-x3", at=T0, amount="-42.00")
    huge = f.item_reported(f"{suffix}-x3", "o-x3", at=T0)
    huge["data"]["description"] = "it broke " * 230_000  # 2 MB, far over the contract's limit
    later = [f.delivered(f"{suffix}-c{n}", f"o-{n}", at=at, promised=T0) for n in range(20)]
    async with running_pipeline(infra, suffix, clock=FakeClock(at)) as pipeline:
        topics = pipeline.topics
        await produce_compressed(infra.kafka_bootstrap, topics.orders,
                                 keyed([finer, huge]))
        await produce(infra.kafka_bootstrap, topics.payments, keyed([negative, negative_too]))
        await produce(infra.kafka_bootstrap, topics.orders, keyed(later))
        decisions = await collect(infra.kafka_bootstrap, topics.decisions,
                                  lambda seen: len(seen) >= 20, timeout_s=120, settle_s=1)
        apologies = await collect(
            infra.kafka_bootstrap, topics.outcomes,
            lambda seen: sum(m["data"]["kind"] == "apology" for m in seen) >= 20,
            timeout_s=120, settle_s=1)
        letters = await collect(infra.kafka_bootstrap, topics.deadletter,
                                lambda seen: len(seen) >= 4, settle_s=1)
    assert sorted(d["data"]["incident"]["customer"]["id"] for d in decisions) == sorted(
        e["subject"] for e in later)
    apologised = {m["data"]["customer_id"] for m in apologies
                  if m["data"]["kind"] == "apology" and m["data"]["status"] == "succeeded"}
    assert apologised == {e["subject"] for e in later}
    by_offset = {(d["data"]["topic"], d["data"]["offset"]): d["data"] for d in letters}
    assert len(letters) == 4
    assert {d["reason"] for d in by_offset.values()} == {"invalid"}
    assert "data.total: Value error, amount 10.005 has more decimals than EUR allows (2)" in (
        by_offset[topics.orders, 0]["error"])
    for offset in (0, 1):
        assert "amount -42.00 is negative" in by_offset[topics.payments, offset]["error"]
    oversize = by_offset[topics.orders, 1]
    assert "data.description" in oversize["error"]
    assert oversize["truncated"] is True
    assert oversize["value_bytes"] > 2_000_000
    assert oversize["partition"] == by_offset[topics.orders, 0]["partition"]
    assert len(base64.b64decode(oversize["value_b64"])) == 64 * 1024


async def test_decision_dead_letters_an_incident_it_cannot_decide_and_goes_on(
        infra: Infra, suffix: str) -> None:
    """Past intake's checks (an older intake, a replay of old records), a value decision
    cannot handle is retried a few times, then dead-lettered alone."""
    bad = f.incident("double_charge", customer_id=f"{suffix}-bad", fact="o-bad",
                     charged_amount=f.eur("10.005"), order_value=f.eur("10.005"))
    bad["detected_at"] = bad["occurred_at"] = "2026-11-23T12:00:00+00:00"
    good = [f.incident("delivery_delayed", customer_id=f"{suffix}-c{n}", fact=f"o-{n}",
                       delay_minutes=95, delay_band="late", order_value=f.eur("42.00"))
            for n in range(20)]
    async with running_pipeline(infra, suffix, clock=FakeClock(T0)) as pipeline:
        await produce(infra.kafka_bootstrap, pipeline.topics.incidents,
                      [(KEY, value) for _, value in incident_events([bad, *good])])
        decisions = await collect(
            infra.kafka_bootstrap, pipeline.topics.decisions,
            lambda seen: {f"{suffix}-c{n}" for n in range(20)} <= {
                d["data"]["incident"]["customer"]["id"] for d in seen},
            timeout_s=120, settle_s=2)
        letters = await collect(infra.kafka_bootstrap, pipeline.topics.deadletter,
                                lambda seen: len(seen) >= 1, timeout_s=5, settle_s=1)
    decided = {d["data"]["incident"]["customer"]["id"] for d in decisions}
    assert decided >= {f"{suffix}-c{n}" for n in range(20)}
    if f"{suffix}-bad" not in decided:  # decision could not decide it: dead-lettered alone
        assert [(d["data"]["reason"], d["data"]["offset"]) for d in letters] == [
            ("processing_failed", 0)]


async def test_a_record_that_keeps_failing_is_dead_lettered_alone_and_its_offsets_committed(
        infra: Infra, suffix: str) -> None:
    topic, dlq, group = f"work.{suffix}", f"deadletter.{suffix}", f"group-{suffix}"
    settings = ServiceSettings(kafka_bootstrap=infra.kafka_bootstrap, deadletter_topic=dlq,
                               consumer_group=group, batch_timeout_ms=20)
    registry = CollectorRegistry()
    broker = make_broker(settings, registry)
    letters = DeadLetters("worker", dlq, KafkaPublisher(broker, registry), lambda: T0,
                          registry)
    handled: list[bytes] = []

    async def handle(records: list[Record]) -> None:
        if any(r.value == b"poison" for r in records):
            raise ValueError("cannot handle poison")
        handled.extend(r.value for r in records)

    subscribe_batches(broker, settings, [topic], handle, name="worker",
                      metrics=ConsumerMetrics(registry), dead_letters=letters)
    values = [f"v{n}".encode() for n in range(10)] + [b"poison"] + [
        f"w{n}".encode() for n in range(10)]
    await produce(infra.kafka_bootstrap, topic, [(KEY, v) for v in values])
    await broker.start()
    try:
        for _ in range(300):
            if len(handled) >= 20:
                break
            await asyncio.sleep(0.1)
        dead = await collect(infra.kafka_bootstrap, dlq, lambda seen: len(seen) >= 1,
                             settle_s=1)
    finally:
        await broker.stop()
    assert sorted(handled) == sorted(v for v in values if v != b"poison")
    assert [(d["data"]["reason"], d["data"]["offset"]) for d in dead] == [
        ("processing_failed", 10)]
    assert "ValueError: cannot handle poison" in dead[0]["data"]["error"]
    assert registry.get_sample_value(
        "amends_dead_letters_total", {"service": "worker", "reason": "processing_failed"}) == 1
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        committed = {tp: await consumer.committed(tp)
                     for tp in await partitions_of(infra.kafka_bootstrap, topic)}
    finally:
        await consumer.stop()
    assert sum(c or 0 for c in committed.values()) == len(values)


def points(decision: dict[str, Any]) -> int:
    return sum(a.get("points") or 0 for a in decision["data"]["actions"]
               if a["kind"] == "points")


async def test_an_outage_resolved_before_or_with_its_declaration_grants_what_its_duration_deserves(
        infra: Infra, suffix: str) -> None:
    """75 minutes of outage grant 300 points (the default policy's 1 h to 4 h) whether the
    resolution comes a moment before the declaration, right after it, or a batch earlier."""
    outages = {name: f"{suffix}-{name}" for name in ("before", "after", "earlier")}
    declared = {name: f.outage_declared(outage, at=T0, customers=[f"{suffix}-c-{name}"])
                for name, outage in outages.items()}
    resolved = {name: f.outage_resolved(outage, at=T0 + timedelta(minutes=75))
                for name, outage in outages.items()}
    async with running_pipeline(infra, suffix,
                                clock=FakeClock(T0 + timedelta(minutes=80))) as pipeline:
        bootstrap, topic = infra.kafka_bootstrap, pipeline.topics.outages
        await produce(bootstrap, topic, as_json([resolved["earlier"]]))
        await asyncio.sleep(1.0)
        await produce(bootstrap, topic, as_json([
            resolved["before"], declared["before"], declared["after"], resolved["after"],
            declared["earlier"]]))
        decisions = await collect(bootstrap, pipeline.topics.decisions,
                                  lambda seen: len(seen) >= 3, timeout_s=90, settle_s=1)
    by_customer = {d["data"]["incident"]["customer"]["id"]: d for d in decisions}
    assert set(by_customer) == {f"{suffix}-c-{name}" for name in outages}
    for decision in by_customer.values():
        assert decision["data"]["incident"]["outage_minutes"] == 75
        assert points(decision) == 300


async def test_an_outage_declared_and_resolved_in_one_batch_has_its_duration(
        infra: Infra, suffix: str) -> None:
    declared = upstream_event_adapter.validate_python(
        f.outage_declared(f"{suffix}-o", at=T0, customers=[f"{suffix}-c"]))
    resolved = upstream_event_adapter.validate_python(
        f.outage_resolved(f"{suffix}-o", at=T0 + timedelta(minutes=75)))
    async with running_intake(infra, suffix, clock=FakeClock(T0 + timedelta(hours=2))) as it:
        [incident] = (await it.service.process([declared, resolved])).new
    assert incident.outage_minutes == 75


async def test_an_outage_resolved_after_its_fan_out_tops_each_customer_up_to_its_duration(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    """The usual order: declared and fanned out at once (going on: 100 points), resolved 75
    minutes later in a later batch, then that resolution redelivered. Each customer ends
    with the 300 points 75 minutes grant, as 100 and a top-up of 200, in two messages; the
    second says how long it lasted and that it adds to what was given."""
    customers = [f"{suffix}-c{n}" for n in range(3)]
    declared = f.outage_declared(f"{suffix}-o", at=T0, customers=customers)
    resolved = f.outage_resolved(f"{suffix}-o", at=T0 + timedelta(minutes=75))
    clock = FakeClock(T0 + timedelta(minutes=1))
    # No abort window, and the apology waits for the remedies (ADR 0015): each message
    # names what it gives, as this test reads them.
    default = load_policy(DEFAULT_POLICY)
    policy = default.model_copy(update={"outages": default.outages.model_copy(
        update={"apology_at_once": False})})
    async with running_pipeline(infra, suffix, clock=clock, policy=policy,
                                decision={"outage_abort_window_s": 0}) as pipeline:
        bootstrap, topics = infra.kafka_bootstrap, pipeline.topics
        messages = mongo[pipeline.db("fulfilment")]["messages"]

        async def sent(n: int) -> None:
            for _ in range(900):
                if await messages.count_documents({}) >= n:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"fewer than {n} messages sent")

        await produce(bootstrap, topics.outages, as_json([declared]))
        await sent(3)
        clock.now = T0 + timedelta(minutes=76)
        await produce(bootstrap, topics.outages, as_json([resolved]))
        await sent(6)
        await produce(bootstrap, topics.outages, as_json([resolved]))  # redelivered
        decisions = await collect(bootstrap, topics.decisions, lambda seen: len(seen) >= 6,
                                  timeout_s=90, settle_s=3)
        await asyncio.sleep(1.0)  # a seventh message would be recorded by now
        texts = [m["text"] async for m in messages.find({}).sort("created_at", 1)]
        by_customer: dict[str, list[str]] = {}
        async for m in messages.find({}):
            by_customer.setdefault(m["customer_id"], []).append(m["text"])
        credits = await mongo[pipeline.db("fulfilment")]["points_ledger"].find({}).to_list()

    assert len(decisions) == 6
    assert len(texts) == 6
    for customer in customers:
        ongoing, top_up = sorted(
            (d for d in decisions if d["data"]["incident"]["customer"]["id"] == customer),
            key=lambda d: d["data"]["incident"]["outage_minutes"] or 0)
        assert [points(ongoing), points(top_up)] == [100, 200]
        ongoing, top_up = ongoing["data"], top_up["data"]
        assert ongoing["incident"]["outage_minutes"] is None
        assert top_up["incident"]["outage_minutes"] == 75
        assert top_up["top_up_of"] == [ongoing["decision_id"]]
        assert "repeat-failure" not in [r["rule_id"] for r in top_up["rules"] if r["matched"]]
        assert sum(c["points"] for c in credits if c["customer_id"] == customer) == 300
        first, second = sorted(by_customer[customer], key=lambda t: "On top of" in t)
        assert "has been unavailable" in first
        assert "it lasted 75\u00a0minutes" in second
        assert "On top of what we gave you before, you now also get:\n- 200\u00a0loyalty" in (
            second)
