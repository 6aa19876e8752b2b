"""Intake after an erasure, on the real broker and database: the customer's events from
before the erasure (a replay), their entries in an outage's fan-out and their invalid
messages are dropped; their events from after it (a customer who came back) and everyone
else's are processed; the erased set is durable and holds no id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from schemas.erasure import ErasureRequest
from schemas.upstream import upstream_event_adapter
from services.common.adapters.mongo import Doc
from services.common.erasure import Pseudonyms
from services.intake.adapters.ferretdb import FerretIntakeStore
from services.intake.erasure import ErasedCustomers
from tests import factories as f
from tests.auth import PSEUDONYM_KEY
from tests.clock import FakeClock
from tests.infra import Infra
from tests.integration.intake.helpers import running_intake
from tests.kafka_tools import as_json, collect, produce

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ERASED_AT = T0 + timedelta(hours=1)


async def test_an_erased_customer_s_earlier_events_are_dropped_and_later_ones_kept(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    gone, kept = f"{suffix}-gone", f"{suffix}-kept"
    pseudonyms = Pseudonyms(PSEUDONYM_KEY)
    async with running_intake(infra, suffix, clock=FakeClock(T0 + timedelta(hours=5)),
                              erasure_pseudonym_key=PSEUDONYM_KEY) as intake:
        service = intake.service
        assert service.erased is not None
        request = ErasureRequest(erasure_id="e-1", customer_id=gone, tenant="default",
                                 requested_by="admin-1", requested_at=ERASED_AT)
        assert await service.erased.add(request, pseudonyms.of(gone)) == 1
        assert await service.erased.add(request, pseudonyms.of(gone)) == 0  # once

        events = [upstream_event_adapter.validate_python(e) for e in (
            f.delivered(gone, "o-1", at=T0 + timedelta(minutes=50), promised=T0),
            f.delivered(gone, "o-2", at=T0 + timedelta(hours=3),
                        promised=T0 + timedelta(hours=2)),
            f.delivered(kept, "o-3", at=T0 + timedelta(minutes=50), promised=T0),
            f.outage_declared(f"{suffix}-out", at=T0 + timedelta(minutes=30),
                              customers=[gone, kept]))]
        processed = await service.process(events)
        assert processed.incident_ids.get(0, []) == []
        assert sorted((i.customer.id, i.order_id or i.type.value) for i in processed.new) == [
            (gone, "o-2"), (kept, "o-3"), (kept, "service_outage")]

        bad = f.delivered(gone, "o-8", at=T0)
        bad["data"]["delivered_at"] = "yesterday"
        bad_kept = f.delivered(kept, "o-9", at=T0)
        bad_kept["data"]["delivered_at"] = "yesterday"
        await produce(infra.kafka_bootstrap, intake.topics.orders, as_json([bad, bad_kept]))
        letters = await collect(infra.kafka_bootstrap, intake.topics.deadletter,
                                lambda seen: len(seen) >= 1, settle_s=2.0)
        registry = intake.app.state.runtime.registry

        def dropped(kind: str) -> float | None:
            value: float | None = registry.get_sample_value(
                "amends_erased_events_dropped_total", {"kind": kind})
            return value

        assert dropped("order.delivered") == 1
        assert dropped("outage_fan_out") == 1
        assert dropped("invalid") == 1

    assert [letter["data"]["topic"] for letter in letters] == [intake.topics.orders]
    assert gone not in str(letters)

    # Durable, and under the pseudonym only: another instance knows it after a read.
    db = intake.db(mongo)
    assert gone not in str(await db["erased"].find({}).to_list())
    other = ErasedCustomers(FerretIntakeStore(db), pseudonyms, CollectorRegistry())
    assert not other.covers(gone, ERASED_AT)
    await other.load()
    assert other.covers(gone, ERASED_AT)
    assert not other.covers(gone, ERASED_AT + timedelta(seconds=1))
    assert not other.covers(kept, ERASED_AT)
