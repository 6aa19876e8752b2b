"""An outcome: what happened when fulfilment carried out one action."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, Money
from schemas.decision import RemedyKind
from schemas.envelope import CloudEvent


class ActionStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


class Outcome(Contract):
    idempotency_key: str
    decision_id: str
    incident_id: str
    customer_id: str
    position: int = Field(ge=0)
    kind: RemedyKind
    status: ActionStatus
    value: Money
    restitution: bool = Field(
        default=False, description="the action gave back money taken by mistake (the "
        "decision's action is marked restitution), not goodwill")
    completed_at: AwareDatetime
    detail: str = Field(default="", max_length=1000)
    time_to_apology_seconds: float | None = Field(
        default=None, ge=0, description="from the incident's occurrence to the apology sent")


class OutcomeRecorded(CloudEvent[Outcome]):
    type: Literal["amends.outcome.recorded"] = "amends.outcome.recorded"
