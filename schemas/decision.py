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
    store_credit = "store_credit"


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
    rule_id: str | None = Field(default=None, description="the policy rule that granted it")
    quantity: int | None = Field(
        default=None, ge=1, description="orders of free delivery, days of priority support")
    due_by: AwareDatetime | None = Field(
        default=None, description="when a task for a human must be done (e.g. a call)")
    restitution: bool = Field(
        default=False, description="money given back that we took by mistake (a refund of a "
        "duplicate charge, of a cancelled or undelivered order or item): paid in full, never "
        "cut by caps or budgets; false for goodwill (points, vouchers, extras)")


class DecisionStatus(StrEnum):
    """`approved` and `awaiting_choice` decisions have their `actions` carried out (an offer's
    option follows in a later revision); `held` ones wait for a reviewer; a `rejected` one
    carries out its actions too, which a reviewer reduced to the apology."""

    approved = "approved"
    held = "held"
    rejected = "rejected"
    awaiting_choice = "awaiting_choice"

    @property
    def executable(self) -> bool:
        return self is not DecisionStatus.held


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


class Review(Contract):
    """A reviewer's verdict on a held decision."""

    verdict: Literal["approved", "rejected"]
    reviewer: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=1000)
    at: AwareDatetime


class Approval(Contract):
    """One reviewer's approval of a held decision; a decision above the four-eyes limit
    needs approvals by two different reviewers."""

    reviewer: str = Field(min_length=1, max_length=200,
                          description="the authenticated subject who approved")
    reason: str = Field(min_length=1, max_length=1000)
    at: AwareDatetime


class Choice(Contract):
    """How an offer was settled: by the customer, by its default after the deadline, or by
    support on the customer's behalf (`chosen_by` names the operator)."""

    option: int = Field(ge=0)
    label: str
    by: Literal["customer", "default", "support"]
    at: AwareDatetime
    chosen_by: str | None = Field(
        default=None, max_length=200,
        description="the authenticated operator who chose on the customer's behalf")


class Assignment(Contract):
    """The arm of a policy experiment a decision applied: which variant of the rule's remedies
    the customer got, and how likely that was (for estimates weighted by it)."""

    id: str = Field(description="the experiment's id in the policy")
    rule_id: str = Field(description="the rule whose remedies the experiment varies")
    arm: str = Field(description="the variant's id, or 'holdout'")
    probability: DecimalText = Field(
        description="the arm's share of customers: the chance of this assignment")


class Hold(Contract):
    """An outage's abort window: the decision's remedies are not issued before `until`, so
    that an operator can still abort or change them; the apology goes out at once unless
    `apology` says it waits too."""

    until: AwareDatetime = Field(description="the earliest time the remedies may be issued")
    apology: bool = Field(default=False, description="the apology waits for `until` too")


class Amendment(Contract):
    """An operator's abort or change of an outage's remedies inside its abort window."""

    kind: Literal["aborted", "changed"]
    by: str = Field(min_length=1, max_length=200, description="the authenticated operator")
    reason: str = Field(min_length=1, max_length=1000)
    at: AwareDatetime


class Decision(Contract):
    decision_id: str
    revision: int = Field(
        default=0, ge=0,
        description="0 when decided; later revisions record a review or a customer's choice")
    incident: Incident
    policy_version: str
    decided_at: AwareDatetime
    status: DecisionStatus
    actions: list[Action]
    total_value: Money = Field(
        description="what the decision may cost: its remedies and the dearest option of an "
        "offer, restitution and goodwill together")
    goodwill_value: Money | None = Field(
        default=None, description="the goodwill the decision may cost (its remedies and the "
        "offer's option dearest in goodwill): what caps, the daily budget and size-based "
        "review govern; absent from decisions made before it was recorded (then all of "
        "total_value)")
    restitution_value: Money | None = Field(
        default=None, description="what the decision gives back as restitution (its refunds "
        "marked restitution, and the most an option gives back): never cut by caps or budgets")
    rules: list[RuleTrace] = Field(
        default_factory=list,
        description="how each rule of the policy was judged for the incident; the "
        "decisions topic's events carry only the rules that matched, decision's API "
        "(GET /v1/decisions/{id}) every one")
    caps: list[CapApplied] = Field(default_factory=list)
    offer: Offer | None = None
    review_reason: str | None = None
    review: Review | None = None
    approvals: list[Approval] = Field(
        default_factory=list,
        description="the approvals given so far, in order (four-eyes: a decision above the "
        "limit stays held until two different reviewers approved it)")
    requested_by: str | None = Field(
        default=None, max_length=200,
        description="the operator who made a manual decision (a manual voucher); they may "
        "never approve it themselves")
    choice: Choice | None = None
    explanation: str
    top_up_of: list[str] = Field(
        default_factory=list,
        description="the earlier decisions for the same failure of the same order that this "
        "one adds to: its remedies are what the worse band grants minus what those gave")
    experiment: Assignment | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="the arm of the policy's experiment that applied (sticky per customer); "
        "absent when no experiment's rule applied")
    trace_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{32}$", exclude_if=lambda v: v is None,
        description="the W3C trace id of the incident's spans across the services (derived "
        "from incident_id); absent when tracing was off or before it was recorded")
    outage_budget: str | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="the outage whose own budget pays this decision's goodwill (never the "
        "daily budget); absent when the daily budget does")
    hold: Hold | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="an outage decision's abort window: fulfilment holds its remedies until "
        "then; absent when nothing waits")
    amended: Amendment | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="the operator's abort or change this revision records; absent otherwise")


def slim(decision: Decision) -> Decision:
    """The decision as the decisions topic carries it: of the rule traces, only those of the
    rules that matched. Why each other rule did not apply is for people and stays in
    decision's store; every consumer validates every event, and those traces were half of
    its bytes."""
    return decision.model_copy(update={"rules": [t for t in decision.rules if t.matched]})


def decision_id(incident_id: str) -> str:
    return deterministic_id("decision", incident_id)


def action_key(decision_id_: str, position: int) -> str:
    """The idempotency key of the action at `position` of a decision."""
    return f"{decision_id_}:{position}"


class DecisionMade(CloudEvent[Decision]):
    type: Literal["amends.decision.made"] = "amends.decision.made"
