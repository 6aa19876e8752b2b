"""Intake's detection in memory: each incident type from upstream records, replays that add
nothing, scheduled delivery and support checks, and double charges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.incident import IncidentType, incident_id
from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def test_every_rule_from_the_upstream_records_and_replays_add_nothing() -> None:
    events = f.every_rule("c", "out", T0)
    app = intake(T0 + minutes(10))
    await app.consume(events.payments)  # first, so the capture of o-captured is known
    for batch in (events.orders, events.support, events.outages):
        await app.consume(batch)
    events.check(app.incidents())
    outage = await app.store.outage("out")
    assert outage is not None
    assert (outage.affected_customers, outage.minutes) == (2, 75)
    assert app.metric("amends_incidents_detected_total",
                      {"type": "double_charge", "detection": "proactive"}) == 1

    # Everything again, twice over: nothing new is published or kept.
    for _ in range(2):
        for batch in (events.payments, events.orders, events.support, events.outages):
            assert await app.consume(batch) == []
    assert len(app.incidents()) == events.expected.total()
    assert len(app.store.incidents.kept) == events.expected.total()


async def test_a_late_order_is_apologised_for_before_delivery_then_topped_up() -> None:
    app = intake(T0)
    customer = "c"
    await app.consume([f.order_placed(customer, "o-1", at=T0, promised=T0 + minutes(60)),
                       f.order_placed(customer, "o-2", at=T0, promised=T0 + minutes(60)),
                       f.order_placed(customer, "o-3", at=T0, promised=None)])
    assert sorted(app.store.checks) == ["delivery:o-1:0", "delivery:o-2:0"]
    await app.consume([f.delivered(customer, "o-2", at=T0 + minutes(55),
                                   promised=T0 + minutes(60))])
    assert "delivery:o-2:closed" in app.store.settled
    assert await app.service.run_due_checks() == 0  # nothing is due yet

    # The promise, its grace period and the idle fallback (two minutes) passed.
    app.clock.now = T0 + minutes(60 + 11 + 2)
    assert await app.service.run_due_checks() == 1  # o-1 only: the delivery settled o-2
    [first] = app.incidents()
    assert (first["order_id"], first["delay_band"], first["detection"]) == (
        "o-1", "late", "proactive")
    assert first["order_value"] == f.eur("42.00")
    app.clock.now = T0 + minutes(60 + 250)  # into a worse band: a top-up
    assert await app.service.run_due_checks() == 1
    assert await app.service.run_due_checks() == 0
    # The delivery finally arrives in the band already raised: nothing more.
    await app.consume([f.delivered(customer, "o-1", at=app.clock.now, total=None)])
    both = app.incidents()
    assert [i["delay_band"] for i in both] == ["late", "late_2h"]
    assert [i["delay_minutes"] for i in both] == [11, 248]  # as far as intake had read
    assert both[1]["incident_id"] == incident_id(IncidentType.delivery_delayed, "o-1",
                                                 "late_2h")
    app.clock.now = T0 + timedelta(days=10)
    assert await app.service.run_due_checks() == 0  # the delivery settled the rest
    assert app.metric("amends_intake_checks_run_total", {"kind": "delivery"}) == 2


async def test_a_delivery_without_its_promise_takes_it_from_the_pending_check() -> None:
    app = intake(T0 + minutes(200))
    await app.consume([f.order_placed("c", "o-1", at=T0, promised=T0 + minutes(30),
                                      total="55.00")])
    await app.consume([f.delivered("c", "o-1", at=T0 + minutes(200), total=None)])
    [late] = app.incidents()
    assert (late["delay_minutes"], late["order_value"]) == (170, f.eur("55.00"))


async def test_a_ticket_answered_within_the_sla_settles_its_check() -> None:
    app = intake(T0)
    waiting = f.ticket_updated("c", "t-1", opened=T0, at=T0)
    answered = f.ticket_updated("c", "t-1", opened=T0, at=T0 + minutes(100),
                                status="answered", first_response=T0 + minutes(100))
    await app.consume([waiting])
    assert list(app.store.checks) == ["support:t-1:0"]
    await app.consume([answered])
    await app.consume([waiting])  # a redelivery of the first update
    app.clock.now = T0 + timedelta(days=1)
    await app.service.run_due_checks()
    assert app.incidents() == []
    assert app.store.incidents.kept == {}


async def test_a_ticket_left_unanswered_past_the_sla_is_an_incident_when_due() -> None:
    app = intake(T0)
    await app.consume([f.ticket_updated("c", "t-1", opened=T0, at=T0)])
    app.clock.now = T0 + timedelta(days=1)
    assert await app.service.run_due_checks() == 1
    [incident] = app.incidents()
    assert (incident["type"], incident["detection"]) == ("support_wait_exceeded", "proactive")


async def test_only_real_double_charges_are_incidents_with_what_was_captured() -> None:
    """Split shipments, partial captures within the total and re-authorisations are not
    double charges; the same amount twice and captures above the total are, for what they
    took too much; a merchant's cancellation carries everything captured for its order."""
    events = f.double_charges("c", T0)
    app = intake(T0)
    await app.consume(events.placed)
    await app.consume(events.captures[:4])
    await app.consume(events.captures)  # the same captures again (a replay) and the rest
    await app.consume(events.cancelled)
    events.check(app.incidents())


async def test_captures_across_batches_judge_each_extra_capture_once() -> None:
    app = intake(T0)
    for payment in ("p-1", "p-2", "p-3"):
        await app.consume([f.payment_captured("c", "o-1", payment, at=T0)])
    charges = [i for i in app.incidents() if i["type"] == "double_charge"]
    assert [i["incident_id"] for i in charges] == [
        incident_id(IncidentType.double_charge, "o-1", p) for p in ("p-2", "p-3")]
    assert [i["captured_amount"] for i in charges] == [f.eur("84.00"), f.eur("126.00")]
