"""The experiment report (ADR 0018): per arm of a policy experiment, did its remedies keep
customers, at what cost, and is the difference to the control more than chance? Pure:
decisions and their aftermath in, figures out.

An incident belongs to an arm when its decision recorded that arm (ADR 0012: only when the
varied rule applied). As in the retention report, a window counts only incidents whose window
has closed. The comparison with the control is a two-proportion z-test (pooled standard error
for the p-value), with Newcombe's hybrid score interval of the difference (built from the two
Wilson intervals, so sound near 0 and 1); with several arms the p-values are Holm-adjusted, so
"significant" holds for the family at 5%.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from amends.aftermath_report import Interval, Tally, mean_interval, wilson
from schemas.decision import Decision
from services.decision.domain.policy import HOLDOUT
from services.intake.domain.aftermath import Aftermath

ALPHA = 0.05
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Member:
    """One incident of the experiment: its decision and what the customer did after."""

    decision: Decision
    aftermath: Aftermath

    @property
    def arm(self) -> str:
        assert self.decision.experiment is not None
        return self.decision.experiment.arm

    @property
    def cost(self) -> Decimal:
        """Money equivalent granted (goodwill and restitution); a decision still held for
        review has granted nothing yet."""
        return self.decision.total_value.amount if self.decision.status.executable else Decimal(0)


def members(experiment_id: str, aftermaths: Iterable[Aftermath],
            decisions: dict[str, Decision]) -> list[Member]:
    """The incidents whose decision recorded an arm of `experiment_id` (by incident id)."""
    out = []
    for aftermath in aftermaths:
        decision = decisions.get(aftermath.followed.incident_id)
        if decision is not None and decision.experiment is not None \
                and decision.experiment.id == experiment_id:
            out.append(Member(decision, aftermath))
    return out


@dataclass(frozen=True, kw_only=True)
class ArmFigure(Tally):
    arm: str
    probability: Decimal  # the arm's share, as the decisions recorded it
    cost: Decimal

    @property
    def cost_per_incident(self) -> Decimal:
        return (self.cost / self.n).quantize(CENTS) if self.n else Decimal(0)

    @property
    def cost_per_retained(self) -> Decimal | None:
        """What the arm granted in all, per customer who ordered again (None if none did)."""
        return (self.cost / self.reordered).quantize(CENTS) if self.reordered else None


@dataclass(frozen=True)
class Comparison:
    """An arm against the control: the difference of the reorder rates."""

    arm: str
    control: str
    difference: float
    ci: Interval
    z: float
    p_value: float
    p_holm: float
    extra_cost_per_retained: Decimal | None  # extra cost per extra customer kept

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


@dataclass(frozen=True)
class ExperimentReport:
    experiment_id: str
    days: int
    arms: tuple[ArmFigure, ...]
    control: str | None
    comparisons: tuple[Comparison, ...]
    open_window: int  # incidents of the experiment whose window has not closed yet

    def arm(self, name: str) -> ArmFigure:
        return next(a for a in self.arms if a.arm == name)

    def comparison(self, name: str) -> Comparison:
        return next(c for c in self.comparisons if c.arm == name)

    def rows(self) -> list[dict[str, object]]:
        """Every figure, one row per arm, for CSV and JSON."""
        compared = {c.arm: c for c in self.comparisons}
        out = []
        for a in self.arms:
            c = compared.get(a.arm)
            out.append({
                "experiment": self.experiment_id, "arm": a.arm,
                "probability": format(a.probability, "f"), "days": self.days, "n": a.n,
                "reordered": a.reordered, "reorder_rate": round(a.reorder_rate, 4),
                "reorder_low": round(a.reorder_ci.low, 4),
                "reorder_high": round(a.reorder_ci.high, 4),
                "complained": a.complained, "complaint_rate": round(a.complaint_rate, 4),
                "complaint_low": round(a.complaint_ci.low, 4),
                "complaint_high": round(a.complaint_ci.high, 4),
                "currency": a.currency,
                "value_after_mean": str(a.value_mean.quantize(CENTS)),
                "value_after_low": str(a.value_low.quantize(CENTS)),
                "value_after_high": str(a.value_high.quantize(CENTS)),
                "cost": str(a.cost.quantize(CENTS)),
                "cost_per_incident": str(a.cost_per_incident),
                "cost_per_retained": (str(a.cost_per_retained)
                                      if a.cost_per_retained is not None else None),
                "control": self.control,
                "difference": round(c.difference, 4) if c else None,
                "difference_low": round(c.ci.low, 4) if c else None,
                "difference_high": round(c.ci.high, 4) if c else None,
                "z": round(c.z, 3) if c else None,
                "p_value": round(c.p_value, 5) if c else None,
                "p_holm": round(c.p_holm, 5) if c else None,
                "significant": c.significant if c else None,
                "extra_cost_per_retained": (str(c.extra_cost_per_retained) if c and
                                            c.extra_cost_per_retained is not None else None),
                "test": "two-proportion z-test (pooled), Newcombe interval, Holm-adjusted",
            })
        return out


def two_proportions(k1: int, n1: int, k2: int, n2: int) -> tuple[float, Interval, float, float]:
    """Arm 1 minus arm 2: the difference, its Newcombe (hybrid score) 95% interval, the z
    statistic with the pooled standard error, and the two-sided p-value."""
    p1, p2 = k1 / n1, k2 / n2
    w1, w2 = wilson(k1, n1), wilson(k2, n2)
    difference = p1 - p2
    ci = Interval(difference - math.hypot(p1 - w1.low, w2.high - p2),
                  difference + math.hypot(w1.high - p1, p2 - w2.low))
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # both all or both none: no evidence of a difference
        return difference, ci, 0.0, 1.0
    z = difference / se
    return difference, ci, z, math.erfc(abs(z) / math.sqrt(2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family-wise error stays at the level tested."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def report(experiment_id: str, found: Sequence[Member], days: int, as_of: datetime, *,
           control: str | None = None, currency: str | None = None) -> ExperimentReport:
    """Per arm over `days`; the control is `control`, else the holdout, else the arm that
    cost least per incident (the cheaper remedy is what the others must beat)."""
    by_arm: dict[str, list[Member]] = defaultdict(list)
    waiting = 0
    for member in found:
        if member.aftermath.followed.occurred_at + timedelta(days=days) <= as_of:
            by_arm[member.arm].append(member)
        else:
            waiting += 1
    currency = currency or _currency(found)
    arms = tuple(_arm(name, by_arm[name], days, currency) for name in sorted(by_arm))
    chosen = _control(arms, control)
    comparisons: list[Comparison] = []
    if chosen is not None:
        base = next(a for a in arms if a.arm == chosen)
        tested = [a for a in arms if a.arm != chosen and a.n and base.n]
        raw = [two_proportions(a.reordered, a.n, base.reordered, base.n) for a in tested]
        adjusted = holm([r[3] for r in raw])
        for a, (difference, ci, z, p), p_holm in zip(tested, raw, adjusted, strict=True):
            extra = None
            if difference > 0:
                spent = a.cost / a.n - base.cost / base.n
                extra = (spent / Decimal(repr(difference))).quantize(CENTS)
            comparisons.append(Comparison(a.arm, chosen, difference, ci, z, p, p_holm, extra))
    return ExperimentReport(experiment_id, days, arms, chosen, tuple(comparisons), waiting)


def _arm(name: str, found: Sequence[Member], days: int, currency: str | None) -> ArmFigure:
    outcomes = [m.aftermath.window(days) for m in found]
    values = [o.value.get(currency, Decimal(0)) if currency else Decimal(0) for o in outcomes]
    mean, low, high = mean_interval(values)
    probability = found[0].decision.experiment.probability if found and \
        found[0].decision.experiment is not None else Decimal(0)
    return ArmFigure(arm=name, probability=probability, days=days, n=len(found),
                     reordered=sum(o.reordered for o in outcomes),
                     complained=sum(o.complained for o in outcomes), currency=currency,
                     value_mean=mean, value_low=low, value_high=high,
                     cost=sum((m.cost for m in found), Decimal(0)))


def _control(arms: Sequence[ArmFigure], asked: str | None) -> str | None:
    names = [a.arm for a in arms if a.n]
    if asked is not None:
        if asked not in names:
            raise ValueError(f"no incidents in arm {asked!r} (arms: {', '.join(names)})")
        return asked
    if HOLDOUT in names:
        return HOLDOUT
    if len(names) < 2:
        return None
    return min((a for a in arms if a.n), key=lambda a: (a.cost / a.n, a.arm)).arm


def _currency(found: Sequence[Member]) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for member in found:
        counts[member.decision.total_value.currency] += 1
    return max(sorted(counts), key=lambda c: counts[c]) if counts else None
