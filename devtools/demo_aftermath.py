"""The demo's closing act (ADR 0019): some of its customers come back after their apology —
they order again, one complains again — and the retention table shows it, read from intake's
aftermath joined with the decisions as `amends report retention` reads them, with a chart.

The windows (7, 30, 90 days) have not closed minutes after the incidents, so the table says
what happened so far, per customer and per remedy, rather than the rates over closed windows
the report gives."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.table import Table

from amends import aftermath_report as report
from amends import retention_chart
from amends import retention_source as source
from schemas import topics
from schemas.common import deterministic_id

# Who comes back, and with what: (order total in EUR) — or a complaint.
REORDERS = {"ana": "38.00", "chloe": "112.00", "dmitri": "54.50", "elena": "23.90",
            "greta": "61.00", "hugo": "19.99", "ines": "75.00"}
COMPLAINS = frozenset({"farid"})


def _customer(customer_id: str, tier: str) -> dict[str, Any]:
    return {"id": customer_id, "tier": tier, "locale": "en",
            "lifetime_value": {"amount": "640.00", "currency": "EUR"},
            "contact": {"email": f"{customer_id.rsplit('-', 1)[0]}@example.org"}}


def events_after(customers: Sequence[tuple[str, str]], now: datetime
                 ) -> list[tuple[str, dict[str, Any]]]:
    """(topic, event) for what the demo's customers (id, tier) do after their apology: an
    order from those in `REORDERS`, a new ticket from those in `COMPLAINS`."""
    out: list[tuple[str, dict[str, Any]]] = []
    for n, (customer_id, tier) in enumerate(customers):
        name = customer_id.rsplit("-", 1)[0]
        at = (now + timedelta(seconds=n)).isoformat()
        who = _customer(customer_id, tier)
        if name in REORDERS:
            data = {"order_id": f"ord-{customer_id}-again", "customer": who, "placed_at": at,
                    "total": {"amount": REORDERS[name], "currency": "EUR"}}
            out.append((topics.ORDERS, _event("order.placed", customer_id, at, data)))
        if name in COMPLAINS:
            data = {"ticket_id": f"tkt-{customer_id}-again", "customer": who,
                    "status": "open", "opened_at": at, "updated_at": at}
            out.append((topics.SUPPORT, _event("support.ticket_updated", customer_id, at,
                                               data)))
    return out


def _event(kind: str, subject: str, at: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": deterministic_id("demo", "after", kind, subject),
            "source": "demo/shop", "type": kind, "time": at, "subject": subject, "data": data}


async def send(kafka_bootstrap: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for topic, event in events:
            await producer.send(topic, json.dumps(event).encode(),
                                key=event["subject"].encode())
        await producer.flush()
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Aftermath:
    rows: list[report.Row]  # the demo's customers' incidents, joined with their decisions
    figures: list[report.Figure]  # by remedy kind, so far
    days: int  # the window shown


async def follow(kafka_bootstrap: str, mongo_url: str, customers: Sequence[tuple[str, str]],
                 since: datetime, now: datetime, *, windows: Sequence[int] = (7, 30, 90),
                 intake_db: str = "amends_intake", decision_db: str = "amends_decision",
                 timeout_s: float = 30.0) -> Aftermath:
    """Send the customers' later events, wait until intake has kept them as facts, and read
    the aftermath back."""
    later = events_after(customers, now)
    await send(kafka_bootstrap, later)
    ids = {c for c, _ in customers}
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [r for r in await source.load(mongo_url, intake_db, decision_db, since, windows)
                if r.aftermath.followed.customer_id in ids]
        facts = sum(r.aftermath.facts for r in rows)
        if facts >= len(later) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    days = min(windows)
    # "So far": every window is read as if it had closed now, which it has not.
    figures = report.figures(rows, windows, now + timedelta(days=max(windows)),
                             ["remedy kind"])
    return Aftermath(rows, report.select(figures, days), days)


def customer_table(found: Aftermath) -> Table:
    table = Table(title="after the amends, so far: who came back", title_justify="left")
    for column, justify in (("customer", "left"), ("incident", "left"), ("remedy", "left"),
                            ("ordered again", "right"), ("value after", "right"),
                            ("complained again", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in sorted(found.rows, key=lambda r: r.aftermath.followed.customer_id):
        outcome = row.aftermath.window(found.days)
        value = sum(outcome.value.values(), Decimal(0))
        table.add_row(row.aftermath.followed.customer_id.rsplit("-", 1)[0],
                      row.aftermath.followed.type, row.remedy, str(outcome.orders),
                      f"{value:.2f} EUR" if outcome.orders else "-",
                      "yes" if outcome.complained else "no")
    return table


def remedy_table(found: Aftermath) -> Table:
    table = Table(title="by remedy, so far", caption=f"95% Wilson intervals; the "
                  f"{found.days}-day window is still open", title_justify="left",
                  caption_justify="left")
    for column, justify in (("remedy", "left"), ("n", "right"), ("ordered again", "right"),
                            ("complained again", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for f in found.figures:
        table.add_row(f.group, str(f.n),
                      f"{f.reorder_rate:.0%} [{f.reorder_ci.low:.0%}, {f.reorder_ci.high:.0%}]",
                      f"{f.complaint_rate:.0%} [{f.complaint_ci.low:.0%}, "
                      f"{f.complaint_ci.high:.0%}]")
    return table


def write_chart(found: Aftermath, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(retention_chart.svg(
        found.figures, found.days, f"The demo's customers after the amends, so far "
        f"({found.days}-day window still open)",
        "bars: the rate; whiskers: its 95% interval (Wilson); n: the demo's incidents"),
        encoding="utf-8")
    return path
