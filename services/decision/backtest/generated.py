"""Generated incidents for backtests and benchmarks: plausible, spread evenly over days, the
same for the same seed; each type's weight and own draw come from its registry entry."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from schemas.common import CustomerSnapshot, Money, Tier
from schemas.incident import Incident, IncidentType, Severity
from services.decision.domain.ids import deterministic_id
from services.decision.fast.remedies import built, built_from
from services.registry.incident_types import INCIDENT_TYPES

_INCIDENT_DEFAULTS: dict[str, Any] = {
    name: info.get_default(call_default_factory=True)
    for name, info in Incident.model_fields.items()
    if not info.is_required()
}
# The types drawn, in the registry's order, with their weights and own draws.
_TYPES = [(kind, entry.generated) for kind, entry in INCIDENT_TYPES.items()]
_TIERS = [(Tier.standard, 60), (Tier.silver, 25), (Tier.gold, 12), (Tier.platinum, 3)]


def _money(amount: Decimal, currency: str) -> Money:
    return built(Money, amount=amount, currency=currency)


def generate_incidents(
    count: int,
    *,
    seed: int = 7,
    start: datetime,
    days: int = 30,
    currency: str = "EUR",
    customers: int | None = None,
) -> Iterator[Incident]:
    """`count` plausible incidents spread evenly over `days`, in time order, the same for the
    same seed; about one customer in three has more than one."""
    return GeneratedIncidents(count, seed, start, days, currency, customers).incidents()


# What `GeneratedIncidents.draws` makes of one incident: the customer's number, the customer's tier
# and lifetime value in cents the first time the number comes up, the type, the order value
# in cents, the type's own draw (minutes, or the item's share of the order in percent) and
# the id.
Draw = tuple[int, tuple[int, int] | None, int, int, int | None, str]


@dataclass(frozen=True)
class GeneratedIncidents:
    """What `generate_incidents` makes, in two steps: the random draws and the ids (small
    tuples, cheap to send to another process), then the incidents built from them."""

    count: int
    seed: int
    start: datetime
    days: int
    currency: str
    customers: int | None

    def incidents(self) -> Iterator[Incident]:
        build = self.builder()
        for n, draw in enumerate(self.draws()):
            yield build(n, draw)

    def builder(self) -> Builder:
        step = timedelta(days=self.days) / max(self.count, 1)
        return Builder(self.start, step, self.currency)

    def draws(self) -> Iterator[Draw]:
        rng = random.Random(self.seed)
        randrange, choices = rng.randrange, rng.choices
        pool = self.customers or max(1, self.count // 3)
        type_cum = list(accumulate(generated.weight for _, generated in _TYPES))
        tier_cum = list(accumulate(weight for _, weight in _TIERS))
        type_positions, tier_positions = range(len(_TYPES)), range(len(_TIERS))
        seen: set[int] = set()
        seed = str(self.seed)
        for n in range(self.count):
            number = randrange(pool)
            first: tuple[int, int] | None = None
            if number not in seen:
                seen.add(number)
                tier = choices(tier_positions, cum_weights=tier_cum)[0]
                first = (tier, randrange(0, 500_000))
            position = choices(type_positions, cum_weights=type_cum)[0]
            kind, generated = _TYPES[position]
            order_cents = randrange(500, 30_000)
            own = generated.draw(rng)
            incident_id = deterministic_id("incident", _TYPE_NAMES[kind], "generated", seed, str(n))
            yield number, first, position, order_cents, own, incident_id


class Builder:
    """Builds the incidents of `GeneratedIncidents.draws`, in order (it keeps the customers it has
    seen)."""

    def __init__(self, start: datetime, step: timedelta, currency: str) -> None:
        self.start, self.step, self.currency = start, step, currency
        self.customers: dict[int, CustomerSnapshot] = {}
        self.moneys: dict[int, Money] = {}  # by the amount in cents
        # Every field, in the order the models were first built in (their JSON follows it).
        self.fields: dict[str, Any] = {
            **_INCIDENT_DEFAULTS,
            **dict.fromkeys(_REQUIRED),
            "severity": Severity.medium,
            "source": "generated",
        }

    def __call__(self, n: int, draw: Draw) -> Incident:
        number, first, position, order_cents, own, incident_id = draw
        currency = self.currency
        at = self.start + self.step * n
        customer = self.customers.get(number)
        if customer is None:
            assert first is not None, "a customer's first incident comes with the customer"
            tier, lifetime_cents = first
            customer = self.customers[number] = built(
                CustomerSnapshot,
                id=f"gen-{number}",
                tier=_TIERS[tier][0],
                lifetime_value=_money(Decimal(lifetime_cents).scaleb(-2), currency),
                locale="en",
                contact=None,
                customer_since=None,
            )
        kind, generated = _TYPES[position]
        incident = self.fields.copy()
        incident["order_value"] = self.money(order_cents)
        incident.update(generated.fields(own, order_cents, self.money))
        incident["incident_id"] = incident_id
        incident["type"] = kind
        incident["detection"] = generated.detection
        incident["customer"] = customer
        incident["occurred_at"] = incident["detected_at"] = at
        incident["order_id"] = f"gen-order-{n}"
        return built_from(Incident, incident)

    def money(self, cents: int) -> Money:
        """An amount in cents as Money: made once per amount, as incidents share it."""
        made = self.moneys.get(cents)
        if made is None:
            made = self.moneys[cents] = _money(Decimal(cents).scaleb(-2), self.currency)
        return made


# the incident's fields without a default, in the order they were first built in
_REQUIRED = ("incident_id", "type", "detection", "customer", "occurred_at", "detected_at", "source")
_TYPE_NAMES = {kind: kind.value for kind in IncidentType}
