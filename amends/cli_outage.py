"""`amends outage ...`: an outage's abort window (abort or change its remedies while they are
held, through decision's API) and its progress (fulfilment's), as the operator the
credentials name."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)
outage_app = typer.Typer(help="An outage's abort window and progress: abort, change, "
                         "progress.", no_args_is_help=True)

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
