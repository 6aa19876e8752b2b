"""The refund ceiling per order on the real broker and database: the incidents of one order
decided in one batch, or months apart, never refund more than was captured for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.decision import Decision, RemedyKind
from services.common.messaging import Record
from services.decision.app import create_app as decision_app
from services.decision.domain.policy import load_policy
from services.decision.service import DecisionService
from tests.clock import FakeClock
from tests.factories import eur, incident
from tests.infra import Infra
from tests.kafka_tools import incident_events
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")


def records(topic: str, incidents: list[dict[str, Any]], start: int = 0) -> list[Record]:
    return [Record(topic, 0, start + n, key.encode(), value)
            for n, (key, value) in enumerate(incident_events(incidents))]


def refunded(decisions: list[Decision]) -> list[Decimal]:
    return [a.value.amount for d in decisions for a in d.actions if a.kind is RemedyKind.refund]


async def test_one_orders_incidents_in_one_batch_refund_at_most_what_was_captured(
        infra: Infra, suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    customer = f"{suffix}-c"
    detected = incident("double_charge", customer_id=customer, fact="o-1",
                        charged_amount=eur("129.00"), order_value=eur("129.00"),
                        captured_amount=eur("258.00"))
    reported = {**detected, "incident_id": f"{suffix}-reported", "detection": "agent_reported",
                "captured_amount": None}
    app = decision_app(settings, clock=FakeClock(T0), policy=DEFAULT)
    async with lifespans([app]):
        service: DecisionService = app.state.service
        made = await service.handle_incidents(records(topics.incidents, [detected, reported]))
    assert len(made) == 2
    assert refunded(made) == [Decimal("129.00")]


async def test_an_order_refunded_months_ago_is_not_refunded_again(
        infra: Infra, suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    customer = f"{suffix}-c"
    clock = FakeClock(T0)
    cancelled = incident("order_cancelled", customer_id=customer, fact="o-2",
                         order_value=eur("80.00"), captured_amount=eur("80.00"), at=T0)
    # Three months later, long outside the 30-day window, the same order is reported
    # cancelled again by an agent (its own incident).
    later = T0 + timedelta(days=90)
    again = {**cancelled, "incident_id": f"{suffix}-again", "detection": "agent_reported",
             "detected_at": later.isoformat()}
    app = decision_app(settings, clock=clock, policy=DEFAULT)
    async with lifespans([app]):
        service: DecisionService = app.state.service
        first = await service.handle_incidents(records(topics.incidents, [cancelled]))
        clock.now = later
        second = await service.handle_incidents(records(topics.incidents, [again], 1))
    assert refunded(first) == [Decimal("80.00")]
    assert refunded(second) == []
    assert "80.00 EUR of the 80.00 EUR paid for order o-2 is refunded already" in (
        second[0].explanation)
    # Outside the window, the first incident is no longer a reason for a "repeat failure".
    assert "repeat-failure" not in [t.rule_id for t in second[0].rules if t.matched]
