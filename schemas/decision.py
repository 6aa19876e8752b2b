"""A decision: what the policy grants for one incident, and why."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.common import Contract, DecimalText, Money, deterministic_id
from schemas.envelope import CloudEvent
from schemas.incident import Incident


class RemedyKind(StrEnum):
    apology = "apology"
    refund = "refund"
    points = "points"
    voucher = "voucher"
    free_delivery = "free_delivery"
    replacement = "replacement"
    gift = "gift"
    priority_support = "priority_support"
    free_upgrade = "free_upgrade"
    personal_call = "personal_call"


class Action(Contract):
    """One remedy to carry out; `idempotency_key` makes its effect happen at most once."""

    position: int = Field(ge=0)
    idempotency_key: str
    kind: RemedyKind
    amount: Money | None = Field(default=None, description="refund, voucher or gift amount")
    percent: DecimalText | None = Field(default=None, description="percent voucher")
    points: int | None = Field(default=None, ge=0)
    expires_at: AwareDatetime | None = None
    value: Money = Field(description="money equivalent, counted against caps and budgets")
    note: str = Field(default="", max_length=500)


class DecisionStatus(StrEnum):
    approved = "approved"
    held = "held"
    rejected = "rejected"
    awaiting_choice = "awaiting_choice"


class RuleTrace(Contract):
    rule_id: str
    matched: bool
    reason: str


class CapApplied(Contract):
    cap: str
    limit: Money
    cut: Money
    detail: str = ""


class OfferOption(Contract):
    label: str
    actions: list[Action]


class Offer(Contract):
    """A choice for the customer; `default_option` applies when the deadline passes."""

    offer_id: str
    options: list[OfferOption] = Field(min_length=2)
    default_option: int = Field(ge=0)
    deadline: AwareDatetime


class Decision(Contract):
    decision_id: str
    incident: Incident
    policy_version: str
    decided_at: AwareDatetime
    status: DecisionStatus
    actions: list[Action]
    total_value: Money
    rules: list[RuleTrace] = Field(default_factory=list)
    caps: list[CapApplied] = Field(default_factory=list)
    offer: Offer | None = None
    review_reason: str | None = None
    explanation: str


def decision_id(incident_id: str) -> str:
    return deterministic_id("decision", incident_id)


def action_key(decision_id_: str, position: int) -> str:
    """The idempotency key of the action at `position` of a decision."""
    return f"{decision_id_}:{position}"




class DecisionMade(CloudEvent[Decision]):
    type: Literal["amends.decision.made"] = "amends.decision.made"
