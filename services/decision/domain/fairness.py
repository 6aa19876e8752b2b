"""Fairness (ADR 0019): are similar incidents treated alike across locales, tiers and
tenants? Pure: decisions in, comparisons and findings out.

Similar incidents share a type and a severity band (the severity, and the delay band where
there is one) and a currency. Within each such cell, every group of a dimension (each locale,
say) is compared with the rest of the cell: the mean goodwill granted per decision. A group is
flagged when the difference is beyond the tolerance (relative to the rest's mean) and beyond
chance (outside the 95% interval of the difference of the two means), with at least the
minimum of decisions on each side. Restitution is left out: it gives back what was taken,
in full, and differs with the order, not the customer. A top-up is left out too: it grants
a difference, not a treatment.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas.decision import Decision

Z95 = 1.959963984540054
DIMENSIONS = ("locale", "tier", "tenant")


@dataclass(frozen=True)
class Granted:
    """One decision as fairness sees it."""

    incident_type: str
    band: str
    currency: str
    locale: str
    tier: str
    tenant: str
    grant: Decimal

    def group(self, dimension: str) -> str:
        return {"locale": self.locale, "tier": self.tier, "tenant": self.tenant}[dimension]


def band_of(decision: Decision) -> str:
    incident = decision.incident
    severity = incident.severity.value
    return f"{severity}/{incident.delay_band}" if incident.delay_band else severity


def granted(decisions: Iterable[Decision]) -> list[Granted]:
    out = []
    for d in decisions:
        if d.top_up_of:
            continue
        goodwill = d.goodwill_value
        if goodwill is None:  # recorded before goodwill was kept apart: all but restitution
            restitution = d.restitution_value.amount if d.restitution_value else Decimal(0)
            amount, currency = d.total_value.amount - restitution, d.total_value.currency
        else:
            amount, currency = goodwill.amount, goodwill.currency
        customer = d.incident.customer
        out.append(Granted(d.incident.type.value, band_of(d), currency, customer.locale,
                           customer.tier.value, d.incident.tenant or "-", amount))
    return out


@dataclass(frozen=True)
class Comparison:
    """One group of one dimension against the rest of its cell."""

    incident_type: str
    band: str
    currency: str
    dimension: str
    group: str
    n: int
    mean: Decimal
    others_n: int
    others_mean: Decimal
    half_width: Decimal  # of the 95% interval of the difference of the means
    flagged: bool

    @property
    def difference(self) -> Decimal:
        return self.mean - self.others_mean

    @property
    def ratio(self) -> Decimal | None:
        return self.mean / self.others_mean if self.others_mean else None


def _mean_var(values: Sequence[Decimal]) -> tuple[Decimal, Decimal]:
    n = len(values)
    mean = sum(values, Decimal(0)) / n
    if n < 2:
        return mean, Decimal(0)
    return mean, sum(((v - mean) ** 2 for v in values), Decimal(0)) / (n - 1)


def compare(decisions: Iterable[Granted], *, tolerance: Decimal, min_decisions: int,
            flag: Sequence[str] = ("locale", "tenant"),
            dimensions: Sequence[str] = DIMENSIONS) -> list[Comparison]:
    """Every group of every dimension against the rest of its cell, in a stable order.
    Only the dimensions in `flag` are flagged; the others are compared and shown (the
    default policy grants loyal tiers more on purpose)."""
    cells: dict[tuple[str, str, str], list[Granted]] = defaultdict(list)
    for g in decisions:
        cells[(g.incident_type, g.band, g.currency)].append(g)
    out = []
    for (kind, band, currency), members in sorted(cells.items()):
        for dimension in dimensions:
            groups: dict[str, list[Decimal]] = defaultdict(list)
            for g in members:
                groups[g.group(dimension)].append(g.grant)
            if len(groups) < 2:
                continue
            for name in sorted(groups):
                mine = groups[name]
                rest = [g.grant for g in members if g.group(dimension) != name]
                out.append(_comparison((kind, band, currency), dimension, name, mine, rest,
                                       tolerance=tolerance, min_decisions=min_decisions,
                                       flaggable=dimension in flag))
    return out


def _comparison(cell: tuple[str, str, str], dimension: str, name: str,
                mine: Sequence[Decimal], rest: Sequence[Decimal], *, tolerance: Decimal,
                min_decisions: int, flaggable: bool) -> Comparison:
    mean, var = _mean_var(mine)
    others, others_var = _mean_var(rest)
    half = Decimal(repr(Z95)) * (var / len(mine) + others_var / len(rest)).sqrt()
    beyond_tolerance = abs(mean - others) > tolerance * others if others else mean > 0
    beyond_chance = abs(mean - others) > half
    enough = min(len(mine), len(rest)) >= min_decisions
    return Comparison(*cell, dimension, name, len(mine), mean, len(rest), others, half,
                      flaggable and enough and beyond_tolerance and beyond_chance)


def findings(comparisons: Iterable[Comparison]) -> list[Comparison]:
    return [c for c in comparisons if c.flagged]


def ratio_text(value: Decimal | None) -> str:
    if value is None or not math.isfinite(float(value)):
        return "-"
    return f"{value:.2f}"
