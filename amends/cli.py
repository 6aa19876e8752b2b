"""The `amends` command: the local stack, the demo, and (as they grow) the operations tools."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from amends import cli_bench, cli_case, cli_customer, cli_ops, cli_policy, cli_review, stack
from amends.cli_auth import Operator

app = typer.Typer(help="Amends: service recovery on Kafka.", no_args_is_help=True,
                  add_completion=False)
stack_app = typer.Typer(help="The local stack: Kafka and FerretDB on this machine.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(cli_ops.dlq_app, name="dlq")
app.add_typer(cli_policy.policy_app, name="policy")
app.add_typer(cli_review.review_app, name="review")
app.add_typer(cli_customer.customer_app, name="customer")
app.command()(cli_ops.replay)
app.command()(cli_ops.audit)
app.command()(cli_case.case)
app.command("bench")(cli_bench.run_bench)
# Piped output (CI, `make demo | tee`) gets a width that fits the tables.
console = Console(width=None if Console().is_terminal else 140)


def _fail(exc: stack.StackError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


def _status_table() -> Table:
    table = Table(title="local stack")
    for column in ("component", "pid", "address", "answering", "log"):
        table.add_column(column)
    for row in stack.status():
        table.add_row(row.name, str(row.pid or "-"), row.address,
                      "[green]yes[/green]" if row.answering else "[red]no[/red]", str(row.log))
    return table


@stack_app.command("up")
def stack_up(
    services: Annotated[bool, typer.Option(help="also start the three services")] = False,
) -> None:
    """Fetch/build what is missing, start Kafka and FerretDB, wait until they answer."""
    try:
        with console.status("starting the local stack") as status:
            result = stack.up(progress=status.update)
            if services:
                result |= stack.services_up(progress=status.update)
    except stack.StackError as exc:
        raise _fail(exc) from None
    for name, what in result.items():
        console.print(f"{name}: {what}")
    console.print(_status_table())
    _dev_key_hint(stack.dev_credentials(stack.StackSettings()))


def _dev_key_hint(dev: stack.DevCredentials) -> None:
    console.print(
        f"Operator access: the local stack's dev API key (admin, every tenant) is in "
        f"{dev.api_key_file} (mode 600). The amends commands use it when nothing else is "
        "set; for curl or another shell:\n"
        "  [bold]export AMENDS_TOKEN=$(amends stack token)[/bold]\n"
        "  [bold]curl -H \"Authorization: Bearer $AMENDS_TOKEN\" "
        "localhost:8002/v1/whoami[/bold]", highlight=False)


@stack_app.command("token")
def stack_token() -> None:
    """Print the local stack's dev API key (made by `amends stack up`)."""
    path = stack.dev_key_path(stack.StackSettings())
    if not path.exists():
        console.print("[red]error:[/red] no dev key yet: run `amends stack up` first")
        raise typer.Exit(1)
    print(path.read_text().strip())  # bare, for $(amends stack token)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services, Kafka and FerretDB started by `amends stack up` (data is kept)."""
    for name, what in stack.down().items():
        console.print(f"{name}: {what}")


@stack_app.command("status")
def stack_status() -> None:
    """Show what runs, its pid, and whether it answers."""
    console.print(_status_table())


@app.command()
def whoami() -> None:
    """Who the services take you for: the subject, roles and tenant of your credentials."""
    operator = Operator()
    me = operator.whoami()
    console.print(f"{me.subject}: {', '.join(r.name for r in sorted(me.roles)) or 'no role'} "
                  f"in tenant {me.tenant} (by {me.via}, credentials from "
                  f"{operator.credentials.source})", highlight=False)


@app.command()
def demo() -> None:
    """Bring everything up, play a short scenario, and show what happened."""
    from amends.demo import FINE, SCENARIO, play  # noqa: PLC0415 - the Kafka client only when needed

    settings = stack.StackSettings()
    try:
        with console.status("starting the local stack and the services") as status:
            stack.up(settings, progress=status.update)
            stack.services_up(settings, progress=status.update)
            status.update(f"playing the scenario: {len(SCENARIO)} customers, "
                          f"{len(SCENARIO) - len(FINE)} of them let down")
            rows = asyncio.run(play(settings.kafka_bootstrap, settings.mongo_url))
    except stack.StackError as exc:
        raise _fail(exc) from None
    table = Table(title="what happened")
    for column in ("customer", "tier", "what happened", "incident", "decision", "remedies",
                   "apology", "event → apology"):
        table.add_column(column, justify="right" if column == "event → apology" else "left",
                         overflow="fold")
    for row in rows:
        table.add_row(row.customer.rsplit("-", 1)[0], row.tier, row.story, row.incident,
                      row.decision, row.remedies, row.apology,
                      f"{row.event_to_apology_ms:.0f} ms"
                      if row.event_to_apology_ms is not None else "-")
    console.print(table)
    let_down = [r for r in rows if r.incident != "-"]
    apologised = sum(1 for r in rows if r.apology != "-")
    console.print(f"{apologised} of {len(let_down)} customers let down got an apology; "
                  f"{len(rows) - len(let_down)} who were fine got nothing.")
    console.print(
        "Look further: [bold]amends case CUSTOMER[/bold] (e.g. "
        f"{rows[3].customer}), [bold]amends review list[/bold], "
        "[bold]curl localhost:8001/metrics[/bold] (intake; decision 8002, fulfilment 8003), "
        f"logs under {settings.run_dir}.\nThe amends commands act as the local stack's dev "
        "operator (admin); [bold]export AMENDS_TOKEN=$(amends stack token)[/bold] for curl."
        "\nStop everything: [bold]make down[/bold] "
        "(or [bold]amends stack down[/bold]); the data is kept for the next start.")
    if apologised != len(let_down) or len(let_down) != len(SCENARIO) - len(FINE):
        raise typer.Exit(1)
