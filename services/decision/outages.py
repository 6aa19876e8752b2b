"""Aborting or changing an outage's remedies inside its abort window (ADR 0015): the service
layer over `domain.outage_window`. Every decision of the outage still in its window gets a
revision (only the apology, or the lowered remedy), the goodwill it no longer needs goes back
to the day's budget, and fulfilment, which holds the remedies until the window ends, issues
what the newest revision says. One audit entry per command, for the outage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from schemas.audit import AuditAction
from schemas.common import Money
from schemas.decision import Decision
from services.common.access import Principal
from services.common.messaging import outgoing
from services.common.outbox import record_then_publish
from services.decision.domain.lifecycle import reservation
from services.decision.domain.outage_window import (
    Change,
    Kind,
    amend,
    check_window,
    given_back,
)
from services.decision.service import DecisionService, _event


@dataclass(frozen=True, slots=True)
class Amended:
    """What an abort or a change did: decisions revised, left as they were (amended so
    already, or awaiting a reviewer), and the goodwill given back."""

    outage_id: str
    revised: int
    unchanged: int
    held_for_review: int
    released: Money


async def outage_decisions(service: DecisionService, outage_id: str,
                           tenants: Sequence[str | None] | None) -> list[Decision]:
    """The outage's decisions that may still be in their window (made within it, plus a
    margin), of `tenants` unless None (every tenant). An operator's read, not the hot
    path."""
    now = service.clock()
    since = now - timedelta(seconds=service.settings.outage_abort_window_s) - timedelta(hours=1)
    return [d for d in await service.store.between(since, None)
            if d.incident.outage_id == outage_id
            and (tenants is None or d.incident.tenant in tenants)]


async def amend_outage(service: DecisionService, outage_id: str, change: Change, *,
                       kind: Kind, by: Principal, reason: str,
                       tenants: Sequence[str | None] | None) -> Amended:
    now = service.clock()
    decisions = await outage_decisions(service, outage_id, tenants)
    check_window(decisions, now,
                 timedelta(seconds=service.settings.outage_abort_margin_s), outage_id)
    revisions: list[tuple[Decision, Decision]] = []
    held = unchanged = 0
    for current in decisions:
        if not current.status.executable:
            held += 1  # a reviewer decides it; an approval books what it gives then
            continue
        revision = amend(current, change, kind=kind, by=by.subject, reason=reason, at=now)
        if revision is None:
            unchanged += 1
        else:
            revisions.append((current, revision))
    new = await record_then_publish(service.store.revisions, service.publisher, [
        (f"{r.decision_id}:{r.revision}", r,
         outgoing(service.settings.decisions_topic, _event(r, now))) for _, r in revisions])
    released = Money(amount=Decimal(0), currency=service.policy.currency)
    for current, revision in revisions:
        await service.store.update_current(revision)
        key = reservation(current)
        back = given_back(current, revision)
        ref = f"{revision.decision_id}:{revision.revision}"
        if key is not None and back > 0 and ref in new and await service.budget.release(
                key, f"amended:{revision.revision}",
                Money(amount=back, currency=service.policy.currency), now):
            released = Money(amount=released.amount + back, currency=released.currency)
    if released.amount > 0:
        service.metrics.released.labels(released.currency).inc(float(released.amount))
    if service.audit is not None and revisions:
        action = AuditAction.outage_abort if kind == "aborted" else AuditAction.outage_change
        await service.audit.record(
            by, action, f"outage:{outage_id}", reason=reason,
            before={"decisions": len(decisions)},
            after={"revised": len(revisions), "released": format(released.amount, "f"),
                   "currency": released.currency},
            key=f"{kind}:{now.isoformat()}", tenant=by.tenant)
    return Amended(outage_id, len(revisions), unchanged, held, released)
