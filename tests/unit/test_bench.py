"""The pure parts of `python -m devtools bench`: percentiles, medians and spreads, targets, the
shape of the results file. The benchmarks themselves are not tests: they run with `make bench`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from devtools import bench, bench_cpu
from devtools.bench_stats import (
    SCHEMA,
    Figure,
    first_and_last,
    percentile,
    ratio,
    results_doc,
    shown,
    target_text,
    window,
)

pytestmark = pytest.mark.unit


def test_percentile_is_the_nearest_rank_of_the_values_observed() -> None:
    values = [float(v) for v in range(1, 1001)]  # 1..1000, shuffled order must not matter
    shuffled = values[::-1]
    assert percentile(shuffled, 50) == 500
    assert percentile(shuffled, 99) == 990
    assert percentile(shuffled, 99.9) == 999
    assert percentile(shuffled, 100) == 1000
    assert percentile(shuffled, 0) == 1


def test_percentile_of_few_values_is_one_of_them() -> None:
    assert percentile([7.0], 99.9) == 7
    assert percentile([3.0, 1.0, 2.0], 50) == 2
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_unfinished_values_push_the_high_percentiles_to_infinity() -> None:
    delays = [10.0] * 995 + [math.inf] * 5
    assert percentile(delays, 50) == 10
    assert math.isinf(percentile(delays, 99.9))


def test_a_figure_reports_the_median_and_the_spread_of_its_runs() -> None:
    figure = Figure("pipeline", "pipeline", "incidents/s", target=5000)
    for value in (120.0, 100.0, 110.0):
        figure.add(value)
    assert figure.median == 110
    assert figure.spread == (100, 120)
    assert figure.met is False
    assert target_text(figure) == "≥ 5,000 NOT met"


def test_a_lower_is_better_figure_meets_its_target_from_below() -> None:
    figure = Figure("backtest", "backtest", "s", "lower", target=30)
    assert figure.met is None
    figure.add(29.5)
    figure.add(31.0)
    assert figure.median == pytest.approx(30.25)
    assert figure.met is False
    figure.add(12.0)
    assert figure.met is True


def test_ratio_is_taken_run_by_run() -> None:
    top = Figure("p", "p", "x", runs=[50.0, 30.0])
    bottom = Figure("c", "c", "x", runs=[100.0, 120.0])
    assert ratio("p / c", "ratio", top, bottom).runs == [50.0, 25.0]


def test_the_results_file_keeps_every_run_and_nulls_what_was_not_measured() -> None:
    done = Figure("ceiling", "ceiling", "events/s")
    done.add(1000.0, seconds=2.0)
    done.add(1200.0, seconds=1.7)
    stuck = Figure("fanout", "fan-out", "s", "lower", target=60)
    stuck.add(math.inf, "unfinished after 300 s")
    doc = results_doc([done, stuck], {"runs": 2}, {"cpus": 2}, "2026-01-01T00:00:00+00:00")
    text = json.dumps(doc, allow_nan=False)  # strict JSON: no NaN or Infinity
    loaded = json.loads(text)
    assert loaded["schema"] == SCHEMA
    assert set(loaded) == {"schema", "when", "settings", "machine", "figures"}
    first, second = loaded["figures"]
    assert first["runs"] == [1000.0, 1200.0]
    assert first["median"] == 1100.0
    assert first["spread"] == [1000.0, 1200.0]
    assert first["detail"] == [{"seconds": 2.0}, {"seconds": 1.7}]
    assert first["met"] is None
    assert second["runs"] == [None]
    assert second["median"] is None
    assert second["met"] is False
    assert second["notes"] == ["unfinished after 300 s"]


def test_values_are_shown_by_their_unit() -> None:
    assert shown(12345.6, "incidents/s") == "12,346"
    assert shown(12.34, "ms") == "12.3"
    assert shown(math.inf, "ms") == "unfinished"
    assert shown(math.nan, "ms") == "n/a"


def test_cpu_is_read_per_process_and_per_session(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Two processes of session 40 (one named with spaces and a parenthesis), one of another.
    for pid, comm, session, utime, stime in ((40, "java", 40, 300, 100),
                                             (41, "ferret db) x", 40, 50, 50),
                                             (42, "python", 7, 1000, 0)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(
            f"{pid} ({comm}) S 1 {session} {session} 0 -1 4194560 1 0 0 0 "
            f"{utime} {stime} 0 0 20 0 1 0 1 1 1\n")
    monkeypatch.setattr(bench_cpu, "PROC", tmp_path)
    monkeypatch.setattr(bench_cpu, "TICKS", 100)
    assert bench_cpu.process_cpu(41) == 1.0
    assert bench_cpu.session_cpu(40) == 5.0
    assert bench_cpu.session_cpu(99) is None
    assert bench_cpu.process_cpu(99) is None
    before = bench_cpu.Meter({"decision": 42}, {"kafka": 40}).read()
    assert before["decision"] == 10.0
    assert before["kafka"] == 5.0
    assert bench_cpu.spent({"kafka": 5.0, "gone": 1.0}, {"kafka": 7.5, "new": 2.0}) == {
        "kafka": 2.5}


def test_cpu_of_this_process_is_read_from_the_real_proc() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc on this system")
    busy = sum(i * i for i in range(300_000))
    assert busy > 0
    used = bench_cpu.process_cpu(os.getpid())
    assert used is not None
    assert used > 0
    session = bench_cpu.session_cpu(os.getsid(0))
    assert session is not None
    assert session >= used


def test_after_a_prefill_every_other_order_is_for_a_returning_customer() -> None:
    sent = list(bench.late_deliveries("r", 6, start=10, returning=10))
    keys = [key for key, _ in sent]
    # The returning ones are the even-numbered half of the ten stored customers.
    assert keys == ["bench-r-0", "bench-r-11", "bench-r-2", "bench-r-13", "bench-r-4",
                    "bench-r-15"]
    bodies = [json.loads(value) for _, value in sent]
    assert [b["subject"] for b in bodies] == keys
    assert [b["data"]["customer"]["id"] for b in bodies] == keys
    # Each order and event is new: only the customer returns.
    assert len({b["data"]["order_id"] for b in bodies}) == 6
    assert len({b["id"] for b in bodies}) == 6
    fresh = [key for key, _ in bench.late_deliveries("r", 3)]
    assert fresh == ["bench-r-0", "bench-r-1", "bench-r-2"]


def test_returning_customers_are_spread_over_the_stored_ones_and_each_comes_once() -> None:
    spread = [key for key, _ in bench.late_deliveries("r", 8, start=1000, returning=1000)]
    assert spread[::2] == ["bench-r-0", "bench-r-250", "bench-r-500", "bench-r-750"]
    # More events than stored customers to return: the rest are new customers.
    few = [key for key, _ in bench.late_deliveries("r", 8, start=4, returning=4)]
    assert few == ["bench-r-0", "bench-r-5", "bench-r-2", "bench-r-7", "bench-r-8",
                   "bench-r-9", "bench-r-10", "bench-r-11"]
    assert len(set(few)) == len(few)


def test_a_soak_window_counts_the_events_sent_in_it_and_the_apologies_published_in_it(
) -> None:
    began = 1000.0
    sent = {"a": 1000.0, "b": 1030.0, "c": 1059.9, "d": 1060.0}
    done = {"a": 1000.1, "b": 1030.2, "c": 1060.4, "d": 1060.5}
    first = window(sent, done, began, 0, 60)
    assert first.sent == 3  # d was sent at 60 s: the next window's
    assert first.completed == 2  # c's apology came at 60.4 s
    assert first.throughput == pytest.approx(2 / 60)
    assert first.p99_ms == pytest.approx(500.0)  # c's: sent in the window, however late


def test_an_apology_never_seen_makes_the_window_p99_unfinished() -> None:
    got = window({"a": 0.0, "b": 1.0}, {"a": 0.05}, 0.0, 0, 60)
    assert math.isinf(got.p99_ms)
    assert got.completed == 1
    assert math.isnan(window({}, {}, 0.0, 0, 60).p99_ms)


def test_first_and_last_minute_of_a_run_and_never_overlapping() -> None:
    sent = {f"e{i}": float(i) for i in range(600)}  # one a second for ten minutes
    done = {key: at + (0.01 if at < 300 else 0.2) for key, at in sent.items()}
    first, last = first_and_last(sent, done, 0.0, 600)
    assert (first.start_s, first.end_s, last.start_s, last.end_s) == (0, 60, 540, 600)
    assert first.sent == last.sent == 60
    assert first.p99_ms == pytest.approx(10.0)
    assert last.p99_ms == pytest.approx(200.0)
    assert first.throughput == pytest.approx(1.0)
    short_first, short_last = first_and_last(sent, done, 0.0, 80)
    assert (short_first.end_s, short_last.start_s) == (40, 40)
