"""The retention gauges (ADR 0019): per incident type and window, how many of the incidents
followed have had that window close, and how many of those customers ordered again or
complained again within it. Pure: the aftermath records in memory in, counts out.

Counts rather than rates, so that the rate over several intake instances (each following
its own partitions' customers) is a sum over a sum in Prometheus. The longest window is left
out: an incident leaves memory as it closes, so its sample would be the last hour's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.incident import IncidentType
from services.intake.domain.aftermath import Fact, FactKind, Followed


@dataclass(frozen=True)
class Counts:
    closed: int = 0
    reordered: int = 0
    complained: int = 0


def gauge_windows(windows: Sequence[int]) -> tuple[int, ...]:
    """The windows gauged: all but the longest (the one memory is pruned by)."""
    ordered = sorted(windows)
    return tuple(ordered[:-1])


def retention_counts(followed: Iterable[tuple[Followed, Iterable[Fact]]],
                     windows: Sequence[int], now: datetime) -> dict[tuple[str, int], Counts]:
    """(incident type, days) -> counts, with a zero entry for every type and gauged window,
    so a type that stops occurring reads 0 closed rather than its last value. Each incident
    comes with its facts (distinct, as memory keeps them): the same test of "ordered again"
    and "complained again" as the outcome record's, without building the record — this runs
    over every incident followed, on the service's event loop."""
    gauged = [(days, timedelta(days=days)) for days in gauge_windows(windows)]
    tallies = {(t.value, days): [0, 0, 0] for t in IncidentType for days, _ in gauged}
    for incident, facts in followed:
        closed = [(days, span) for days, span in gauged
                  if incident.occurred_at + span <= now]
        if not closed:
            continue
        kept = [f for f in facts if f.kind in _COUNTED]
        for days, span in closed:
            inside = {f.kind for f in kept if incident.within(f.at, span)}
            tally = tallies.setdefault((incident.type, days), [0, 0, 0])
            tally[0] += 1
            tally[1] += FactKind.order in inside
            tally[2] += FactKind.complaint in inside
    return {key: Counts(*tally) for key, tally in tallies.items()}


_COUNTED = frozenset({FactKind.order, FactKind.complaint})


def add(into: dict[tuple[str, int], Counts], more: dict[tuple[str, int], Counts]) -> None:
    """Sum `more` into `into` (the counts of one part of the incidents into the whole)."""
    for key, found in more.items():
        had = into.get(key, Counts())
        into[key] = Counts(had.closed + found.closed, had.reordered + found.reordered,
                           had.complained + found.complained)
