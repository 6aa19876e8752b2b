"""Outage fan-out to 10,000 customers seen recently (and to a list), deduplicated, and told
once of the duration on resolution; malformed messages dead-lettered while the consumer moves on;
customers' contact details kept out of logs and metrics."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from schemas.common import CustomerSnapshot
from schemas.upstream import upstream_event_adapter
from services.common.adapters.mongo import Doc
from tests import factories as f
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import running_intake
from tests.kafka_tools import as_json, collect, produce, until_timeout

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def until_recorded(db: AsyncDatabase[Doc], outage_id: str, field: str) -> Doc:
    """The outage record once `field` is on it (intake writes it after the fan-out)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        outage = await db["outages"].find_one({"_id": outage_id})
        if outage and outage.get(field) is not None:
            return outage
        await asyncio.sleep(0.2)
    raise AssertionError(f"outage {outage_id} has no {field}")


async def test_an_outage_fans_out_to_10000_customers_seen_recently_once(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    clock = FakeClock(T0)
    recent = [CustomerSnapshot.model_validate(f.customer(f"{suffix}-{n}"))
              for n in range(10_000)]
    async with running_intake(infra, suffix, clock=clock) as intake:
        started = time.monotonic()
        await intake.store.see([(c, None, T0 - timedelta(hours=2)) for c in recent])
        print(f"10,000 customers seen recorded in {time.monotonic() - started:.1f} s")  # noqa: T201
        await intake.store.see([(CustomerSnapshot.model_validate(f.customer(f"{suffix}-old")),
                                 None, T0 - timedelta(days=3))])
        declared = f.outage_declared(f"{suffix}-out", at=T0 - timedelta(minutes=30),
                                     seen_within_hours=24, severity="critical")
        started = time.monotonic()
        await produce(infra.kafka_bootstrap, intake.topics.outages, as_json([declared]))
        incidents = await collect(infra.kafka_bootstrap, intake.topics.incidents,
                                  lambda seen: len(seen) >= 10_000, timeout_s=240)
        took = time.monotonic() - started
        print(f"outage fan-out to 10,000 customers: {took:.1f} s")  # noqa: T201
        customers = [i["data"]["customer"]["id"] for i in incidents]
        assert len(customers) == len(set(customers)) == 10_000
        assert f"{suffix}-old" not in customers
        assert {i["data"]["severity"] for i in incidents} == {"high"}
        db = intake.db(mongo)
        outage = await until_recorded(db, f"{suffix}-out", "affected_customers")
        assert outage["affected_customers"] == 10_000

        # The declaration again (a replay) and then the resolution: each customer, told the
        # outage was going on, is told once that it lasted 75 minutes (decision tops up).
        resolved = f.outage_resolved(f"{suffix}-out", at=T0 + timedelta(minutes=45))
        started = time.monotonic()
        await produce(infra.kafka_bootstrap, intake.topics.outages,
                      as_json([declared, resolved]))
        outage = await until_recorded(db, f"{suffix}-out", "duration_told")
        print(f"resolved stage to 10,000 customers: {time.monotonic() - started:.1f} s")  # noqa: T201
        assert outage["outage_minutes"] == 75
        assert await db["incidents"].count_documents({"outage_id": f"{suffix}-out"}) == 20_000
        await produce(infra.kafka_bootstrap, intake.topics.outages, as_json([resolved]))
        # All of them however busy the machine, then 3 s more: a redelivered one would show.
        again = await collect(infra.kafka_bootstrap, intake.topics.incidents,
                              lambda seen: len(seen) >= 20_000, timeout_s=120, settle_s=3)
        assert len(again) == 20_000
        told = [i["data"] for i in again if i["data"]["outage_minutes"] is not None]
        assert sorted(i["customer"]["id"] for i in told) == sorted(customers)
        assert {i["outage_minutes"] for i in told} == {75}
        assert not {i["incident_id"] for i in told} & {i["data"]["incident_id"]
                                                       for i in incidents}


async def test_an_outage_with_a_list_of_customers_is_chunked_and_deduplicated(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    listed = [f"{suffix}-{n}" for n in range(2_300)] + [f"{suffix}-7"]
    async with running_intake(infra, suffix, clock=FakeClock(T0)) as intake:
        service = intake.service
        resolved = upstream_event_adapter.validate_python(
            f.outage_resolved(f"{suffix}-out", at=T0 + timedelta(minutes=90)))
        declared = upstream_event_adapter.validate_python(
            f.outage_declared(f"{suffix}-out", at=T0, customers=listed))
        await service.process([resolved])  # the resolution may come first
        first = await service.process([declared])
        assert len(first.new) == 2_300
        assert {i.outage_minutes for i in first.new} == {90}
        assert (await service.process([declared])).new == []
        db = intake.db(mongo)
        assert await db["incidents"].count_documents({"outage_id": f"{suffix}-out"}) == 2_300


async def test_malformed_messages_are_dead_lettered_and_the_consumer_moves_on(
        infra: Infra, suffix: str) -> None:
    customer = f"{suffix}-c"
    late = f.delivered(customer, "o-1", at=T0 + timedelta(hours=2), promised=T0)
    wrong_schema = f.delivered(customer, "o-2", at=T0, promised=T0)
    wrong_schema["data"]["total"] = {"amount": 12.5, "currency": "euro"}
    unknown = {**late, "id": "e-unknown", "type": "order.teleported"}
    async with running_intake(infra, suffix, clock=FakeClock(T0)) as intake:
        await produce(infra.kafka_bootstrap, intake.topics.orders, [
            (customer, b"\xff\xfe not json"), *as_json([wrong_schema, unknown, late])])
        incidents = await collect(infra.kafka_bootstrap, intake.topics.incidents,
                                  lambda seen: len(seen) >= 1, settle_s=1)
        letters = await collect(infra.kafka_bootstrap, intake.topics.deadletter,
                                lambda seen: len(seen) >= 3, settle_s=1)
        assert [i["data"]["order_id"] for i in incidents] == ["o-1"]
        by_reason = {d["data"]["reason"]: d["data"] for d in letters}
        assert set(by_reason) == {"undecodable", "invalid", "unknown_type"}
        assert base64.b64decode(by_reason["undecodable"]["value_b64"]) == b"\xff\xfe not json"
        assert "data.total.amount" in by_reason["invalid"]["error"]
        assert "data.total.currency" in by_reason["invalid"]["error"]
        assert "order.teleported" in by_reason["unknown_type"]["error"]
        # Letters are keyed by their own id (compaction, ADR 0007): one record's letters may
        # land on different partitions of the dead-letter topic, so their order is not kept.
        assert sorted(d["data"]["offset"] for d in letters) == [0, 1, 2]
        assert {d["data"]["topic"] for d in letters} == {intake.topics.orders}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.app),
                                     base_url="http://intake") as client:
            metrics = (await client.get("/metrics")).text
        for reason in ("undecodable", "invalid", "unknown_type"):
            assert (f'amends_dead_letters_total{{reason="{reason}",service="intake"}} 1.0'
                    in metrics)


async def test_contact_details_never_reach_the_logs_or_the_metrics(
        infra: Infra, suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    email, phone = f"{suffix}.secret@example.org", "+44 7700 900123"

    events, broken = f.events_with_contact(f"{suffix}-c", f"{suffix}-out", at=T0, email=email,
                                           phone=phone)
    caplog.set_level(logging.DEBUG)
    async with running_intake(infra, suffix, clock=FakeClock(T0 + timedelta(hours=3)),
                              log_level="DEBUG") as intake:
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json([*events, broken]))
        await collect(infra.kafka_bootstrap, intake.topics.incidents,
                      lambda seen: len(seen) >= 5, settle_s=1)
        await collect(infra.kafka_bootstrap, intake.topics.deadletter,
                      lambda seen: len(seen) >= 1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.app),
                                     base_url="http://intake") as client:
            metrics = (await client.get("/metrics")).text
    records = [(r.name, f"{r.getMessage()} {r.exc_text or ''}") for r in caplog.records]
    assert any("dead-lettered" in text for _, text in records)  # logs were captured at all
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for secret in (email, phone, "7700 900123"):
        assert sorted({name for name, text in records if secret in text}) == []
        assert secret not in metrics


async def test_an_outage_resolved_after_its_fan_out_is_told_once_whatever_is_redelivered(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    customers = [f"{suffix}-{n}" for n in range(3)]
    declared, resolved = f.outage_of_75_minutes(f"{suffix}-out", customers, at=T0)
    async with running_intake(infra, suffix, clock=FakeClock(T0 + timedelta(minutes=80))
                              ) as intake:
        service, db = intake.service, intake.db(mongo)
        ongoing = (await service.process([declared])).new
        assert {i.outage_minutes for i in ongoing} == {None}
        told = await service.process([resolved])
        assert sorted(i.customer.id for i in told.new) == customers
        assert {i.outage_minutes for i in told.new} == {75}
        assert told.incident_ids[0] == [i.incident_id for i in told.new]
        # Resolved again, twice in a batch, and after a crash before the outage was marked
        # told: the same incidents, none new.
        assert (await service.process([resolved, resolved])).new == []
        await db["outages"].update_one({"_id": f"{suffix}-out"},
                                       {"$unset": {"duration_told": ""}})
        again = await service.process([resolved])
        assert again.new == []
        assert sorted(again.incident_ids[0]) == sorted(told.incident_ids[0])
        assert await db["incidents"].count_documents({"outage_id": f"{suffix}-out"}) == 6
        published = await collect(infra.kafka_bootstrap, intake.topics.incidents,
                                  until_timeout, timeout_s=3)
        assert len(published) == 6


async def test_a_resolution_recorded_during_the_fan_out_is_told_by_the_fan_out(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another instance records the resolution while the declaration fans out (its events
    on another partition): it finds no incident to tell yet, so the fan-out tells them."""
    customers = [f"{suffix}-{n}" for n in range(2)]
    declared, resolved = f.outage_of_75_minutes(f"{suffix}-out", customers, at=T0)
    async with running_intake(infra, suffix, clock=FakeClock(T0 + timedelta(minutes=80))
                              ) as intake:
        service = intake.service
        publish = service.publish
        raced: list[list[str]] = []
        racing = False

        async def racing_publish(incidents: Any) -> set[str]:
            nonlocal racing
            if incidents and not racing:  # the fan-out's first chunk
                racing = True
                raced.append((await service.process([resolved])).incident_ids[0])
            return await publish(incidents)

        monkeypatch.setattr(service, "publish", racing_publish)
        fanned = await service.process([declared])
    assert raced == [[]]  # the other instance found nothing to tell yet
    assert sorted((i.customer.id, i.outage_minutes or 0) for i in fanned.new) == sorted(
        [(c, 0) for c in customers] + [(c, 75) for c in customers])
