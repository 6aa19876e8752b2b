"""One outage is one failure for each customer it reached, on the real database: the stage
decided when the outage is resolved tops up the stage decided while it was going on, however
long after, and from decisions recorded before they kept their outage's id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from schemas.decision import Decision, decision_id
from schemas.incident import IncidentType, incident_id
from services.common.adapters.mongo import Doc
from services.common.messaging import Record
from services.decision.app import create_app as decision_app
from services.decision.service import DecisionService
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import incident_events
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def stage(customer: str, outage_id: str, minutes: int | None, name: str) -> dict[str, Any]:
    body = incident("service_outage", customer_id=customer, at=T0, order_id=None,
                    outage_id=outage_id, outage_minutes=minutes)
    body["incident_id"] = incident_id(IncidentType.service_outage, outage_id, customer, name)
    return body


def points(decision: Decision) -> int:
    return sum(a.points or 0 for a in decision.actions)


async def test_a_resolved_outage_tops_up_what_its_ongoing_stage_gave(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    clock = FakeClock(T0 + timedelta(minutes=1))
    app = decision_app(settings, clock=clock)
    # Resolved the next day; resolved long after the policy's window.
    cases = {"next-day": timedelta(days=1), "past-window": timedelta(days=45)}
    ongoing = {name: stage(f"{suffix}-{name}", f"{suffix}-o-{name}", None, "declared")
               for name in cases}
    resolved = {name: stage(f"{suffix}-{name}", f"{suffix}-o-{name}", 75, "resolved")
                for name in cases}

    def records(bodies: list[dict[str, Any]]) -> list[Record]:
        return [Record(topics.incidents, 0, n, key.encode(), value)
                for n, (key, value) in enumerate(incident_events(bodies))]

    async with lifespans([app]):
        service: DecisionService = app.state.service
        first = await service.handle_incidents(records(list(ongoing.values())))
        assert sorted(points(d) for d in first) == [100, 100]
        for name, later in cases.items():
            clock.now = T0 + later
            [top_up] = await service.handle_incidents(records([resolved[name]]))
            assert top_up.top_up_of == [decision_id(ongoing[name]["incident_id"])], name
            assert points(top_up) == 200, name
            assert "repeat-failure" not in [t.rule_id for t in top_up.rules if t.matched]
        # Redelivered: the recorded top-up, nothing new.
        assert await service.handle_incidents(records(list(resolved.values()))) == []
