"""`amends replay`, `amends dlq ...` and `amends audit`: the operators' tools for topics.

They reach Kafka with the services' TLS/SASL settings, and act as the operator their
credentials name (`amends.cli_auth`, checked with decision's `GET /v1/whoami`). Topics hold
every tenant's records, so the topic tools need an operator of every tenant: listing dead
letters needs the role viewer, showing one (its payload has the customer's contact details)
support, and a redrive or a replay, which republish into the pipeline, admin; each redrive
and replay is recorded on the audit topic. `amends audit` needs viewer and shows an
operator of one tenant that tenant's entries.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

import typer
from pydantic_settings import SettingsConfigDict
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from amends import ops
from amends.adapters.redrives import Redrives
from amends.cli_auth import Identity, Operator
from schemas.audit import AuditAction, AuditEntry
from schemas.common import deterministic_id
from services.common.access import Role
from services.common.messaging import kafka_client_options
from services.common.settings import ServiceSettings

console = Console(width=None if Console().is_terminal else 140)
dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)


class OpsSettings(ServiceSettings):
    """Where the tools find the broker and the database, and how they reach the broker (TLS,
    SASL): the services' shared `AMENDS_` variables."""

    model_config = SettingsConfigDict(env_prefix="AMENDS_", extra="ignore")
    service_name: ClassVar[str] = "ops"

    ops_db: str = "amends_ops"

    @property
    def kafka(self) -> ops.Kafka:
        try:
            return ops.Kafka(self.kafka_bootstrap, kafka_client_options(self))
        except ValueError as exc:  # SASL without its credentials
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None


def _position(text: str | None, what: str) -> ops.Position | None:
    if text is None:
        return None
    try:
        return ops.Position.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=what) from None


def replay(
    topic: Annotated[str, typer.Option(help="the topic to read")],
    from_: Annotated[str, typer.Option("--from", help="RFC 3339 time, offset, or earliest")],
    to: Annotated[str | None, typer.Option(help="RFC 3339 time or offset (default: the end "
                                                "when the replay starts)")] = None,
    customer: Annotated[str | None, typer.Option(help="only this customer's messages")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="only this event or incident "
                                                             "type")] = None,
    into: Annotated[str | None, typer.Option(help="publish here (default: the same topic)")
                    ] = None,
    dry_run: Annotated[bool, typer.Option(help="count what would be replayed")] = False,
    rate: Annotated[float | None, typer.Option(help="at most N messages per second")] = None,
    reason: Annotated[str, typer.Option(help="why, for the audit trail")] = "",
) -> None:
    """Re-publish a slice of a topic, keys and headers kept (safe: everything is idempotent).
    Needs the role admin (viewer for a dry run); recorded on the audit topic."""
    settings = OpsSettings()
    me = Operator().require(Role.viewer if dry_run else Role.admin, every_tenant=True)
    start = _position(from_, "--from")
    assert start is not None
    stop = _position(to, "--to")
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(f"replaying {topic}", total=None)
        try:
            summary = asyncio.run(ops.replay(
                settings.kafka, topic, start=start, stop=stop, into=into,
                only=ops.ReplayFilter(customer, type_), dry_run=dry_run, rate=rate,
                on_total=lambda n: bar.update(task, total=n),
                on_progress=lambda n: bar.advance(task, n)))
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    table = Table(title=f"replay of {summary.topic} into {summary.into}"
                        + (" (dry run)" if dry_run else ""))
    for column in ("partition", "scanned", "matched"):
        table.add_column(column, justify="right")
    for partition, (scanned, matched) in summary.per_partition.items():
        table.add_row(str(partition), str(scanned), str(matched))
    table.add_row("all", str(summary.scanned), str(summary.matched), style="bold")
    console.print(table)
    verb = "would publish" if dry_run else "published"
    console.print(f"{verb} {summary.matched if dry_run else summary.published} messages in "
                  f"{summary.seconds:.1f}s")
    if not dry_run:
        slice_ = (f"{topic} from {from_} to {to or 'its end'}"
                  + (f" into {into}" if into else "")
                  + (f", customer {customer}" if customer else "")
                  + (f", type {type_}" if type_ else ""))
        _audit(settings, me, AuditAction.replay, slice_, customer_id=customer, reason=reason,
               before={"scanned": summary.scanned, "matched": summary.matched},
               after={"published": summary.published, "into": summary.into})


async def _letters_and_redrives(settings: OpsSettings) -> tuple[list[ops.Letter], set[str]]:
    letters = await ops.read_dead_letters(settings.kafka, settings.deadletter_topic)
    return letters, await Redrives(settings.mongo_url, settings.ops_db).redriven()


def _select(letters: list[ops.Letter], service: str | None,
            reason: str | None) -> list[ops.Letter]:
    return [item for item in letters
            if (service is None or item.letter.service == service)
            and (reason is None or item.letter.reason.value == reason)]


def _size(value_bytes: int | None) -> str:
    return "size unknown" if value_bytes is None else f"{value_bytes:,} bytes"


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str | None, typer.Option(help="only this service's")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: Annotated[int, typer.Option(help="rows to show (newest)")] = 50,
) -> None:
    """Dead letters by service and reason, then the newest ones (role viewer)."""
    settings = OpsSettings()
    Operator().require(Role.viewer, every_tenant=True)
    letters, redriven = asyncio.run(_letters_and_redrives(settings))
    chosen = _select(letters, service, reason)
    counts = Counter((i.letter.service, i.letter.reason.value) for i in chosen)
    summary = Table(title=f"dead letters on {settings.deadletter_topic}")
    for column in ("service", "reason", "count"):
        summary.add_column(column, justify="right" if column == "count" else "left")
    for (svc, why), count in sorted(counts.items()):
        summary.add_row(svc, why, str(count))
    console.print(summary)
    rows = Table(title=f"newest {min(limit, len(chosen))} of {len(chosen)}")
    for column in ("id", "service", "reason", "from", "failed at", "redriven", "error"):
        rows.add_column(column, overflow="fold")
    for item in chosen[-limit:][::-1]:
        letter = item.letter
        rows.add_row(letter.dead_letter_id, letter.service, letter.reason.value,
                     f"{letter.topic}[{letter.partition}]@{letter.offset}"
                     + (f" (truncated, {_size(letter.value_bytes)})" if letter.truncated
                        else ""),
                     letter.failed_at.isoformat(timespec="seconds"),
                     "yes" if letter.dead_letter_id in redriven else "no", letter.error[:120])
    console.print(rows)


@dlq_app.command("show")
def dlq_show(dead_letter_id: Annotated[str, typer.Argument(help="the dead letter's id")]) -> None:
    """One dead letter: where it came from, why it failed, and its original payload (role
    support: the payload holds the customer's contact details)."""
    settings = OpsSettings()
    Operator().require(Role.support, every_tenant=True)
    letters, redriven = asyncio.run(_letters_and_redrives(settings))
    found = next((i for i in letters if i.letter.dead_letter_id == dead_letter_id), None)
    if found is None:
        console.print(f"[red]error:[/red] no dead letter {dead_letter_id!r} on "
                      f"{settings.deadletter_topic}")
        raise typer.Exit(1)
    letter = found.letter
    console.print(f"[bold]{letter.dead_letter_id}[/bold]  {letter.service} / "
                  f"{letter.reason.value}  from {letter.topic}[{letter.partition}]@"
                  f"{letter.offset}  failed {letter.failed_at.isoformat()}  "
                  f"redriven: {'yes' if letter.dead_letter_id in redriven else 'no'}")
    console.print(f"[bold]error:[/bold] {letter.error}")
    if letter.truncated:
        console.print(f"[bold yellow]truncated:[/bold yellow] the original was too large to "
                      f"carry whole: {_size(letter.value_bytes)}; below are its first "
                      f"{len(found.original):,} bytes (and its key and headers may be cut). "
                      f"A redrive re-reads the whole record from {letter.topic}"
                      f"[{letter.partition}]@{letter.offset} while the topic still has it.",
                      highlight=False)
    console.print(f"[bold]key:[/bold] {found.key!r}")
    for key, value in found.headers:
        console.print(f"[bold]header[/bold] {key}: {value.decode(errors='replace')}")
    console.print("[bold]payload:[/bold]")
    console.print(found.original.decode(errors="replace"), markup=False, highlight=False)


@dlq_app.command("redrive")
def dlq_redrive(
    ids: Annotated[list[str] | None, typer.Argument(help="dead letter ids")] = None,
    service: Annotated[str | None, typer.Option(help="all of this service's")] = None,
    reason: Annotated[str | None, typer.Option(help="all with this reason")] = None,
    again: Annotated[bool, typer.Option(help="include ones redriven before")] = False,
    dry_run: Annotated[bool, typer.Option(help="say what would be redriven")] = False,
    why: Annotated[str, typer.Option("--why", help="why, for the audit trail")] = "",
) -> None:
    """Send dead letters back to their original topic after a fix. Needs the role admin
    (viewer for a dry run); recorded on the audit topic."""
    if not ids and service is None and reason is None:
        raise typer.BadParameter("name dead letter ids, or select with --service/--reason")
    settings = OpsSettings()
    me = Operator().require(Role.viewer if dry_run else Role.admin, every_tenant=True)
    letters, redriven = asyncio.run(_letters_and_redrives(settings))
    chosen = _select(letters, service, reason)
    if ids:
        wanted = set(ids)
        chosen = [i for i in chosen if i.letter.dead_letter_id in wanted]
        missing = wanted - {i.letter.dead_letter_id for i in chosen}
        if missing:
            console.print(f"[red]error:[/red] not found: {', '.join(sorted(missing))}")
            raise typer.Exit(1)
    if not again:
        chosen = [i for i in chosen if i.letter.dead_letter_id not in redriven]
    if dry_run:
        console.print(f"would redrive {len(chosen)} dead letters")
        return
    summary = asyncio.run(_redrive_and_record(settings, chosen))
    if chosen:
        sent = [i.letter.dead_letter_id for i in summary.redriven]
        _audit(settings, me, AuditAction.redrive, _ids(settings, [
            i.letter.dead_letter_id for i in chosen]), reason=why,
            before={"selected": len(chosen), "redriven_before": sum(
                1 for i in chosen if i.letter.dead_letter_id in redriven)},
            after={"redriven": len(sent), "refused": len(summary.refused),
                   "dead_letter_ids": sent})
    for refusal in summary.refused:
        console.print(f"[red]refused[/red] {refusal.letter.letter.dead_letter_id}: "
                      f"{escape(refusal.reason)}", highlight=False)
    console.print(f"redrove {len(summary.redriven)} dead letters to their original topics")
    if summary.refused:
        console.print(f"refused {len(summary.refused)}: not sent back, not marked redriven")
        raise typer.Exit(1)


async def _redrive_and_record(settings: OpsSettings,
                              letters: list[ops.Letter]) -> ops.RedriveSummary:
    summary = await ops.redrive(settings.kafka, letters)
    if not summary.redriven:
        return summary
    await Redrives(settings.mongo_url, settings.ops_db).record(
        [item.letter.dead_letter_id for item in summary.redriven], datetime.now(UTC))
    return summary


# --- the audit trail ---------------------------------------------------------------------------


def _ids(settings: OpsSettings, ids: Sequence[str]) -> str:
    """The dead letters a redrive acted on, as an audit target (the full list is in `after`
    when it does not fit)."""
    listed = f"{settings.deadletter_topic}: {', '.join(ids)}"
    return listed if len(listed) <= 512 else f"{settings.deadletter_topic}: {len(ids)} letters"


def _audit(settings: OpsSettings, me: Identity, action: AuditAction, target: str, *,
           customer_id: str | None = None, reason: str = "", before: dict[str, Any],
           after: dict[str, Any]) -> None:
    """Publish the audit entry of an action this command carried out."""
    now = datetime.now(UTC)
    entry = AuditEntry(
        audit_id=deterministic_id("audit", "ops", action.value, target, me.subject,
                                  now.isoformat()),
        action=action, actor=me.subject, actor_via="cli",
        roles=sorted(r.name for r in me.roles), tenant=me.tenant,
        address=socket.gethostname()[:128] or None, at=now, service="ops",
        target=target[:512], customer_id=customer_id, reason=reason[:1000], before=before,
        after=after)
    try:
        asyncio.run(ops.publish_audit(settings.kafka, settings.audit_topic, entry))
    except Exception as exc:  # the action is done; say plainly that its record is missing
        console.print(f"[red]error:[/red] the {action.value} was carried out but its audit "
                      f"entry could not be published to {settings.audit_topic}: {exc!r}")
        raise typer.Exit(1) from None
    console.print(f"recorded on {settings.audit_topic} as {entry.audit_id} "
                  f"({action.value} by {me.subject})", highlight=False)


_AGO = re.compile(r"^(\d+)([mhd])$")


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    if found := _AGO.match(text):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[found.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(found.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise typer.BadParameter("an RFC 3339 time with offset, or 30m / 24h / 7d",
                                 param_hint="--since")
    return moment


def _state(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if k != "dead_letter_ids") or "-"


def audit(
    actor: Annotated[str | None, typer.Option(help="only this actor's actions")] = None,
    action: Annotated[AuditAction | None, typer.Option(help="only this action")] = None,
    customer: Annotated[str | None, typer.Option(help="only actions on this customer")
                        ] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time, or 30m / 24h / 7d")
                     ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the entries as JSON")] = False,
) -> None:
    """The audit trail: every human action (reviews, choices on behalf, manual vouchers,
    redrives, replays, erasures), oldest first, from the audit topic (role viewer; an
    operator of one tenant sees that tenant's entries)."""
    settings = OpsSettings()
    me = Operator().require(Role.viewer)
    after = _since(since)
    entries = [e for e in asyncio.run(ops.read_audit(settings.kafka, settings.audit_topic))
               if me.tenant in ("*", e.tenant)
               and (actor is None or e.actor == actor)
               and (action is None or e.action == action)
               and (customer is None or e.customer_id == customer)
               and (after is None or e.at >= after)]
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    table = Table(title=f"{len(entries)} audit entries on {settings.audit_topic}",
                  title_justify="left")
    for column in ("at", "actor", "action", "target", "customer", "reason", "from",
                   "before", "after"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e.at.isoformat(timespec="seconds"), f"{e.actor} ({e.actor_via})",
                      e.action.value, e.target, e.customer_id or "-", e.reason or "-",
                      e.address or "-", _state(e.before), _state(e.after))
    console.print(table)
