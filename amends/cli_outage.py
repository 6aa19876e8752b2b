"""`amends outage show ID`: an outage's cost preview (customers affected, remedies by kind,
what they cost against the outage's budget and the day's) and what its budget paid so far,
through decision's API as the operator the credentials name."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)
outage_app = typer.Typer(help="Outages: their cost preview and budget.", no_args_is_help=True)


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
