"""The nightly fairness check over decision's store (a fake) on a clock moved by hand: it
runs once a day past its hour, publishes each finding as an event under an id that a second
run on the same day repeats, and sets the findings gauge; fair decisions give no event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from schemas import topics
from schemas.fairness import FairnessFlagged
from services.decision.fairness import FairnessCheck, FairnessMetrics
from services.decision.settings import DecisionSettings
from tests.clock import FakeClock
from tests.fakes.common import FakePublisher
from tests.fakes.decision import FakeDecisions
from tests.unit.decision.test_fairness import _population

pytestmark = pytest.mark.component

NIGHT = datetime(2026, 11, 24, 2, 50, tzinfo=UTC)  # the decisions were made on the 23rd


async def _check(unfair: Decimal) -> tuple[FairnessCheck, FakePublisher, CollectorRegistry]:
    store = FakeDecisions()
    await store.decisions.add_new([(d.decision_id, d) for d in _population(unfair)])
    publisher, registry = FakePublisher(), CollectorRegistry()
    check = FairnessCheck(DecisionSettings(), store, publisher, FakeClock(NIGHT),
                          FairnessMetrics(registry))
    return check, publisher, registry


async def test_the_check_runs_once_a_night_and_publishes_its_findings() -> None:
    check, publisher, registry = await _check(Decimal("0.5"))
    clock = check.clock
    assert isinstance(clock, FakeClock)
    assert not await check.nightly()  # 02:50: before its hour
    clock.advance(timedelta(minutes=15))
    assert await check.nightly()
    assert not await check.nightly()  # done for today
    events = [FairnessFlagged.model_validate(b) for b in publisher.bodies(topics.FINDINGS)]
    ro = [e for e in events if (e.data.dimension, e.data.group) == ("locale", "ro")]
    assert len(ro) == 1
    assert ro[0].data.incident_type == "delivery_delayed"
    assert ro[0].data.mean_grant.amount < ro[0].data.others_mean_grant.amount
    assert ro[0].data.checked_on.isoformat() == "2026-11-24"
    assert registry.get_sample_value("amends_fairness_findings",
                                     {"dimension": "locale"}) == len(events)
    assert registry.get_sample_value("amends_fairness_findings", {"dimension": "tier"}) == 0
    assert registry.get_sample_value("amends_fairness_compared") == 300
    # Run again the same day (a restart): the same events under the same ids.
    await check.run()
    again = publisher.on(topics.FINDINGS)[len(events):]
    assert sorted(m.value for m in again) == sorted(m.value for m in
                                                    publisher.on(topics.FINDINGS)[:len(events)])
    clock.advance(timedelta(days=1))
    assert await check.nightly()  # the next night


async def test_fair_decisions_give_no_event_and_a_zero_gauge() -> None:
    check, publisher, registry = await _check(Decimal(1))
    assert isinstance(check.clock, FakeClock)
    check.clock.advance(timedelta(hours=1))
    assert await check.nightly()
    assert publisher.sent == []
    assert registry.get_sample_value("amends_fairness_findings", {"dimension": "locale"}) == 0
