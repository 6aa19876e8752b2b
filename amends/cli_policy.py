"""`amends policy validate|explain|backtest|schema`: the policy author's tools."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from amends import cli_counterfactual, ops
from amends.cli_ops import OpsSettings
from schemas import topics
from schemas.decision import Action
from schemas.incident import Incident, IncidentDetected
from services.common.adapters.mongo import make_client
from services.common.errors import describe
from services.decision.adapters.storage import open_storage
from services.decision.backtest import Tally, backtest, backtest_generated
from services.decision.domain.engine import decide
from services.decision.domain.experiments import percent
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import Policy, PolicyError, load_policy, policy_json_schema

console = Console(width=None if Console().is_terminal else 140)
policy_app = typer.Typer(
    help="Compensation policies: validate, explain, backtest.", no_args_is_help=True
)
_incident_event: TypeAdapter[IncidentDetected] = TypeAdapter(IncidentDetected)
SCHEMA_PATH = Path("deploy/policy/policy.schema.json")


def _load(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        console.print(f"[red]{exc.path}[/red]: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            console.print(f"  {problem}", highlight=False)
        raise typer.Exit(1) from None


@policy_app.command()
def validate(path: Annotated[Path, typer.Argument(help="the policy file")]) -> None:
    """Check a policy file; problems name the line, the field and what is wrong."""
    policy = _load(path)
    groups = {r.group for r in policy.rules if r.group}
    console.print(
        f"[green]valid[/green]: policy {policy.version} ({policy.currency}), "
        f"{len(policy.rules)} rules in {len(groups)} groups, "
        f"{len(policy.guards.review)} review triggers"
    )
    experiment = policy.experiment
    if experiment is not None:
        shares = [(v.id, v.share) for v in experiment.variants] + (
            [("holdout", experiment.holdout.share)] if experiment.holdout is not None else [])
        state = ("stopped" if experiment.stopped else
                 f"running until {experiment.until.isoformat()}" if experiment.until else
                 "running")
        console.print(
            f"experiment {experiment.id} on rule {experiment.rule} ({state}): "
            + ", ".join(f"{arm} {percent(share)}%" for arm, share in shares),
            highlight=False,
        )


@policy_app.command()
def schema(out: Annotated[Path, typer.Option(help="where to write it")] = SCHEMA_PATH) -> None:
    """Write the policy's JSON Schema (for editors' completion and checks)."""
    out.write_text(json.dumps(policy_json_schema(), indent=2) + "\n")
    console.print(f"wrote {out}")


def _kind(action: Action) -> str:
    return f"{action.kind.value} (restitution)" if action.restitution else action.kind.value


@policy_app.command()
def explain(
    path: Annotated[Path, typer.Argument(help="the policy file")],
    incident: Annotated[str, typer.Option(help="the incident: JSON, or @FILE")],
    at: Annotated[
        str | None,
        typer.Option(help="decide as of this RFC 3339 time (default: the incident's detection)"),
    ] = None,
) -> None:
    """Decide one incident under a policy and show every rule, cap and the explanation."""
    policy = _load(path)
    text = Path(incident[1:]).read_text() if incident.startswith("@") else incident
    try:
        parsed = Incident.model_validate_json(text)
    except ValidationError as exc:
        console.print(f"[red]invalid incident[/red]: {describe(exc)}", highlight=False)
        raise typer.Exit(1) from None
    now = datetime.fromisoformat(at) if at else parsed.detected_at
    decision = decide(parsed, CustomerHistory(), policy, now)
    rules = Table(title=f"rules of policy {policy.version}", title_justify="left")
    for column in ("rule", "applies", "why"):
        rules.add_column(column, overflow="fold")
    for trace in decision.rules:
        rules.add_row(trace.rule_id, "[green]yes[/green]" if trace.matched else "no", trace.reason)
    console.print(rules)
    actions = Table(
        title=f"decision: {decision.status.value}, worth {decision.total_value} "
        f"(goodwill {decision.goodwill_value}, restitution {decision.restitution_value})",
        title_justify="left",
    )
    for column in ("#", "remedy", "value", "what", "rule"):
        actions.add_column(column, overflow="fold")
    for action in decision.actions:
        actions.add_row(
            str(action.position),
            _kind(action),
            str(action.value.amount),
            action.note,
            action.rule_id or "-",
        )
    for n, option in enumerate(decision.offer.options if decision.offer else []):
        for action in option.actions:
            actions.add_row(
                str(action.position),
                f"option {n}: {_kind(action)}",
                str(action.value.amount),
                action.note,
                action.rule_id or "-",
            )
    console.print(actions)
    for cap in decision.caps:
        console.print(f"cap [bold]{cap.cap}[/bold] cut {cap.cut}: {cap.detail}")
    if decision.experiment is not None:
        arm = decision.experiment
        console.print(
            f"experiment [bold]{arm.id}[/bold]: arm [bold]{arm.arm}[/bold] "
            f"(probability {arm.probability}) for rule {arm.rule_id}, sticky for customer "
            f"{parsed.customer.id}",
            highlight=False,
        )
    elif policy.experiment is not None:
        console.print(
            f"experiment {policy.experiment.id}: not applied (rule {policy.experiment.rule} "
            "did not apply, or the experiment is stopped)",
            highlight=False,
        )
    console.print(decision.explanation, highlight=False)


def _from_topic(topic: str, start: str, stop: str | None, progress: Progress) -> list[Incident]:
    settings = OpsSettings()
    task = progress.add_task(f"reading {topic}", total=None)
    values = asyncio.run(
        ops.read_slice(
            settings.kafka,
            topic,
            start=ops.Position.parse(start),
            stop=ops.Position.parse(stop) if stop else None,
            on_total=lambda n: progress.update(task, total=n),
            on_progress=lambda n: progress.advance(task, n),
        )
    )
    incidents = []
    for value in values:
        try:
            incidents.append(_incident_event.validate_json(value).data)
        except ValidationError:
            continue  # not an incident: the consumers dead-letter those
    return sorted(incidents, key=lambda i: i.detected_at)


async def _from_store(db: str, start: datetime | None, stop: datetime | None) -> list[Incident]:
    client = make_client(OpsSettings().mongo_url)
    try:
        decisions, _, _ = await open_storage(client, db)
        found = await decisions.between(start, stop)
    finally:
        await client.close()
    return sorted((d.incident for d in found), key=lambda i: i.detected_at)


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def _comparison(tallies: list[Tally], seconds: float, count: int) -> Table:
    table = Table(
        title=f"backtest of {count:,} incidents in {seconds:.1f} s "
        f"({count / max(seconds, 1e-9):,.0f} incidents/s per policy set)",
        title_justify="left",
    )
    table.add_column("")
    for tally in tallies:
        table.add_column(f"policy {tally.version}", justify="right")
    if len(tallies) == 2:
        table.add_column("change", justify="right")

    def row(label: str, values: list[Decimal | int], money: bool = False) -> None:
        cells = [_money(Decimal(v), tallies[0].currency) if money else f"{v:,}" for v in values]
        if len(values) == 2:
            delta = Decimal(values[0]) - Decimal(values[1])
            cells.append(
                ("+" if delta > 0 else "")
                + (_money(delta, tallies[0].currency) if money else f"{delta:,}")
            )
        table.add_row(label, *cells)

    row("goodwill", [t.goodwill for t in tallies], money=True)
    row("goodwill per incident", [t.goodwill_per_incident for t in tallies], money=True)
    row("restitution", [t.restitution for t in tallies], money=True)
    row("cost (both)", [t.cost for t in tallies], money=True)
    row("held for review", [t.held for t in tallies])
    row("value held", [t.held_value for t in tallies], money=True)
    row("offers", [t.offers for t in tallies])
    row("apology only", [t.apology_only for t in tallies])
    kinds = sorted({k for t in tallies for k in t.remedies})
    for kind in kinds:
        row(f"{kind} (count)", [t.remedies[kind] for t in tallies])
        row(f"{kind} (value)", [t.remedy_value.get(kind, Decimal(0)) for t in tallies], money=True)
    for cap in sorted({c for t in tallies for c in t.caps}):
        row(f"{cap} cap hit", [t.caps[cap] for t in tallies])
    row("cut by caps", [t.cut for t in tallies], money=True)
    return table


@policy_app.command("backtest")
def run_backtest(
    new: Annotated[Path, typer.Argument(help="the policy to try")],
    against: Annotated[Path | None, typer.Option(help="the policy to compare with")] = None,
    topic: Annotated[
        str | None,
        typer.Option(help=f"re-decide the incidents of this topic (e.g. {topics.INCIDENTS})"),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="re-decide the incidents in this decision database (e.g. amends_decision)"
        ),
    ] = None,
    generate: Annotated[
        int | None, typer.Option(help="re-decide this many generated incidents")
    ] = None,
    from_: Annotated[
        str, typer.Option("--from", help="RFC 3339 time, offset or earliest (topic); time (store)")
    ] = "earliest",
    to: Annotated[str | None, typer.Option(help="RFC 3339 time or offset")] = None,
    seed: Annotated[int, typer.Option(help="seed of the generated incidents")] = 7,
    retention: Annotated[bool, typer.Option(
        help="with --store: also estimate the share of customers each policy would have "
             "kept, from the decisions' aftermath in --intake-db (docs/policy.md)")] = False,
    retention_days: Annotated[int, typer.Option(help="the window of --retention")] = 30,
    intake_db: Annotated[str, typer.Option(help="intake's database, for --retention")
                         ] = "amends_intake",
) -> None:
    """Re-decide past incidents under NEW (and OLD) without side effects; compare."""
    policies = [_load(new)] + ([_load(against)] if against else [])
    if sum(x is not None for x in (topic, store, generate)) != 1:
        raise typer.BadParameter("give exactly one of --topic, --store or --generate")
    if retention and store is None:
        raise typer.BadParameter("--retention needs --store: outcomes follow recorded "
                                 "decisions")
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(
        *Progress.get_default_columns()[:1],
        *columns,
        console=console,
        transient=not console.is_terminal,
    ) as progress:
        incidents: Iterable[Incident] = ()
        if generate is not None:
            count = generate
        elif topic is not None:
            read = _from_topic(topic, from_, to, progress)
            incidents, count = read, len(read)
        else:
            assert store is not None
            start_at = None if from_ == "earliest" else datetime.fromisoformat(from_)
            stop_at = datetime.fromisoformat(to) if to else None
            stored = asyncio.run(_from_store(store, start_at, stop_at))
            incidents, count = stored, len(stored)
        task = progress.add_task("deciding", total=count)
        began = time.perf_counter()
        if generate is not None:  # drawn and decided in two processes when that is faster
            tallies = backtest_generated(
                generate,
                policies,
                seed=seed,
                start=datetime(2026, 1, 1, tzinfo=UTC),
                days=max(1, generate // 500),
                currency=policies[0].currency,
                progress=lambda n: progress.advance(task, n),
            )
        else:
            tallies = backtest(incidents, policies, lambda n: progress.advance(task, n))
        seconds = time.perf_counter() - began
    console.print(_comparison(tallies, seconds, count))
    for tally in tallies:
        if tally.arms:
            console.print(_arms(tally))
    if retention and store is not None:
        cli_counterfactual.show(
            console, policies, store, intake_db,
            None if from_ == "earliest" else datetime.fromisoformat(from_),
            datetime.fromisoformat(to) if to else None, retention_days)


def _arms(tally: Tally) -> Table:
    """Per arm of the policy's experiment: how often it applied and what it cost."""
    table = Table(title=f"experiment arms of policy {tally.version} (decisions in which the "
                  "varied rule applied)", title_justify="left")
    for column in ("arm", "decisions", "share", "held", "cost", "cost per decision"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    counted = sum(arm.decisions for arm in tally.arms.values())
    for name, arm in sorted(tally.arms.items()):
        table.add_row(name, f"{arm.decisions:,}", f"{arm.decisions / counted:.1%}",
                      f"{arm.held:,}", _money(arm.cost, tally.currency),
                      _money(arm.cost_per_decision, tally.currency))
    return table
