"""An incident reported directly to intake (`POST /v1/incidents`), e.g. by a support agent."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import Contract, CustomerSnapshot, DateTime, Money
from schemas.incident import IncidentType


class IncidentReport(Contract):
    """What a reporting system knows about one customer's problem.

    `report_id` is the reporting system's own id of the report: sending the same report again
    (a retry) lands on the same incident. Item problems, cancellations and support waits that
    name their order or ticket land on the same incident as the one intake detects from the
    upstream events, so a problem reported twice is still one incident.
    """

    report_id: str = Field(min_length=1, max_length=256)
    type: IncidentType
    detection: Literal["customer_reported", "agent_reported"] = Field(
        default="agent_reported", description="who told us: the customer or an agent")
    customer: CustomerSnapshot
    tenant: str | None = Field(default=None, max_length=128)
    occurred_at: DateTime = Field(description="when the failure began for the customer")
    order_id: str | None = Field(default=None, min_length=1, max_length=128)
    order_value: Money | None = None
    item_value: Money | None = None
    item_sku: str | None = Field(default=None, min_length=1, max_length=128)
    delay_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    ticket_id: str | None = Field(default=None, min_length=1, max_length=128)
    wait_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    charged_amount: Money | None = None
    outage_id: str | None = Field(default=None, min_length=1, max_length=128)
    outage_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    summary: str = Field(default="", max_length=500)
