"""The pure side of `python -m devtools bench`: figures measured several times, their median and
spread, percentiles, targets, and the shape of the JSON results file."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

Better = Literal["higher", "lower"]
SCHEMA = "amends.bench/1"


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of `values` (sorted or not); NaN when there are none.

    Nearest rank keeps every reported latency a latency that was observed: p99.9 of 1,000
    values is the largest one, not an interpolation past it.
    """
    if not values:
        return math.nan
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is not between 0 and 100")
    ordered = sorted(values)
    rank = math.ceil(round(pct * len(ordered) / 100, 9))  # 99.9% of 1000 is 999, not 999.0…1
    return ordered[min(len(ordered), max(1, rank)) - 1]


@dataclass
class Figure:
    """One measured quantity: every run's value, and the target it is held against."""

    key: str
    name: str
    unit: str
    better: Better = "higher"
    target: float | None = None
    runs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    detail: list[dict[str, Any]] = field(default_factory=list)

    def add(self, value: float, note: str = "", **detail: Any) -> None:
        self.runs.append(value)
        if note and note not in self.notes:
            self.notes.append(note)
        self.detail.append(detail)

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else math.nan

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.runs), max(self.runs)) if self.runs else (math.nan, math.nan)

    @property
    def met(self) -> bool | None:
        """Whether the median meets the target; None without a target or a measurement."""
        if self.target is None or not self.runs or math.isnan(self.median):
            return None
        if self.better == "higher":
            return self.median >= self.target
        return self.median <= self.target


def ratio(name: str, key: str, numerators: Figure, denominators: Figure,
          target: float | None = None) -> Figure:
    """Run by run, `numerators` as a percentage of `denominators`."""
    figure = Figure(key, name, "%", "higher", target)
    for top, bottom in zip(numerators.runs, denominators.runs, strict=False):
        figure.add(100 * top / bottom if bottom else math.nan)
    return figure


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def results_doc(figures: list[Figure], settings: dict[str, Any],
                machine: dict[str, Any], when: str) -> dict[str, Any]:
    """The JSON results: every run of every figure, with its median, spread and target.
    Values that could not be measured (an unfinished run) are null."""
    return {
        "schema": SCHEMA, "when": when, "settings": settings, "machine": machine,
        "figures": [{
            "key": f.key, "name": f.name, "unit": f.unit, "better": f.better,
            "target": f.target, "met": f.met, "median": _finite(f.median),
            "spread": [_finite(v) for v in f.spread], "runs": [_finite(v) for v in f.runs],
            "notes": f.notes, "detail": f.detail,
        } for f in figures],
    }


def shown(value: float, unit: str) -> str:
    """A value as the table shows it."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "unfinished"
    if unit in {"%", "ms", "s"}:
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:,.0f}"


def target_text(figure: Figure) -> str:
    if figure.target is None:
        return ""
    sign = "≥" if figure.better == "higher" else "≤"
    mark = {True: "met", False: "NOT met", None: "-"}[figure.met]
    return f"{sign} {shown(figure.target, figure.unit)} {mark}"


@dataclass(frozen=True)
class Window:
    """One stretch of a soak run, `start_s` to `end_s` after its first event was sent."""

    start_s: float
    end_s: float
    sent: int  # events sent in the window
    completed: int  # apologies published in the window (whenever their event was sent)
    p99_ms: float  # event → apology of the events sent in it; inf if one never came

    @property
    def throughput(self) -> float:
        """Apologies per second published in the window."""
        return self.completed / (self.end_s - self.start_s)


def window(sent: dict[str, float], done: dict[str, float], began: float, start_s: float,
           end_s: float) -> Window:
    """The window [`start_s`, `end_s`) of a run whose first event went at `began`; `sent` and
    `done` are when each event was sent and its apology published (same clock, seconds)."""
    lo, hi = began + start_s, began + end_s
    mine = [key for key, at in sent.items() if lo <= at < hi]
    delays = [(done[key] - sent[key]) * 1000 if key in done else math.inf for key in mine]
    completed = sum(1 for at in done.values() if lo <= at < hi)
    return Window(start_s, end_s, len(mine), completed, percentile(delays, 99))


def first_and_last(sent: dict[str, float], done: dict[str, float], began: float,
                   seconds: float, width: float = 60.0) -> tuple[Window, Window]:
    """The first and the last `width` seconds of a run that sent for `seconds` (each at most
    half the run, so that they never overlap)."""
    width = min(width, seconds / 2)
    return (window(sent, done, began, 0.0, width),
            window(sent, done, began, seconds - width, seconds))
