"""Intake's decisions over a batch of events, beside the single-event rules of
`detection.py`: which snapshot of each customer to remember, which capture takes which slot
of its order and which captures are double charges, what a reported incident carries, and
what each due check leads to. Pure: the service loads the state, calls these, stores and
publishes what they return."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schemas.common import CustomerSnapshot
from schemas.incident import Incident, IncidentType
from schemas.upstream import PaymentCapturedEvent, UpstreamEvent
from services.intake.domain.detection import (
    Capture,
    Check,
    OrderPayments,
    Thresholds,
    capture_of,
    double_charge,
    run_check,
)

Seen = tuple[CustomerSnapshot, str | None, datetime]

# Incidents about an order's money: a decision may refund up to what was captured for it.
CARRY_CAPTURED = frozenset({IncidentType.double_charge, IncidentType.order_cancelled,
                            IncidentType.item_missing, IncidentType.item_defective,
                            IncidentType.wrong_item})


def customers_seen(events: Sequence[UpstreamEvent]) -> list[Seen]:
    """Each customer the events are about, with the snapshot of their latest event."""
    latest: dict[str, Seen] = {}
    for event in events:
        customer: CustomerSnapshot | None = getattr(event.data, "customer", None)
        if customer is None:
            continue
        known = latest.get(customer.id)
        if known is None or event.time >= known[2]:
            latest[customer.id] = (customer, event.tenant, event.time)
    return list(latest.values())


def claim_slots(events: Sequence[PaymentCapturedEvent], state: Mapping[str, OrderPayments]
                ) -> list[tuple[str, int, Capture, datetime]]:
    """The slots the captures not yet known take, in their order: (order, slot, capture,
    captured at). `state` is updated as if they were all claimed."""
    slots: list[tuple[str, int, Capture, datetime]] = []
    for event in events:
        payments = state[event.data.order_id]
        if payments.knows(event.data.payment_id):
            continue
        capture = capture_of(event, payments.total)
        slots.append((event.data.order_id, payments.next_slot, capture,
                      event.data.captured_at))
        payments.captures.append(capture)
        payments.next_slot += 1
    return slots


def double_charges(captures: Sequence[tuple[int, PaymentCapturedEvent]],
                   state: Mapping[str, OrderPayments], now: datetime
                   ) -> list[tuple[int, Incident]]:
    """The double charges among the captures (by position), each judged against the
    captures of its order before it."""
    found = []
    for index, event in captures:
        payments = state[event.data.order_id]
        verdict = payments.verdict(event.data.payment_id)
        if verdict is None:
            continue
        first = payments.captures[0].amount
        capture = next(c for c in payments.captures if c.payment_id == event.data.payment_id)
        incident = double_charge(event, verdict, capture.order_total or first, now)
        if incident is not None:
            found.append((index, incident))
    return found


def with_captured(incident: Incident, payments: OrderPayments | None) -> Incident:
    """A reported incident about an order's money, with what was captured for the order."""
    if payments is None or incident.type not in CARRY_CAPTURED:
        return incident
    captured = payments.captured()
    if captured is None:
        return incident
    return incident.model_copy(update={"captured_amount": captured})


@dataclass
class Sweep:
    """What a round of due checks leads to."""

    incidents: list[Incident] = field(default_factory=list)
    fired: list[Check] = field(default_factory=list)  # the checks that raised them
    following: list[Check] = field(default_factory=list)  # the next check of a subject
    done: list[str] = field(default_factory=list)  # the checks to forget


def run_due(due: Sequence[Check], closed: set[str], now: datetime, thresholds: Thresholds,
            read_to: Callable[[Check], datetime | None]) -> Sweep:
    """Run each due check whose subject was not settled, as far as its partition was read
    (`read_to`)."""
    sweep = Sweep()
    for check in due:
        if check.closed_id in closed:
            sweep.done.append(check.check_id)
            continue
        incident, after = run_check(check, now, thresholds, read_to(check))
        if incident is not None:
            sweep.incidents.append(incident)
            sweep.fired.append(check)
        if after is not None and after.check_id != check.check_id:
            sweep.following.append(after)
        if after is None or after.check_id != check.check_id:
            sweep.done.append(check.check_id)
    return sweep
