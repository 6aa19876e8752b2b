"""Incident detection: pure rules from upstream facts (and the little state they need) to
incidents. No I/O; "now" is an argument; every incident id is derived from the fact it
describes, so the same fact seen again is the same incident."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from schemas.common import CustomerSnapshot, Money, Tier
from schemas.incident import Detection, Incident, IncidentType, Severity, incident_id
from schemas.report import IncidentReport
from schemas.upstream import (
    CancelledBy,
    ItemProblem,
    OrderCancelledEvent,
    OrderDeliveredEvent,
    OrderItemReportedEvent,
    OrderPlacedEvent,
    OutageDeclaredEvent,
    OutageSeverity,
    PaymentCapturedEvent,
    SupportTicketUpdatedEvent,
    TicketStatus,
)


def minutes_between(start: datetime, end: datetime) -> int:
    """Whole minutes from `start` to `end`, never negative."""
    return max(0, int((end - start).total_seconds() // 60))


@dataclass(frozen=True)
class Thresholds:
    """The detection thresholds (from the settings)."""

    bands: tuple[tuple[str, int], ...]
    grace_minutes: int = 0
    support_sla_minutes: int = 240

    def band_index(self, minutes_late: int) -> int:
        """The worst band reached after `minutes_late` minutes."""
        reached = 0
        for index, (_, start) in enumerate(self.bands):
            if minutes_late >= start:
                reached = index
        return reached

    def is_late(self, minutes_late: int) -> bool:
        return minutes_late > self.grace_minutes and minutes_late >= self.bands[0][1]

    def band_due(self, promised: datetime, index: int) -> datetime:
        """When band `index` is reached for a delivery promised at `promised`: not before
        the grace period has passed, and then a minute into the band."""
        start = max(self.bands[index][1], self.grace_minutes + 1)
        return promised + timedelta(minutes=start)


_OUTAGE_SEVERITY = {OutageSeverity.minor: Severity.low, OutageSeverity.major: Severity.medium,
                    OutageSeverity.critical: Severity.high}
_ITEM_TYPES = {ItemProblem.defective: IncidentType.item_defective,
               ItemProblem.wrong_item: IncidentType.wrong_item,
               ItemProblem.missing: IncidentType.item_missing}


def delay_severity(minutes: int) -> Severity:
    """How bad a delay is, by its length (not by the band's position: bands are set to
    follow the policy's steps, and there may be many)."""
    if minutes < 120:
        return Severity.low
    if minutes < 480:
        return Severity.medium
    return Severity.high if minutes < 1440 else Severity.critical


# --- scheduled checks ----------------------------------------------------------------------


class CheckKind(StrEnum):
    delivery = "delivery"
    support = "support"


@dataclass(frozen=True)
class Check:
    """A check to run at `due_at` unless its subject is settled first: a delivery that must
    have arrived by the time its next delay band is reached, or a ticket that must have had
    its first answer within the SLA. `origin` is the promised time or the ticket's opening."""

    kind: CheckKind
    key: str
    step: int
    due_at: datetime
    origin: datetime
    customer: CustomerSnapshot
    tenant: str | None
    source: str
    source_event_id: str
    order_value: Money | None = None

    @property
    def check_id(self) -> str:
        return check_id(self.kind, self.key, self.step)

    @property
    def closed_id(self) -> str:
        return closed_id(self.kind, self.key)


def check_id(kind: CheckKind, key: str, step: int) -> str:
    return f"{kind.value}:{key}:{step}"


def closed_id(kind: CheckKind, key: str) -> str:
    """The marker that settles every check of a subject (delivered, or answered)."""
    return f"{kind.value}:{key}:closed"


def delivery_check(event: OrderPlacedEvent, thresholds: Thresholds) -> Check | None:
    """The first check of an order with a promised delivery time."""
    data = event.data
    if data.promised_delivery_at is None:
        return None
    return Check(CheckKind.delivery, data.order_id, 0,
                 thresholds.band_due(data.promised_delivery_at, 0), data.promised_delivery_at,
                 data.customer, event.tenant, event.source, event.id, data.total)


def run_check(check: Check, now: datetime, thresholds: Thresholds,
              read_to: datetime | None = None) -> tuple[Incident | None, Check | None]:
    """A due check that nothing settled: the incident it raises and the check that follows.
    `read_to` is how far intake has read the check's upstream partition in event time (the
    watermark): the delay is what is known there, never more than `now` tells."""
    at = now if read_to is None else min(now, read_to)
    late = minutes_between(check.origin, at)
    if check.kind is CheckKind.support:
        return _support_incident(check.key, check.customer, tenant=check.tenant,
                                 source=check.source, source_event_id=check.source_event_id,
                                 opened_at=check.origin, wait=late, now=now,
                                 thresholds=thresholds), None
    if not thresholds.is_late(late):  # run early (a clock moved back): look again later
        return None, check
    index = thresholds.band_index(late)
    incident = _delay_incident(check.key, check.customer, tenant=check.tenant,
                               source=check.source, source_event_id=check.source_event_id,
                               promised=check.origin, minutes=late, index=index, now=now,
                               thresholds=thresholds, order_value=check.order_value,
                               delivered_at=None)
    following = None
    if index + 1 < len(thresholds.bands):
        following = replace(check, step=index + 1,
                            due_at=thresholds.band_due(check.origin, index + 1))
    return incident, following


# --- orders ---------------------------------------------------------------------------------


def _delay_incident(order_id: str, customer: CustomerSnapshot, *, tenant: str | None,
                    source: str, source_event_id: str, promised: datetime, minutes: int,
                    index: int, now: datetime, thresholds: Thresholds,
                    order_value: Money | None, delivered_at: datetime | None) -> Incident:
    band = thresholds.bands[index][0]
    what = (f"delivered {minutes} minutes after the promised time" if delivered_at
            else f"not delivered {minutes} minutes after the promised time")
    return Incident(
        incident_id=incident_id(IncidentType.delivery_delayed, order_id, band),
        type=IncidentType.delivery_delayed, detection=Detection.proactive,
        severity=delay_severity(minutes), customer=customer, tenant=tenant,
        occurred_at=promised, detected_at=now, source=source, source_event_id=source_event_id,
        order_id=order_id, order_value=order_value, delay_minutes=minutes, delay_band=band,
        delivered_at=delivered_at, summary=f"order {order_id} {what}"[:500])


def late_delivery(event: OrderDeliveredEvent, promised: datetime | None, now: datetime,
                  thresholds: Thresholds, order_value: Money | None = None) -> Incident | None:
    """A delivery that arrived late: the incident of the band it reached (the same one a
    check may have raised already, or a worse one: the top-up)."""
    data = event.data
    promised = data.promised_delivery_at or promised
    if promised is None:
        return None
    minutes = minutes_between(promised, data.delivered_at)
    if not thresholds.is_late(minutes):
        return None
    return _delay_incident(data.order_id, data.customer, tenant=event.tenant,
                           source=event.source, source_event_id=event.id, promised=promised,
                           minutes=minutes, index=thresholds.band_index(minutes), now=now,
                           thresholds=thresholds, order_value=data.total or order_value,
                           delivered_at=data.delivered_at)


def item_reported(event: OrderItemReportedEvent, now: datetime) -> Incident:
    data = event.data
    kind = _ITEM_TYPES[data.problem]
    value = Money(amount=data.item.price.amount * data.item.quantity,
                  currency=data.item.price.currency)
    return Incident(
        incident_id=incident_id(kind, data.order_id, data.item.sku),
        type=kind, detection=Detection.customer_reported, severity=Severity.medium,
        customer=data.customer, tenant=event.tenant, occurred_at=data.reported_at,
        detected_at=now, source=event.source, source_event_id=event.id,
        order_id=data.order_id, order_value=data.order_total, item_value=value,
        item_sku=data.item.sku,
        summary=f"{data.problem.value.replace('_', ' ')} item {data.item.sku} "
                f"in order {data.order_id}"[:500])


def merchant_cancellation(event: OrderCancelledEvent, captured_so_far: Money | None,
                          now: datetime) -> Incident | None:
    """A paid order the merchant cancelled: paid as the event says, or because captures
    were seen (`captured_so_far`, everything captured for the order)."""
    data = event.data
    paid = captured_so_far is not None and captured_so_far.amount > 0
    if data.cancelled_by is not CancelledBy.merchant or not (paid or data.paid):
        return None
    return Incident(
        incident_id=incident_id(IncidentType.order_cancelled, data.order_id),
        type=IncidentType.order_cancelled, detection=Detection.proactive,
        severity=Severity.high, customer=data.customer, tenant=event.tenant,
        occurred_at=data.cancelled_at, detected_at=now, source=event.source,
        source_event_id=event.id, order_id=data.order_id, order_value=data.total,
        captured_amount=captured_so_far if paid else None,
        summary=f"paid order {data.order_id} cancelled by us")


@dataclass(frozen=True)
class Capture:
    """A capture as recorded for its order, with the order's total known when it was
    recorded (so that judging it again gives the same verdict)."""

    payment_id: str
    amount: Money
    replaces: str | None = None
    order_total: Money | None = None


@dataclass(frozen=True)
class ChargeVerdict:
    """What one capture means for its order: everything captured for the order with it, and
    what it took beyond what the order allows (a double charge), if anything."""

    captured: Money
    excess: Money | None = None


@dataclass
class OrderPayments:
    """What intake knows of an order's payments: its total (from its order.placed) and its
    captures in the order they were recorded (slot by slot)."""

    total: Money | None = None
    captures: list[Capture] = field(default_factory=list)
    next_slot: int = 0

    def knows(self, payment_id: str) -> bool:
        return any(c.payment_id == payment_id for c in self.captures)

    def verdict(self, payment_id: str) -> ChargeVerdict | None:
        for index, capture in enumerate(self.captures):
            if capture.payment_id == payment_id:
                return judge_capture(self.captures[:index], capture)
        return None

    def captured(self) -> Money | None:
        """Everything captured for the order so far (None when nothing was)."""
        if not self.captures:
            return None
        currency = (self.total or self.captures[0].amount).currency
        return captured(self.captures, currency)


def capture_of(event: PaymentCapturedEvent, known_total: Money | None = None) -> Capture:
    data = event.data
    return Capture(data.payment_id, data.amount, data.replaces_payment_id,
                   data.order_total or known_total)


def captured(captures: Sequence[Capture], currency: str) -> Money:
    """What the captures of an order add up to in `currency`: a payment counts once, and not
    at all once a re-authorisation replaced it."""
    replaced = {c.replaces for c in captures if c.replaces}
    seen: dict[str, Decimal] = {}
    for capture in captures:
        if capture.amount.currency == currency and capture.payment_id not in replaced:
            seen.setdefault(capture.payment_id, capture.amount.amount)
    return Money(amount=sum(seen.values(), Decimal(0)), currency=currency)


def judge_capture(prior: Sequence[Capture], capture: Capture) -> ChargeVerdict:
    """The verdict of `capture` after the captures recorded before it for its order.

    With the order's total known, a capture is a double charge for what it takes above the
    total (split shipments and partial captures within it are not); without it, for its
    whole amount when another live capture of the order took the same amount. A payment
    replaced by a re-authorisation counts for nothing."""
    money = capture.amount
    before = [c for c in prior if c.payment_id != capture.payment_id]
    replaced = {c.replaces for c in (*before, capture) if c.replaces}
    # `captured` of what came before, less what this capture replaces.
    earlier = captured([*before, replace(capture, amount=Money(amount=Decimal(0),
                                                                currency=money.currency))],
                       money.currency)
    if capture.payment_id in replaced:  # a re-authorisation recorded first replaced it
        return ChargeVerdict(earlier)
    after = earlier.amount + money.amount
    total = capture.order_total
    excess = Decimal(0)
    if total is not None and total.currency == money.currency:
        ceiling = max(total.amount, earlier.amount)  # what was above it is counted already
        excess = max(Decimal(0), after - ceiling)
    elif any(c.amount == money and c.payment_id not in replaced for c in before):
        excess = money.amount
    return ChargeVerdict(Money(amount=after, currency=money.currency),
                         Money(amount=excess, currency=money.currency) if excess > 0 else None)


def first_captures(events: Sequence[PaymentCapturedEvent]
                   ) -> dict[str, PaymentCapturedEvent]:
    """Of one batch, the earliest capture per order (the one that claims it when none was
    recorded before)."""
    first: dict[str, PaymentCapturedEvent] = {}
    for event in events:
        order = event.data.order_id
        if order not in first or event.data.captured_at < first[order].data.captured_at:
            first[order] = event
    return first


def double_charge(event: PaymentCapturedEvent, verdict: ChargeVerdict,
                  order_value: Money | None, now: datetime) -> Incident | None:
    """The incident of a capture that took more than the order allows: one incident per
    extra capture (a redelivery of a capture is the same one)."""
    data = event.data
    if verdict.excess is None:
        return None
    twice = verdict.excess == data.amount
    what = (f"charged twice ({data.amount})" if twice
            else f"charged {verdict.excess} more than its total")
    return Incident(
        incident_id=incident_id(IncidentType.double_charge, data.order_id, data.payment_id),
        type=IncidentType.double_charge, detection=Detection.proactive, severity=Severity.high,
        customer=data.customer, tenant=event.tenant, occurred_at=data.captured_at,
        detected_at=now, source=event.source, source_event_id=event.id,
        order_id=data.order_id, order_value=order_value, charged_amount=verdict.excess,
        captured_amount=verdict.captured, summary=f"order {data.order_id} {what}"[:500])


# --- support --------------------------------------------------------------------------------


def _support_incident(ticket_id: str, customer: CustomerSnapshot, *, tenant: str | None,
                      source: str, source_event_id: str, opened_at: datetime, wait: int,
                      now: datetime, thresholds: Thresholds) -> Incident:
    severity = (Severity.medium if wait >= 2 * thresholds.support_sla_minutes
                else Severity.low)
    return Incident(
        incident_id=incident_id(IncidentType.support_wait_exceeded, ticket_id),
        type=IncidentType.support_wait_exceeded, detection=Detection.proactive,
        severity=severity, customer=customer, tenant=tenant, occurred_at=opened_at,
        detected_at=now, source=source, source_event_id=source_event_id, ticket_id=ticket_id,
        wait_minutes=wait,
        summary=f"ticket {ticket_id} waited {wait} minutes for a first answer"[:500])


@dataclass(frozen=True)
class TicketVerdict:
    incident: Incident | None = None
    check: Check | None = None
    answered: bool = False


def support_ticket(event: SupportTicketUpdatedEvent, now: datetime, thresholds: Thresholds
                   ) -> TicketVerdict:
    """A ticket's first answer against the SLA: late already (an incident), answered in time
    (settled), or still waiting (a check at the SLA's end)."""
    data = event.data
    sla = thresholds.support_sla_minutes
    answered_at = data.first_response_at or (
        data.updated_at if data.status is TicketStatus.closed else None)
    if answered_at is not None:
        wait = minutes_between(data.opened_at, answered_at)
        incident = (_support_incident(data.ticket_id, data.customer, tenant=event.tenant,
                                      source=event.source, source_event_id=event.id,
                                      opened_at=data.opened_at, wait=wait, now=now,
                                      thresholds=thresholds) if wait > sla else None)
        return TicketVerdict(incident=incident, answered=True)
    # Unanswered as of the update's own time: what it proves. An update read late (consumer
    # lag) proves no more than when it was written; the check covers the rest on event time.
    waited = minutes_between(data.opened_at, min(now, data.updated_at))
    if waited > sla:
        return TicketVerdict(incident=_support_incident(
            data.ticket_id, data.customer, tenant=event.tenant, source=event.source,
            source_event_id=event.id, opened_at=data.opened_at, wait=waited, now=now,
            thresholds=thresholds))
    return TicketVerdict(check=Check(
        CheckKind.support, data.ticket_id, 0, data.opened_at + timedelta(minutes=sla + 1),
        data.opened_at, data.customer, event.tenant, event.source, event.id))


# --- outages --------------------------------------------------------------------------------


def outage_incidents(event: OutageDeclaredEvent, customers: Sequence[CustomerSnapshot],
                     now: datetime, outage_minutes: int | None = None,
                     tiers: Mapping[Tier, int] | None = None, *,
                     prevention: str | None = None) -> list[Incident]:
    """One incident per affected customer (each customer once). `tiers`: how many customers
    the whole outage affects in each tier, told on every incident so that decision can share
    the outage budget among them all (`tier_counts`); `prevention` is what its resolution,
    already known, said (it says more than the declaration)."""
    data = event.data
    unique = list({c.id: c for c in customers}.values())
    counted = {t: n for t, n in (tiers or {}).items() if n > 0}
    affected = sum(counted.values()) or None
    return [Incident(
        incident_id=incident_id(IncidentType.service_outage, data.outage_id, customer.id),
        type=IncidentType.service_outage, detection=Detection.proactive,
        severity=_OUTAGE_SEVERITY[data.severity], customer=customer, tenant=event.tenant,
        occurred_at=data.started_at, detected_at=now, source=event.source,
        source_event_id=event.id, outage_id=data.outage_id, outage_minutes=outage_minutes,
        summary=f"{data.service} was unavailable ({data.severity.value} outage)"[:500],
        outage_service=data.service, outage_prevention=prevention or data.prevention,
        outage_affected=affected, outage_tiers=counted or None,
    ) for customer in unique]


def tier_counts(customers: Iterable[CustomerSnapshot]) -> dict[Tier, int]:
    """How many of `customers` (each once) are in each tier."""
    counts: dict[Tier, int] = {}
    for customer in customers:
        counts[customer.tier] = counts.get(customer.tier, 0) + 1
    return counts


def outage_resolved_incidents(outage_id: str, told: Sequence[Incident], minutes: int,
                              now: datetime, *, source: str, source_event_id: str | None,
                              prevention: str | None = None) -> list[Incident]:
    """The resolved stage of an outage: for each customer an earlier incident of the outage
    told it was going on (no duration), one incident with its duration, under an id of its
    own (the same for every redelivery), so that decision tops up what was given."""
    out: dict[str, Incident] = {}
    for first in told:
        if (first.outage_id != outage_id or first.outage_minutes is not None
                or first.type is not IncidentType.service_outage):
            continue
        customer = first.customer.id
        out.setdefault(customer, first.model_copy(update={
            "incident_id": resolved_outage_id(outage_id, customer),
            "detected_at": now, "source": source, "source_event_id": source_event_id,
            "outage_minutes": minutes,
            # The resolution's word on prevention, else what the declaration said.
            "outage_prevention": prevention or first.outage_prevention,
            "summary": f"{first.summary}, resolved after {minutes} minutes"[:500]}))
    return list(out.values())


def resolved_outage_id(outage_id: str, customer_id: str) -> str:
    return incident_id(IncidentType.service_outage, outage_id, customer_id, "resolved")


# --- reported directly ----------------------------------------------------------------------


def reported_incident(report: IncidentReport, source: str, now: datetime) -> Incident:
    """An incident reported over HTTP. Its id is the one detection would give the same fact
    (an item of an order, a cancelled order, a ticket), else the report's own."""
    fact: tuple[str, ...] = (source, report.report_id)
    if report.type in _ITEM_TYPES.values() and report.order_id and report.item_sku:
        fact = (report.order_id, report.item_sku)
    elif report.type is IncidentType.order_cancelled and report.order_id:
        fact = (report.order_id,)
    elif report.type is IncidentType.support_wait_exceeded and report.ticket_id:
        fact = (report.ticket_id,)
    return Incident(
        incident_id=incident_id(report.type, *fact), type=report.type,
        detection=Detection(report.detection), severity=Severity.medium,
        customer=report.customer, tenant=report.tenant, occurred_at=report.occurred_at,
        detected_at=now, source=source, source_event_id=report.report_id,
        order_id=report.order_id, order_value=report.order_value,
        item_value=report.item_value, item_sku=report.item_sku,
        delay_minutes=report.delay_minutes, ticket_id=report.ticket_id,
        wait_minutes=report.wait_minutes, charged_amount=report.charged_amount,
        outage_id=report.outage_id, outage_minutes=report.outage_minutes,
        summary=report.summary or f"{report.type.value.replace('_', ' ')} reported")
