"""Intake in memory follows each incident it raises, whatever raised it, and keeps the facts of
the customer's later events; a store that refuses a write leaves memory as it was, so the
redelivered batch stores what the failed one did not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.report import IncidentReport
from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_an_incident_and_the_orders_after_it_in_one_batch_and_the_next() -> None:
    app = intake(T0 + timedelta(days=1))
    report = f.item_reported("c-1", "o-1", at=T0)
    await app.consume([report, f.order_placed("c-1", "o-2", at=T0 + timedelta(hours=3),
                                              promised=None, total="12.00")])
    await app.consume([f.order_placed("c-1", "o-3", at=T0 + timedelta(days=9), promised=None,
                                      total="30.00"),
                       f.order_placed("c-2", "o-4", at=T0 + timedelta(days=1), promised=None)])
    [incident] = app.incidents()
    record = app.service.aftermath.record("c-1", incident["incident_id"])
    assert record is not None
    assert (record.window(7).orders, record.window(30).orders) == (1, 2)
    assert len(app.store.aftermaths.facts) == 2
    assert app.metric("amends_aftermath_facts_total", {"kind": "order"}) == 2
    assert app.metric("amends_aftermath_followed", {}) == 1


async def test_a_refused_write_is_retried_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    app = intake(T0 + timedelta(days=1))
    await app.consume([f.item_reported("c-1", "o-1", at=T0)])
    later = [f.order_placed("c-1", "o-2", at=T0 + timedelta(days=2), promised=None)]

    async def refuse(*_: object) -> None:
        raise ConnectionError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(app.store.aftermaths, "add", refuse)
        with pytest.raises(ConnectionError):
            await app.consume(later)
    await app.consume(later)  # the redelivery
    assert [x.key for x in app.store.aftermaths.facts.values()] == ["o-2"]


async def test_incidents_reported_over_http_are_followed_too() -> None:
    app = intake(T0 + timedelta(days=1))
    report = {"report_id": "r-1", "type": "wrong_item", "customer": f.customer("c-9"),
              "occurred_at": T0.isoformat(), "order_id": "o-9"}
    incident, _ = await app.service.report(IncidentReport.model_validate(report),
                                           "support-desk")
    assert incident.incident_id in app.store.aftermaths.followed


async def test_the_retention_gauges_count_the_incidents_whose_window_closed() -> None:
    app = intake(T0 + timedelta(days=1))
    await app.consume([f.item_reported("c-1", "o-1", at=T0),
                       f.item_reported("c-2", "o-5", at=T0)])
    await app.consume([f.order_placed("c-1", "o-2", at=T0 + timedelta(days=2), promised=None)])
    await app.service.count_retention()
    labels = {"type": "item_defective", "days": "7"}
    assert app.metric("amends_aftermath_closed", labels) == 0  # a day on: nothing closed
    app.clock.advance(timedelta(days=7))
    await app.service.count_retention()
    assert app.metric("amends_aftermath_closed", labels) == 2
    assert app.metric("amends_aftermath_reordered", labels) == 1
    assert app.metric("amends_aftermath_complained_again", labels) == 0
    assert app.metric("amends_aftermath_closed", {"type": "item_defective", "days": "30"}) == 0
