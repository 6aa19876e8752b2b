"""`amends case CUSTOMER`: everything Amends did for one customer, from fulfilment's API."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) if v is not None else "-" for v in row))
    return table


def case(customer: Annotated[str, typer.Argument(help="the customer's id")]) -> None:
    """Show a customer's incidents, decisions, actions, points, vouchers and messages."""
    data = Operator().call("fulfilment", "GET", f"/v1/customers/{quote(customer, safe='')}/case")
    console.print(f"[bold]{customer}[/bold]: {data['points_balance']} points")
    console.print(_table("incidents", ("incident", "type", "detection", "occurred", "summary"), [
        (i["incident_id"], i["type"], i["detection"], i["occurred_at"], i["summary"])
        for i in data["incidents"]]))
    console.print(_table("decisions", ("decision", "status", "policy", "value", "why",
                                       "trace"), [
        (d["decision_id"], d["status"], d["policy_version"],
         f"{d['total_value']['amount']} {d['total_value']['currency']}", d["explanation"],
         d.get("trace_id"))  # `amends trace` draws it
        for d in data["decisions"]]))
    console.print(_table("actions", ("key", "kind", "status", "value", "detail", "at"), [
        (a["idempotency_key"], a["kind"], a["status"],
         f"{a['value']['amount']} {a['value']['currency']}", a["detail"], a["completed_at"])
        for a in data["actions"]]))
    console.print(_table("vouchers", ("code", "value", "status", "expires"), [
        (v["code"], (f"{v['amount']['amount']} {v['amount']['currency']}" if v["amount"]
                     else f"{v['percent']}%"), v["status"], v["expires_at"])
        for v in data["vouchers"]]))
    console.print(_table("messages", ("key", "channel", "locale", "sent"), [
        (m["idempotency_key"], m["channel"], m["locale"], m.get("sent_at"))
        for m in data["messages"]]))
