"""`amends report fairness`: the nightly fairness check on demand (ADR 0019). The decisions
of the last days from decision's store, every comparison as a table (findings first), CSV or
JSON, and with `--publish` the findings as events on the findings topic, under the same ids
as the service's check of the same day."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from amends.cli_ops import OpsSettings
from services.common.adapters.mongo import make_client
from services.common.messaging import outgoing
from services.decision.adapters.storage import open_storage
from services.decision.domain import fairness
from services.decision.fairness import flagged_events
from services.decision.settings import DecisionSettings

console = Console(width=None if Console().is_terminal else 160)


async def _decisions(db: str, since: datetime) -> list[fairness.Granted]:
    client = make_client(OpsSettings().mongo_url)
    try:
        store, _, _ = await open_storage(client, db)
        with console.status(f"reading the decisions since {since:%Y-%m-%d}"):
            return fairness.granted(await store.between(since, None))
    finally:
        await client.close()


def table(comparisons: Sequence[fairness.Comparison], tolerance: Decimal,
          flagged_only: bool) -> Table:
    out = Table(title=f"grant per decision by locale, tier and tenant, against the rest of "
                f"the same incident type and severity band (tolerance {tolerance:.0%})",
                title_justify="left")
    for name, justify in (("type", "left"), ("band", "left"), ("by", "left"),
                          ("group", "left"), ("n", "right"), ("mean grant", "right"),
                          ("others n", "right"), ("others' mean", "right"),
                          ("ratio", "right"), ("95% ± of the difference", "right"),
                          ("finding", "left")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    ordered = sorted(comparisons, key=lambda c: (not c.flagged, c.incident_type, c.band,
                                                 c.dimension, c.group))
    for c in ordered:
        if flagged_only and not c.flagged:
            continue
        out.add_row(c.incident_type, c.band, c.dimension, c.group, f"{c.n:,}",
                    f"{c.mean:.2f} {c.currency}", f"{c.others_n:,}",
                    f"{c.others_mean:.2f} {c.currency}", fairness.ratio_text(c.ratio),
                    f"{c.half_width:.2f}", "[red]flagged[/red]" if c.flagged else "",
                    style=None if c.flagged else "dim")
    return out


def rows(comparisons: Sequence[fairness.Comparison]) -> list[dict[str, object]]:
    return [{"incident_type": c.incident_type, "band": c.band, "currency": c.currency,
             "dimension": c.dimension, "group": c.group, "n": c.n,
             "mean_grant": str(c.mean.quantize(Decimal("0.01"))), "others_n": c.others_n,
             "others_mean_grant": str(c.others_mean.quantize(Decimal("0.01"))),
             "ratio": fairness.ratio_text(c.ratio),
             "half_width": str(c.half_width.quantize(Decimal("0.01"))), "flagged": c.flagged}
            for c in comparisons]


async def _publish(found: Sequence[fairness.Comparison], topic: str, *, now: datetime,
                   since: datetime, tolerance: Decimal) -> int:
    events = flagged_events(found, now=now, since=since, tolerance=tolerance,
                            source="amends/cli/fairness")
    producer = OpsSettings().kafka.producer(enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            message = outgoing(topic, event)
            await producer.send_and_wait(topic, message.value, key=message.key.encode())
    finally:
        await producer.stop()
    return len(events)


def fairness_report(
    days: Annotated[int | None, typer.Option(help="decisions of the last this many days "
                                             "(default: the service's fairness_days)")] = None,
    tolerance: Annotated[float | None, typer.Option(help="relative difference allowed "
                                                    "(default: the service's)")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="every comparison, not only the "
                                           "findings")] = False,
    publish: Annotated[bool, typer.Option(help="publish the findings as events, as the "
                                          "nightly check does")] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="every comparison as CSV")
                        ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="the same as JSON")] = None,
    decision_db: Annotated[str, typer.Option(help="decision's database")] = "amends_decision",
) -> None:
    """Similar incidents (one type and severity band) treated differently across locales,
    tiers and tenants: mean goodwill per decision against the rest, beyond the tolerance and
    beyond chance."""
    settings = DecisionSettings()
    limit = Decimal(str(tolerance)) if tolerance is not None else settings.fairness_tolerance
    now = datetime.now(UTC)
    since = now - timedelta(days=days or settings.fairness_days)
    granted = asyncio.run(_decisions(decision_db, since))
    comparisons = fairness.compare(granted, tolerance=limit,
                                   min_decisions=settings.fairness_min_decisions,
                                   flag=settings.fairness_flag)
    found = fairness.findings(comparisons)
    console.print(table(comparisons, limit, flagged_only=not all_rows))
    console.print(f"{len(granted):,} decisions compared; {len(found)} findings "
                  f"(flagged dimensions: {', '.join(settings.fairness_flag)}; at least "
                  f"{settings.fairness_min_decisions} decisions on each side).")
    exported = rows(comparisons)
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=list(exported[0]) if exported
                                    else ["dimension"])
            writer.writeheader()
            writer.writerows(exported)
        console.print(f"CSV: {csv_path}")
    if json_path is not None:
        json_path.write_text(json.dumps(exported, indent=2) + "\n", encoding="utf-8")
        console.print(f"JSON: {json_path}")
    if publish and found:
        sent = asyncio.run(_publish(found, settings.findings_topic, now=now, since=since,
                                    tolerance=limit))
        console.print(f"published {sent} findings to {settings.findings_topic}")
