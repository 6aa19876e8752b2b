"""Remedies being decided (`Item`), before they become a decision's actions, and the money
helpers the engine and the registry of remedy kinds share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Self

from schemas.common import Money, minor_exponent
from schemas.decision import RemedyKind
from schemas.incident import Incident
from services.decision.domain.history import ZERO


@dataclass(slots=True)
class Item:
    """A remedy being decided. The engine never changes one it did not make: it changes a
    `copy()`."""

    kind: RemedyKind
    value: Decimal  # money equivalent, in the policy's currency
    rule_id: str
    because: str = ""
    amount: Decimal | None = None
    percent: Decimal | None = None
    points: int | None = None
    expires_days: int | None = None
    quantity: int | None = None
    due_hours: int | None = None
    label: str = ""  # the gift or upgrade; "express" for a replacement sent so
    restitution: bool = False  # money given back: never cut, not goodwill

    def copy(self) -> Self:
        return type(self)(self.kind, self.value, self.rule_id, self.because, self.amount,
                          self.percent, self.points, self.expires_days, self.quantity,
                          self.due_hours, self.label, self.restitution)


def total(items: Iterable[Item]) -> Decimal:
    return sum((item.value for item in items), ZERO)


def goodwill(items: Iterable[Item]) -> Decimal:
    """What `items` are worth as goodwill: caps, budgets and size-based review count this."""
    return sum((item.value for item in items if not item.restitution), ZERO)


def restitution(items: Iterable[Item]) -> Decimal:
    """What `items` give back as restitution."""
    return sum((item.value for item in items if item.restitution), ZERO)


def cent(currency: str) -> Decimal:
    """The currency's minor unit (0.01 for EUR)."""
    return Decimal(1).scaleb(-minor_exponent(currency))


def rounded(value: Decimal, unit: Decimal) -> Decimal:
    return value.quantize(unit, rounding=ROUND_HALF_UP)


def amount_in(money: Money | None, currency: str) -> Decimal | None:
    """The amount of `money` if it is in `currency` (values in other currencies are unknown
    to the policy)."""
    if money is None or money.currency != currency:
        return None
    return money.amount


def paid(incident: Incident, currency: str) -> Decimal | None:
    """What the customer paid for the order (or was charged twice), the refund ceiling."""
    return amount_in(incident.charged_amount or incident.order_value, currency)
