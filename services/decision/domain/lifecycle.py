"""A decision's state changes after it is made: a reviewer's approval or rejection (with the
four-eyes rule), the settling of an offer (by the customer, by support on their behalf, or by
its default at the deadline), and the budget each change moves: an approval reserves the
goodwill it lets out, a rejection keeps nothing booked, a cheaper choice gives back what was
kept for a dearer one.

Pure: every function takes the decision as recorded and what it needs (the reviewer, the
reason, now, the four-eyes limit) and returns the new revision, or raises a refusal. The
service loads, calls these, stores and publishes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from schemas.common import Money
from schemas.decision import (
    Action,
    Approval,
    Choice,
    Decision,
    DecisionStatus,
    Offer,
    RemedyKind,
    Review,
)

Verdict = Literal["approved", "rejected"]
ChosenBy = Literal["customer", "default", "support"]


class DecisionRefusedError(Exception):
    """A change the decision refuses: `status` and `check` (what refused it) become the
    problem body the HTTP API answers with."""

    def __init__(self, detail: str, *, status: int = 409, check: str = "state") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.check = check


class DecisionConflictError(DecisionRefusedError):
    """A review or a choice that cannot be taken (wrong state, taken already, no budget)."""


class FourEyesError(DecisionRefusedError):
    """An approval the four-eyes rule refuses: the same reviewer twice, or a manual
    voucher's own creator."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=403, check="four_eyes")


@dataclass(frozen=True)
class Reservation:
    """Budget an approval takes under `key`. `owed`: the decision gives money back, so it is
    booked even when the budget cannot cover it (restitution is owed whatever the budget)."""

    key: str
    amount: Money
    owed: bool


@dataclass(frozen=True)
class Release:
    """Budget given back from the reservation `key`, once per `reason`."""

    key: str
    reason: str
    amount: Money


def value(actions: Sequence[Action], *, restitution: bool | None = None) -> Decimal:
    """What `actions` are worth (only their restitution, or only their goodwill, if told)."""
    return sum((a.value.amount for a in actions
                if restitution is None or a.restitution is restitution), Decimal(0))


def goodwill(decision: Decision) -> Decimal:
    """What the decision books against the budget."""
    kept = decision.goodwill_value
    return (kept or decision.total_value).amount


def refunded(decision: Decision) -> Decimal:
    """The refunds a decision grants, or may still grant: its refund actions (a held one's
    too) and, until the customer chooses, the offer's option that refunds the most."""
    def refunds(actions: Sequence[Action]) -> Decimal:
        return sum((a.amount.amount for a in actions
                    if a.kind is RemedyKind.refund and a.amount is not None), Decimal(0))

    pending = (decision.offer.options
               if decision.offer is not None and decision.choice is None else [])
    return refunds(decision.actions) + max((refunds(o.actions) for o in pending),
                                           default=Decimal(0))


def review_key(decision_id: str) -> str:
    return f"{decision_id}:review"


def reservation(decision: Decision) -> str | None:
    """The key a decision's goodwill is booked under, None when nothing is: a held decision
    books when approved (under its review key), a rejected one keeps nothing, any other
    books under its own id when it was made worth some goodwill; one its outage's budget
    pays books nothing here (the outage's shares are fixed in advance: ADR 0014)."""
    if decision.outage_budget is not None:
        return None
    if decision.review is not None:
        return review_key(decision.decision_id) if decision.review.verdict == "approved" \
            else None
    if decision.status is DecisionStatus.held or decision.status is DecisionStatus.rejected:
        return None
    return decision.decision_id if goodwill(decision) > 0 else None


def restitution_keys(decision: Decision) -> list[str]:
    """The idempotency keys of a decision's restitution actions (its offer's too): never
    booked, so never released."""
    options = decision.offer.options if decision.offer is not None else []
    return [a.idempotency_key for a in [*decision.actions, *(a for o in options
                                                               for a in o.actions)]
            if a.restitution]


def approvals_needed(decision: Decision, four_eyes_above: Decimal | None) -> int:
    """Two different reviewers above the four-eyes limit, else one."""
    return 2 if four_eyes_above is not None and goodwill(decision) > four_eyes_above else 1


# --- review -----------------------------------------------------------------------------

def reviewed(current: Decision, verdict: Verdict) -> Decision | None:
    """`current` when it already carries this verdict (a retry), None when it is held and
    waits for one; refused otherwise."""
    if current.review is not None:
        if current.review.verdict == verdict:
            return current
        raise DecisionConflictError(
            f"already {current.review.verdict} by {current.review.reviewer}")
    if current.status is not DecisionStatus.held:
        raise DecisionConflictError(f"decision {current.decision_id} is "
                                    f"{current.status.value}, not held for review")
    return None


def check_approver(current: Decision, reviewer: str, four_eyes_above: Decimal | None) -> int:
    """The four-eyes rule before an approval: a manual voucher's creator is refused, and so
    is a reviewer who approved already. Returns how many approvals the decision needs."""
    if current.requested_by == reviewer:
        raise FourEyesError(f"{reviewer} made this manual voucher: another reviewer must "
                            "approve it")
    needed = approvals_needed(current, four_eyes_above)
    if needed > 1 and any(a.reviewer == reviewer for a in current.approvals):
        raise approved_twice(reviewer)
    return needed


def approved_twice(reviewer: str) -> FourEyesError:
    return FourEyesError(f"{reviewer} approved this decision already: it needs a second, "
                         "different reviewer")


def first_approval(current: Decision, approval: Approval, approvals: Sequence[Approval],
                   four_eyes_above: Decimal | None, currency: str) -> Decision:
    """The first of two approvals: recorded on the decision, which stays held."""
    return current.model_copy(update={
        "revision": current.revision + 1, "approvals": list(approvals),
        "explanation": f"{current.explanation} Approved by {approval.reviewer}: "
                       f"{approval.reason}; worth more "
                       f"than {four_eyes_above} {currency}, it waits for a second reviewer."})


def approval_reservation(current: Decision) -> Reservation | None:
    """What approving `current` takes from the budget: its goodwill, under its review key."""
    amount = goodwill(current)
    if amount <= 0 or current.outage_budget is not None:  # its outage's budget pays
        return None
    owed = current.restitution_value
    return Reservation(review_key(current.decision_id),
                       Money(amount=amount, currency=current.total_value.currency),
                       owed=owed is not None and owed.amount > 0)


def reopened(held: Decision, now: datetime) -> Offer | None:
    """A held decision's offer as approved at `now`: the customer hears of it only now, so
    they get the whole time to choose from now on, never less than the offer first gave."""
    offer = held.offer
    if offer is None:
        return None
    window = offer.deadline - held.decided_at
    return offer.model_copy(update={"deadline": max(offer.deadline, now + window)})


def approve(current: Decision, review: Review, approvals: Sequence[Approval]) -> Decision:
    """The approved revision: its actions go out (an offer waits for the customer, with its
    deadline counted from the approval)."""
    status = (DecisionStatus.awaiting_choice if current.offer is not None
              else DecisionStatus.approved)
    names = " and ".join(dict.fromkeys(a.reviewer for a in approvals))
    return current.model_copy(update={
        "revision": current.revision + 1, "status": status, "review": review,
        "approvals": list(approvals), "offer": reopened(current, review.at),
        "explanation": f"{current.explanation} Approved by {names}: {review.reason}"})


def reject(current: Decision, review: Review) -> Decision:
    """The rejected revision: only the apology is sent, nothing is booked."""
    apology = [a for a in current.actions if a.kind is RemedyKind.apology]
    nothing = Money(amount=Decimal(0), currency=current.total_value.currency)
    return current.model_copy(update={
        "revision": current.revision + 1, "status": DecisionStatus.rejected,
        "review": review, "actions": apology, "offer": None, "total_value": nothing,
        "goodwill_value": nothing, "restitution_value": nothing,
        "explanation": f"{current.explanation} After review only the apology is sent: "
                       f"{review.reason}"})


# --- choice -----------------------------------------------------------------------------

def chosen(current: Decision, option: int, by: ChosenBy, now: datetime) -> Decision | None:
    """`current` when this option was chosen already (a retry), None when the offer waits for
    a choice and `option` may settle it at `now`; refused otherwise (another option taken, no
    offer, no such option, past the deadline unless by the default)."""
    offer = current.offer
    if current.choice is not None:
        if current.choice.option == option:
            return current
        raise DecisionConflictError(f"option {current.choice.option} "
                                    f"({current.choice.label}) was chosen already")
    if current.status is not DecisionStatus.awaiting_choice or offer is None:
        raise DecisionConflictError(f"decision {current.decision_id} is "
                                    f"{current.status.value}, not awaiting a choice")
    if not 0 <= option < len(offer.options):
        raise DecisionConflictError(f"option must be 0 to {len(offer.options) - 1}")
    if by != "default" and now > offer.deadline:
        raise DecisionConflictError(
            f"the deadline {offer.deadline.isoformat()} has passed; the default applies")
    return None


_CHOSEN = {"customer": "You chose {}.",
           "support": "You chose {}, through our support team.",
           "default": "Without a choice by the deadline you get {}."}


def choose(current: Decision, option: int, by: ChosenBy, at: datetime,
           chosen_by: str | None = None) -> tuple[Decision, Release | None]:
    """The revision that settles the offer with `option`, and the budget it gives back: what
    was kept for a dearer option than the one chosen."""
    assert current.offer is not None, "checked by chosen()"
    picked = current.offer.options[option]
    actions = [*current.actions, *picked.actions]
    currency = current.total_value.currency
    revision = current.model_copy(update={
        "revision": current.revision + 1, "status": DecisionStatus.approved,
        "choice": Choice(option=option, label=picked.label, by=by, at=at,
                         chosen_by=chosen_by),
        "actions": actions,
        "total_value": Money(amount=value(actions), currency=currency),
        "goodwill_value": Money(amount=value(actions, restitution=False), currency=currency),
        "restitution_value": Money(amount=value(actions, restitution=True),
                                   currency=currency),
        "explanation": f"{current.explanation} {_CHOSEN[by].format(picked.label)}"})
    key = reservation(current)
    given_back = goodwill(current) - goodwill(revision)
    release = (Release(key, f"{current.decision_id}:choice",
                       Money(amount=given_back, currency=currency))
               if key is not None and given_back > 0 else None)
    return revision, release
