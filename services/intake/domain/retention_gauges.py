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
from services.intake.domain.aftermath import Aftermath


@dataclass(frozen=True)
class Counts:
    closed: int = 0
    reordered: int = 0
    complained: int = 0


def gauge_windows(windows: Sequence[int]) -> tuple[int, ...]:
    """The windows gauged: all but the longest (the one memory is pruned by)."""
    ordered = sorted(windows)
    return tuple(ordered[:-1])


def retention_counts(records: Iterable[Aftermath], windows: Sequence[int], now: datetime
                     ) -> dict[tuple[str, int], Counts]:
    """(incident type, days) -> counts, with a zero entry for every type and gauged window,
    so a type that stops occurring reads 0 closed rather than its last value."""
    gauged = gauge_windows(windows)
    tallies = {(t.value, days): [0, 0, 0] for t in IncidentType for days in gauged}
    for record in records:
        followed = record.followed
        for days in gauged:
            if followed.occurred_at + timedelta(days=days) > now:
                continue
            outcome = record.window(days)
            tally = tallies.setdefault((followed.type, days), [0, 0, 0])
            tally[0] += 1
            tally[1] += outcome.reordered
            tally[2] += outcome.complained
    return {key: Counts(*tally) for key, tally in tallies.items()}
