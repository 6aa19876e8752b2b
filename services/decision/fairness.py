"""The nightly fairness check (ADR 0019): decision compares the goodwill it granted across
locales, tiers and tenants for similar incidents (`domain/fairness.py`), publishes each
finding as an `amends.fairness.flagged` event and sets `amends_fairness_findings`.

Once a day, at the first sweep past `fairness_hour` on the injected clock. It reads the last
`fairness_days` of decisions: a read of what grows, once a night, off the hot path. A finding's
id is made from the day and the comparison, so a check run again the same day (a restart, or
`amends report fairness --publish`) publishes the same events under the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry, Gauge

from schemas.common import Money, deterministic_id
from schemas.fairness import FairnessFinding, FairnessFlagged
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.messaging import Publisher, outgoing
from services.decision.domain import fairness
from services.decision.ports import Decisions
from services.decision.service import DecisionService
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

CENTS = Decimal("0.01")


class FairnessMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.findings = Gauge("amends_fairness_findings",
                              "Groups the last fairness check found treated differently from "
                              "similar incidents' others, by dimension", ["dimension"],
                              registry=registry)
        self.compared = Gauge("amends_fairness_compared",
                              "Decisions the last fairness check compared", registry=registry)
        self.checked = Gauge("amends_fairness_last_check_timestamp_seconds",
                             "When the last fairness check ran (the service's clock)",
                             registry=registry)


def finding(comparison: fairness.Comparison, *, day: date, since: datetime,
            tolerance: Decimal) -> FairnessFinding:
    c = comparison
    return FairnessFinding(
        finding_id=deterministic_id("fairness", day.isoformat(), c.incident_type, c.band,
                                    c.currency, c.dimension, c.group),
        checked_on=day, since=since, incident_type=c.incident_type, band=c.band,
        dimension=c.dimension,  # type: ignore[arg-type]
        group=c.group, n=c.n, mean_grant=Money(amount=c.mean.quantize(CENTS),
                                               currency=c.currency),
        others_n=c.others_n,
        others_mean_grant=Money(amount=c.others_mean.quantize(CENTS), currency=c.currency),
        ratio=fairness.ratio_text(c.ratio), tolerance=str(tolerance))


def flagged_events(found: Sequence[fairness.Comparison], *, now: datetime, since: datetime,
                   tolerance: Decimal, source: str) -> list[FairnessFlagged]:
    events = []
    for c in found:
        data = finding(c, day=now.date(), since=since, tolerance=tolerance)
        events.append(FairnessFlagged(id=data.finding_id, source=source, time=now,
                                      subject=f"{c.dimension}:{c.group}", data=data))
    return events


class FairnessCheck:
    def __init__(self, settings: DecisionSettings, store: Decisions, publisher: Publisher,
                 clock: Clock, metrics: FairnessMetrics) -> None:
        self.settings, self.store, self.publisher = settings, store, publisher
        self.clock, self.metrics = clock, metrics
        self.last_day: date | None = None

    async def run(self) -> list[fairness.Comparison]:
        """Compare, publish the findings, set the gauges; every comparison, flagged or not."""
        s = self.settings
        now = self.clock()
        since = now - timedelta(days=s.fairness_days)
        granted = fairness.granted(await self.store.between(since, None))
        comparisons = fairness.compare(granted, tolerance=s.fairness_tolerance,
                                       min_decisions=s.fairness_min_decisions,
                                       flag=s.fairness_flag)
        found = fairness.findings(comparisons)
        events = flagged_events(found, now=now, since=since, tolerance=s.fairness_tolerance,
                                source="amends/decision/fairness")
        if events:
            await self.publisher.publish_all([outgoing(s.findings_topic, e) for e in events])
        for dimension in fairness.DIMENSIONS:
            self.metrics.findings.labels(dimension).set(
                sum(1 for c in found if c.dimension == dimension))
        self.metrics.compared.set(len(granted))
        self.metrics.checked.set(now.timestamp())
        log.info("fairness check: %d decisions compared, %d findings", len(granted), len(found))
        return comparisons

    async def nightly(self) -> bool:
        """Run when the day's hour has come and today's check has not run here yet."""
        now = self.clock()
        if now.hour < self.settings.fairness_hour or self.last_day == now.date():
            return False
        await self.run()
        self.last_day = now.date()
        return True


def install_fairness(runtime: Runtime, settings: DecisionSettings,
                     service: DecisionService) -> FairnessCheck:
    """The nightly check on the service's own store, publisher and clock."""
    check = FairnessCheck(settings, service.store, runtime.publisher, runtime.clock,
                          FairnessMetrics(runtime.registry))

    async def sweep() -> None:
        check.store = service.store  # the adapter the lifespan chose
        await check.nightly()

    runtime.every(settings.fairness_sweep_seconds, sweep, name="fairness-nightly")
    return check
