"""A simulator of customers whose coming back depends on the remedy they got: the planted
effect the retention report (and later the experiment report) must recover.

Seeded and deterministic: each customer has one incident, gets one remedy by a fixed share,
and reorders within `days` with that remedy's probability (on a day drawn at random inside
the window), complains again with a fixed probability, and sometimes rates the remedy. It
produces what Amends sees: the incident, a decision for it, and the upstream events after.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from schemas.common import CustomerSnapshot, Money, Tier, deterministic_id
from schemas.decision import Action, Decision, DecisionStatus, RemedyKind, action_key, decision_id
from schemas.incident import Detection, Incident, IncidentType, incident_id
from schemas.upstream import (
    OrderPlaced,
    OrderPlacedEvent,
    SupportTicketUpdated,
    SupportTicketUpdatedEvent,
    TicketStatus,
    UpstreamEvent,
)

# The planted effect: the chance that a customer orders again within the window, by remedy.
REORDER = {RemedyKind.apology: 0.30, RemedyKind.points: 0.45, RemedyKind.voucher: 0.60}
VALUE = {RemedyKind.apology: Decimal(0), RemedyKind.points: Decimal("3.00"),
         RemedyKind.voucher: Decimal("10.00")}


@dataclass
class Simulated:
    incidents: list[Incident] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)  # by incident id
    events: list[UpstreamEvent] = field(default_factory=list)  # in time order
    remedy: dict[str, RemedyKind] = field(default_factory=dict)  # by incident id


def simulate(customers: int, start: datetime, *, seed: int = 20, days: int = 30,
             reorder: Mapping[RemedyKind, float] = REORDER, complain: float = 0.1,
             currency: str = "EUR") -> Simulated:
    rng = random.Random(seed)
    kinds = sorted(reorder, key=lambda k: k.value)
    out = Simulated()
    for n in range(customers):
        customer = CustomerSnapshot(id=f"sim-{seed}-{n:06d}",
                                    tier=rng.choice((Tier.standard, Tier.gold)),
                                    locale=rng.choice(("en", "ro")))
        occurred = start + timedelta(minutes=n)
        order = f"sim-order-{seed}-{n:06d}"
        incident = Incident(
            incident_id=incident_id(IncidentType.delivery_delayed, order, "late_2h"),
            type=IncidentType.delivery_delayed, detection=Detection.proactive,
            customer=customer, occurred_at=occurred, detected_at=occurred + timedelta(minutes=5),
            source="sim", order_id=order, order_value=Money(amount=Decimal(40), currency=currency),
            delay_minutes=150, delay_band="late_2h")
        kind = kinds[n % len(kinds)]
        out.incidents.append(incident)
        out.remedy[incident.incident_id] = kind
        out.decisions[incident.incident_id] = _decision(incident, kind, currency)
        if rng.random() < reorder[kind]:
            at = occurred + timedelta(seconds=rng.randrange(60, days * 86400))
            total = Money(amount=Decimal(rng.randrange(1000, 9000)) / 100, currency=currency)
            out.events.append(OrderPlacedEvent(
                id=deterministic_id("sim", "order", customer.id), source="sim",
                type="order.placed", time=at, subject=customer.id,
                data=OrderPlaced(order_id=f"{order}-again", customer=customer, placed_at=at,
                                 total=total)))
        if rng.random() < complain:
            at = occurred + timedelta(seconds=rng.randrange(60, days * 86400))
            out.events.append(SupportTicketUpdatedEvent(
                id=deterministic_id("sim", "ticket", customer.id), source="sim",
                type="support.ticket_updated", time=at, subject=customer.id,
                data=SupportTicketUpdated(ticket_id=f"sim-ticket-{seed}-{n:06d}",
                                          customer=customer, status=TicketStatus.open,
                                          opened_at=at, updated_at=at)))
    out.events.sort(key=lambda e: (e.time, e.id))
    return out


def _decision(incident: Incident, kind: RemedyKind, currency: str) -> Decision:
    did = decision_id(incident.incident_id)
    value = Money(amount=VALUE[kind], currency=currency)
    actions = [Action(position=0, idempotency_key=action_key(did, 0), kind=RemedyKind.apology,
                      value=Money(amount=Decimal(0), currency=currency))]
    if kind is not RemedyKind.apology:
        actions.append(Action(position=1, idempotency_key=action_key(did, 1), kind=kind,
                              value=value,
                              points=int(VALUE[kind] * 100) if kind is RemedyKind.points
                              else None,
                              amount=value if kind is RemedyKind.voucher else None))
    return Decision(decision_id=did, incident=incident, policy_version="sim",
                    decided_at=incident.detected_at, status=DecisionStatus.approved,
                    actions=actions, total_value=value, goodwill_value=value,
                    explanation="simulated")


def run_simulation(
    customers: Annotated[int, typer.Option(help="simulated customers, one incident each")] = 3000,
    seed: Annotated[int, typer.Option(help="the simulation's seed")] = 7,
    batch: Annotated[int, typer.Option(help="events per consumer batch")] = 500,
    chart: Annotated[Path | None, typer.Option(help="also draw the 30-day figures by remedy, "
                                               "tier and locale as an SVG chart")] = None,
) -> None:
    """Simulated customers whose reordering depends on their remedy, through intake's
    in-memory aftermath and the retention report: the planted effect beside what the report
    recovers, and what the incremental path cost."""
    from amends import aftermath_report as report  # noqa: PLC0415 - the CLI's module
    from services.intake.aftermath import AftermathView  # noqa: PLC0415
    from services.intake.domain.retention_gauges import retention_counts  # noqa: PLC0415

    console = Console(width=None if Console().is_terminal else 140)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    sim = simulate(customers, start, seed=seed)
    view = AftermathView((7, 30, 90))
    began = time.perf_counter()
    view.follow(view.unfollowed(sim.incidents))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("events", total=len(sim.events))
        for first in range(0, len(sim.events), batch):
            part = sim.events[first:first + batch]
            view.keep(view.facts(part))
            progress.advance(task, len(part))
    seconds = time.perf_counter() - began
    figures = report.figures(report.rows(view.records(), sim.decisions), (7, 30, 90),
                             start + timedelta(days=365), ("remedy kind",))
    table = Table(title=f"planted effect vs the report, 30 days ({customers:,} customers, "
                  f"seed {seed})", title_justify="left")
    for name in ("remedy", "planted", "n", "reordered", "95% interval", "inside"):
        table.add_column(name, justify="left" if name == "remedy" else "right")
    for figure in report.select(figures, 30):
        truth = REORDER[RemedyKind(figure.group)]
        ci = figure.reorder_ci
        table.add_row(figure.group, f"{truth:.1%}", f"{figure.n:,}",
                      f"{figure.reorder_rate:.1%}", f"[{ci.low:.1%}, {ci.high:.1%}]",
                      "yes" if ci.low <= truth <= ci.high else "NO")
    console.print(table)
    if chart is not None:
        from amends import retention_chart  # noqa: PLC0415 - the CLI's module

        shown = report.figures(report.rows(view.records(), sim.decisions), (7, 30, 90),
                               start + timedelta(days=365),
                               ("all", "remedy kind", "customer tier", "locale"))
        chart.write_text(retention_chart.svg(
            shown, 30, f"Simulated customers ({customers:,}, seed {seed}): retention 30 "
            "days after the incident"), encoding="utf-8")
        console.print(f"chart: {chart}")
    console.print(f"incremental aftermath: {len(sim.incidents):,} incidents followed, "
                  f"{len(sim.events):,} events in batches of {batch} in {seconds:.2f} s "
                  f"({len(sim.events) / max(seconds, 1e-9):,.0f} events/s, one core)")
    began = time.perf_counter()
    retention_counts(view.followed(), view.windows, start + timedelta(days=80))
    console.print(f"retention gauges (ADR 0019): {len(view):,} incidents counted from memory "
                  f"in {(time.perf_counter() - began) * 1000:,.0f} ms")
