"""Fulfilment's app as production wires it (`create_app`), over the fake stores, gateway,
channel and publisher, with FastStream's in-memory broker: a decision through the subscriber
is carried out (points credited, the apology sent, outcomes published), and a record that is
not JSON goes to the dead letters alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from faststream.kafka import TestKafkaBroker

from schemas.common import Channel
from schemas.decision import RemedyKind
from services.fulfilment.app import create_app
from tests.clock import FakeClock
from tests.component.fulfilment.harness import Fulfilment, settings
from tests.decisions import APOLOGY, T0, decided, eur, grant, made_incident
from tests.fakes.common import FakePublisher
from tests.fakes.fulfilment import FakeChannel, FakeGateway, FakeStores

pytestmark = pytest.mark.component


async def test_the_subscriber_hands_decisions_to_the_service() -> None:
    config = settings(create_topics=False, deadletter_topic="deadletter",
                      decisions_topic="decisions", outcomes_topic="outcomes",
                      kafka_bootstrap="127.0.0.1:1", mongo_url="mongodb://127.0.0.1:1/")
    clock = FakeClock(T0 + timedelta(minutes=5))
    fakes, publisher, email = FakeStores(), FakePublisher(), FakeChannel("email", clock)
    app = create_app(config, stores=fakes.stores, publisher=publisher, gateway=FakeGateway(),
                     channels={Channel.email: email}, clock=clock)
    decision = decided(made_incident("delivery_delayed", customer_id="c-app", paid=None,
                                     email="c-app@example.com"),
                       APOLOGY, grant(RemedyKind.points, points=300, value=eur("3.00")))
    body = Fulfilment(settings=config).record(decision).value
    # The broker alone: the lifespan's other hooks (the audit's and erasure's indexes) need a
    # database.
    async with TestKafkaBroker(app.state.runtime.broker) as broker:
        await broker.publish(body, topic="decisions", key=b"c-app")
        await broker.publish(b"not json", topic="decisions", key=b"c-app")
    outcomes = {o["data"]["kind"]: o["data"]["status"] for o in publisher.bodies("outcomes")}
    [letter] = publisher.bodies("deadletter")
    assert outcomes == {"apology": "succeeded", "points": "succeeded"}
    assert [m.recipient for m in email.sent] == ["c-app@example.com"]
    assert [e.quantity for e in fakes.ledger.entries.values()] == [300]
    assert letter["data"]["reason"] == "invalid"
