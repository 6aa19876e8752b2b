"""The retention report (ADR 0013): did the amends keep the customer? Pure: records in,
figures out.

Each incident's aftermath (intake) is joined with its decision (decision's store) for the
remedy, its size and the time to apology, then grouped by one dimension at a time. A window
counts only the incidents whose window has closed by `as_of`, so a 90-day rate is never
diluted by customers who had no time to come back. Every rate has its Wilson interval and
every mean its normal-approximation interval, with the sample size beside it.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.decision import Decision, RemedyKind
from services.intake.domain.aftermath import Aftermath

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval

# Upper bounds of the remedy-size bands (the goodwill's money equivalent, any currency).
SIZE_BANDS = (Decimal(0), Decimal(10), Decimal(25), Decimal(50))
# Upper bounds of the time-to-apology bands.
APOLOGY_BANDS = ((timedelta(hours=1), "<1h"), (timedelta(hours=4), "1-4h"),
                 (timedelta(days=1), "4-24h"))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson's score interval of a proportion: sound at 0 and n successes and for small n,
    where the normal approximation leaves [0, 1]."""
    if n <= 0:
        return Interval(0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[Decimal], z: float = Z95
                  ) -> tuple[Decimal, Decimal, Decimal]:
    """The mean and its normal-approximation interval (sample standard deviation)."""
    n = len(values)
    if n == 0:
        return Decimal(0), Decimal(0), Decimal(0)
    mean = sum(values, Decimal(0)) / n
    if n == 1:
        return mean, mean, mean
    variance = sum(((v - mean) ** 2 for v in values), Decimal(0)) / (n - 1)
    half = Decimal(repr(z)) * (variance / n).sqrt()
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Row:
    """One incident, ready to group: its dimensions and its aftermath."""

    aftermath: Aftermath
    remedy: str
    size: str
    apology: str

    def dimension(self, name: str) -> str:
        followed = self.aftermath.followed
        values = {"incident type": followed.type, "remedy kind": self.remedy,
                  "remedy size": self.size, "customer tier": followed.tier,
                  "locale": followed.locale, "detection": followed.detection,
                  "time to apology": self.apology, "tenant": followed.tenant or "-",
                  "all": "all"}
        return values[name]


DIMENSIONS = ("all", "incident type", "remedy kind", "remedy size", "customer tier",
              "locale", "detection", "time to apology")


def main_remedy(decision: Decision | None) -> str:
    """The remedy a decision is known by: its dearest action other than the apology (an
    offer counts by its default option); `apology` when that is all; `none` undecided."""
    if decision is None:
        return "none"
    actions = list(decision.actions)
    if decision.offer is not None and not decision.choice:
        actions += decision.offer.options[decision.offer.default_option].actions
    others = [a for a in actions if a.kind is not RemedyKind.apology]
    if not others:
        return RemedyKind.apology.value
    return max(others, key=lambda a: (a.value.amount, a.kind.value)).kind.value


def size_band(decision: Decision | None) -> str:
    if decision is None:
        return "none"
    value = (decision.goodwill_value or decision.total_value).amount
    if value <= SIZE_BANDS[0]:
        return "0"
    for low, high in itertools.pairwise(SIZE_BANDS):
        if value <= high:
            return f"{low}-{high}"
    return f">{SIZE_BANDS[-1]}"


def apology_band(aftermath: Aftermath, decision: Decision | None) -> str:
    """From the failure to the decision (the apology goes out seconds after it), or to
    detection when no decision is known."""
    at = decision.decided_at if decision is not None else aftermath.followed.detected_at
    waited = at - aftermath.followed.occurred_at
    for bound, label in APOLOGY_BANDS:
        if waited < bound:
            return label
    return ">24h"


def rows(aftermaths: Iterable[Aftermath], decisions: dict[str, Decision]) -> list[Row]:
    """Join each aftermath with the decision on its incident (by incident id)."""
    out = []
    for aftermath in aftermaths:
        decision = decisions.get(aftermath.followed.incident_id)
        out.append(Row(aftermath, main_remedy(decision), size_band(decision),
                       apology_band(aftermath, decision)))
    return out


@dataclass(frozen=True, kw_only=True)
class Tally:
    """Incidents counted over one window: who reordered, who complained again, and what
    they spent after; the rates with their Wilson intervals."""

    days: int
    n: int
    reordered: int
    complained: int
    currency: str | None
    value_mean: Decimal
    value_low: Decimal
    value_high: Decimal

    @property
    def reorder_rate(self) -> float:
        return self.reordered / self.n if self.n else 0.0

    @property
    def reorder_ci(self) -> Interval:
        return wilson(self.reordered, self.n)

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.n if self.n else 0.0

    @property
    def complaint_ci(self) -> Interval:
        return wilson(self.complained, self.n)


@dataclass(frozen=True, kw_only=True)
class Figure(Tally):
    """One group's retention over one window."""

    dimension: str
    group: str

    def as_dict(self) -> dict[str, object]:
        return {"dimension": self.dimension, "group": self.group, "days": self.days,
                "n": self.n, "reordered": self.reordered,
                "reorder_rate": round(self.reorder_rate, 4),
                "reorder_low": round(self.reorder_ci.low, 4),
                "reorder_high": round(self.reorder_ci.high, 4),
                "complained": self.complained,
                "complaint_rate": round(self.complaint_rate, 4),
                "complaint_low": round(self.complaint_ci.low, 4),
                "complaint_high": round(self.complaint_ci.high, 4),
                "currency": self.currency,
                "value_after_mean": str(_cents(self.value_mean)),
                "value_after_low": str(_cents(self.value_low)),
                "value_after_high": str(_cents(self.value_high))}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def closed(row: Row, days: int, as_of: datetime) -> bool:
    return row.aftermath.followed.occurred_at + timedelta(days=days) <= as_of


def figures(table: Sequence[Row], windows: Sequence[int], as_of: datetime,
            dimensions: Sequence[str] = DIMENSIONS,
            currency: str | None = None) -> list[Figure]:
    """Every group of every dimension over every window. The value after is of `currency`
    (by default the one most of the orders after were in); orders in others count as
    orders, not as value."""
    currency = currency or _main_currency(table)
    out: list[Figure] = []
    for dimension in dimensions:
        groups: dict[str, list[Row]] = defaultdict(list)
        for row in table:
            groups[row.dimension(dimension)].append(row)
        out.extend(_figure(dimension, group, days, currency,
                           [r for r in groups[group] if closed(r, days, as_of)])
                   for group in sorted(groups) for days in sorted(windows))
    return out


def _figure(dimension: str, group: str, days: int, currency: str | None,
            members: Sequence[Row]) -> Figure:
    outcomes = [r.aftermath.window(days) for r in members]
    values = [o.value.get(currency, Decimal(0)) if currency else Decimal(0)
              for o in outcomes]
    mean, low, high = mean_interval(values)
    return Figure(dimension=dimension, group=group, days=days, n=len(outcomes),
                  reordered=sum(o.reordered for o in outcomes),
                  complained=sum(o.complained for o in outcomes), currency=currency,
                  value_mean=mean, value_low=low, value_high=high)


def _main_currency(table: Sequence[Row]) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for row in table:
        for currency in row.aftermath.windows[-1].value:
            counts[currency] += 1
    return max(sorted(counts), key=lambda c: counts[c]) if counts else None


def select(found: Sequence[Figure], days: int,
           keep: Callable[[Figure], bool] = lambda _: True) -> list[Figure]:
    return [f for f in found if f.days == days and keep(f)]
