"""Delivery checks on event time, on the real broker and database: a check never fires while
the delivery that settles it is still queued behind consumer lag."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from schemas.incident import Incident
from schemas.upstream import OrderDeliveredEvent, UpstreamEvent
from services.common.adapters.mongo import Doc
from services.intake.service import Processed
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import read_to_the_end, running_intake
from tests.kafka_tools import as_json, produce

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def stored_incidents(mongo: AsyncMongoClient[Doc], db: str) -> list[Incident]:
    return [Incident.model_validate_json(doc["incident"])
            async for doc in mongo[db]["incidents"].find({})]


async def test_a_check_waits_while_intake_lags_behind_an_on_time_delivery(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    clock = FakeClock(T0)
    customer = f"{suffix}-c"
    async with running_intake(infra, suffix, clock=clock) as intake:
        service = intake.service
        db = intake.db(mongo)
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json([
            f.order_placed(customer, "o-on-time", at=T0, promised=T0 + minutes(60)),
            f.order_placed(customer, "o-never", at=T0, promised=T0 + minutes(60))]))
        for _ in range(400):
            if await db["checks"].count_documents({}) == 2:
                break
            await asyncio.sleep(0.05)
        assert await db["checks"].count_documents({}) == 2

        # Intake slows down (a slow database, a long batch): the batch that brings the
        # on-time delivery is held, and more events queue up behind it on the partition.
        gate = asyncio.Event()
        process = service.process

        async def slow_process(events: Sequence[UpstreamEvent]) -> Processed:
            if any(isinstance(e, OrderDeliveredEvent) for e in events):
                await gate.wait()
            return await process(events)

        service.process = slow_process  # type: ignore[method-assign]
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(
            [f.delivered(customer, "o-on-time", at=T0 + minutes(55),
                         promised=T0 + minutes(60))]))
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json(
            [f.order_placed(f"{customer}-{n}", f"o-later-{n}", at=T0 + minutes(56),
                            promised=None) for n in range(20)]))
        await asyncio.sleep(1.0)  # the delivery's batch is in flight, the rest queued

        # Five hours later by the wall clock, both promises long broken as far as the clock
        # can tell: nothing fires, not even for the order that is really late, because intake
        # has not read its partition that far.
        clock.now = T0 + minutes(300)
        for _ in range(3):
            assert await service.run_due_checks() == 0
            await asyncio.sleep(0.2)
        assert await stored_incidents(mongo, intake.db_name) == []
        # Operators see why: the partition's watermark trails the clock by hours.
        [behind] = [m.samples for m in service.metrics.watermark_behind.collect()]
        assert max(sample.value for sample in behind) > 4 * 3600

        # Intake catches up: the delivery settles its check; only the order still on its way
        # is apologised for, for the delay known where intake has read to.
        gate.set()
        await read_to_the_end(service)
        assert await db["settled"].find_one({"_id": "delivery:o-on-time:closed"}) is not None
        assert await service.run_due_checks() == 1  # the delivery removed its own check
        incidents = await stored_incidents(mongo, intake.db_name)
        assert [(i.order_id, i.delay_band, i.delay_minutes, i.delivered_at)
                for i in incidents] == [("o-never", "late_2h", 238, None)]


async def test_an_idle_stream_fires_its_checks_after_the_fallback_and_no_sooner(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    clock = FakeClock(T0)
    customer = f"{suffix}-c"
    async with running_intake(infra, suffix, clock=clock, idle_fallback_seconds=300) as intake:
        service = intake.service
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json([
            f.order_placed(customer, "o-1", at=T0, promised=T0 + minutes(30))]))
        for _ in range(400):
            if await intake.db(mongo)["checks"].count_documents({}) == 1:
                break
            await asyncio.sleep(0.05)
        await read_to_the_end(service)
        due = T0 + minutes(30 + 11)  # the promise and the grace period (10 minutes)
        clock.now = due + minutes(4)  # within the five minutes' fallback: not yet
        assert await service.run_due_checks() == 0
        clock.now = due + minutes(5)
        assert await service.run_due_checks() == 1
        [incident] = await stored_incidents(mongo, intake.db_name)
        assert (incident.order_id, incident.delay_minutes) == ("o-1", 11)
