"""The engine's share of `python -m devtools bench`: policy decisions per second on one core, and a
backtest over generated incidents. No broker and no database: pure code in this process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from schemas.incident import Incident
from services.decision.backtest import backtest_generated, generate_incidents
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, load_policy
from services.decision.fast.engine import decide, evaluate

DEFAULT_POLICY = Path("deploy/policy/default.yaml")
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class EngineRate:
    decisions_per_cpu_second: float  # `decide`: the full Decision with traces and words
    evaluations_per_cpu_second: float  # `evaluate`: rules, caps and reviews only
    decisions: int


def _cases(policy: Policy, count: int) -> list[tuple[Incident, CustomerHistory, Decimal]]:
    """Generated incidents with the histories and budget they would meet in production
    (built by an untimed first pass): about one customer in three has had incidents before."""
    histories: dict[str, CustomerHistory] = {}
    remaining = policy.guards.daily_budget
    day = START.date()
    cases = []
    for incident in generate_incidents(count, start=START, days=30):
        if incident.detected_at.date() != day:
            day, remaining = incident.detected_at.date(), policy.guards.daily_budget
        history = histories.get(incident.customer.id, CustomerHistory())
        cases.append((incident, history, remaining))
        result = evaluate(
            incident, history, policy, incident.detected_at, budget_remaining=remaining, trace=False
        )
        remaining -= result.value
        histories[incident.customer.id] = history.plus(
            PastIncident(
                incident.incident_id,
                incident.type,
                incident.detection,
                incident.detected_at,
                result.value,
            )
        )
    return cases


def engine_rate(count: int, policy_path: Path = DEFAULT_POLICY) -> EngineRate:
    """Decisions per CPU second of this process (one core): CPU time, not wall time, so that
    other work on a shared machine does not count against the engine."""
    policy = load_policy(policy_path)
    cases = _cases(policy, count)
    began = time.process_time()
    for incident, history, remaining in cases:
        decide(incident, history, policy, incident.detected_at, budget_remaining=remaining)
    decided = time.process_time() - began
    began = time.process_time()
    for incident, history, remaining in cases:
        evaluate(incident, history, policy, incident.detected_at, budget_remaining=remaining)
    evaluated = time.process_time() - began
    return EngineRate(count / max(decided, 1e-9), count / max(evaluated, 1e-9), count)


@dataclass(frozen=True)
class BacktestTime:
    wall_seconds: float
    cpu_seconds: float
    incidents: int


def backtest_time(count: int, policy_path: Path = DEFAULT_POLICY) -> BacktestTime:
    """Generate `count` incidents over 30 days and backtest them under the default policy,
    as `amends policy backtest POLICY --generate N` does (in two processes from 100,000
    incidents: the CPU time is this process's only)."""
    policy = load_policy(policy_path)
    wall, cpu = time.perf_counter(), time.process_time()
    [tally] = backtest_generated(count, [policy], start=START, days=30)
    assert tally.decisions == count
    return BacktestTime(time.perf_counter() - wall, time.process_time() - cpu, count)
