"""`amends experiment report|stop|promote`: did an experiment's arms keep customers, and
ending it (ADR 0018). The report reads the stores as `amends report retention` does; stop and
promote write the policy's next version as a new file, validated, for review and deploy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from amends import cli_report, retention_source
from amends import experiment_report as er
from amends.cli_ops import OpsSettings
from services.common.adapters.mongo import make_client
from services.decision.domain.policy import PolicyError, parse_policy
from services.decision.domain.promotion import promoted, stopped
from services.intake.settings import IntakeSettings

experiment_app = typer.Typer(help="Policy experiments: report, stop, promote a winner.",
                             no_args_is_help=True)
console = Console(width=None if Console().is_terminal else 160)


async def _members(experiment_id: str, intake_db: str, decision_db: str, since: datetime,
                   windows: Sequence[int]) -> list[er.Member]:
    client = make_client(OpsSettings().mongo_url)
    try:
        aftermaths = await retention_source.aftermaths(client, intake_db, since, windows)
        decisions = await retention_source.decisions(
            client, decision_db, [a.followed.incident_id for a in aftermaths])
    finally:
        await client.close()
    return er.members(experiment_id, aftermaths, decisions)


def _rate(rate: float, low: float, high: float) -> str:
    return f"{rate:.1%} [{low * 100:.1f}, {high * 100:.1f}]"


def table(made: er.ExperimentReport) -> Table:
    currency = next((a.currency for a in made.arms if a.currency), None) or ""
    out = Table(title=f"experiment {made.experiment_id}: {made.days} days after the incident "
                f"(95% intervals; vs {made.control or '-'}: two-proportion z-test, Newcombe "
                "interval, Holm-adjusted p)", title_justify="left")
    for name in ("arm", "share", "n", "reordered", f"value after ({currency})",
                 "complained again", f"cost ({currency})", "per retained",
                 f"vs {made.control or 'control'} (points)", "p", "significant",
                 "per extra kept"):
        out.add_column(name, justify="left" if name == "arm" else "right")
    compared = {c.arm: c for c in made.comparisons}
    for a in made.arms:
        c = compared.get(a.arm)
        out.add_row(
            a.arm, f"{float(a.probability):.0%}", f"{a.n:,}",
            _rate(a.reorder_rate, a.reorder_ci.low, a.reorder_ci.high),
            f"{a.value_mean:.2f} [{a.value_low:.2f}, {a.value_high:.2f}]",
            _rate(a.complaint_rate, a.complaint_ci.low, a.complaint_ci.high),
            f"{a.cost:,.2f}",
            f"{a.cost_per_retained:,.2f}" if a.cost_per_retained is not None else "-",
            f"{c.difference * 100:+.1f} [{c.ci.low * 100:+.1f}, {c.ci.high * 100:+.1f}]"
            if c else "control",
            f"{c.p_holm:.2g}" if c else "-",
            ("yes" if c.significant else "no") if c else "-",
            f"{c.extra_cost_per_retained:,.2f}" if c and c.extra_cost_per_retained is not None
            else "-")
    return out


def export(made: er.ExperimentReport, csv_path: Path | None, json_path: Path | None) -> None:
    cli_report.write_rows(made.rows(), csv_path, json_path, first="arm")


@experiment_app.command()
def report(
    experiment_id: Annotated[str, typer.Argument(metavar="ID", help="the experiment's id")],
    window: Annotated[int | None, typer.Option(
        help="days after the incident (default: the middle one of intake's windows)")] = None,
    control: Annotated[str | None, typer.Option(
        help="the arm the others are compared with (default: the holdout, else the arm "
             "that cost least per incident)")] = None,
    since_days: Annotated[int, typer.Option(help="incidents of the last this many days")] = 365,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="write the rows as CSV")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="the same as JSON")] = None,
    intake_db: Annotated[str, typer.Option(help="intake's database")] = "amends_intake",
    decision_db: Annotated[str, typer.Option(help="decision's database")] = "amends_decision",
) -> None:
    """Per arm: incidents, reorder rate, value after, repeat complaints, cost and cost per
    customer kept, and whether the difference to the control is more than chance."""
    windows = IntakeSettings().aftermath_windows_days
    days = window or windows[len(windows) // 2]
    if days not in windows:
        raise typer.BadParameter(f"{days} is not one of the windows {windows}")
    now = datetime.now(UTC)
    found = asyncio.run(_members(experiment_id, intake_db, decision_db,
                                 now - timedelta(days=since_days), windows))
    if not found:
        console.print(f"no decisions recorded an arm of experiment {experiment_id!r} in the "
                      f"last {since_days} days")
        raise typer.Exit(1)
    try:
        made = er.report(experiment_id, found, days, now, control=control)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(table(made))
    if made.open_window:
        console.print(f"{made.open_window:,} incidents of the experiment are younger than "
                      f"{days} days and not counted yet")
    export(made, csv_path, json_path)


PolicyPath = Annotated[Path, typer.Option("--policy", help="the policy running the experiment")]
VersionOpt = Annotated[str, typer.Option("--version", help="the new policy version")]
OutPath = Annotated[Path, typer.Option("--out", help="where to write the new version")]


def _save(text: str, out: Path, policy: Path) -> None:
    if out.resolve() == policy.resolve():
        raise typer.BadParameter("write the new version to a new file (--out): the running "
                                 "version stays as it is until the new one is deployed")
    out.write_text(text, encoding="utf-8")


def _failed(exc: PolicyError) -> typer.Exit:
    console.print(f"[red]{exc.path}[/red]: " + "; ".join(exc.problems), highlight=False)
    return typer.Exit(1)


@experiment_app.command()
def stop(
    experiment_id: Annotated[str, typer.Argument(metavar="ID", help="the experiment's id")],
    policy: PolicyPath, version: VersionOpt, out: OutPath,
    at: Annotated[str | None, typer.Option(
        help="stop from this RFC 3339 time (of the decisions) instead of at once")] = None,
) -> None:
    """Write the policy's next version with the experiment stopped: everyone gets the rule's
    own remedies; decisions already made keep their arms for the report."""
    until = datetime.fromisoformat(at) if at else None
    if until is not None and until.tzinfo is None:
        raise typer.BadParameter("--at needs an offset (e.g. +00:00)")
    try:
        text, made = stopped(policy.read_text(encoding="utf-8"), experiment_id, version,
                             origin=str(policy), until=until)
    except PolicyError as exc:
        raise _failed(exc) from None
    _save(text, out, policy)
    console.print(f"[green]valid[/green]: policy {made.version} written to {out}: experiment "
                  f"{experiment_id} stopped" + (f" from {at}" if at else ""), highlight=False)


@experiment_app.command()
def promote(
    experiment_id: Annotated[str, typer.Argument(metavar="ID", help="the experiment's id")],
    arm: Annotated[str, typer.Argument(help="the winning arm (a variant's id, or holdout)")],
    policy: PolicyPath, version: VersionOpt, out: OutPath,
) -> None:
    """Write the policy's next version in which the experiment's rule grants the winning
    arm's remedies, and the experiment is removed."""
    source = policy.read_text(encoding="utf-8")
    try:
        text, made = promoted(source, experiment_id, arm, version, origin=str(policy))
        running = parse_policy(source, str(policy)).experiment
    except PolicyError as exc:
        raise _failed(exc) from None
    _save(text, out, policy)
    assert running is not None  # promoted() refuses a policy without one
    console.print(f"[green]valid[/green]: policy {made.version} written to {out}: rule "
                  f"{running.rule} grants what arm {arm} granted; experiment {experiment_id} "
                  "removed", highlight=False)
