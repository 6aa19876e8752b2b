"""An incident: one customer affected by one failure, as detected by intake."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, CustomerSnapshot, Money, Tier, deterministic_id
from schemas.envelope import CloudEvent


class IncidentType(StrEnum):
    delivery_delayed = "delivery_delayed"
    item_defective = "item_defective"
    wrong_item = "wrong_item"
    item_missing = "item_missing"
    order_cancelled = "order_cancelled"
    double_charge = "double_charge"
    support_wait_exceeded = "support_wait_exceeded"
    service_outage = "service_outage"
    negative_review = "negative_review"


class Detection(StrEnum):
    """How the failure came to light: found by Amends first, or told by the customer."""

    proactive = "proactive"
    customer_reported = "customer_reported"
    agent_reported = "agent_reported"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Incident(Contract):
    incident_id: str
    type: IncidentType
    detection: Detection
    severity: Severity = Severity.medium
    customer: CustomerSnapshot
    tenant: str | None = None
    occurred_at: AwareDatetime = Field(description="when the failure began for the customer")
    detected_at: AwareDatetime = Field(description="when Amends detected it (intake's clock)")
    source: str = Field(description="the upstream source that told us")
    source_event_id: str | None = None
    order_id: str | None = None
    order_value: Money | None = None
    item_value: Money | None = None
    item_sku: str | None = None
    delay_minutes: int | None = Field(default=None, ge=0)
    delay_band: str | None = None
    ticket_id: str | None = None
    wait_minutes: int | None = Field(default=None, ge=0)
    charged_amount: Money | None = None
    captured_amount: Money | None = Field(
        default=None, description="everything captured for the order so far, as intake knows "
        "it: no refund for the order, across all its incidents, goes above it")
    outage_id: str | None = None
    outage_minutes: int | None = Field(default=None, ge=0)
    delivered_at: AwareDatetime | None = Field(
        default=None, description="for a late delivery: when the order arrived; none while "
        "it is still on its way")
    cause_fixed: bool = Field(
        default=False, description="the source says the cause is fixed; only then may a "
        "message claim so")
    summary: str = Field(default="", max_length=500)
    # A negative review's facts (never its text). Absent, they are left out of the JSON, so
    # incidents of the other types serialise as they always did.
    rating: int | None = Field(default=None, ge=1, le=5, exclude_if=lambda v: v is None)
    review_platform: str | None = Field(default=None, max_length=64,
                                        exclude_if=lambda v: v is None)
    review_url: str | None = Field(default=None, max_length=2048,
                                   exclude_if=lambda v: v is None)
    # An outage's public facts for its status post: the service that failed and, when the
    # source said it, what was done so it won't happen again (never invented).
    outage_service: str | None = Field(default=None, max_length=128,
                                       exclude_if=lambda v: v is None)
    outage_prevention: str | None = Field(default=None, max_length=500,
                                          exclude_if=lambda v: v is None)
    # An outage's size, as intake knew it at the fan-out, on each of its incidents: decision
    # computes every customer's share of the outage budget from them alone (ADR 0014).
    outage_affected: int | None = Field(
        default=None, ge=1, exclude_if=lambda v: v is None,
        description="how many customers the outage affected, for its outage budget")
    outage_tiers: dict[Tier, int] | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="how many of them in each tier (they add up to outage_affected)")


def incident_id(incident_type: IncidentType, *fact: str) -> str:
    """The incident id from the detected fact (e.g. order and delay band)."""
    return deterministic_id("incident", incident_type.value, *fact)


class IncidentDetected(CloudEvent[Incident]):
    type: Literal["amends.incident.detected"] = "amends.incident.detected"
