"""The plan of effects of a decision revision: under which keys its effects are kept, what
each local effect amounts to (points, perks, vouchers, tasks), when a refund cannot be
right, which revision confirms remedies in a follow-up message, and the keys of a
redrive's retry rounds.

Pure functions over `schemas` contracts and the clock's `now`: the service layer loads what
is known, asks this module, stores and publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.common import Money
from schemas.decision import Action, Decision, RemedyKind
from schemas.outcome import ActionStatus
from schemas.task import HumanTask
from services.registry.remedy_kinds import REMEDY_KINDS, RegistryError


def ref_of(decision: Decision) -> str:
    """A decision revision's id: each revision (a review, a choice) is kept apart."""
    return f"{decision.decision_id}:{decision.revision}"


def in_round(key: str, round_: int) -> str:
    """The id of an effect's outcome (and refund gateway key) in a retry round after a
    redrive: round 0 is the effect's own key."""
    return key if round_ == 0 else f"{key}#{round_}"



def follow_up_key(decision: Decision) -> str:
    """The idempotency key of the message confirming a revision: one per revision."""
    return f"{decision.decision_id}:follow-up:{decision.revision}"



def refund_problem(decision: Decision, action: Action) -> str | None:
    """Why a refund cannot be right (no amount, more than was paid, not positive), or None."""
    incident = decision.incident
    paid = incident.charged_amount or incident.order_value
    if action.amount is None or paid is None:
        return "refund without an amount or a known payment"
    if action.amount.currency != paid.currency or action.amount.amount > paid.amount:
        return f"refund of {action.amount} exceeds what was paid ({paid})"
    if action.amount.amount <= 0:
        return f"refund of {action.amount} is not a refund"
    return None


POINTS = "points"  # the unit of loyalty points in the ledger; money's unit is its currency


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A quantity credited to a customer's ledger by one action, valid until `expires_at`:
    `unit` is "points" for loyalty points, a currency (ISO 4217) for money on the account."""

    key: str
    customer_id: str
    tenant: str | None
    decision_id: str
    position: int
    quantity: Decimal
    unit: str
    reason: str
    expires_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class Perk:
    """Free delivery on the customer's next `orders` orders, until `expires_at`."""

    key: str
    customer_id: str
    tenant: str | None
    decision_id: str
    position: int
    kind: RemedyKind
    orders: int
    expires_at: datetime
    at: datetime

    @property
    def detail(self) -> str:
        return f"free delivery on the next {self.orders} order(s)"


@dataclass(frozen=True, slots=True)
class VoucherGrant:
    """What a voucher action grants; its code is drawn when it is issued."""

    key: str
    customer_id: str
    amount: Money | None
    percent: Decimal | None
    currency: str
    expires_at: datetime
    reason: str
    tenant: str | None


def ledger_entry(decision: Decision, action: Action, now: datetime,
                 expiry_days: int) -> LedgerEntry:
    """The ledger entry of a ledger remedy: its points, else its amount in its currency."""
    quantity, unit = ledger_quantity(action)
    return LedgerEntry(action.idempotency_key, decision.incident.customer.id,
                       decision.incident.tenant, decision.decision_id, action.position,
                       quantity, unit, decision.incident.type.value,
                       now + timedelta(days=expiry_days), now)


def ledger_quantity(action: Action) -> tuple[Decimal, str]:
    if action.points is not None:
        return Decimal(action.points), POINTS
    money = action.amount or action.value
    return money.amount, money.currency


def ledger_detail(action: Action) -> str:
    quantity, unit = ledger_quantity(action)
    return f"{quantity} {unit} credited"


def perk(decision: Decision, action: Action, now: datetime, expiry_days: int) -> Perk:
    return Perk(action.idempotency_key, decision.incident.customer.id,
                decision.incident.tenant, decision.decision_id, action.position, action.kind,
                action.quantity or 1, now + timedelta(days=expiry_days), now)


def voucher_grant(decision: Decision, action: Action, now: datetime,
                  expiry_days: int) -> VoucherGrant:
    return VoucherGrant(
        key=action.idempotency_key, customer_id=decision.incident.customer.id,
        amount=action.amount, percent=action.percent,
        currency=(action.amount or action.value).currency,
        expires_at=action.expires_at or now + timedelta(days=expiry_days),
        reason=voucher_reason(decision, action), tenant=decision.incident.tenant)


def voucher_reason(decision: Decision, action: Action) -> str:
    """A voucher's reason: the operator's note for a manual voucher (an action no policy
    rule granted), else the incident's type."""
    if action.rule_id is None and action.note:
        return action.note
    return decision.incident.type.value


def voucher_detail(expires_at: datetime) -> str:
    # The code is a bearer secret: it goes to the customer, not into outcomes.
    return f"voucher issued, valid until {expires_at.date()}"


def task_of(decision: Decision, action: Action, now: datetime) -> HumanTask:
    """The task a person is given for a remedy no system can carry out."""
    incident = decision.incident
    entry = REMEDY_KINDS[action.kind].task
    if entry is None:
        raise RegistryError(f"remedy kind {action.kind.value}: no task")
    return HumanTask(
        task_id=action.idempotency_key, kind=action.kind, decision_id=decision.decision_id,
        incident_id=incident.incident_id, customer_id=incident.customer.id,
        order_id=incident.order_id, what=entry.words.format(note=action.note),
        due_by=action.due_by or now + timedelta(hours=entry.hours),
        priority=entry.priority,
        value=action.value, context=decision.explanation[:2000])


def task_detail(task: HumanTask) -> str:
    return f"task for a person, due {task.due_by:%Y-%m-%d %H:%M} UTC"


def confirms(decision: Decision) -> bool:
    """A revision that settles what the customer gets: a choice, its default, an approval."""
    if decision.revision == 0 or not decision.status.executable:
        return False
    return decision.choice is not None or (decision.review is not None
                                           and decision.review.verdict == "approved")


def apology_key(decision: Decision) -> str | None:
    return next((a.idempotency_key for a in decision.actions
                 if a.kind is RemedyKind.apology), None)


def brought(decision: Decision) -> list[Action]:
    """The remedies a revision brought: the chosen option's, or after a review all of them."""
    if decision.choice is not None and decision.offer is not None:
        chosen = decision.offer.options[decision.choice.option].actions
        keys = {a.idempotency_key for a in chosen}
        return [a for a in decision.actions if a.idempotency_key in keys]
    return [a for a in decision.actions if a.kind is not RemedyKind.apology]



def confirmed(decision: Decision,
              status_of: Mapping[str, ActionStatus | None]) -> tuple[list[Action],
                                                                     dict[str, str]]:
    """What a follow-up confirms: the remedies the revision brought that did not fail, and
    the state of its refunds ("done" or "pending"). `status_of` gives what is known of an
    action (absent or None: under way)."""
    return confirmed_of(brought(decision), status_of)


def confirmed_of(remedies: list[Action],
                 status_of: Mapping[str, ActionStatus | None]) -> tuple[list[Action],
                                                                        dict[str, str]]:
    """Of `remedies`, those that did not fail, and the state of their refunds."""
    states: dict[str, str] = {}
    given: list[Action] = []
    for action in remedies:
        status = status_of.get(action.idempotency_key)
        if status is ActionStatus.failed:
            continue  # not what they have; its dead letter is the team's to act on
        given.append(action)
        if action.kind is RemedyKind.refund:
            states[action.idempotency_key] = "done" if status else "pending"
    return given, states



def time_to_apology(decision: Decision, action: Action, status: ActionStatus,
                    completed: datetime) -> float | None:
    """Seconds from the incident to a successful apology (the promise is within a day)."""
    if action.kind is RemedyKind.apology and status is ActionStatus.succeeded:
        return max(0.0, (completed - decision.incident.occurred_at).total_seconds())
    return None
