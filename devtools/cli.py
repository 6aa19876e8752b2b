"""The development tools' commands: the local stack, the demo and the benchmark. Run from the
checkout (`python -m devtools ...`, or `make up`, `make demo`, `make bench`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from devtools import bench_cli, customers_sim, experiment_sim, stack

if TYPE_CHECKING:
    from devtools import demo_aftermath

app = typer.Typer(help="Amends' development tools: the local stack, the demo, the benchmark.",
                  no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="The local stack: Kafka, FerretDB and Prometheus on this machine.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.command("bench")(bench_cli.run_bench)
app.command("retention-sim")(customers_sim.run_simulation)
app.command("experiment-sim")(experiment_sim.run_experiment_sim)
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


def _start_prometheus(settings: stack.StackSettings, progress: stack.Progress
                      ) -> tuple[bool, str]:
    """Prometheus is for looking at the stack, not for running it: without it (not installed,
    its port taken) the stack still comes up, and the reason says how to fix it."""
    try:
        return True, stack.start_prometheus(settings, progress)
    except stack.StackError as exc:
        return False, f"[yellow]not started[/yellow]: {exc}"


@stack_app.command("up")
def stack_up(
    services: Annotated[bool, typer.Option(help="also start the three services")] = False,
) -> None:
    """Fetch/build what is missing, start Kafka, FerretDB and Prometheus, wait until they
    answer."""
    settings = stack.StackSettings()
    try:
        with console.status("starting the local stack") as status:
            result = stack.up(settings, progress=status.update)
            if services:
                result |= stack.services_up(settings, progress=status.update)
            _, result["prometheus"] = _start_prometheus(settings, status.update)
    except stack.StackError as exc:
        raise _fail(exc) from None
    for name, what in result.items():
        console.print(f"{name}: {what}", highlight=False)
    console.print(_status_table())
    _dev_key_hint(stack.dev_credentials(stack.StackSettings()))


def _dev_key_hint(dev: stack.DevCredentials) -> None:
    console.print(
        f"Operator access: the local stack's dev API key (admin, every tenant) is in "
        f"{dev.api_key_file} (mode 600). The amends commands use it when nothing else is "
        "set; for curl or another shell:\n"
        f"  [bold]export AMENDS_TOKEN=$({DEV_KEY_COMMAND})[/bold]\n"
        "  [bold]curl -H \"Authorization: Bearer $AMENDS_TOKEN\" "
        f"localhost:{stack.service_ports()['decision']}/v1/whoami[/bold]", highlight=False)


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
    """Stop the services, Prometheus, Kafka and FerretDB started by `stack up` (data is
    kept)."""
    for name, what in stack.down().items():
        console.print(f"{name}: {what}")


@stack_app.command("status")
def stack_status() -> None:
    """Show what runs, its pid, and whether it answers."""
    console.print(_status_table())


@app.command()
def demo() -> None:
    """Bring everything up, play a short scenario, and show what happened."""
    from devtools import demo_aftermath  # noqa: PLC0415 - Kafka when needed
    from devtools.demo import (  # noqa: PLC0415 - Kafka when needed
        FINE,
        SCENARIO,
        customer_link,
        play_on_stack,
    )

    settings = stack.StackSettings()
    ports = stack.service_ports()
    targets: list[stack.ScrapeTarget] = []
    alerts: list[stack.AlertState] = []
    try:
        with console.status("starting the local stack and the services") as status:
            stack.up(settings, progress=status.update)
            stack.services_up(settings, progress=status.update)
            prometheus_runs, prometheus = _start_prometheus(settings, status.update)
            status.update(f"playing the scenario: {len(SCENARIO)} customers, "
                          f"{len(SCENARIO) - len(FINE)} of them let down")
            token = stack.dev_credentials(settings).api_key
            started = datetime.now(UTC)
            rows = asyncio.run(play_on_stack(
                settings.kafka_bootstrap, f"http://127.0.0.1:{ports['fulfilment']}", token))
            status.update("some customers come back: later orders and a complaint")
            after = asyncio.run(demo_aftermath.follow(
                settings.kafka_bootstrap, settings.mongo_url,
                [(r.customer, r.tier) for r in rows if r.incident != "-"],
                started - timedelta(days=2), datetime.now(UTC)))
            if prometheus_runs:
                status.update("waiting for Prometheus to scrape the services")
                targets = _targets_up(settings.prometheus_url)
                alerts = _alerts_after(settings.prometheus_url,
                                       max(t.scraped_at for t in targets))
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
    _pages_hint(rows, settings, ports, customer_link)
    if prometheus_runs:
        console.print(_prometheus_tables(targets, alerts))
        console.print(f"Prometheus: [bold]{settings.prometheus_url}[/bold] (targets, alerts, "
                      "queries; the rules are deploy/prometheus/rules).", highlight=False)
    else:
        console.print(f"Prometheus: {prometheus}", highlight=False)
    console.print(
        "Look further: [bold]amends case CUSTOMER[/bold] (e.g. "
        f"{rows[3].customer}), [bold]amends review list[/bold], "
        f"[bold]curl localhost:{ports['intake']}/metrics[/bold] (intake; decision "
        f"{ports['decision']}, fulfilment {ports['fulfilment']}), "
        f"logs under {settings.run_dir}.\nThe amends commands act as the local stack's dev "
        f"operator (admin); [bold]export AMENDS_TOKEN=$({DEV_KEY_COMMAND})[/bold] for curl."
        "\nStop everything: [bold]make down[/bold]; the data is kept for the next start.")
    _retention(after, settings)
    if apologised != len(let_down) or len(let_down) != len(SCENARIO) - len(FINE):
        raise typer.Exit(1)


def _retention(after: demo_aftermath.Aftermath, settings: stack.StackSettings) -> None:
    """The demo's last word: who came back after the amends, and where the charts are."""
    from devtools import demo_aftermath  # noqa: PLC0415 - Kafka when needed

    console.print(demo_aftermath.customer_table(after))
    console.print(demo_aftermath.remedy_table(after))
    chart = demo_aftermath.write_chart(after, settings.state_dir / "demo-retention.svg")
    console.print(f"Chart: [bold]{chart}[/bold]; over closed windows: [bold]amends report "
                  "retention --chart retention.svg[/bold] (or .png), and the console's "
                  f"Retention page (http://127.0.0.1:{stack.service_ports()['decision']}"
                  "/console/retention).", highlight=False, soft_wrap=True)
    _experiment()


def _experiment() -> None:
    """An experiment's report as `amends experiment report` gives it. The demo's few
    customers cannot fill one (and their windows are open), so its customers are simulated:
    the default policy's commented-out experiment, decided by the real engine, with later
    orders planted by arm (`python -m devtools experiment-sim` sets them beside the truth)."""
    from amends.cli_experiment import table  # noqa: PLC0415 - only at the demo's end
    from devtools.experiment_sim import simulated_report  # noqa: PLC0415

    with console.status("a policy experiment on 3,000 simulated customers"):
        made = simulated_report(3000)
    console.print(table(made))
    console.print("Simulated customers (the demo's own are too few): python -m devtools "
                  "experiment-sim sets the planted effect beside this report.", highlight=False)


def _pages_hint(rows: list[Any], settings: stack.StackSettings, ports: dict[str, int],
                link: Callable[..., str | None]) -> None:
    """Where the pages people use are: one customer's page (as their apology links it) and
    the operations console with how to sign in."""
    env = stack.service_env(settings, {})
    dev = stack.dev_credentials(settings)
    url = link(rows, env["AMENDS_FULFILMENT_CUSTOMER_PAGE_URL"], dev.link_keys,
               stack.DEV_LINK_KID, datetime.now(UTC))
    console.print(f"A customer's page (as their apology links it, valid 30 days):\n  "
                  f"[bold]{url or '- (no apology yet)'}[/bold]", highlight=False,
                  soft_wrap=True)
    console.print(f"The operations console: [bold]http://127.0.0.1:{ports['decision']}/console"
                  f"[/bold]\n  sign in with the dev API key (admin, every tenant): "
                  f"[bold]{DEV_KEY_COMMAND}[/bold] prints it ({dev.api_key_file})",
                  highlight=False, soft_wrap=True)


def _targets_up(url: str, timeout_s: float = 20.0) -> list[stack.ScrapeTarget]:
    """The scrape targets once each is up, or as they are after `timeout_s` (a few scrape
    intervals: a service that just started may have been down at the first scrape)."""
    deadline = time.monotonic() + timeout_s
    while True:
        targets = stack.scrape_targets(url)
        if (targets and all(t.health == "up" for t in targets)) or time.monotonic() > deadline:
            return targets
        time.sleep(0.5)


def _alerts_after(url: str, scraped_at: datetime, timeout_s: float = 10.0
                  ) -> list[stack.AlertState]:
    """The alerts once every rule was evaluated on the scrapes `_targets_up` saw (a target
    down before its service started keeps its alert pending until then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        alerts = stack.alert_states(url)
        if (all(a.evaluated_at >= scraped_at for a in alerts)
                or time.monotonic() > deadline):
            return alerts
        time.sleep(0.5)


def _prometheus_tables(targets: list[stack.ScrapeTarget],
                       alerts: list[stack.AlertState]) -> Columns:
    health = {"up": "[green]up[/green]", "down": "[red]down[/red]"}
    scraped = Table(title="Prometheus: targets")
    for column in ("job", "scrapes", "health"):
        scraped.add_column(column, overflow="fold")
    for target in targets:
        shown = health.get(target.health, target.health)
        scraped.add_row(target.job, target.address,
                        f"{shown} ({target.error})" if target.error else shown)
    states = {"firing": "[red]firing[/red]", "pending": "[yellow]pending[/yellow]"}
    alerting = Table(title="Prometheus: alerts")
    for column in ("alert", "severity", "state"):
        alerting.add_column(column)
    for alert in alerts:
        alerting.add_row(alert.name, alert.severity, states.get(alert.state, alert.state))
    return Columns([scraped, alerting])
