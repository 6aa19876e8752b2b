"""Never more than was paid: what may still be refunded for an order across all its incidents
(`refund_room`), and the refunds of a decision cut to it (`within_captured`). Pure; the
reference engine and the fast path share it."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import NamedTuple, TypeVar

from schemas.decision import RemedyKind
from schemas.incident import Incident, IncidentType
from services.decision.domain.history import ZERO, CustomerHistory
from services.decision.domain.remedies import Item, amount_in, cent

Remedy = TypeVar("Remedy", bound=Item)  # the engine's items, or the fast path's


class Refunded(NamedTuple):
    """What was refunded already of what was paid for an order (or charged twice for it), in
    the words a cut refund's note gives, made only when a refund is cut."""

    taken: Decimal
    paid: Decimal | None
    currency: str
    order_id: str | None
    twice: bool  # of what was charged twice

    def __str__(self) -> str:
        taken, paid, currency = self.taken, self.paid, self.currency
        how = "charged twice" if self.twice else "paid"
        return (f"{taken} {currency} of the {paid} {currency} {how} for order {self.order_id} "
                "is refunded already")


def refund_room(incident: Incident, history: CustomerHistory, currency: str
                ) -> tuple[Decimal | None, Refunded]:
    """What may still be refunded for the incident's order (None: no known ceiling), and why.

    The ceiling is everything captured for the order (`captured_amount`) less what its other
    incidents refunded. Without it: for a double charge, the order value plus the duplicate
    charge, less all refunds; otherwise the order value, less the refunds other than of
    duplicate charges (those came out of the excess). A duplicate charge is refunded at most
    once: its refunds never pass the excess captured (without it, the duplicate charge) less
    what the order's other double charges refunded, whoever reported them."""
    captured = amount_in(incident.captured_amount, currency)
    order = amount_in(incident.order_value, currency)
    charged = amount_in(incident.charged_amount, currency)
    duplicate = incident.type is IncidentType.double_charge
    before = duplicates = ZERO
    if incident.order_id is not None and history.incidents:
        before, duplicates = history.refunded(incident.order_id, incident.incident_id)
    basis: Decimal | None
    if captured is not None:
        basis, taken = captured, before
    elif duplicate and charged is not None:
        basis, taken = (order or ZERO) + charged, before
    else:
        basis, taken = (order if order is not None else charged), before - duplicates
    room = None if basis is None else max(ZERO, basis - taken)
    why = Refunded(taken, basis, currency, incident.order_id, twice=False)
    if duplicate:
        excess = (max(ZERO, captured - order) if captured is not None and order is not None
                  else charged)
        if excess is not None and (room is None or excess - duplicates < room):
            room = max(ZERO, excess - duplicates)
            why = Refunded(duplicates, excess, currency, incident.order_id, twice=True)
    return room, why


def within_captured(base: list[Remedy], options: list[tuple[str, list[Remedy]]],
                    incident: Incident, history: CustomerHistory, currency: str, *,
                    notes: list[str]) -> tuple[list[Remedy], list[tuple[str, list[Remedy]]]]:
    """The remedies outside an offer, then each option with what they leave, with their
    refunds cut to what may still be refunded; each cut is noted in `notes`."""
    room, why = refund_room(incident, history, currency)
    if room is None:
        return base, options
    room = room.quantize(cent(currency), rounding=ROUND_DOWN)  # never a fraction of a cent
    base, left = _refunds_within(base, room, why, currency, notes=notes, where="")
    return base, [(label, _refunds_within(items, left, why, currency, notes=notes,
                                          where=f" ({label})")[0])
                  for label, items in options]


def _refunds_within(items: list[Remedy], room: Decimal, why: Refunded, currency: str, *,
                    notes: list[str], where: str) -> tuple[list[Remedy], Decimal]:
    kept = []
    for item in items:
        if item.kind is not RemedyKind.refund:
            kept.append(item)
        elif item.value <= room:
            room -= item.value
            kept.append(item)
        else:
            if room > 0:
                smaller = item.copy()
                smaller.amount = smaller.value = room
                kept.append(smaller)
            notes.append(f"{item.rule_id}{where}: {item.value - room} {currency} of a refund "
                         f"of {item.value} {currency}, as {why}")
            room = ZERO
    return kept, room
