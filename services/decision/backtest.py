"""Backtests: re-decide past (or generated) incidents under one or more policies, without side
effects, simulating each policy's own customer histories and daily budgets."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from schemas.common import CustomerSnapshot, Money, Tier
from schemas.incident import Detection, Incident, IncidentType, Severity, incident_id
from services.decision.domain.engine import built, evaluate
from services.decision.domain.history import ZERO, CustomerHistory, PastIncident
from services.decision.domain.policy import Policy


@dataclass
class Tally:
    """What one policy would have done with the incidents."""

    version: str
    currency: str
    decisions: int = 0
    cost: Decimal = ZERO  # money equivalent carried out (held decisions excluded)
    held: int = 0
    held_value: Decimal = ZERO
    offers: int = 0
    apology_only: int = 0
    remedies: Counter[str] = field(default_factory=Counter)
    remedy_value: dict[str, Decimal] = field(default_factory=dict)
    caps: Counter[str] = field(default_factory=Counter)
    cut: Decimal = ZERO

    @property
    def cost_per_incident(self) -> Decimal:
        return (self.cost / self.decisions).quantize(Decimal("0.01")) if self.decisions else ZERO


@dataclass
class _Simulation:
    policy: Policy
    tally: Tally
    histories: dict[str, CustomerHistory] = field(default_factory=dict)
    spent: dict[date, Decimal] = field(default_factory=dict)

    def run(self, incident: Incident) -> None:
        now = incident.detected_at
        day = now.date()
        spent = self.spent.get(day, ZERO)
        customer = incident.customer.id
        history = self.histories.get(customer, CustomerHistory())
        result = evaluate(incident, history, self.policy, now,
                          budget_remaining=self.policy.guards.daily_budget - spent, trace=False)
        tally = self.tally
        tally.decisions += 1
        value = result.value
        if result.review_reason:
            tally.held += 1
            tally.held_value += value
        else:
            tally.cost += value
            self.spent[day] = spent + value
        if result.draft.offer_rule is not None:
            tally.offers += 1
        items = list(result.draft.base)
        if result.draft.options:  # the default option is what most customers end up with
            default = result.draft.offer_rule.offer.default if (
                result.draft.offer_rule and result.draft.offer_rule.offer) else 0
            items += result.draft.options[default][1]
        if not items:
            tally.apology_only += 1
        for item in items:
            tally.remedies[item.kind.value] += 1
            tally.remedy_value[item.kind.value] = (
                tally.remedy_value.get(item.kind.value, ZERO) + item.value)
        for cap in result.draft.caps:
            tally.caps[cap.cap] += 1
            tally.cut += cap.cut.amount
        self.histories[customer] = history.plus(PastIncident(
            incident_id=incident.incident_id, type=incident.type, detection=incident.detection,
            decided_at=now, value=value))


def backtest(incidents: Iterable[Incident], policies: Sequence[Policy],
             progress: Callable[[int], None] | None = None, every: int = 1000) -> list[Tally]:
    """Decide every incident (in the order given, which should be time order) under each
    policy; `progress(n)` is called every `every` incidents."""
    runs = [_Simulation(p, Tally(p.version, p.currency)) for p in policies]
    n = 0
    for incident in incidents:
        for run in runs:
            run.run(incident)
        n += 1
        if progress is not None and n % every == 0:
            progress(every)
    if progress is not None:
        progress(n % every)
    return [run.tally for run in runs]


# --- generated incidents ---------------------------------------------------------------

_INCIDENT_DEFAULTS: dict[str, Any] = {
    name: info.get_default(call_default_factory=True)
    for name, info in Incident.model_fields.items() if not info.is_required()}
_TYPES = [(IncidentType.delivery_delayed, 45), (IncidentType.item_defective, 10),
          (IncidentType.wrong_item, 6), (IncidentType.item_missing, 6),
          (IncidentType.order_cancelled, 5), (IncidentType.double_charge, 3),
          (IncidentType.support_wait_exceeded, 15), (IncidentType.service_outage, 10)]
_TIERS = [(Tier.standard, 60), (Tier.silver, 25), (Tier.gold, 12), (Tier.platinum, 3)]


def _money(amount: Decimal, currency: str) -> Money:
    return built(Money, amount=amount, currency=currency)


def generate_incidents(count: int, *, seed: int = 7, start: datetime, days: int = 30,
                       currency: str = "EUR", customers: int | None = None,
                       ) -> Iterable[Incident]:
    """`count` plausible incidents spread evenly over `days`, in time order, the same for the
    same seed; about one customer in three has more than one."""
    rng = random.Random(seed)
    pool = customers or max(1, count // 3)
    types, type_weights = zip(*_TYPES, strict=True)
    tiers, tier_weights = zip(*_TIERS, strict=True)
    type_cum, tier_cum = list(accumulate(type_weights)), list(accumulate(tier_weights))
    step = timedelta(days=days) / max(count, 1)
    snapshots: dict[int, CustomerSnapshot] = {}
    for n in range(count):
        at = start + step * n
        number = rng.randrange(pool)
        customer = snapshots.get(number)
        if customer is None:
            customer = snapshots[number] = built(
                CustomerSnapshot, id=f"gen-{number}",
                tier=rng.choices(tiers, cum_weights=tier_cum)[0],
                lifetime_value=_money(Decimal(rng.randrange(0, 500_000)).scaleb(-2), currency),
                locale="en", contact=None, customer_since=None)
        kind: IncidentType = rng.choices(types, cum_weights=type_cum)[0]
        order_value = Decimal(rng.randrange(500, 30_000)).scaleb(-2)
        facts: dict[str, Any] = {"order_value": _money(order_value, currency)}
        if kind is IncidentType.delivery_delayed:
            facts["delay_minutes"] = int(rng.expovariate(1 / 240))
        elif kind in {IncidentType.item_defective, IncidentType.wrong_item,
                      IncidentType.item_missing}:
            facts["item_value"] = _money((order_value * Decimal(rng.randrange(10, 100)) / 100
                                          ).quantize(Decimal("0.01")), currency)
        elif kind is IncidentType.double_charge:
            facts["charged_amount"] = facts["order_value"]
        elif kind is IncidentType.support_wait_exceeded:
            facts["wait_minutes"] = int(rng.expovariate(1 / 600))
        elif kind is IncidentType.service_outage:
            facts["outage_minutes"] = int(rng.expovariate(1 / 90))
        detection = (Detection.customer_reported if kind in {
            IncidentType.item_defective, IncidentType.wrong_item, IncidentType.item_missing}
            else Detection.proactive)
        yield built(Incident, **{
            **_INCIDENT_DEFAULTS, **facts,
            "incident_id": incident_id(kind, "generated", str(seed), str(n)), "type": kind,
            "detection": detection, "severity": Severity.medium, "customer": customer,
            "occurred_at": at, "detected_at": at, "source": "generated",
            "order_id": f"gen-order-{n}"})
