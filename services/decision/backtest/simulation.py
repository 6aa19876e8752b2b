"""Backtests: re-decide past (or generated) incidents under one or more policies, without side
effects, simulating each policy's own customer histories and daily budgets (with the fast
path of the engine: a backtest decides hundreds of thousands of incidents)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from schemas.decision import RemedyKind
from schemas.incident import Incident
from services.decision.domain.history import ZERO, CustomerHistory, PastIncident
from services.decision.domain.policy import Policy
from services.decision.domain.topup import given_by_items
from services.decision.fast.engine import evaluate
from services.decision.fast.remedies import Item, restitution


@dataclass
class ArmTally:
    """The decisions in which one arm of the policy's experiment applied."""

    decisions: int = 0
    cost: Decimal = ZERO  # goodwill and restitution carried out (held decisions excluded)
    held: int = 0

    @property
    def cost_per_decision(self) -> Decimal:
        return (self.cost / self.decisions).quantize(Decimal("0.01")) if self.decisions else ZERO


@dataclass
class Tally:
    """What one policy would have done with the incidents."""

    version: str
    currency: str
    decisions: int = 0
    goodwill: Decimal = ZERO  # money equivalent carried out (held decisions excluded)
    restitution: Decimal = ZERO  # given back in full, outside caps and budgets (held excluded;
    # of an offer, its default option's, as for the remedies counted)
    held: int = 0
    held_value: Decimal = ZERO
    offers: int = 0
    apology_only: int = 0
    remedies: Counter[str] = field(default_factory=Counter)
    remedy_value: dict[str, Decimal] = field(default_factory=dict)
    caps: Counter[str] = field(default_factory=Counter)
    cut: Decimal = ZERO
    arms: dict[str, ArmTally] = field(default_factory=dict)  # of the policy's experiment

    @property
    def cost(self) -> Decimal:
        """Goodwill and restitution together."""
        return self.goodwill + self.restitution

    @property
    def goodwill_per_incident(self) -> Decimal:
        return (
            (self.goodwill / self.decisions).quantize(Decimal("0.01")) if self.decisions else ZERO
        )


@dataclass
class _Simulation:
    policy: Policy
    tally: Tally
    histories: dict[str, CustomerHistory] = field(default_factory=dict)
    spent: dict[date, Decimal] = field(default_factory=dict)

    def run(self, incident: Incident, applying: Sequence[int] | None = None) -> None:
        now = incident.detected_at
        day = now.date()
        spent = self.spent.get(day, ZERO)
        customer = incident.customer.id
        history = self.histories.get(customer, NO_HISTORY)
        result = evaluate(
            incident,
            history,
            self.policy,
            now,
            budget_remaining=self.policy.guards.daily_budget - spent,
            trace=False,
            applying=applying,
        )
        tally = self.tally
        tally.decisions += 1
        value = result.value  # goodwill: what caps and the budget count
        held = bool(result.review_reason)
        if held:
            tally.held += 1
            tally.held_value += value + result.restitution
        else:
            tally.goodwill += value
            self.spent[day] = spent + value
        draft = result.draft
        if draft.offer_rule is not None:
            tally.offers += 1
        items = draft.base
        if draft.options:  # the default option is what most customers end up with
            default = (
                draft.offer_rule.offer.default
                if (draft.offer_rule and draft.offer_rule.offer)
                else 0
            )
            items = items + draft.options[default][1]
        if not items:
            tally.apology_only += 1
        elif result.restitution and not held:  # given back: the default option's, like the rest
            tally.restitution += restitution(items)
        remedies, remedy_value = tally.remedies, tally.remedy_value
        for item in items:
            kind = _KIND_NAMES[item.kind]
            remedies[kind] += 1
            remedy_value[kind] = remedy_value.get(kind, ZERO) + item.value
        for cut in draft.cuts:
            tally.caps[cut.cap] += 1
            tally.cut += cut.cut
        if result.assignment is not None:
            arm = tally.arms.get(result.assignment.arm)
            if arm is None:
                arm = tally.arms[result.assignment.arm] = ArmTally()
            arm.decisions += 1
            if held:
                arm.held += 1
            else:
                arm.cost += value + (restitution(items) if result.restitution else ZERO)
        self.histories[customer] = history.plus(
            PastIncident(
                incident.incident_id,
                incident.type,
                incident.detection,
                now,
                value,
                order_id=incident.order_id,
                outage_id=incident.outage_id,
                refunded=_refunded(items),
                given=given_by_items(items, bool(draft.options)),
            )
        )


def _refunded(items: Sequence[Item]) -> Decimal:
    value = ZERO
    for item in items:
        if item.kind is _REFUND_KIND:
            value += item.value
    return value


_REFUND_KIND = RemedyKind.refund
NO_HISTORY = CustomerHistory()
_KIND_NAMES = {kind: kind.value for kind in RemedyKind}  # faster than `kind.value`


def backtest(
    incidents: Iterable[Incident],
    policies: Sequence[Policy],
    progress: Callable[[int], None] | None = None,
    every: int = 1000,
) -> list[Tally]:
    """Decide every incident (in the order given, which should be time order) under each
    policy; `progress(n)` is called every `every` incidents."""
    return backtest_found(((incident, None) for incident in incidents), policies, progress, every)


# An incident, and the rules found beforehand to apply to it under each policy (or None).
Found = tuple[Incident, tuple[tuple[int, ...], ...] | None]


def backtest_found(
    found: Iterable[Found],
    policies: Sequence[Policy],
    progress: Callable[[int], None] | None,
    every: int,
) -> list[Tally]:
    runs = [_Simulation(p, Tally(p.version, p.currency)) for p in policies]
    n = 0
    with collector_paused():
        for incident, applying in found:
            if applying is None:
                for run in runs:
                    run.run(incident)
            else:
                for run, rules in zip(runs, applying, strict=True):
                    run.run(incident, rules)
            n += 1
            if progress is not None and n % every == 0:
                progress(every)
    if progress is not None:
        progress(n % every)
    return [run.tally for run in runs]


@contextmanager
def collector_paused() -> Iterator[None]:
    """A backtest keeps millions of small objects alive (the customers' histories), which
    the cyclic garbage collector would scan again and again: up to a third of the time of a
    large backtest. They make no reference cycles (reference counting frees what is dropped),
    so the collector is paused while the backtest runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
