"""An outage's abort window (ADR 0015): its decisions hold their remedies until a time decision
stamps on them, and until then an operator may abort them (only the apology goes out) or
change them (a new, never larger, quantity per customer). Pure: the service layer finds the
outage's decisions, asks this module, books and publishes.

Restitution is never touched: an abort or a change removes or lowers goodwill only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from schemas.common import Money, minor_exponent
from schemas.decision import Action, Amendment, Decision, DecisionStatus, Hold, RemedyKind
from schemas.incident import IncidentType
from services.decision.domain.lifecycle import DecisionRefusedError, goodwill, value

Kind = Literal["aborted", "changed"]


def hold_of(decision: Decision, window: timedelta, *, apology_at_once: bool) -> Hold | None:
    """The window an outage decision's remedies wait for (also without a window: fulfilment
    then issues them at once, at its providers' pace); None for any other incident."""
    if decision.incident.type is not IncidentType.service_outage:
        return None
    return Hold(until=decision.decided_at + max(window, timedelta(0)),
                apology=not apology_at_once)


@dataclass(frozen=True, slots=True)
class Change:
    """What a change sets per customer: points, an amount for the remedies that carry one
    (voucher, store credit, gift), or nothing but the apology. None leaves a kind as it is."""

    points: int | None = None
    amount: Decimal | None = None
    apology_only: bool = False

    def __post_init__(self) -> None:
        if not self.apology_only and self.points is None and self.amount is None:
            raise DecisionRefusedError("a change needs new points, a new amount, or "
                                       "apology only", status=422, check="change")


ABORT = Change(apology_only=True)
AMOUNTED = (RemedyKind.voucher, RemedyKind.store_credit, RemedyKind.gift)


def check_window(decisions: Sequence[Decision], now: datetime, margin: timedelta,
                 outage_id: str) -> None:
    """Refuse once any of the outage's windows has ended (or is about to: a revision needs
    time to reach fulfilment): some customers' remedies are out, and the others must get
    the same."""
    ends = [d.hold.until for d in decisions if d.hold is not None]
    if not decisions:
        raise DecisionRefusedError(f"no decisions of outage {outage_id}", status=404,
                                   check="outage")
    if not ends:
        raise DecisionRefusedError(f"outage {outage_id}'s remedies were not held: there "
                                   "was no abort window", check="window")
    first = min(ends)
    if now + margin >= first:
        raise DecisionRefusedError(
            f"too late: outage {outage_id}'s abort window ended at {first:%Y-%m-%d %H:%M:%S} "
            f"UTC (remedies go out then); abort or change it no later than {margin} before",
            check="window")


def amend(current: Decision, change: Change, *, kind: Kind, by: str, reason: str,
          at: datetime) -> Decision | None:
    """The revision that aborts or changes `current`'s remedies; None when it would change
    nothing (a retry, or a decision already amended so). Refused for a raise."""
    actions = [a for a in (_changed(a, change, current.total_value.currency)
                           for a in current.actions) if a is not None]
    if actions == current.actions:
        return None
    currency = current.total_value.currency
    worth = value(actions)
    words = ("aborted inside its window: only the apology is sent" if change.apology_only
             else "changed inside its window")
    return current.model_copy(update={
        "revision": current.revision + 1, "actions": actions, "offer": None,
        "status": (DecisionStatus.approved if current.status is DecisionStatus.awaiting_choice
                   else current.status),
        "total_value": Money(amount=worth, currency=currency),
        "goodwill_value": Money(amount=value(actions, restitution=False), currency=currency),
        "amended": Amendment(kind=kind, by=by, reason=reason, at=at),
        "explanation": f"{current.explanation} The outage's remedies were {words} by {by}: "
                       f"{reason}"})


def given_back(current: Decision, revision: Decision) -> Decimal:
    """The goodwill an amendment gives back to the budget."""
    return max(goodwill(current) - goodwill(revision), Decimal(0))


def _changed(action: Action, change: Change, currency: str) -> Action | None:
    if action.kind is RemedyKind.apology or action.restitution:
        return action
    if change.apology_only:
        return None
    if action.kind is RemedyKind.points and action.points is not None \
            and change.points is not None:
        return _lowered(action, Decimal(action.points), Decimal(change.points), currency,
                        {"points": change.points})
    if action.kind in AMOUNTED and action.amount is not None and change.amount is not None:
        return _lowered(action, action.amount.amount, change.amount, currency,
                        {"amount": Money(amount=change.amount, currency=currency)})
    return action


def _lowered(action: Action, old: Decimal, new: Decimal, currency: str,
             fields: dict[str, object]) -> Action | None:
    if new > old:
        raise DecisionRefusedError(
            f"a change may lower a remedy, not raise it ({action.kind.value}: {old} to {new}): "
            "the budget was booked for what was decided", status=422, check="change")
    if new == 0:
        return None
    if new == old:
        return action
    step = Decimal(1).scaleb(-minor_exponent(currency))
    worth = (action.value.amount * new / old).quantize(step, rounding=ROUND_HALF_UP)
    return action.model_copy(update={**fields,
                                     "value": Money(amount=worth, currency=currency)})
