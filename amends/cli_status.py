"""`amends status-post ...`: the public status posts through decision's API — list them (or
only those held for approval) and approve one as drafted, as the operator the credentials
name (role reviewer; the approval is audited)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from amends.cli_auth import Operator

console = Console(width=None if Console().is_terminal else 140)
status_app = typer.Typer(help="Public status posts: list, show, approve.",
                         no_args_is_help=True)


def _call(method: str, path: str) -> Any:
    return Operator().call("decision", method, path, None)


def _state(post: dict[str, Any]) -> str:
    if post.get("approved_by"):
        return f"approved by {post['approved_by']}"
    return "awaiting approval" if post.get("approval_required") else "no approval needed"


@status_app.command("list")
def list_posts(awaiting: Annotated[bool, typer.Option(
        "--awaiting", help="only those held for approval")] = False) -> None:
    """Status posts, newest first (with --awaiting, only those held for approval)."""
    posts = _call("GET", f"/v1/status-posts?awaiting={str(awaiting).lower()}")["posts"]
    table = Table(title=f"{len(posts)} status post(s)", title_justify="left")
    for column in ("post", "outage", "stage", "title (en)", "state", "drafted"):
        table.add_column(column, overflow="fold")
    for post in posts:
        title = next((d["title"] for d in post["drafts"] if d["locale"] == "en"),
                     post["drafts"][0]["title"])
        table.add_row(post["post_id"], post["subject_id"], post["stage"], title,
                      _state(post), post["drafted_at"])
    console.print(table)


@status_app.command()
def show(post: Annotated[str, typer.Argument(help="the post id")]) -> None:
    """A post's drafts in every locale."""
    posts = _call("GET", "/v1/status-posts")["posts"]
    found = next((p for p in posts if p["post_id"] == post), None)
    if found is None:
        console.print(f"[red]no status post {post}[/red]")
        raise typer.Exit(1)
    console.print(f"[bold]{found['post_id']}[/bold] ({found['subject_id']}, "
                  f"{found['stage']}): {_state(found)}", highlight=False)
    for draft in found["drafts"]:
        console.print(f"\n[bold]{draft['locale']}[/bold]: {draft['title']}", highlight=False)
        console.print(draft["body"], highlight=False)


@status_app.command()
def approve(post: Annotated[str, typer.Argument(help="the post id")]) -> None:
    """Approve a held post as drafted: it goes to the status page."""
    approved = _call("POST", f"/v1/status-posts/{post}/approve")
    console.print(f"[green]approved[/green]: {approved['post_id']} ({approved['subject_id']}"
                  f", {approved['stage']}) by {approved['approved_by'] or '-'}",
                  highlight=False)
