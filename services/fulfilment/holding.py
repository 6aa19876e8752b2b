"""Remedies held for an outage's abort window, in memory (ADR 0015): each held decision at the
newest revision received, released when its window ends. Nothing is read from the store on
the way (FerretDB scans on every read, ADR 0003); what a restart loses is taken up again by
one scan at start (`FulfilmentService.recall_held`), and releasing twice adds nothing, as
every effect is kept under its action's key.

It also counts, per outage, how its decisions stand (held, released, cancelled by an abort or
a change): the progress `amends outage progress` shows. Outages are few; the oldest are
forgotten past `OUTAGES_KEPT`."""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as Count

from schemas.decision import Decision, RemedyKind
from services.common.messaging import Record

OUTAGES_KEPT = 200


class HoldMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.held = Gauge("amends_held_decisions",
                          "Decisions whose remedies wait for their outage's abort window",
                          registry=registry)
        self.moved = Count("amends_outage_decisions_total",
                           "Outage decisions by what became of their held remedies",
                           ["state"], registry=registry)


def holds_anything(decision: Decision) -> bool:
    """Whether a revision still has anything for the window to hold back: a remedy, or an
    apology the policy makes wait."""
    hold = decision.hold
    return hold is not None and any(a.kind is not RemedyKind.apology or hold.apology
                                    for a in decision.actions)


@dataclass
class Held:
    """The held decisions by id, with a queue by the end of their window."""

    metrics: HoldMetrics | None = None
    _held: dict[str, tuple[Decision, Record]] = field(default_factory=dict)
    _queue: list[tuple[datetime, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _progress: dict[str, Counter[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._held

    def hold(self, decision: Decision, record: Record, *, again: bool = False) -> None:
        """Hold a revision's remedies (a newer revision replaces an older one; one that
        holds nothing any more cancels them). `again`: taken out by `due` and not issued."""
        assert decision.hold is not None
        did = decision.decision_id
        known = self._held.get(did)
        if known is not None and known[0].revision >= decision.revision:
            return
        if not holds_anything(decision):
            if known is not None:
                del self._held[did]
                self._moved(decision, "cancelled")
            return
        if known is None and not again:
            self._moved(decision, "held")
        self._held[did] = (decision, record)
        heapq.heappush(self._queue, (decision.hold.until, next(self._seq), did))
        self._gauge()

    def due(self, now: datetime, limit: int) -> list[tuple[Decision, Record]]:
        """Up to `limit` decisions whose window has ended, taken out: the caller issues
        their remedies (and holds them again if it cannot)."""
        found: list[tuple[Decision, Record]] = []
        while self._queue and len(found) < limit and self._queue[0][0] <= now:
            until, _, did = heapq.heappop(self._queue)
            known = self._held.get(did)
            if known is None or known[0].hold is None or known[0].hold.until != until:
                continue  # replaced by a newer revision, or cancelled
            del self._held[did]
            found.append(known)
        self._gauge()
        return found

    def released(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            self._moved(decision, "released")

    def progress(self, outage_id: str) -> dict[str, int]:
        """How an outage's decisions stand: held, released, cancelled, and all held so far."""
        counts = self._progress.get(outage_id, Counter())
        return {state: counts[state] for state in ("decisions", "held", "released",
                                                   "cancelled")}

    def ends(self, outage_id: str) -> datetime | None:
        """When the first of the outage's held remedies go out (None: none held here)."""
        return min((d.hold.until for d, _ in self._held.values()
                    if d.incident.outage_id == outage_id and d.hold is not None),
                   default=None)

    def _moved(self, decision: Decision, state: str) -> None:
        if self.metrics is not None:
            self.metrics.moved.labels(state).inc()
        outage = decision.incident.outage_id
        if outage is None:
            return
        counts = self._progress.setdefault(outage, Counter())
        if state == "held":
            counts["decisions"] += 1
            counts["held"] += 1
        else:
            counts["held"] -= 1
            counts[state] += 1
        while len(self._progress) > OUTAGES_KEPT:
            del self._progress[next(iter(self._progress))]

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.held.set(len(self._held))
