"""The retention gauges: from the aftermath in memory, per incident type and window, the
incidents whose window closed and how many of those customers reordered or complained again;
on the simulator's planted effect, the rate they give is within the truth's interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from amends.aftermath_report import wilson
from devtools.customers_sim import REORDER, simulate
from schemas.incident import IncidentType
from services.intake.aftermath import AftermathView
from services.intake.domain.retention_gauges import (
    Counts,
    add,
    gauge_windows,
    retention_counts,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 6, 1, tzinfo=UTC)
WINDOWS = (7, 30, 90)


def _view(customers: int) -> AftermathView:
    sim = simulate(customers, T0, seed=11, days=30)
    view = AftermathView(WINDOWS)
    view.follow(view.unfollowed(sim.incidents))
    view.keep(view.facts(sim.events))
    return view


def test_the_longest_window_is_not_gauged() -> None:
    assert gauge_windows([90, 7, 30]) == (7, 30)
    assert gauge_windows([30]) == ()


def test_every_type_has_its_series_and_only_closed_windows_count() -> None:
    view = _view(600)
    # Ten days after the first incident: every 7-day window has closed, no 30-day one.
    counts = retention_counts(view.followed(), WINDOWS, T0 + timedelta(days=10))
    assert set(counts) == {(t.value, d) for t in IncidentType for d in (7, 30)}
    assert counts[("delivery_delayed", 7)].closed == 600
    assert counts[("delivery_delayed", 30)] == Counts()
    assert counts[("item_missing", 7)] == Counts()
    seven = [r.window(7) for r in view.records()]
    assert counts[("delivery_delayed", 7)] == Counts(
        600, sum(o.reordered for o in seven), sum(o.complained for o in seven))


def test_the_gauged_rate_recovers_the_planted_reorder_rate() -> None:
    view = _view(3000)
    counts = retention_counts(view.followed(), WINDOWS, T0 + timedelta(days=40))
    found = counts[("delivery_delayed", 30)]
    assert found.closed == 3000
    # The simulator gives each remedy to a third of the customers.
    truth = sum(REORDER.values()) / len(REORDER)
    interval = wilson(found.reordered, found.closed)
    assert interval.low <= truth <= interval.high
    assert 0 < found.complained < found.closed


def test_counting_in_parts_gives_the_counts_of_the_whole() -> None:
    followed = _view(900).followed()
    at = T0 + timedelta(days=40)
    whole = retention_counts(followed, WINDOWS, at)
    parts: dict[tuple[str, int], Counts] = {}
    for start in range(0, len(followed), 400):
        add(parts, retention_counts(followed[start:start + 400], WINDOWS, at))
    assert parts == whole
    assert whole[("delivery_delayed", 30)].closed == 900
