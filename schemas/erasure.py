"""Erasure: a request that every service removes or pseudonymises one customer's personal
data. Each service reports what it touched as an audit entry (action `erasure`, target
`erasure:<erasure_id>`) on the audit topic."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, deterministic_id
from schemas.envelope import CloudEvent


def erasure_id(customer_id: str, tenant: str, requested_at: AwareDatetime) -> str:
    """The same customer erased again on the same day is the same erasure (a retried
    request lands on the same record); another day's is a new one."""
    return deterministic_id("erasure", tenant, customer_id, requested_at.date().isoformat())


class ErasureRequest(Contract):
    erasure_id: str = Field(description="deterministic: from the tenant, the customer and "
                                        "the day requested")
    customer_id: str = Field(min_length=1, max_length=128)
    tenant: str = Field(min_length=1, max_length=128,
                        description="the tenant whose customer it is")
    requested_by: str = Field(min_length=1, max_length=256,
                              description="the authenticated subject who asked")
    requested_at: AwareDatetime = Field(
        description="events about the customer from before this time are dropped by intake "
                    "when they come again (a replay)")
    reason: str = Field(default="", max_length=1000,
                        description="the ticket or legal basis, never personal data")


class ErasureRequested(CloudEvent[ErasureRequest]):
    type: Literal["amends.erasure.requested"] = "amends.erasure.requested"


ERASURE_TARGET_PREFIX = "erasure:"


def erasure_target(erasure: str) -> str:
    """The audit target of an erasure's request and reports."""
    return f"{ERASURE_TARGET_PREFIX}{erasure}"
