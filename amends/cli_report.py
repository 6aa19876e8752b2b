"""`amends report retention`: did the amends keep the customer? The incidents' aftermath from
intake's store, joined with their decisions from decision's store (a read of what grows, for
people, never on the hot path), as a table and as CSV or JSON."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from amends import aftermath_report as report
from amends import retention_chart as chart
from amends import retention_source as source
from amends.cli_ops import OpsSettings
from services.intake.settings import IntakeSettings

report_app = typer.Typer(help="Reports on what the amends did for customers.",
                         no_args_is_help=True)
console = Console(width=None if Console().is_terminal else 160)


async def _load(intake_db: str, decision_db: str, since: datetime, windows: Sequence[int]
                ) -> list[report.Row]:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("decisions", total=None)
        return await source.load(OpsSettings().mongo_url, intake_db, decision_db, since,
                                 windows, advance=lambda n: progress.advance(task, n))


def _rate(k: int, n: int, interval: report.Interval) -> str:
    if n == 0:
        return "-"
    return f"{k / n:6.1%} [{interval.low:.1%}, {interval.high:.1%}]"


def table(figures: Sequence[report.Figure], days: int) -> Table:
    currency = next((f.currency for f in figures if f.currency), None) or ""
    out = Table(title=f"retention {days} days after the incident (95% intervals; n: incidents "
                f"whose {days} days have passed)", title_justify="left")
    for name, justify in (("by", "left"), ("group", "left"), ("n", "right"),
                          ("reordered", "right"), (f"value after ({currency})", "right"),
                          ("complained again", "right")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    shown = None
    for f in figures:
        if f.days != days:
            continue
        out.add_row(f.dimension if f.dimension != shown else "", f.group, f"{f.n:,}",
                    _rate(f.reordered, f.n, f.reorder_ci),
                    (f"{f.value_mean:.2f} [{f.value_low:.2f}, {f.value_high:.2f}]"
                     if f.n else "-"),
                    _rate(f.complained, f.n, f.complaint_ci),
                    end_section=False)
        shown = f.dimension
    return out


def export(figures: Sequence[report.Figure], csv_path: Path | None,
           json_path: Path | None) -> None:
    write_rows([f.as_dict() for f in figures], csv_path, json_path, first="dimension")


def write_rows(rows: Sequence[Mapping[str, object]], csv_path: Path | None,
               json_path: Path | None, *, first: str) -> None:
    """A report's rows as CSV and/or JSON (`first`: the CSV header when there are none)."""
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [first])
            writer.writeheader()
            writer.writerows(rows)
        console.print(f"CSV: {csv_path}")
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        console.print(f"JSON: {json_path}")


@report_app.command()
def retention(
    since_days: Annotated[int, typer.Option(help="incidents of the last this many days")] = 180,
    window: Annotated[int | None, typer.Option(
        help="the window shown in the table (days; default: the middle one of the "
             "settings' windows)")] = None,
    by: Annotated[list[str] | None, typer.Option(
        help=f"dimensions, any of: {', '.join(report.DIMENSIONS)}")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="write every figure, every "
                                                  "window, as CSV")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="the same as JSON")] = None,
    chart_path: Annotated[Path | None, typer.Option(
        "--chart", help="draw the table's window as a chart: .svg, or .png (drawn by the "
                        "system's Chromium)")] = None,
    intake_db: Annotated[str, typer.Option(help="intake's database")] = "amends_intake",
    decision_db: Annotated[str, typer.Option(help="decision's database")] = "amends_decision",
) -> None:
    """Reorder rate, value after and repeat-complaint rate after incidents, by incident type,
    remedy kind and size, customer tier, locale, detection and time to apology."""
    windows = IntakeSettings().aftermath_windows_days
    days = window or windows[len(windows) // 2]
    if days not in windows:
        raise typer.BadParameter(f"{days} is not one of the windows {windows}")
    dimensions = by or list(report.DIMENSIONS)
    unknown = sorted(set(dimensions) - set(report.DIMENSIONS))
    if unknown:
        raise typer.BadParameter(f"unknown dimensions {unknown}")
    now = datetime.now(UTC)
    rows = asyncio.run(_load(intake_db, decision_db, now - timedelta(days=since_days),
                             windows))
    figures = report.figures(rows, windows, now, dimensions)
    console.print(table(figures, days))
    export(figures, csv_path, json_path)
    if chart_path is not None:
        draw(figures, days, chart_path)


def draw(figures: Sequence[report.Figure], days: int, path: Path) -> None:
    """The chart of one window, as SVG or PNG by the path's suffix."""
    suffix = path.suffix.lower()
    if suffix not in {".svg", ".png"}:
        raise typer.BadParameter(f"a chart is .svg or .png, not {path.name}")
    document = chart.svg(figures, days)
    if suffix == ".svg":
        path.write_text(document, encoding="utf-8")
    else:
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise typer.BadParameter("a PNG needs Chromium on the PATH (make tools); "
                                     "an .svg needs nothing")
        path.write_bytes(asyncio.run(chart.png(document, browser)))
    console.print(f"chart: {path}")
