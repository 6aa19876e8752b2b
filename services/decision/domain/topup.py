"""Top-ups: one order is one failure, and so is one outage for each customer it reached. When
the same failure is decided again for a worse stage (a delay that reached a worse band, a
delivery that arrived later than the last check knew, an outage resolved after its customers
were told it was going on), the customer gets what the worse stage grants minus what the
earlier decisions for that order (or outage) and failure gave — per measure of each remedy
kind — never a second full grant. Pure: the engine calls it between its rules and its caps.

Measures: points, free-delivery orders, the amount of amount vouchers, the amount refunded,
priority-support days add up and are subtracted; a percent voucher, a replacement, a gift, an
upgrade or a call already given is not given again (a better percent voucher is). An offer is
made once per order and failure: a top-up of a decision that offered a choice offers none;
otherwise each option is reduced by what the remedies outside it did not use up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from schemas.decision import Action, Decision, DecisionStatus, RemedyKind
from schemas.incident import Incident
from services.decision.domain.history import ZERO, CustomerHistory, failure_of
from services.decision.domain.ids import decision_id
from services.decision.domain.remedies import Item

Remedy = TypeVar("Remedy", bound=Item)  # the engine's items, or the fast path's
OFFERED = "offer"  # the measure that says an earlier decision made an offer
_ADDED = {RemedyKind.points, RemedyKind.free_delivery, RemedyKind.refund,
          RemedyKind.priority_support}


def _measure(kind: RemedyKind, *, points: int | None, quantity: int | None,
             amount: Decimal | None, percent: Decimal | None) -> tuple[str, Decimal] | None:
    match kind:
        case RemedyKind.apology:
            return None
        case RemedyKind.points:
            return kind.value, Decimal(points or 0)
        case RemedyKind.free_delivery | RemedyKind.priority_support:
            return kind.value, Decimal(quantity or 0)
        case RemedyKind.refund:
            return kind.value, amount or ZERO
        case RemedyKind.voucher if percent is not None:
            return "voucher_percent", percent
        case RemedyKind.voucher:
            return kind.value, amount or ZERO
        case _:
            return kind.value, Decimal(1)


def given_by(decision: Decision) -> dict[str, Decimal]:
    """What a decision grants, by measure, as stored with it: a held decision counts what it
    would give, a rejected one only its apology; an offer is marked (made once per order),
    and the option chosen counts once chosen."""
    given: dict[str, Decimal] = {}
    _add(given, decision.actions)
    if decision.offer is not None and decision.status is not DecisionStatus.rejected:
        given[OFFERED] = Decimal(1)
    return given


def given_by_items(items: Iterable[Item], offered: bool) -> tuple[tuple[str, Decimal], ...]:
    """`given_by` for remedies still being decided (a backtest: the remedies outside an offer
    and its default option)."""
    given: dict[str, Decimal] = {}
    for item in items:
        measured = _measure(item.kind, points=item.points, quantity=item.quantity,
                            amount=item.amount, percent=item.percent)
        if measured is not None:
            key, value = measured
            given[key] = (max(given.get(key, ZERO), value) if key == "voucher_percent"
                          else given.get(key, ZERO) + value)
    if offered:
        given[OFFERED] = Decimal(1)
    return tuple(given.items())


def _add(given: dict[str, Decimal], actions: Iterable[Action]) -> None:
    for action in actions:
        measured = _measure(action.kind, points=action.points, quantity=action.quantity,
                            amount=action.amount.amount if action.amount else None,
                            percent=action.percent)
        if measured is None:
            continue
        key, value = measured
        if key == "voucher_percent":
            given[key] = max(given.get(key, ZERO), value)
        else:
            given[key] = given.get(key, ZERO) + value


@dataclass(frozen=True, slots=True)
class Earlier:
    """The earlier decisions for the same order (or outage) and failure, what they gave
    together by measure, and the goodwill they granted in all (their `PastIncident.value`),
    which the incident cap counts: it bounds the whole failure, not each stage."""

    decision_ids: tuple[str, ...]
    given: Mapping[str, Decimal]
    goodwill: Decimal = ZERO


def earlier(history: CustomerHistory, incident: Incident) -> Earlier | None:
    """What was decided before for the failure `incident` is a later stage of: the same
    order's, or for an incident of no order the same outage's."""
    failure = failure_of(incident.order_id, incident.outage_id)
    if failure is None or not history.incidents:
        return None
    ids: list[str] = []
    given: dict[str, Decimal] = {}
    goodwill = ZERO
    for past in history.incidents:
        if (past.failure != failure or past.type is not incident.type
                or past.incident_id == incident.incident_id):
            continue
        ids.append(decision_id(past.incident_id))
        goodwill += past.value
        for key, value in past.given:
            if key == "voucher_percent":
                given[key] = max(given.get(key, ZERO), value)
            elif key == OFFERED:
                given[key] = Decimal(1)
            else:
                given[key] = given.get(key, ZERO) + value
    return Earlier(tuple(ids), given, goodwill) if ids else None


def top_up(base: list[Remedy], options: list[tuple[str, list[Remedy]]],
           given: Mapping[str, Decimal], point_value: Decimal, unit: Decimal
           ) -> tuple[list[Remedy], list[tuple[str, list[Remedy]]]]:
    """The remedies outside an offer, and the options, less what was given: (base, options).
    An offer is dropped when one was made before. `unit` is the currency's minor unit."""
    left = {k: v for k, v in given.items() if k != OFFERED}
    base = _less(base, left, point_value, unit)
    if OFFERED in given:
        return base, []
    return base, [(label, _less(items, dict(left), point_value, unit))
                  for label, items in options]


def _less(items: Sequence[Remedy], left: dict[str, Decimal], point_value: Decimal,
          unit: Decimal) -> list[Remedy]:
    """`items` less what `left` holds (used up as it goes)."""
    out: list[Remedy] = []
    for item in items:
        measured = _measure(item.kind, points=item.points, quantity=item.quantity,
                            amount=item.amount, percent=item.percent)
        if measured is None or item.restitution:
            # Restitution is bounded by what the order's captures leave, not by top-ups: a
            # second duplicate charge is owed in full.
            out.append(item)
            continue
        key, have = measured
        already = left.get(key, ZERO)
        if already <= 0:
            out.append(item)
            continue
        if key == "voucher_percent":
            if have > already:  # a better percent voucher than the one given
                out.append(item)
            continue
        if item.kind not in _ADDED and key != RemedyKind.voucher.value:
            continue  # given once: a replacement, a gift, an upgrade, a call
        left[key] = max(ZERO, already - have)
        if have > already:
            out.append(_reduced(item, have - already, have, point_value, unit))
    return out


def _reduced(item: Remedy, remaining: Decimal, had: Decimal, point_value: Decimal,
             unit: Decimal) -> Remedy:
    reduced = item.copy()
    match item.kind:
        case RemedyKind.points:
            reduced.points = int(remaining)
            reduced.value = (remaining * point_value).quantize(unit)
        case RemedyKind.free_delivery | RemedyKind.priority_support:
            reduced.quantity = int(remaining)
            reduced.value = (item.value * remaining / had).quantize(unit)
        case _:  # an amount: a refund or an amount voucher
            reduced.amount = remaining
            reduced.value = remaining
    return reduced
