"""Intake's app as production wires it (`create_app`), over the fake store and publisher,
with FastStream's in-memory broker: upstream records through the subscriber reach the
service, and its incidents and dead letters go out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from faststream.kafka import TestKafkaBroker

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests import factories as f
from tests.clock import FakeClock
from tests.fakes.common import FakePublisher
from tests.fakes.intake import FakeIntakeStore
from tests.upstream import SECRETS, SOURCES

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_the_subscriber_hands_upstream_records_to_the_service() -> None:
    settings = IntakeSettings.model_validate({
        "create_topics": False, "deadletter_topic": "deadletter", "orders_topic": "orders",
        "incidents_topic": "incidents", "hmac_secrets": SECRETS, "sources": SOURCES,
        "kafka_bootstrap": "127.0.0.1:1", "mongo_url": "mongodb://127.0.0.1:1/"})
    store, publisher = FakeIntakeStore(), FakePublisher()
    app = create_app(settings, store=store, clock=FakeClock(T0 + timedelta(hours=3)),
                     publisher=publisher, sweep=False)
    runtime = app.state.runtime
    broker = runtime.broker
    late = f.delivered("c", "o-1", at=T0 + timedelta(hours=3), promised=T0)
    # The broker alone: the lifespan's other hooks (the audit's and erasure's indexes, in
    # services/common) need a database.
    async with TestKafkaBroker(broker) as test_broker:
        assert app.state.service.store is store
        await test_broker.publish(json.dumps(late).encode(), topic="orders", key=b"c")
        await test_broker.publish(b"not json", topic="orders", key=b"c")
    [published] = publisher.bodies("incidents")
    [letter] = publisher.bodies("deadletter")
    assert (published["data"]["order_id"], published["data"]["delay_band"]) == (
        "o-1", "late_2h")
    assert list(store.incidents.sent) == [published["id"]]
    assert letter["data"]["reason"] == "undecodable"
