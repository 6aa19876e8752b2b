"""The development tools' commands: the local stack, the demo and the benchmark. Run from the
checkout (`python -m devtools ...`, or `make up`, `make demo`, `make bench`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from devtools import bench_cli, stack

app = typer.Typer(help="Amends' development tools: the local stack, the demo, the benchmark.",
                  no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack: Kafka and FerretDB on this machine.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.command("bench")(bench_cli.run_bench)
# Piped output (CI, `make demo | tee`) gets a width that fits the tables.
console = Console(width=None if Console().is_terminal else 140)
DEV_KEY_COMMAND = "python -m devtools stack token"


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
        f"  [bold]export AMENDS_TOKEN=$({DEV_KEY_COMMAND})[/bold]\n"
        "  [bold]curl -H \"Authorization: Bearer $AMENDS_TOKEN\" "
        "localhost:8002/v1/whoami[/bold]", highlight=False)


@stack_app.command("token")
def stack_token() -> None:
    """Print the local stack's dev API key (made by `stack up`)."""
    path = stack.dev_key_path(stack.StackSettings())
    if not path.exists():
        console.print("[red]error:[/red] no dev key yet: run `make up` first")
        raise typer.Exit(1)
    print(path.read_text().strip())  # bare, for $(python -m devtools stack token)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the services, Kafka and FerretDB started by `stack up` (data is kept)."""
    for name, what in stack.down().items():
        console.print(f"{name}: {what}")


@stack_app.command("status")
def stack_status() -> None:
    """Show what runs, its pid, and whether it answers."""
    console.print(_status_table())


@app.command()
def demo() -> None:
    """Bring everything up, play a short scenario, and show what happened."""
    from devtools.demo import FINE, SCENARIO, play_on_stack  # noqa: PLC0415 - Kafka when needed

    settings = stack.StackSettings()
    try:
        with console.status("starting the local stack and the services") as status:
            stack.up(settings, progress=status.update)
            stack.services_up(settings, progress=status.update)
            status.update(f"playing the scenario: {len(SCENARIO)} customers, "
                          f"{len(SCENARIO) - len(FINE)} of them let down")
            token = stack.dev_credentials(settings).api_key
            rows = asyncio.run(play_on_stack(
                settings.kafka_bootstrap, f"http://127.0.0.1:{stack.SERVICES['fulfilment']}",
                token))
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
        f"operator (admin); [bold]export AMENDS_TOKEN=$({DEV_KEY_COMMAND})[/bold] for curl."
        "\nStop everything: [bold]make down[/bold]; the data is kept for the next start.")
    if apologised != len(let_down) or len(let_down) != len(SCENARIO) - len(FINE):
        raise typer.Exit(1)
