"""The aftermath of an incident: what the customer did in the days after it (ordered again,
for how much, cancelled, complained again, rated the remedy, left). Pure: no I/O, no clock.

An incident is followed from its `occurred_at` (event time, so a replay or a backfill lands
on the same windows as live traffic) for the longest window. Each upstream event of the
customer in that time becomes at most one `Fact` per followed incident, under an id made
from the incident and the fact's own key (an order counts once however often it is sent).
The record is a fold of the facts that is indifferent to their order and to duplicates, so
the same facts, however delivered, give the same record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from schemas.common import Money, deterministic_id
from schemas.incident import Incident
from schemas.upstream import (
    CancelledBy,
    CustomerChurnedEvent,
    OrderCancelledEvent,
    OrderItemReportedEvent,
    OrderPlacedEvent,
    RemedyRatedEvent,
    ReviewPostedEvent,
    SupportTicketUpdatedEvent,
    UpstreamEvent,
)

# A public review at or below this many stars is a complaint.
COMPLAINT_STARS = 2


class FactKind(StrEnum):
    order = "order"  # an order placed after the incident
    cancellation = "cancellation"  # the customer cancelled one of those orders
    complaint = "complaint"  # a new support ticket, an item reported, a bad review
    rating = "rating"  # the customer's rating of this incident's remedy
    churn = "churn"  # upstream says the customer left


@dataclass(frozen=True)
class Followed:
    """An incident as the aftermath follows it: what reports group by, nothing personal
    beyond the customer's id (which erasure replaces)."""

    incident_id: str
    customer_id: str
    type: str
    detection: str
    tier: str
    locale: str
    tenant: str | None
    occurred_at: datetime
    detected_at: datetime
    order_id: str | None = None
    ticket_id: str | None = None

    @classmethod
    def of(cls, incident: Incident) -> Followed:
        customer = incident.customer
        return cls(incident_id=incident.incident_id, customer_id=customer.id,
                   type=incident.type.value, detection=incident.detection.value,
                   tier=customer.tier.value, locale=customer.locale, tenant=incident.tenant,
                   occurred_at=incident.occurred_at, detected_at=incident.detected_at,
                   order_id=incident.order_id, ticket_id=incident.ticket_id)

    def within(self, at: datetime, window: timedelta) -> bool:
        """Whether `at` falls after the incident and within `window` of it."""
        return self.occurred_at < at <= self.occurred_at + window


@dataclass(frozen=True)
class Fact:
    """One thing the customer did after one incident."""

    incident_id: str
    followed_at: datetime  # the incident's occurred_at: kept beside it, read by ranges
    kind: FactKind
    key: str  # what makes it one fact: the order, the ticket, the event
    at: datetime
    amount: Money | None = None
    rating: int | None = None

    @property
    def fact_id(self) -> str:
        return deterministic_id("aftermath", self.incident_id, self.kind.value, self.key)


def _complaint(event: UpstreamEvent) -> tuple[str, datetime, str | None, str | None] | None:
    """(key, time, order, ticket) when the event is the customer complaining."""
    if isinstance(event, SupportTicketUpdatedEvent):
        data = event.data
        return f"ticket:{data.ticket_id}", data.opened_at, data.order_id, data.ticket_id
    if isinstance(event, OrderItemReportedEvent):
        reported = event.data
        return (f"item:{reported.order_id}:{reported.item.sku}:{reported.problem.value}",
                reported.reported_at, reported.order_id, None)
    if isinstance(event, ReviewPostedEvent) and event.data.rating <= COMPLAINT_STARS:
        return f"review:{event.data.review_id}", event.data.posted_at, None, None
    return None


def facts_of(followed: Followed, event: UpstreamEvent, window: timedelta) -> list[Fact]:
    """What `event` (of the followed incident's customer) says about its aftermath within
    `window`; nothing for the event that is the incident itself (its own order or ticket)."""
    fact = _fact(followed, event)
    if fact is None or not followed.within(fact.at, window):
        return []
    return [fact]


def _fact(followed: Followed, event: UpstreamEvent) -> Fact | None:
    iid, since = followed.incident_id, followed.occurred_at
    if isinstance(event, OrderPlacedEvent):
        placed = event.data
        if placed.order_id == followed.order_id:
            return None
        return Fact(iid, since, FactKind.order, placed.order_id, placed.placed_at, placed.total)
    if isinstance(event, OrderCancelledEvent):
        cancelled = event.data
        # The merchant cancelling is a failure of ours (an incident), not the customer's word.
        if (cancelled.cancelled_by is not CancelledBy.customer
                or cancelled.order_id == followed.order_id):
            return None
        return Fact(iid, since, FactKind.cancellation, cancelled.order_id, cancelled.cancelled_at)
    if isinstance(event, RemedyRatedEvent):
        rated = event.data
        if rated.incident_id != iid or rated.rating is None:
            return None
        return Fact(iid, since, FactKind.rating, event.id, rated.rated_at, rating=rated.rating)
    if isinstance(event, CustomerChurnedEvent):
        return Fact(iid, since, FactKind.churn, event.id, event.data.churned_at)
    complaint = _complaint(event)
    if complaint is None:
        return None
    key, at, order, ticket = complaint
    if ticket is not None and ticket == followed.ticket_id:
        return None
    if order is not None and order == followed.order_id and ticket is None:
        return None  # the failed order's own report is the incident, not a second complaint
    return Fact(iid, since, FactKind.complaint, key, at)


@dataclass(frozen=True)
class WindowOutcome:
    """The aftermath within `days` of the incident."""

    days: int
    orders: int
    value: dict[str, Decimal]  # per currency, of the orders not cancelled within the window
    cancelled: int
    complaints: int
    churned: bool

    @property
    def reordered(self) -> bool:
        return self.orders > 0

    @property
    def complained(self) -> bool:
        return self.complaints > 0


@dataclass(frozen=True)
class Aftermath:
    """An incident's outcome record: per window, and the customer's rating of the remedy
    (their latest, ties broken by the rating's id)."""

    followed: Followed
    windows: tuple[WindowOutcome, ...]
    rating: int | None
    facts: int

    def window(self, days: int) -> WindowOutcome:
        for outcome in self.windows:
            if outcome.days == days:
                return outcome
        raise KeyError(days)


@dataclass
class Tally:
    """An incident's facts so far, by id: adding one twice changes nothing, and the record
    does not depend on the order they came in."""

    followed: Followed
    facts: dict[str, Fact] = field(default_factory=dict)

    def add(self, facts: Iterable[Fact]) -> list[Fact]:
        """Keep the facts not kept yet (the first of an id wins); returns them."""
        new = []
        for fact in facts:
            if fact.incident_id == self.followed.incident_id and fact.fact_id not in self.facts:
                self.facts[fact.fact_id] = fact
                new.append(fact)
        return new

    def record(self, windows: Sequence[int]) -> Aftermath:
        return aftermath(self.followed, self.facts.values(), windows)


def aftermath(followed: Followed, facts: Iterable[Fact], windows: Sequence[int]) -> Aftermath:
    """The outcome record of `followed` from its facts, for each window (in days)."""
    kept: dict[str, Fact] = {}
    for fact in facts:
        kept.setdefault(fact.fact_id, fact)
    outcomes = []
    for days in sorted(windows):
        span = timedelta(days=days)
        inside = [f for f in kept.values() if followed.within(f.at, span)]
        cancelled = {f.key for f in inside if f.kind is FactKind.cancellation}
        orders = [f for f in inside if f.kind is FactKind.order]
        value: dict[str, Decimal] = {}
        for order in orders:
            if order.amount is not None and order.key not in cancelled:
                currency = order.amount.currency
                value[currency] = value.get(currency, Decimal(0)) + order.amount.amount
        outcomes.append(WindowOutcome(
            days=days, orders=len(orders), value=value,
            cancelled=len(cancelled & {o.key for o in orders}),
            complaints=sum(f.kind is FactKind.complaint for f in inside),
            churned=any(f.kind is FactKind.churn for f in inside)))
    ratings = sorted((f for f in kept.values() if f.kind is FactKind.rating),
                     key=lambda f: (f.at, f.key))
    return Aftermath(followed=followed, windows=tuple(outcomes),
                     rating=ratings[-1].rating if ratings else None, facts=len(kept))
