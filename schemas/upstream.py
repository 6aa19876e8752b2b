"""Events that upstream order, support, payment and status systems send to Amends.

The same JSON is accepted on the upstream Kafka topics and by intake's HTTP API. Each event
type is a CloudEvent whose `type` selects the model of its `data`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import Contract, CustomerSnapshot, DateTime, Money
from schemas.envelope import CloudEvent


class OrderItem(Contract):
    sku: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=256)
    quantity: int = Field(default=1, ge=1)
    price: Money


class OrderPlaced(Contract):
    order_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    placed_at: DateTime
    total: Money
    items: list[OrderItem] = Field(default_factory=list)
    promised_delivery_at: DateTime | None = None


class OrderDelivered(Contract):
    order_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    delivered_at: DateTime
    promised_delivery_at: DateTime | None = None
    total: Money | None = None


class CancelledBy(StrEnum):
    merchant = "merchant"
    customer = "customer"


class OrderCancelled(Contract):
    order_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    cancelled_at: DateTime
    cancelled_by: CancelledBy
    paid: bool = False
    total: Money | None = None
    reason: str | None = Field(default=None, max_length=1000)


class ItemProblem(StrEnum):
    defective = "defective"
    wrong_item = "wrong_item"
    missing = "missing"


class OrderItemReported(Contract):
    order_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    reported_at: DateTime
    problem: ItemProblem
    item: OrderItem
    order_total: Money | None = None
    description: str | None = Field(default=None, max_length=2000)


class TicketStatus(StrEnum):
    open = "open"
    waiting = "waiting"
    answered = "answered"
    closed = "closed"


class SupportTicketUpdated(Contract):
    ticket_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    status: TicketStatus
    opened_at: DateTime
    updated_at: DateTime
    first_response_at: DateTime | None = None
    order_id: str | None = Field(default=None, max_length=128)


class ReviewPosted(Contract):
    """A customer's public review (event time: `posted_at`). Its `text` is personal data:
    never logged, never in a metric label, scrubbed by erasure; Amends does not copy it into
    the incident."""

    review_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    posted_at: DateTime
    rating: int = Field(ge=1, le=5, description="stars, 1 (worst) to 5")
    text: str | None = Field(default=None, max_length=5000)
    url: str = Field(min_length=1, max_length=2048, description="where the review is public")
    platform: str = Field(min_length=1, max_length=64, description="e.g. trustpilot")
    order_id: str | None = Field(default=None, max_length=128)


class PaymentCaptured(Contract):
    """Money taken for an order. Several captures of one order are a double charge only when
    together they exceed the order's total or, with no total known, when one repeats the
    amount of another: split shipments and partial captures within the total are not, and
    neither is a re-authorisation that replaces an earlier payment."""

    payment_id: str = Field(min_length=1, max_length=128)
    order_id: str = Field(min_length=1, max_length=128)
    customer: CustomerSnapshot
    amount: Money
    captured_at: DateTime
    order_total: Money | None = Field(
        default=None, description="the order's total, when the payment system knows it "
        "(else the total of its order.placed is used, if seen)")
    replaces_payment_id: str | None = Field(
        default=None, min_length=1, max_length=128,
        description="a re-authorisation: the earlier payment of the same order this one "
        "replaces (its authorisation was released, its money not kept); what that one "
        "captured no longer counts")


class OutageSeverity(StrEnum):
    minor = "minor"
    major = "major"
    critical = "critical"


class OutageSegment(Contract):
    """Affected customers given as a segment: those seen within the last `seen_within_hours`."""

    seen_within_hours: int = Field(default=24, ge=1, le=24 * 90)


PREVENTION = ("what was done so that it won't happen again, one sentence in the words the "
              "public status post may quote; without it the post says the cause is being "
              "reviewed")


class OutageDeclared(Contract):
    outage_id: str = Field(min_length=1, max_length=128)
    service: str = Field(min_length=1, max_length=128)
    severity: OutageSeverity = OutageSeverity.major
    started_at: DateTime
    description: str | None = Field(default=None, max_length=2000)
    affected_customers: list[CustomerSnapshot] | None = None
    segment: OutageSegment | None = None
    prevention: str | None = Field(default=None, min_length=1, max_length=500,
                                   description=PREVENTION)


class OutageResolved(Contract):
    outage_id: str = Field(min_length=1, max_length=128)
    resolved_at: DateTime
    prevention: str | None = Field(default=None, min_length=1, max_length=500,
                                   description=PREVENTION)


class RemedyRated(Contract):
    """A customer's word on what they got for one decision, given on their page after the
    remedy: a rating and what they wrote. For the learning loop (which remedies satisfy whom);
    no incident comes of it. The `comment` is personal data: never logged, never a label."""

    decision_id: str = Field(min_length=1, max_length=200)
    incident_id: str = Field(min_length=1, max_length=200)
    incident_type: str = Field(min_length=1, max_length=64)
    customer: CustomerSnapshot
    rated_at: DateTime
    rating: int | None = Field(default=None, ge=1, le=5,
                               description="satisfaction, 1 (not at all) to 5 (fully)")
    comment: str | None = Field(default=None, max_length=2000, description="tell us more")
    order_id: str | None = Field(default=None, max_length=128)


class CustomerChurned(Contract):
    """Upstream's word that a customer left: closed the account, ended a subscription, or was
    judged lapsed by the upstream's own rule. For the learning loop; no incident comes of it.
    The `reason` is a short code (e.g. `account_closed`), never free text."""

    customer: CustomerSnapshot
    churned_at: DateTime
    reason: str | None = Field(default=None, max_length=64)


class OrderPlacedEvent(CloudEvent[OrderPlaced]):
    type: Literal["order.placed"]


class OrderDeliveredEvent(CloudEvent[OrderDelivered]):
    type: Literal["order.delivered"]


class OrderCancelledEvent(CloudEvent[OrderCancelled]):
    type: Literal["order.cancelled"]


class OrderItemReportedEvent(CloudEvent[OrderItemReported]):
    type: Literal["order.item_reported"]


class SupportTicketUpdatedEvent(CloudEvent[SupportTicketUpdated]):
    type: Literal["support.ticket_updated"]


class ReviewPostedEvent(CloudEvent[ReviewPosted]):
    type: Literal["review.posted"]


class PaymentCapturedEvent(CloudEvent[PaymentCaptured]):
    type: Literal["payment.captured"]


class OutageDeclaredEvent(CloudEvent[OutageDeclared]):
    type: Literal["outage.declared"]


class OutageResolvedEvent(CloudEvent[OutageResolved]):
    type: Literal["outage.resolved"]


class RemedyRatedEvent(CloudEvent[RemedyRated]):
    type: Literal["remedy.rated"]


class CustomerChurnedEvent(CloudEvent[CustomerChurned]):
    type: Literal["customer.churned"]


UpstreamEvent = Annotated[
    OrderPlacedEvent
    | OrderDeliveredEvent
    | OrderCancelledEvent
    | OrderItemReportedEvent
    | SupportTicketUpdatedEvent
    | ReviewPostedEvent
    | PaymentCapturedEvent
    | OutageDeclaredEvent
    | OutageResolvedEvent
    | RemedyRatedEvent
    | CustomerChurnedEvent,
    Field(discriminator="type"),
]

UPSTREAM_EVENT_TYPES: tuple[str, ...] = (
    "order.placed", "order.delivered", "order.cancelled", "order.item_reported",
    "support.ticket_updated", "payment.captured", "outage.declared", "outage.resolved",
    "review.posted", "remedy.rated", "customer.churned",
)

upstream_event_adapter: TypeAdapter[UpstreamEvent] = TypeAdapter(UpstreamEvent)
