"""`amends customer erase ID`: ask decision's admin API to erase a customer's personal data,
wait for intake, decision and fulfilment to report what they touched (audit entries on the
audit topic), and print it. Exits 1 when a service does not report in time."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, ClassVar

import typer
from aiokafka import TopicPartition
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from amends import ops
from amends.cli_auth import Operator
from schemas.audit import AuditEntry, AuditRecorded
from schemas.erasure import erasure_target
from services.common.messaging import kafka_client_options
from services.common.settings import ServiceSettings

console = Console(width=None if Console().is_terminal else 140)
customer_app = typer.Typer(help="A customer's personal data: erase it everywhere.",
                           no_args_is_help=True)
SERVICES = ("intake", "decision", "fulfilment")


class CustomerToolSettings(ServiceSettings):
    """The services' shared `AMENDS_` variables (the broker, its TLS/SASL, the audit
    topic) and where decision's API answers."""

    model_config = SettingsConfigDict(env_prefix="AMENDS_", extra="ignore")
    service_name: ClassVar[str] = "ops"



async def _audit_ends(kafka: ops.Kafka, topic: str) -> dict[TopicPartition, int]:
    consumer = kafka.consumer()
    await consumer.start()
    try:
        partitions = await ops.partitions_of(kafka, topic)
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def wait_for_reports(kafka: ops.Kafka, erasure: str,
                           since: dict[TopicPartition, int], timeout_s: float,
                           progress: Progress | None = None) -> dict[str, AuditEntry]:
    """The services' reports of `erasure` on the audit topic, read from `since` (its
    partitions' offsets), until each
    of the three reported or the time is up."""
    target = erasure_target(erasure)
    reports: dict[str, AuditEntry] = {}
    task = progress.add_task("services reporting", total=len(SERVICES)) if progress else None
    consumer = kafka.consumer()
    await consumer.start()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while len(reports) < len(SERVICES) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batch.values():
                for record in records:
                    try:
                        entry = AuditRecorded.model_validate_json(record.value or b"").data
                    except ValidationError:
                        continue
                    if entry.target == target and entry.after.get("phase") == "done":
                        reports[entry.service] = entry
            if progress is not None and task is not None:
                progress.update(task, completed=len(reports))
    finally:
        await consumer.stop()
    return reports


def report_table(reports: dict[str, AuditEntry]) -> Table:
    table = Table(title="what each service touched")
    for column in ("service", "store", "scrubbed", "deleted"):
        table.add_column(column, justify="left" if column in {"service", "store"} else "right")
    for service in SERVICES:
        entry = reports.get(service)
        if entry is None:
            table.add_row(service, "[red]no report[/red]", "-", "-")
            continue
        scrubbed: dict[str, int] = entry.after.get("scrubbed", {})
        deleted: dict[str, int] = entry.after.get("deleted", {})
        for store in sorted({*scrubbed, *deleted}):
            table.add_row(service, store, str(scrubbed.get(store, 0)),
                          str(deleted.get(store, 0)))
        table.add_row(service, "dead letters", str(entry.after.get("dead_letters", 0)), "-")
        table.add_row(service, "in memory", "-", str(entry.after.get("in_memory", 0)))
    return table


@customer_app.command()
def erase(customer_id: Annotated[str, typer.Argument(help="the customer's id")],
          reason: Annotated[str, typer.Option(help="the ticket or legal basis (no personal "
                                                   "data)")],
          tenant: Annotated[str | None, typer.Option(help="the customer's tenant (default: "
                                                          "the operator's)")] = None,
          timeout: Annotated[float, typer.Option(help="seconds to wait for the three "
                                                      "reports")] = 120.0) -> None:
    """Erase a customer's personal data in every service and dead letter; money records are
    kept under a pseudonym."""
    settings = CustomerToolSettings()
    try:
        kafka = ops.Kafka(settings.kafka_bootstrap, kafka_client_options(settings))
    except ValueError as exc:  # SASL without its credentials
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        since = asyncio.run(_audit_ends(kafka, settings.audit_topic))
    except ValueError as exc:  # no audit topic: no service has started
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    body: dict[str, Any] = {"reason": reason} | ({"tenant": tenant} if tenant else {})
    accepted = Operator().call("decision", "POST", f"/v1/customers/{customer_id}/erasure",
                               body)
    erasure = accepted["erasure_id"]
    console.print(f"erasure [bold]{erasure}[/bold] requested (tenant {accepted['tenant']})",
                  highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        reports = asyncio.run(wait_for_reports(kafka, erasure, since, timeout, progress))
    console.print(report_table(reports))
    missing = [s for s in SERVICES if s not in reports]
    if missing:
        console.print(f"[red]not reported within {timeout:.0f} s:[/red] {', '.join(missing)}")
        raise typer.Exit(1)
    console.print("[green]every service reported[/green]")
