"""A task for a human (a call, priority support, an upgrade, a replacement, a gift to ship),
published for the CRM or the support desk."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, Money
from schemas.decision import RemedyKind
from schemas.envelope import CloudEvent


class HumanTask(Contract):
    task_id: str = Field(description="the action's idempotency key: one task per action")
    kind: RemedyKind
    decision_id: str
    incident_id: str
    customer_id: str
    order_id: str | None = None
    what: str = Field(max_length=1000, description="what to do, in words")
    due_by: AwareDatetime
    priority: Literal["normal", "high"] = "normal"
    value: Money
    context: str = Field(default="", max_length=2000, description="why: the decision's "
                                                                   "explanation")


class TaskCreated(CloudEvent[HumanTask]):
    type: Literal["amends.task.created"] = "amends.task.created"
