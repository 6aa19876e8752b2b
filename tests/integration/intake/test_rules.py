"""Every detection rule on the real broker and database: events in on the upstream topics,
incidents out, each once; replays, redeliveries and concurrent consumers add nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from schemas.incident import IncidentType, incident_id
from schemas.upstream import upstream_event_adapter
from services.common.adapters.mongo import Doc
from services.intake.app import create_app
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import (
    Intake,
    intake_settings,
    read_to_the_end,
    running_intake,
)
from tests.kafka_tools import as_json, collect, produce, until_timeout
from tests.pipeline import lifespans

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def incidents_on_topic(infra: Infra, intake: Intake, n: int,
                             settle_s: float = 1.5) -> list[dict[str, Any]]:
    found = await collect(infra.kafka_bootstrap, intake.topics.incidents,
                          lambda seen: len(seen) >= n, timeout_s=60, settle_s=settle_s)
    return [m["data"] for m in found]


# The MongoDB adapter too, on the same server (FerretDB here): the same contract end to end.
@pytest.mark.parametrize("backend", ["auto", "mongodb"])
async def test_every_rule_from_the_upstream_topics_and_replays_add_nothing(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str, backend: str) -> None:
    events = f.every_rule(f"{suffix}-c", f"{suffix}-out", T0)
    total = events.expected.total()
    clock = FakeClock(T0 + minutes(10))
    async with running_intake(infra, suffix, clock=clock, store_backend=backend) as intake:
        # Payments first, so the capture of o-captured is known when its cancellation comes.
        await produce(infra.kafka_bootstrap, intake.topics.payments, as_json(events.payments))
        await incidents_on_topic(infra, intake, 1, settle_s=0)
        for topic, batch in ((intake.topics.orders, events.orders),
                             (intake.topics.support, events.support),
                             (intake.topics.outages, events.outages)):
            await produce(infra.kafka_bootstrap, topic, as_json(batch))
        events.check(await incidents_on_topic(infra, intake, total))
        db = intake.db(mongo)
        outage = await db["outages"].find_one({"_id": f"{suffix}-out"})
        assert outage is not None
        assert (outage["affected_customers"], outage["outage_minutes"]) == (2, 75)

        # Everything again, twice over: nothing new on the topic or in the database.
        for _ in range(2):
            for topic, batch in ((intake.topics.payments, events.payments),
                                 (intake.topics.orders, events.orders),
                                 (intake.topics.support, events.support),
                                 (intake.topics.outages, events.outages)):
                await produce(infra.kafka_bootstrap, topic, as_json(batch))
        again = await collect(infra.kafka_bootstrap, intake.topics.incidents, until_timeout,
                              timeout_s=5)
        assert len(again) == total
        assert await db["incidents"].count_documents({}) == total


async def test_a_late_order_is_apologised_for_before_delivery_even_across_a_restart(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    clock = FakeClock(T0)
    customer = f"{suffix}-c"
    placed = [f.order_placed(customer, "o-1", at=T0, promised=T0 + minutes(60)),
              f.order_placed(customer, "o-2", at=T0, promised=T0 + minutes(60)),
              f.order_placed(customer, "o-3", at=T0, promised=None)]
    async with running_intake(infra, suffix, clock=clock) as intake:
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(placed))
        db = intake.db(mongo)
        for _ in range(200):
            if await db["checks"].count_documents({"due_at": {"$ne": None}}) == 2:
                break
            await asyncio.sleep(0.05)
        assert await db["checks"].count_documents({"due_at": {"$ne": None}}) == 2
        indexes = [list(ix["key"]) for ix in await (await db["checks"].list_indexes()).to_list()]
        assert ["due_at"] in indexes
        # o-2 arrives in time; its check is settled.
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(
            [f.delivered(customer, "o-2", at=T0 + minutes(55), promised=T0 + minutes(60))]))
        for _ in range(200):
            if await db["settled"].find_one({"_id": "delivery:o-2:closed"}):
                break
            await asyncio.sleep(0.05)
        assert await intake.service.run_due_checks() == 0  # nothing is due yet

    # A new process (the first one stopped) after the promise and its grace period passed,
    # and after the idle fallback (two minutes) once it has read its partitions to the end.
    clock.now = T0 + minutes(60 + 11 + 2)
    settings = intake_settings(infra, intake.topics, intake.db_name)
    app = create_app(settings, clock=clock, sweep=False)
    async with lifespans([app]):
        service = app.state.service
        await read_to_the_end(service)
        assert await service.run_due_checks() == 1  # o-1 only: the delivery settled o-2
        first = await incidents_on_topic(infra, intake, 1)
        assert [(i["order_id"], i["delay_band"], i["detection"]) for i in first] == [
            ("o-1", "late", "proactive")]
        assert first[0]["order_value"] == f.eur("42.00")
        clock.now = T0 + minutes(60 + 250)  # into a worse band: a top-up
        assert await service.run_due_checks() == 1
        assert await service.run_due_checks() == 0
        # The delivery finally arrives in the band already raised: nothing more.
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(
            [f.delivered(customer, "o-1", at=clock.now, total=None)]))
        both = await incidents_on_topic(infra, intake, 2, settle_s=3)
        assert [i["delay_band"] for i in both] == ["late", "late_2h"]
        assert [i["delay_minutes"] for i in both] == [11, 248]  # as far as intake had read
        assert both[1]["incident_id"] == incident_id(IncidentType.delivery_delayed, "o-1",
                                                     "late_2h")
        clock.now = T0 + timedelta(days=10)
        assert await service.run_due_checks() == 0  # the delivery settled the rest


async def test_the_sweep_runs_due_checks_in_the_background(infra: Infra, suffix: str) -> None:
    clock = FakeClock(T0)
    async with running_intake(infra, suffix, clock=clock, sweep=True,
                              check_sweep_seconds=0.2) as intake:
        await produce(infra.kafka_bootstrap, intake.topics.support, as_json([
            f.ticket_updated(f"{suffix}-c", "t-1", opened=T0, at=T0)]))
        await asyncio.sleep(1.0)
        clock.now = T0 + minutes(243)  # the SLA's end plus the idle fallback (two minutes)
        incidents = await incidents_on_topic(infra, intake, 1, settle_s=1)
        assert [(i["type"], i["ticket_id"], i["wait_minutes"]) for i in incidents] == [
            ("support_wait_exceeded", "t-1", 241)]


async def test_a_ticket_answered_within_the_sla_settles_its_check(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    clock = FakeClock(T0)
    async with running_intake(infra, suffix, clock=clock) as intake:
        service = intake.service
        waiting = upstream_event_adapter.validate_python(
            f.ticket_updated(f"{suffix}-c", "t-1", opened=T0, at=T0))
        answered = upstream_event_adapter.validate_python(
            f.ticket_updated(f"{suffix}-c", "t-1", opened=T0, at=T0 + minutes(100),
                             status="answered", first_response=T0 + minutes(100)))
        await service.process([waiting])
        await service.process([answered])
        await service.process([waiting])  # a redelivery of the first update
        clock.now = T0 + timedelta(days=1)
        await service.run_due_checks()
        assert await intake.db(mongo)["incidents"].count_documents({}) == 0


async def test_concurrent_consumers_see_one_double_charge_per_extra_capture(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    """Two intake instances on one database race the captures of the same 40 orders."""
    clock = FakeClock(T0)
    async with running_intake(infra, suffix, clock=clock) as one:
        two = create_app(intake_settings(infra, one.topics, one.db_name), clock=clock,
                         sweep=False)
        async with lifespans([two]):
            def captures(payment: str) -> list[Any]:
                return [upstream_event_adapter.validate_python(f.payment_captured(
                    f"{suffix}-{n}", f"o-{n}", f"{payment}-{n}", at=T0)) for n in range(40)]

            results = await asyncio.gather(
                one.service.process(captures("a")), two.state.service.process(captures("b")),
                one.service.process(captures("a")))
            new = [i for r in results for i in r.new]
            assert len(new) == 40
            assert Counter(i.order_id for i in new) == Counter({f"o-{n}": 1 for n in range(40)})
            db = one.db(mongo)
            assert await db["incidents"].count_documents({"type": "double_charge"}) == 40
            holders = {d["_id"]: d["payment_id"] async for d in db["charges"].find()}
            for incident in new:  # the extra capture is the one that did not claim the order
                order = str(incident.order_id)
                n = order.removeprefix("o-")
                extra = f"b-{n}" if holders[order] == f"a-{n}" else f"a-{n}"
                assert incident.incident_id == incident_id(IncidentType.double_charge, order,
                                                           extra)


async def test_only_real_double_charges_are_incidents_with_what_was_captured(
        infra: Infra, suffix: str) -> None:
    """Split shipments, partial captures within the total and re-authorisations are not
    double charges; the same amount twice and captures above the total are, for what they
    took too much; a merchant's cancellation carries everything captured for its order."""
    events = f.double_charges(f"{suffix}-c", T0)
    async with running_intake(infra, suffix, clock=FakeClock(T0)) as intake:
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(events.placed))
        await produce(infra.kafka_bootstrap, intake.topics.payments,
                      as_json(events.captures[:4]))
        # The same captures again (a replay) and the rest.
        await produce(infra.kafka_bootstrap, intake.topics.payments, as_json(events.captures))
        await incidents_on_topic(infra, intake, 2, settle_s=3)
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(events.cancelled))
        events.check(await incidents_on_topic(infra, intake, 3, settle_s=2))
