"""Decision's app as production wires it (`create_app`), over the fakes of its store, budget
and publisher, with FastStream's in-memory broker: an incident through the subscriber is
decided and published, a record that is not JSON goes to the dead letters alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from faststream.kafka import TestKafkaBroker

from services.decision.app import create_app
from services.decision.settings import DecisionSettings
from tests import auth
from tests.clock import FakeClock
from tests.factories import incident
from tests.fakes.common import FakePublisher
from tests.fakes.decision import FakeBudget, FakeDecisions
from tests.kafka_tools import incident_events

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_the_subscriber_hands_incidents_to_the_service() -> None:
    settings = DecisionSettings.model_validate({
        **auth.settings(), "create_topics": False, "deadletter_topic": "deadletter",
        "incidents_topic": "incidents", "decisions_topic": "decisions",
        "kafka_bootstrap": "127.0.0.1:1", "mongo_url": "mongodb://127.0.0.1:1/"})
    store, budget, publisher = FakeDecisions(), FakeBudget(), FakePublisher()
    app = create_app(settings, store=store, budget=budget, publisher=publisher,
                     clock=FakeClock(T0))
    late = incident("delivery_delayed", customer_id="c-app", fact="o-app",
                    delay_minutes=95, delay_band="late_30m", at=T0)
    [(key, body)] = incident_events([late])
    # The broker alone: the lifespan's other hooks (the audit's and erasure's indexes) need a
    # database.
    async with TestKafkaBroker(app.state.runtime.broker) as broker:
        await broker.publish(body, topic="incidents", key=key.encode())
        await broker.publish(b"not json", topic="incidents", key=b"c-app")
    [decided] = publisher.bodies("decisions")
    [letter] = publisher.bodies("deadletter")
    assert decided["data"]["incident"]["incident_id"] == late["incident_id"]
    assert decided["data"]["status"] == "approved"
    assert await store.get(decided["data"]["decision_id"]) is not None
    assert letter["data"]["reason"] == "invalid"
    assert "Invalid JSON" in letter["data"]["error"]
