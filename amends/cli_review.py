"""`amends review ...`: the review queue and customers' choices, through decision's API, as
the operator the credentials name (`amends.cli_auth`): the reviewer recorded is who they
authenticate as, never a name typed here."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)
review_app = typer.Typer(help="Held decisions and offers: list, approve, reject, choose.",
                         no_args_is_help=True)


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return Operator().call("decision", method, path, body)


def _show(decision: dict[str, Any]) -> None:
    console.print(f"[bold]{decision['decision_id']}[/bold] revision {decision['revision']}: "
                  f"{decision['status']}, worth {decision['total_value']['amount']} "
                  f"{decision['total_value']['currency']}", highlight=False)
    console.print(decision["explanation"], highlight=False)


@review_app.command("list")
def list_held(limit: Annotated[int, typer.Option(help="at most this many")] = 100) -> None:
    """Decisions held for review, oldest first."""
    held = _call("GET", f"/v1/review?limit={limit}")
    table = Table(title=f"{len(held)} decision(s) held for review", title_justify="left")
    for column in ("decision", "customer", "incident", "value", "why held", "approved",
                   "decided"):
        table.add_column(column, overflow="fold")
    for item in held:
        approvals = item.get("approvals") or []
        # Four eyes: who approved so far, of how many approvals it needs.
        approved = f"{len(approvals)}/{item.get('approvals_needed', 1)}" + (
            f" ({', '.join(approvals)})" if approvals else "")
        table.add_row(item["decision_id"], item["customer_id"], item["incident_type"],
                      f"{item['value']} {item['currency']}", item["review_reason"] or "-",
                      approved, item["decided_at"])
    console.print(table)


@review_app.command()
def show(decision: Annotated[str, typer.Argument(help="the decision id")]) -> None:
    """A decision as it stands, with its explanation."""
    _show(_call("GET", f"/v1/decisions/{decision}"))


@review_app.command()
def approve(decision: Annotated[str, typer.Argument(help="the decision id")],
            reason: Annotated[str, typer.Option(help="why, for the record")]) -> None:
    """Approve a held decision: its remedies go out."""
    _show(_call("POST", f"/v1/review/{decision}/approve",
                {"reason": reason}))


@review_app.command()
def reject(decision: Annotated[str, typer.Argument(help="the decision id")],
           reason: Annotated[str, typer.Option(help="why, for the record")]) -> None:
    """Reject a held decision: only the apology goes out."""
    _show(_call("POST", f"/v1/review/{decision}/reject",
                {"reason": reason}))


@review_app.command()
def choose(decision: Annotated[str, typer.Argument(help="the decision id")],
           option: Annotated[int, typer.Argument(help="the chosen option (from 0)")]) -> None:
    """Record a customer's choice for an offer, on their behalf (role support)."""
    _show(_call("POST", f"/v1/offers/{decision}/choice", {"option": option}))


@review_app.command("apply-defaults")
def apply_defaults() -> None:
    """Settle the offers whose deadline passed with their default option."""
    settled = _call("POST", "/v1/offers/apply-defaults")["settled"]
    console.print(f"{settled} offer(s) settled with their default")
