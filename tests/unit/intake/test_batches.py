"""Intake's batch decisions (`domain/batches.py`): the snapshot remembered per customer, the
slots captures take, double charges, what a reported incident carries, and a sweep of due
checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.incident import Incident, IncidentType
from schemas.upstream import PaymentCapturedEvent, upstream_event_adapter
from services.intake.domain import batches
from services.intake.domain.detection import (
    CheckKind,
    OrderPayments,
    Thresholds,
    capture_of,
    delivery_check,
)
from tests import factories as f

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
THRESHOLDS = Thresholds((("late", 0), ("late_2h", 120)), grace_minutes=10)


def capture(payment: str, order: str = "o-1", amount: str = "42.00") -> PaymentCapturedEvent:
    event = upstream_event_adapter.validate_python(
        f.payment_captured("c", order, payment, at=T0, amount=amount))
    assert isinstance(event, PaymentCapturedEvent)
    return event


def test_a_customer_is_remembered_by_the_snapshot_of_their_latest_event() -> None:
    older = f.order_placed("c", "o-1", at=T0, promised=None, tenant="brand-a")
    newer = f.delivered("c", "o-1", at=T0 + timedelta(hours=1), tenant="brand-b")
    newer["data"]["customer"]["tier"] = "gold"
    events = [upstream_event_adapter.validate_python(e) for e in (newer, older)]
    [(customer, tenant, at)] = batches.customers_seen(events)
    assert (customer.tier, tenant, at) == ("gold", "brand-b", T0 + timedelta(hours=1))


def test_new_captures_take_the_next_slots_and_known_ones_none() -> None:
    first = capture("p-1")
    state = {"o-1": OrderPayments(captures=[capture_of(first)]),
             "o-2": OrderPayments(next_slot=3)}
    slots = batches.claim_slots([first, capture("p-2"), capture("p-3", "o-2"),
                                 capture("p-4")], state)
    assert [(order, slot, c.payment_id) for order, slot, c, _ in slots] == [
        ("o-1", 0, "p-2"), ("o-2", 3, "p-3"), ("o-1", 1, "p-4")]
    assert state["o-1"].next_slot == 2
    assert [c.payment_id for c in state["o-1"].captures] == ["p-1", "p-2", "p-4"]


def test_only_the_extra_captures_are_double_charges() -> None:
    events = [capture("p-1"), capture("p-2")]
    state = {"o-1": OrderPayments(captures=[capture_of(e) for e in events])}
    found = batches.double_charges(list(enumerate(events)), state, T0)
    assert [(index, i.type) for index, i in found] == [(1, IncidentType.double_charge)]


def test_a_reported_incident_about_an_order_s_money_carries_what_was_captured() -> None:
    missing = Incident.model_validate(f.incident("item_missing"))
    paid = OrderPayments(captures=[capture_of(capture("p-1")), capture_of(capture("p-2"))])
    carried = batches.with_captured(missing, paid)
    assert carried.captured_amount is not None
    assert str(carried.captured_amount.amount) == "84.00"
    assert batches.with_captured(missing, OrderPayments()) is missing
    late = Incident.model_validate(f.incident("delivery_delayed"))
    assert batches.with_captured(late, paid) is late


def test_a_sweep_forgets_settled_checks_and_moves_the_others_on() -> None:
    placed = [upstream_event_adapter.validate_python(
        f.order_placed("c", order, at=T0, promised=T0)) for order in ("o-1", "o-2")]
    checks = [c for e in placed if (c := delivery_check(e, THRESHOLDS))]  # type: ignore[arg-type]
    assert [c.kind for c in checks] == [CheckKind.delivery] * 2
    settled = {checks[1].closed_id}
    now = T0 + timedelta(minutes=30)
    sweep = batches.run_due(checks, settled, now, THRESHOLDS, lambda _: now)
    assert [i.order_id for i in sweep.incidents] == ["o-1"]
    assert sweep.fired == [checks[0]]
    assert [c.step for c in sweep.following] == [1]
    assert sorted(sweep.done) == sorted(c.check_id for c in checks)
    # The delay is told as far as the check's partition was read, not by the clock.
    read = batches.run_due(checks[:1], set(), now, THRESHOLDS,
                           lambda _: T0 + timedelta(minutes=15))
    assert [i.delay_minutes for i in read.incidents] == [15]
