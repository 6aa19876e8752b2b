"""The service on each storage backend the setting chooses (`store_backend`), on the real
broker and FerretDB: "auto" finds FerretDB; "mongodb" runs the MongoDB adapters (their
transactions cannot be exercised on FerretDB, which has none, and FerretDB does not make
their conditional updates atomic under concurrency: both are for a real MongoDB to show)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.common import Money
from schemas.decision import DecisionStatus
from services.common.access import Principal, Role
from services.common.messaging import Record
from services.decision.adapters.ferretdb import FerretDecisions
from services.decision.adapters.mongodb import MongoDecisions
from services.decision.app import create_app as decision_app
from services.decision.domain.lifecycle import goodwill
from services.decision.domain.policy import load_policy
from services.decision.service import DecisionService
from services.decision.settings import DecisionSettings
from tests.clock import FakeClock
from tests.factories import incident
from tests.infra import Infra
from tests.kafka_tools import incident_events
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
LIMIT = Money.of("25000", "EUR")
REVIEWERS = [Principal(subject=f"rev-{n}", roles=frozenset({Role.reviewer}), tenant="*",
                       via="cli") for n in (1, 2)]


@pytest.mark.parametrize(("backend", "adapter"), [("auto", FerretDecisions),
                                                  ("mongodb", MongoDecisions)])
async def test_decide_review_choose_and_release_on_each_backend(
        infra: Infra, suffix: str, backend: str, adapter: type[object]) -> None:
    topics = Topics.unique(suffix)
    _, settings, _ = settings_for(infra, topics, f"amends_test_{suffix}")
    settings = DecisionSettings(**{**settings.model_dump(), "store_backend": backend,
                                   "four_eyes_above": Decimal(0)})
    clock = FakeClock(T0 + timedelta(minutes=1))
    app = decision_app(settings, clock=clock, policy=load_policy("deploy/policy/default.yaml"))
    late = incident("delivery_delayed", customer_id=f"{suffix}-a", delay_minutes=1500, at=T0,
                    fact="o-1")
    # Reported by the customer, above 250.00: held for review (large-refund).
    big = incident("item_defective", customer_id=f"{suffix}-b", detection="customer_reported",
                   item_value={"amount": "300.00", "currency": "EUR"}, at=T0, fact="o-2")

    def records(bodies: list[dict[str, Any]]) -> list[Record]:
        return [Record(topics.incidents, 0, n, key.encode(), value)
                for n, (key, value) in enumerate(incident_events(bodies))]

    async with lifespans([app]):
        service: DecisionService = app.state.service
        assert isinstance(service.store, adapter)
        offer, held = await service.handle_incidents(records([late, big]))
        assert await service.handle_incidents(records([late, big])) == []
        assert (offer.status, held.status) == (DecisionStatus.awaiting_choice,
                                               DecisionStatus.held)
        assert [d.decision_id for d in await service.store.held(10)] == [held.decision_id]
        spent = (await service.budget.state(T0.date(), LIMIT)).spent.amount
        assert spent == goodwill(offer)
        # Four-eyes (limit 0): the first approval waits, the second lets it out.
        first = await service.review(held.decision_id, "approved", REVIEWERS[0], "fine")
        assert first.status is DecisionStatus.held
        second = await service.review(held.decision_id, "approved", REVIEWERS[1], "agreed")
        assert second.status is DecisionStatus.awaiting_choice
        assert [a.reviewer for a in second.approvals] == ["rev-1", "rev-2"]
        after_review = (await service.budget.state(T0.date(), LIMIT)).spent.amount
        assert after_review == spent + goodwill(held)
        # The cheaper option gives 5.00 back; the same choice again changes nothing.
        chosen = await service.choose(offer.decision_id, 0)
        assert await service.choose(offer.decision_id, 0) == chosen
        assert (await service.store.get(offer.decision_id)) == chosen
        assert (await service.budget.state(T0.date(), LIMIT)).spent.amount == (
            after_review - Decimal("5.00"))
