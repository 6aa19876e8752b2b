"""`amends replies ...`: public replies to negative reviews (ADR 0017), through decision's
API as the operator the credentials name: the queues (the escalated one holds replies past
the SLA's target), one reply's text, and the steps (edit, approve, mark posted). There is no
command that deletes or hides a review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)
replies_app = typer.Typer(help="Public replies to negative reviews: list, show, edit, approve, "
                               "mark posted.", no_args_is_help=True)
QUEUES = ("all", "replies", "escalated", "posted")


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return Operator().call("decision", method, path, body)


def _when(stamp: str | None) -> str:
    return stamp[:16].replace("T", " ") if stamp else "-"


def _show(reply: dict[str, Any]) -> None:
    late = " [bold red]past the limit[/]" if reply["breached"] else (
        " [bold yellow]overdue (escalated)[/]" if reply["overdue"] else "")
    console.print(f"[bold]{reply['reply_id']}[/bold]: {reply['state']}{late}, "
                  f"{reply['rating']}-star review on {reply['platform']} "
                  f"({reply['locale']}), due {_when(reply['due_at'])}")
    console.print(f"review: {reply['review_url']}", highlight=False)
    if reply["public_url"]:
        console.print(f"posted: {reply['public_url']} by {reply['posted_by']}", highlight=False)
    console.print()
    console.print(reply["text"], highlight=False, markup=False)


@replies_app.command("list")
def list_replies(
        queue: Annotated[str, typer.Option(help="all (open), replies, escalated or posted")
                         ] = "all",
        limit: Annotated[int, typer.Option(help="at most this many")] = 200) -> None:
    """The open replies, oldest review first (or the posted ones, newest first)."""
    if queue not in QUEUES:
        raise typer.BadParameter(f"one of {', '.join(QUEUES)}", param_hint="--queue")
    found = _call("GET", f"/v1/replies?queue={queue}&limit={limit}")
    table = Table(title=f"{len(found)} repl{'y' if len(found) == 1 else 'ies'} ({queue})",
                  title_justify="left")
    for column in ("reply", "queue", "state", "review", "rating", "language", "reviewed",
                   "due", "remedies done"):
        table.add_column(column, overflow="fold")
    for r in found:
        state = r["state"] + (" (past the limit)" if r["breached"] else
                              " (overdue)" if r["overdue"] else "")
        table.add_row(r["reply_id"], r["queue"], state, r["platform"], f"{r['rating']}/5",
                      r["locale"], _when(r["review_posted_at"]), _when(r["due_at"]),
                      ", ".join(r["remedies"]) or "apology only")
    console.print(table)


@replies_app.command()
def show(reply: Annotated[str, typer.Argument(help="the reply id")]) -> None:
    """One reply as it stands, with its text."""
    _show(_call("GET", f"/v1/replies/{reply}"))


@replies_app.command()
def edit(reply: Annotated[str, typer.Argument(help="the reply id")],
         text_file: Annotated[Path, typer.Option("--file", exists=True, dir_okay=False,
                                                 help="the new text (UTF-8)")]) -> None:
    """Save a new text for a reply not yet approved."""
    _show(_call("POST", f"/v1/replies/{reply}/edit",
                {"text": text_file.read_text(encoding="utf-8")}))


@replies_app.command()
def approve(reply: Annotated[str, typer.Argument(help="the reply id")]) -> None:
    """Approve the reply's text as it stands (refused if it blames anyone)."""
    _show(_call("POST", f"/v1/replies/{reply}/approve"))


@replies_app.command()
def posted(reply: Annotated[str, typer.Argument(help="the reply id")],
           url: Annotated[str, typer.Option(help="where the reply is public")]) -> None:
    """Mark an approved reply posted at its public address."""
    _show(_call("POST", f"/v1/replies/{reply}/posted", {"public_url": url}))
