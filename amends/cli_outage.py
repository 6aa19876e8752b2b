"""`amends outage ...`: an outage's cost preview (customers affected, remedies by kind,
what they cost against the outage's budget and the day's) and what its budget paid so far;
its abort window (abort or change its remedies while they are held); its progress. Through
decision's and fulfilment's APIs, as the operator the credentials name."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)
outage_app = typer.Typer(help="Outages: cost preview, abort window, progress: show, abort, "
                         "change, progress.", no_args_is_help=True)


def _money(money: dict[str, str]) -> str:
    return f"{money['amount']} {money['currency']}"


def tables(cost: dict[str, Any]) -> list[Table]:
    """The preview as two tables: the remedies by kind, then the sums against the budgets."""
    preview = cost["preview"]
    tiers = ", ".join(f"{tier} {n}" for tier, n in preview["tiers"].items())
    remedies = Table(title=f"Outage {preview['outage_id']}: {preview['affected_customers']} "
                           f"customers affected ({tiers})", title_justify="left")
    for column in ("remedy", "customers", "money equivalent"):
        remedies.add_column(column, justify="left" if column == "remedy" else "right")
    for remedy in preview["remedies"]:
        remedies.add_row(remedy["kind"], str(remedy["customers"]), _money(remedy["value"]))
    sums = Table(title=f"Policy {preview['policy_version']}, partial grants: "
                       f"{preview['partial']}", title_justify="left")
    sums.add_column("")
    sums.add_column("amount", justify="right")
    shares = ", ".join(f"{tier} {_money(m)}" for tier, m in preview["shares"].items())
    for label, value in (
            ("at the policy's full amounts", _money(preview["full_cost"])),
            ("granted (within the outage budget)", _money(preview["total"])),
            ("outage budget", _money(preview["outage_budget"])),
            ("grants scaled", "yes" if preview["scaled"] else "no"),
            ("most per customer, by tier", shares),
            ("today's budget (not drawn on)", _money(preview["daily_budget"])),
            ("left of it when previewed", _money(preview["daily_remaining"])),
            (f"paid so far ({cost['decisions_paid']} decisions)", _money(cost["spent"])),
            ("left of the outage budget", _money(cost["left"]))):
        sums.add_row(label, value)
    return [remedies, sums]


@outage_app.command()
def show(outage: Annotated[str, typer.Argument(help="the outage id")]) -> None:
    """An outage's cost preview and its budget's use."""
    cost = Operator().call("decision", "GET", f"/v1/outages/{outage}")
    for table in tables(cost):
        console.print(table)


OutageArg = Annotated[str, typer.Argument(help="the outage id (as upstream declared it)")]
Reason = Annotated[str, typer.Option(help="why, for the record")]


def _amended(result: dict[str, Any], what: str) -> None:
    table = Table(title=f"outage {result['outage_id']}: {what}", title_justify="left")
    for column in ("revised", "unchanged", "awaiting a reviewer", "budget given back"):
        table.add_column(column, justify="right")
    table.add_row(str(result["revised"]), str(result["unchanged"]),
                  str(result["held_for_review"]), f"{result['released']} {result['currency']}")
    console.print(table)


@outage_app.command()
def abort(outage: OutageArg, reason: Reason) -> None:
    """Abort the outage's remedies inside its window: only the apology goes out."""
    _amended(Operator().call("decision", "POST", f"/v1/outages/{outage}/abort",
                             {"reason": reason}), "remedies aborted")


@outage_app.command()
def change(outage: OutageArg, reason: Reason,
           points: Annotated[int | None, typer.Option(
               help="points per customer, at most what was decided")] = None,
           amount: Annotated[str | None, typer.Option(
               help="the amount per customer of a voucher, store credit or gift")] = None,
           apology_only: Annotated[bool, typer.Option(
               help="no remedy: only the apology")] = False) -> None:
    """Change the outage's remedies inside its window (never above what was decided)."""
    body: dict[str, Any] = {"reason": reason, "apology_only": apology_only}
    if points is not None:
        body["points"] = points
    if amount is not None:
        body["amount"] = amount
    _amended(Operator().call("decision", "POST", f"/v1/outages/{outage}/change", body),
             "remedies changed")


@outage_app.command()
def progress(outage: OutageArg,
             follow: Annotated[bool, typer.Option(
                 help="keep showing it until nothing is held")] = True,
             every: Annotated[float, typer.Option(help="seconds between looks")] = 1.0
             ) -> None:
    """The outage's abort window, and how its held remedies are being issued (a progress
    bar while they go out at the providers' pace)."""
    operator = Operator()
    window = operator.call("decision", "GET", f"/v1/outages/{outage}/window")
    ends = window["window_ends"] or "no window"
    state = "open: abort or change it before then" if window["open"] else "closed"
    console.print(f"outage {outage}: {window['decisions']} decision(s); window ends {ends} "
                  f"({state}); aborted {window['aborted']}, changed {window['changed']}",
                  highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), console=console) as bar:
        task = bar.add_task("remedies issued", total=None, detail="")
        while True:
            seen = operator.call("fulfilment", "GET", f"/v1/outages/{outage}/progress")
            done = seen["released"] + seen["cancelled"]
            bar.update(task, total=seen["decisions"] or None, completed=done,
                       detail=f"held {seen['held']}, cancelled {seen['cancelled']}")
            if not follow or (seen["decisions"] and seen["held"] == 0):
                break
            time.sleep(every)
