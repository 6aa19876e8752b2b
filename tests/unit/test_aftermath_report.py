"""The retention report: Wilson intervals, and a simulator with a planted effect (customers
whose reordering depends on their remedy) that the report must recover through the
incremental aftermath."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from amends import aftermath_report as report
from devtools.customers_sim import REORDER, simulate
from services.intake.aftermath import AftermathView

pytestmark = pytest.mark.unit

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_intervals_match_the_textbook_values(k: int, n: int, low: float,
                                                   high: float) -> None:
    interval = report.wilson(k, n)
    assert interval.low == pytest.approx(low, abs=1e-4)
    assert interval.high == pytest.approx(high, abs=1e-4)


def test_no_sample_says_nothing() -> None:
    assert report.wilson(0, 0) == report.Interval(0.0, 1.0)


def test_the_mean_interval_narrows_with_the_sample() -> None:
    mean, low, high = report.mean_interval([Decimal(1), Decimal(3)])
    assert mean == 2
    assert low < 2 < high
    _, wide_low, wide_high = report.mean_interval([Decimal(1), Decimal(3)] * 1)
    _, narrow_low, narrow_high = report.mean_interval([Decimal(1), Decimal(3)] * 50)
    assert narrow_high - narrow_low < (wide_high - wide_low) / 5


def _figures(customers: int, as_of: datetime) -> list[report.Figure]:
    sim = simulate(customers, T0, seed=7, days=30)
    view = AftermathView((7, 30, 90))
    view.follow(view.unfollowed(sim.incidents))
    # In batches, as the consumer would hand them over, each batch redelivered once.
    for start in range(0, len(sim.events), 100):
        batch = sim.events[start:start + 100]
        for _ in range(2):
            view.keep(view.facts(batch))
    table = report.rows(view.records(), sim.decisions)
    return report.figures(table, (7, 30, 90), as_of)


def test_the_report_recovers_the_planted_effect_of_each_remedy_within_its_interval() -> None:
    found = _figures(3000, T0 + timedelta(days=120))
    by_remedy = {f.group: f for f in report.select(
        found, 30, lambda f: f.dimension == "remedy kind")}
    assert set(by_remedy) == {k.value for k in REORDER}
    for kind, truth in REORDER.items():
        figure = by_remedy[kind.value]
        assert figure.n == 1000
        assert figure.reorder_ci.low <= truth <= figure.reorder_ci.high, (kind, figure)
    # The effect itself: a voucher keeps more customers than an apology alone, beyond doubt.
    assert by_remedy["apology"].reorder_ci.high < by_remedy["voucher"].reorder_ci.low
    # Every reorder in the simulation falls within 30 days: the 90-day rate is the same.
    ninety = {f.group: f for f in report.select(found, 90, lambda f: f.dimension == "remedy kind")}
    assert ninety["voucher"].reordered == by_remedy["voucher"].reordered


def test_a_window_counts_only_the_incidents_whose_window_has_closed() -> None:
    # 300 incidents a minute apart, seen 7 days and 100 minutes after the first: the 7-day
    # window has closed for the first 101 of them, the 30-day window for none.
    found = _figures(300, T0 + timedelta(days=7, minutes=100))
    [seven] = report.select(found, 7, lambda f: f.dimension == "all")
    [thirty] = report.select(found, 30, lambda f: f.dimension == "all")
    assert seven.n == 101  # minutes 0..100 inclusive
    assert thirty.n == 0


def test_rows_name_the_remedy_its_size_and_the_time_to_apology() -> None:
    sim = simulate(3, T0, seed=1)
    view = AftermathView((7, 30, 90))
    view.follow(view.unfollowed(sim.incidents))
    table = report.rows(view.records(), sim.decisions)
    assert {(r.remedy, r.size, r.apology) for r in table} == {
        ("apology", "0", "<1h"), ("points", "0-10", "<1h"), ("voucher", "0-10", "<1h")}
