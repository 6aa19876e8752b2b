"""The reply desk (ADR 0017): drafts a public reply for every negative review decision made
(beside, never instead of, the private remedy the policy gives), lets a person edit, approve
and post it, and keeps the SLA in view: a histogram of review-to-reply times, gauges of what
is open and overdue, and the overdue ones in a second queue."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from pydantic import TypeAdapter, ValidationError

from schemas.audit import AuditAction
from schemas.decision import decision_id
from schemas.incident import IncidentDetected, IncidentType
from services.common import tone
from services.common.access import Principal
from services.common.adapters.storage import server_of
from services.common.app import Runtime
from services.common.clock import Clock
from services.common.messaging import Record
from services.decision.adapters.mongo import quiet_write_errors
from services.decision.adapters.replies import FerretReplies
from services.decision.adapters.storage import reply_store
from services.decision.domain import replies
from services.decision.domain.replies import (
    ReplyQueue,
    ReplyRefusedError,
    ReplySla,
    ReplyStepKind,
    ReplyView,
)
from services.decision.ports import Decisions, Replies
from services.decision.service import Audit, DecisionService
from services.decision.settings import DecisionSettings

log = logging.getLogger(__name__)

_incident_event: TypeAdapter[IncidentDetected] = TypeAdapter(IncidentDetected)
_MARK = f'"{IncidentType.negative_review.value}"'.encode()
HOUR = 3600.0
# Review to reply: the SLA's target is hours, its limit a day; past two days is a failure.
REPLY_BUCKETS = (0.25 * HOUR, 0.5 * HOUR, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 12 * HOUR,
                 24 * HOUR, 48 * HOUR)
_AUDIT = {ReplyStepKind.edited: AuditAction.reply_edit,
          ReplyStepKind.approved: AuditAction.reply_approve,
          ReplyStepKind.posted: AuditAction.reply_post}


class ReplyMetrics:
    """No label names a customer, a review or a reply: counts and ages only."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "amends_public_reply_seconds", "From a negative review posted to our public reply "
            "posted", buckets=REPLY_BUCKETS, registry=registry)
        self.drafted = Histogram(
            "amends_public_reply_draft_seconds", "From a negative review posted to its reply "
            "drafted (the decision's lag)", buckets=REPLY_BUCKETS, registry=registry)
        self.open = Gauge("amends_public_replies_open", "Public replies not posted yet, by "
                          "queue (escalated: past the SLA's target)", ["queue"],
                          registry=registry)
        self.overdue = Gauge("amends_public_replies_overdue", "Public replies not posted past "
                             "the SLA's target", registry=registry)
        self.breached = Gauge("amends_public_replies_breached", "Public replies not posted past "
                              "the SLA's limit", registry=registry)
        self.oldest = Gauge("amends_public_reply_oldest_open_seconds", "Age of the oldest "
                            "review whose reply is not posted (0: none open)",
                            registry=registry)
        self.sla = Gauge("amends_public_reply_sla_seconds", "The reply SLA: target and limit",
                         ["bound"], registry=registry)


def sla_of(settings: DecisionSettings) -> ReplySla:
    return ReplySla(target=timedelta(hours=settings.reply_sla_target_hours),
                    limit=timedelta(hours=settings.reply_sla_max_hours))


class ReplyNotFoundError(LookupError):
    pass


@dataclass
class ReplyDesk:
    store: Replies
    decisions: Decisions
    sla: ReplySla
    clock: Clock
    metrics: ReplyMetrics
    audit: Audit | None = None

    def __post_init__(self) -> None:
        self.metrics.sla.labels("target").set(self.sla.target.total_seconds())
        self.metrics.sla.labels("limit").set(self.sla.limit.total_seconds())

    async def draft_for(self, records: Sequence[Record]) -> int:
        """Draft the replies of the negative reviews in a batch the decision service has
        handled: from the decisions as recorded (a redelivery finds them and drafts what a
        crash left undrafted; a draft made before stays). Returns how many are new."""
        ids: list[str] = []
        for record in records:
            if _MARK not in record.value:
                continue  # most batches hold no review: no second parse for them
            try:
                incident = _incident_event.validate_json(record.value).data
            except ValidationError:
                continue  # the decision service dead-lettered it
            if incident.type is IncidentType.negative_review:
                ids.append(decision_id(incident.incident_id))
        if not ids:
            return 0
        now = self.clock()
        found = await self.decisions.find(sorted(set(ids)))
        drafts = [d for d in (replies.draft(decision, now) for decision in found.values())
                  if d is not None]
        new = await self.store.add(drafts)
        for reply in drafts:
            if reply.reply_id in new:
                self.metrics.drafted.observe(
                    max((now - reply.review_posted_at).total_seconds(), 0.0))
        return len(new)

    def _view(self, found: tuple[replies.Reply, list[replies.ReplyStep]],
              now: datetime) -> ReplyView:
        return replies.view(found[0], found[1], self.sla, now)

    async def listing(self, tenants: Sequence[str | None] | None, queue: ReplyQueue | None,
                      *, posted: bool = False, limit: int = 200) -> list[ReplyView]:
        """The open replies of a queue (all open ones when None), oldest review first; or the
        posted ones, newest first."""
        now = self.clock()
        views = [self._view(f, now)
                 for f in await self.store.listing(tenants, posted=posted, limit=limit)]
        return [v for v in views if posted or queue is None or v.queue is queue]

    async def get(self, reply_id: str) -> ReplyView:
        found = await self.store.get(reply_id)
        if found is None:
            raise ReplyNotFoundError(f"no reply {reply_id}")
        return self._view(found, self.clock())

    async def act(self, current: ReplyView, kind: ReplyStepKind, who: Principal, *,
                  text: str | None = None, public_url: str | None = None) -> ReplyView:
        """One step by a person (tenant already checked): refused when the reply's state
        does not allow it, or when a racing person took the same step first. An approved
        text must keep the tone (`services.common.tone`): an edit may not blame anyone or
        ask for the review to go."""
        now = self.clock()
        step = replies.next_step(current, kind, who.subject, now, text=text,
                                 public_url=public_url)
        if kind is ReplyStepKind.approved:
            wrong = tone.problems(step.text, current.reply.locale, public=True)
            if wrong:
                raise ReplyRefusedError("The text cannot be approved: " + "; ".join(wrong)
                                        + ".", 422)
        if not await self.store.add_step(step):
            raise ReplyRefusedError("Someone else changed this reply just now: reload it.")
        after = await self.get(current.reply.reply_id)
        if kind is ReplyStepKind.posted:
            self.metrics.seconds.observe(max(after.age(now).total_seconds(), 0.0))
        if self.audit is not None:
            await self.audit.record(
                who, _AUDIT[kind], current.reply.reply_id,
                customer_id=current.reply.customer_id, reason=kind.value,
                before=_state(current), after=_state(after), key=step.key,
                tenant=current.reply.tenant or who.tenant)
        return after

    async def refresh_gauges(self) -> list[ReplyView]:
        """Bring the queue's gauges up to date from the store (every instance reads the same
        store, so every instance reports the same figures)."""
        now = self.clock()
        views = [self._view(f, now)
                 for f in await self.store.listing(None, posted=False, limit=10_000)]
        for queue in ReplyQueue:
            self.metrics.open.labels(queue.value).set(sum(v.queue is queue for v in views))
        self.metrics.overdue.set(sum(v.overdue for v in views))
        self.metrics.breached.set(sum(v.breached for v in views))
        self.metrics.oldest.set(max((v.age(now).total_seconds() for v in views), default=0.0))
        return views


def _state(reply: ReplyView) -> dict[str, Any]:
    """What an audit entry keeps of a reply: its state, never its text's reader."""
    return {"state": reply.state.value, "edits": reply.edits,
            "queue": reply.queue.value}


def install_replies(runtime: Runtime, settings: DecisionSettings, service: DecisionService,
                    store: Replies | None = None) -> ReplyDesk:
    """The desk on decision's runtime: its store picked for the server at start (after the
    decision store, whose decisions it drafts from), and the SLA sweep."""
    desk = ReplyDesk(store=store or FerretReplies(runtime.db), decisions=service.store,
                     sla=sla_of(settings), clock=runtime.clock,
                     metrics=ReplyMetrics(runtime.registry), audit=service.audit)

    async def open_store() -> None:
        desk.decisions = service.store
        if store is None:
            server = await server_of(runtime.mongo, settings.store_backend)
            desk.store = reply_store(runtime.db, server)
        await desk.store.create_indexes()

    async def sweep() -> None:
        with quiet_write_errors():
            await desk.refresh_gauges()

    runtime.on_start.append(open_store)
    runtime.every(settings.reply_sweep_seconds, sweep, name="reply-sla")
    return desk
