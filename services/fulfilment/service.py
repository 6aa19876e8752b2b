"""Fulfilment's service layer: carry out each action of a decision once, publish outcomes.

Every effect is a record keyed by the action's idempotency key (a points credit, a refund,
a voucher, a message), kept through fulfilment's ports (`ports.py`) before its outcome is
recorded: a redelivered decision finds
its effects and adds nothing. Refunds at a gateway and messages through a channel follow
`remote`'s claim-then-call protocol; what a transient failure leaves unfinished is taken up
by `finish_unfinished`, run periodically. A permanent failure fails the action: its outcome
tells the decision service to release the budget, and the decision goes to the dead-letter
topic with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from schemas.common import Channel
from schemas.deadletter import REDRIVE_HEADER, DeadLetterReason
from schemas.decision import Action, Decision, DecisionMade, RemedyKind
from schemas.outcome import ActionStatus, Outcome, OutcomeRecorded
from schemas.task import TaskCreated
from services.common.clock import Clock
from services.common.errors import describe
from services.common.links import CustomerLinks
from services.common.messaging import DeadLetters, Outgoing, Publisher, Record, outgoing
from services.common.outbox import record_then_publish
from services.fulfilment.channels import MessageChannel, OutgoingMessage
from services.fulfilment.domain.effects import FOLLOW_UP, Change, Effect, EffectState
from services.fulfilment.domain.plan import (
    LedgerEntry,
    Perk,
    apology_key,
    brought,
    confirmed,
    confirmed_of,
    confirms,
    follow_up_key,
    in_round,
    ledger_detail,
    ledger_entry,
    perk,
    ref_of,
    refund_problem,
    task_detail,
    task_of,
    time_to_apology,
    voucher_detail,
    voucher_grant,
)
from services.fulfilment.edges import RECORD_ONLY, Route, route
from services.fulfilment.errors import PermanentError
from services.fulfilment.gateway import (
    LedgerGateway,
    PaymentGateway,
    RefundRequest,
    RefundResult,
    RefundStatus,
    until_settled,
)
from services.fulfilment.holding import Held, HoldMetrics
from services.fulfilment.messages import MessageExtras, render_apology, render_follow_up
from services.fulfilment.pacing import PaceMetrics, Pacer
from services.fulfilment.ports import EffectLog, KeptOutcome, KeptTask, Received, Stores
from services.fulfilment.remote import Done, EffectMetrics, Job, RemoteEffects, new_claim
from services.fulfilment.settings import FulfilmentSettings
from services.fulfilment.vouchers import Voucher
from services.registry.remedy_kinds import REMEDY_KINDS
from services.registry.remedy_kinds import Effect as EffectKind

log = logging.getLogger(__name__)

_decision_event: TypeAdapter[DecisionMade] = TypeAdapter(DecisionMade)

FULL_SWEEP_SHARE_INVERSE = 10  # a full scan of the effect logs takes at most 1/10 of the time
# Seconds to hours: automated apologies take seconds, the promise is "never more than a day".
APOLOGY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


class FulfilmentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter("amends_actions_total", "Actions carried out",
                               ["kind", "result"], registry=registry)
        self.compensation = Counter(
            "amends_compensation_issued_total",
            "Money equivalent of the goodwill remedies carried out, in the currency's units "
            "(restitution apart)", ["kind", "currency"], registry=registry)
        self.restitution = Counter(
            "amends_restitution_issued_total",
            "Money given back as restitution by refunds carried out, in the currency's units",
            ["currency"], registry=registry)
        self.time_to_apology = Histogram(
            "amends_time_to_apology_seconds",
            "From the incident's occurrence to the apology being sent",
            buckets=APOLOGY_BUCKETS, registry=registry)
        self.effects = EffectMetrics(registry)
        self.pace = PaceMetrics(registry)
        self.held = HoldMetrics(registry)


@dataclass(frozen=True, slots=True)
class Run:
    """A decision to carry out and the record it arrived in (rebuilt for the sweep)."""

    decision: Decision
    record: Record

    @property
    def ref(self) -> str:
        return ref_of(self.decision)


@dataclass
class Batch:
    """The effects of one batch of decisions, written in bulk."""

    now: datetime
    credits: list[LedgerEntry] = field(default_factory=list)
    perks: list[Perk] = field(default_factory=list)
    tasks: list[tuple[str, KeptTask, Outgoing]] = field(default_factory=list)
    refunds: list[Job] = field(default_factory=list)
    messages: list[Job] = field(default_factory=list)
    vouchers: list[tuple[Run, Action, Voucher]] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)  # voucher codes by action key
    results: dict[str, tuple[Run, Action, Done]] = field(default_factory=dict)
    waiting: dict[str, tuple[Run, Action]] = field(default_factory=dict)
    follow_ups: dict[str, tuple[Run, Done]] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)  # a redriven effect's retry round

    def settle(self, done: Mapping[str, Done]) -> None:
        for key, result in done.items():
            run, action = self.waiting.pop(key)
            self.results[key] = (run, action, result)


@dataclass
class FulfilmentService:
    settings: FulfilmentSettings
    stores: Stores
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: FulfilmentMetrics
    gateway: PaymentGateway = field(default_factory=LedgerGateway)
    channels: Mapping[Channel, MessageChannel] = field(default_factory=dict)
    remote: RemoteEffects | None = None
    links: CustomerLinks | None = None

    _recalled_at: datetime | None = field(default=None, init=False, repr=False)
    _recall_took: timedelta = field(default=timedelta(0), init=False, repr=False)
    held: Held = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.remote is None:
            self.remote = RemoteEffects(self.settings, self.clock,
                                        metrics=self.metrics.effects)
        if self.remote.pacer is not None:
            self.remote.pacer.metrics = self.metrics.pace
        self.held = Held(self.metrics.held)

    @property
    def pacer(self) -> Pacer:
        assert self.effects.pacer is not None
        return self.effects.pacer

    @property
    def effects(self) -> RemoteEffects:
        assert self.remote is not None
        return self.remote

    async def handle_decisions(self, records: Sequence[Record]) -> list[Outcome]:
        now = self.clock()
        deadline = asyncio.get_running_loop().time() + self.settings.batch_deadline_s
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        runs: dict[str, Run] = {}
        redriven: dict[str, Run] = {}  # by an operator, from a dead letter
        for record in records:
            try:
                run = Run(_decision_event.validate_json(record.value).data, record)
            except ValidationError as exc:
                rejected.append((record, DeadLetterReason.invalid, describe(exc)))
                continue
            runs.setdefault(run.ref, run)  # the same revision twice in a batch is one
            if redrive_of(record) is not None:
                redriven.setdefault(run.ref, run)
        await self.dead_letters.send(rejected)
        # Each revision of a decision is kept (a review or a choice adds one); effects are
        # keyed by action, so actions repeated in a later revision happen once.
        new = await self.stores.decisions.add_new(
            [Received(run.decision, _origin(run.record), now) for run in runs.values()])
        # A decision's first revision seen for the first time has no effects yet: only the
        # others' outcomes are looked up (on FerretDB v1 that lookup reads every outcome).
        first = {ref for ref in new if runs[ref].decision.revision == 0}
        executable = [r for r in runs.values() if r.decision.status.executable]
        outcomes = await self._carry_out(executable, now, first, deadline,
                                         holding=self._hold(executable))
        if redriven:
            outcomes.extend(await self._redrive(list(redriven.values()), now))
        return outcomes

    def _hold(self, runs: Sequence[Run]) -> frozenset[str]:
        """The revisions of an outage: their remedies wait in `held` for the window's end
        (a newer revision replaces what an older one held, see `Held.hold`), and go out from
        there at the providers' pace, even when the window has passed already (this
        consumer lags behind): an outage's remedies never go out all at once."""
        holding: set[str] = set()
        for run in runs:
            if run.decision.hold is not None:
                self.held.hold(run.decision, run.record)
                holding.add(run.ref)
        return frozenset(holding)

    async def _carry_out(self, runs: Sequence[Run], now: datetime, first: set[str],
                         deadline: float, *, holding: frozenset[str] = frozenset(),
                         released: frozenset[str] = frozenset()) -> list[Outcome]:
        """Carry out the runs' actions; of those `holding`, only an apology that need not
        wait; of those `released` (their window ended), the remedies held back, confirmed in
        a follow-up when the apology went before them."""
        batch = Batch(now)
        known = await self.stores.outcomes.outcomes_of(
            [a.idempotency_key for run in runs if run.ref not in first | released
             for a in run.decision.actions])
        await self._plan_all(batch, [r for r in runs if r.ref not in holding], known)
        # Independent writes at once; the apologies follow, as they name what was given.
        _, refunds = await asyncio.gather(
            self._local_effects(batch),
            self.effects.run(self.stores.refunds, batch.refunds, now, deadline=deadline))
        batch.settle(refunds)
        await self._apologies(batch, [r for r in runs if _apology_now(r, holding, released)],
                              known, holding)
        batch.settle(await self.effects.run(self.stores.messages, batch.messages, now,
                                            deadline=deadline))
        await self._follow_ups(batch, [r for r in runs if r.ref not in holding | released],
                               known, deadline)
        await self._confirm_released(batch, [r for r in runs if r.ref in released], deadline)
        return await self._report(batch, list(known.values()))

    async def _report(self, batch: Batch, known: Sequence[Outcome]) -> list[Outcome]:
        """Publish an outcome for each action with a final answer; dead-letter the failed."""
        outcomes = [*known]
        failed: list[tuple[Record, DeadLetterReason, str]] = []
        parts: list[str] = []
        for key, (run, action, done) in batch.results.items():
            if done.status is None:
                continue  # under way: the sweep reports it
            outcomes.append(self._outcome(run.decision, action, done, batch.now))
            if done.error is not None:
                failed.append((run.record, DeadLetterReason.processing_failed,
                               f"action {key} ({action.kind.value}) of decision "
                               f"{run.decision.decision_id}: {done.error}"))
                parts.append(in_round(key, batch.rounds.get(key, 0)))
        tenants = {run.decision.decision_id: run.decision.incident.tenant
                   for run, _, _ in batch.results.values()}
        new = await self._publish(outcomes, batch.now, batch.rounds, tenants)
        for key, (run, done) in batch.follow_ups.items():
            if done.error is not None and done.fresh:  # a follow-up has no outcome
                part = in_round(key, batch.rounds.get(key, 0))
                new.add(part)
                failed.append((run.record, DeadLetterReason.processing_failed,
                               f"follow-up {key} of decision {run.decision.decision_id}: "
                               f"{done.error}"))
                parts.append(part)
        # A redelivered decision whose failure was reported already is not reported twice.
        fresh = [i for i, key in enumerate(parts) if key in new]
        await self.dead_letters.send([failed[i] for i in fresh], parts=[parts[i] for i in fresh])
        return outcomes

    async def _plan_all(self, batch: Batch, runs: Sequence[Run],
                  known: Mapping[str, Outcome]) -> None:
        """Plan every action but the apologies."""
        for run in runs:
            for action in run.decision.actions:
                key = action.idempotency_key
                if key in known or key in batch.results or key in batch.waiting:
                    continue
                effect = REMEDY_KINDS[action.kind].effect
                if effect == "message":
                    continue  # last, so that it can name what the others gave
                if effect == "refund":
                    planned = await self._refund(batch, run, action)
                else:
                    planned = LOCAL_EFFECTS[effect](self, batch, run, action)
                if planned is not None:
                    batch.results[key] = (run, action, planned)

    async def _local_effects(self, batch: Batch) -> None:
        """Write the planned vouchers, points, perks and tasks in bulk, at once. Effects
        first, keyed by idempotency key: a redelivery finds them and adds nothing."""
        issued, *_ = await asyncio.gather(
            self.stores.vouchers.issue_all([v for _, _, v in batch.vouchers]),
            self.stores.ledger.credit(batch.credits),
            self.stores.perks.grant(batch.perks),
            record_then_publish(self.stores.tasks, self.publisher, batch.tasks))
        for run, action, _ in batch.vouchers:
            voucher = issued[action.idempotency_key]
            batch.codes[action.idempotency_key] = voucher.code
            # The code is a bearer secret: it goes to the customer, not into outcomes.
            batch.results[action.idempotency_key] = (run, action, Done(
                ActionStatus.succeeded, voucher_detail(voucher.expires_at)))

    @staticmethod
    def _effect(run: Run, action: Action, now: datetime) -> Effect:
        return Effect(key=action.idempotency_key, customer_id=run.decision.incident.customer.id,
                      tenant=run.decision.incident.tenant,
                      decision_id=run.decision.decision_id, decision_ref=run.ref,
                      position=action.position, origin=_origin(run.record), created_at=now)

    # --- local effects: one handler per effect of `REMEDY_KINDS` (table below the class) ---

    def _ledger(self, batch: Batch, run: Run, action: Action) -> Done:
        batch.credits.append(ledger_entry(run.decision, action, batch.now,
                                          self.settings.points_expiry_days))
        return Done(ActionStatus.succeeded, ledger_detail(action))

    def _voucher(self, batch: Batch, run: Run, action: Action) -> None:
        """Queued: its result is known once the batch's vouchers are issued."""
        grant = voucher_grant(run.decision, action, batch.now, self.settings.voucher_expiry_days)
        batch.vouchers.append((run, action, Voucher(
            code="", action_key=grant.key, customer_id=grant.customer_id,
            amount=grant.amount, percent=grant.percent, currency=grant.currency,
            issued_at=batch.now, expires_at=grant.expires_at, tenant=grant.tenant,
            reason=grant.reason)))

    def _perk(self, batch: Batch, run: Run, action: Action) -> Done:
        granted = perk(run.decision, action, batch.now, self.settings.perk_expiry_days)
        batch.perks.append(granted)
        return Done(ActionStatus.succeeded, granted.detail)

    def _task(self, batch: Batch, run: Run, action: Action) -> Done:
        decision = run.decision
        task = task_of(decision, action, batch.now)
        batch.tasks.append((action.idempotency_key,
                            KeptTask(task, decision.incident.tenant, action.position, batch.now),
                            outgoing(self.settings.tasks_topic, TaskCreated(
                                id=task.task_id, source="amends/fulfilment", time=batch.now,
                                subject=decision.incident.customer.id,
                                tenant=decision.incident.tenant, data=task))))
        return Done(ActionStatus.succeeded, task_detail(task))

    # --- refunds -----------------------------------------------------------------------------

    async def _refund(self, batch: Batch, run: Run, action: Action) -> Done | None:
        """Refuse a refund that cannot be right; queue the others for the gateway (None)."""
        incident = run.decision.incident
        problem = refund_problem(run.decision, action)
        if problem is not None or action.amount is None:
            return Done(ActionStatus.failed, problem or "", batch.now, problem)
        request = RefundRequest(idempotency_key=action.idempotency_key,
                                order_id=incident.order_id or incident.incident_id,
                                payment_ref=None, amount=action.amount,
                                reason=incident.type.value)
        effect = replace(self._effect(run, action, batch.now),
                         amount=str(action.amount.amount), currency=action.amount.currency,
                         order_id=incident.order_id, gateway=type(self.gateway).__name__)
        if self.gateway.settles_at_once:
            result = await self.gateway.refund(request)
            effect = effect.changed({"gateway_id": result.gateway_id, "settled_at": batch.now,
                                     **self._refund_result(request, result, batch.now)[1]})
            batch.refunds.append(Job(action.idempotency_key, effect))
        else:
            batch.refunds.append(Job(action.idempotency_key, effect,
                                     perform=self._refunder(request)))
        batch.waiting[action.idempotency_key] = (run, action)
        return None

    def _refunder(self, request: RefundRequest,
                  ) -> Callable[[Effect], Awaitable[tuple[Done, Change]]]:
        async def perform(effect: Effect) -> tuple[Done, Change]:
            async def call() -> tuple[Done, Change]:
                gateway_id = effect.gateway_id
                result = await (self.gateway.refund_status(gateway_id) if gateway_id
                                else self.gateway.refund(request))
                result = await until_settled(self.gateway, result,
                                             polls=self.settings.refund_polls,
                                             interval_s=self.settings.refund_poll_interval_s,
                                             sleep=self.effects.sleep)
                return self._refund_result(request, result, self.clock())
            return await self.effects.attempt(call, effect, "the refund", "payment_gateway")
        return perform

    def _refund_result(self, request: RefundRequest, result: RefundResult,
                       now: datetime) -> tuple[Done, Change]:
        fields: Change = {"gateway_id": result.gateway_id}
        match result.status:
            case RefundStatus.succeeded:
                detail = f"refund of {request.amount} made ({result.gateway_id})"
                return (Done(ActionStatus.succeeded, detail, now),
                        fields | {"status": EffectState.succeeded.value, "detail": detail,
                                  "settled_at": now})
            case RefundStatus.failed:
                detail = (f"the gateway failed the refund {result.gateway_id}: "
                          f"{result.detail or 'no reason given'}")
                return (Done(ActionStatus.failed, detail, now, detail),
                        fields | {"status": EffectState.failed.value, "detail": detail,
                                  "settled_at": now})
            case _:
                detail = f"refund {result.gateway_id} pending at the gateway"
                return (Done(None, detail),
                        fields | {"status": EffectState.pending.value, "detail": detail,
                                  "next_attempt_at": self.effects.later(now)})

    # --- apologies ---------------------------------------------------------------------------

    async def _apologies(self, batch: Batch, runs: Sequence[Run],
                         known: Mapping[str, Outcome],
                         holding: frozenset[str] = frozenset()) -> None:
        """Render each apology with what its decision gives (carried out or under way, not
        what failed; of a revision `holding` its remedies, nothing: they may be aborted)
        and queue it for its channel."""
        wanted: dict[str, tuple[Run, Action]] = {}
        for run in runs:
            for action in run.decision.actions:
                key = action.idempotency_key
                if (action.kind is RemedyKind.apology and key not in known
                        and key not in batch.results and key not in batch.waiting):
                    wanted.setdefault(key, (run, action))
        if not wanted:
            return
        codes = batch.codes | await self.stores.vouchers.codes_for(
            [a.idempotency_key for run, _ in wanted.values() for a in run.decision.actions
             if a.kind is RemedyKind.voucher and a.idempotency_key not in batch.codes])

        def failed(action: Action) -> bool:
            key = action.idempotency_key
            if key in known:
                return known[key].status is ActionStatus.failed
            result = batch.results.get(key)
            return result is not None and result[2].status is ActionStatus.failed

        for run, action in wanted.values():
            given = [a for a in run.decision.actions if not failed(a)
                     and (run.ref not in holding or a.kind is RemedyKind.apology)]
            try:
                job = self._message(run, action, given, codes, batch.now)
            except PermanentError as error:
                detail = f"the apology cannot be delivered: {error}"
                batch.results[action.idempotency_key] = (
                    run, action, Done(ActionStatus.failed, detail, batch.now, detail))
                continue
            batch.messages.append(job)
            batch.waiting[action.idempotency_key] = (run, action)

    def _message(self, run: Run, action: Action, given: Sequence[Action],
                 codes: Mapping[str, str], now: datetime) -> Job:
        decision = run.decision
        customer = decision.incident.customer
        path = route(customer.contact, self.channels)
        page, token = self._page(decision, now)
        rendered = render_apology(decision, extras=MessageExtras(
            voucher_codes=codes, signature=self.settings.message_signature,
            page_url=page, now=now, status_url=self._status_url(decision)), actions=given)
        effect = replace(self._effect(run, action, now),
                         incident_type=decision.incident.type.value, channel=path.name,
                         locale=rendered.locale, subject=rendered.subject,
                         text=_at_rest(rendered.text, token), html=_at_rest(rendered.html, token))
        if path.channel is None:
            detail = "apology recorded (no delivery channel is configured)"
            return Job(action.idempotency_key, effect.changed({
                "status": EffectState.succeeded.value, "detail": detail, "settled_at": now,
                "sent_at": now}))
        message = OutgoingMessage.of(rendered, idempotency_key=action.idempotency_key,
                                     recipient=path.recipient, customer_id=customer.id,
                                     metadata={"decision_id": decision.decision_id,
                                               "incident_id": decision.incident.incident_id})
        return Job(action.idempotency_key, effect, perform=self._sender(path, message))

    def _page(self, decision: Decision, now: datetime) -> tuple[str | None, str | None]:
        """The customer's page for this decision with a signed link, and the link's token;
        none when no key signs links (then no message mentions a page)."""
        if self.links is None or not self.links.enabled:
            return None, None
        token = self.links.sign(decision.incident.customer.id, decision.decision_id, now)
        return (self.settings.customer_page_url.replace("{decision_id}", decision.decision_id)
                .replace("{token}", token)), token

    def _status_url(self, decision: Decision) -> str | None:
        """The public status post of the customer's outage, when a page address is set."""
        outage = decision.incident.outage_id
        if not outage or not self.settings.status_page_url:
            return None
        return self.settings.status_page_url.replace("{outage_id}", quote(outage, safe=""))

    def _to_send(self, stored_text: str, decision: Decision) -> str:
        """A stored message's text with a fresh token in its link (the stored copy has none:
        see `_at_rest`)."""
        if LINK_MARK not in stored_text:
            return stored_text
        _, token = self._page(decision, self.clock())
        # Keys withdrawn since it was rendered: the link opens nothing, as the keys intend.
        return stored_text.replace(LINK_MARK, token or "")

    def _sender(self, path: Route, message: OutgoingMessage, what: str = "apology",
                ) -> Callable[[Effect], Awaitable[tuple[Done, Change]]]:
        channel = path.channel
        assert channel is not None

        async def perform(effect: Effect) -> tuple[Done, Change]:
            async def call() -> tuple[Done, Change]:
                delivery = await channel.send(message)
                detail = f"{what} sent by {path.name}"
                return (Done(ActionStatus.succeeded, detail, delivery.delivered_at),
                        {"status": EffectState.succeeded.value, "detail": detail,
                         "settled_at": delivery.delivered_at,
                         "sent_at": delivery.delivered_at, "message_id": delivery.message_id})
            return await self.effects.attempt(call, effect, f"the {what}", path.name)
        return perform

    # --- remedies held for an outage's abort window ------------------------------------------

    async def release_held(self, chunk_max: int = 200) -> int:
        """Issue the remedies whose window has ended, at the pace of their providers: a
        chunk of decisions at a time, each chunk after its local effects' turns (messages
        and refunds wait for theirs as they are sent). Returns how many were released."""
        released = 0
        while due := self.held.due(self.clock(), self._chunk(chunk_max)):
            runs = [Run(decision, record) for decision, record in due]
            turns: dict[str, int] = {}
            for run in runs:
                for action in run.decision.actions:
                    effect = REMEDY_KINDS[action.kind].effect
                    if effect in LOCAL_EFFECTS:
                        turns[effect] = turns.get(effect, 0) + 1
            for name, count in sorted(turns.items()):
                await self.pacer.turn(name, count)
            now = self.clock()
            deadline = asyncio.get_running_loop().time() + self.settings.batch_deadline_s
            try:
                await self._carry_out(runs, now, set(), deadline,
                                      released=frozenset(run.ref for run in runs))
            except Exception:
                for decision, record in due:  # the next run tries again
                    self.held.hold(decision, record, again=True)
                raise
            self.held.released([run.decision for run in runs])
            released += len(runs)
        return released

    def _chunk(self, chunk_max: int) -> int:
        """Decisions per chunk: the burst of the slowest paced local effect (a chunk's writes
        are a few round trips to the store, whatever its size: the burst is what the bucket
        saves up while they are made)."""
        slices = [self.pacer.burst(p) for p in LOCAL_EFFECTS if self.pacer.paces(p)]
        return max(1, min([chunk_max, *slices]))

    async def recall_held(self) -> None:
        """At start: hold again what decisions held lately (what a restart forgot); those
        released before add nothing when released again."""
        since = self.clock() - timedelta(hours=self.settings.held_recall_hours)
        for ref, received in (await self.stores.decisions.holding(since)).items():
            decision = received.decision
            topic, partition, offset = received.origin
            self.held.hold(decision, Record(
                topic, partition, offset, decision.incident.customer.id.encode(),
                json.dumps(decision.model_dump(mode="json")).encode()))
            log.debug("held again: %s", ref)
        if self.held:
            log.info("%d decisions hold remedies for an outage's abort window", len(self.held))

    async def _confirm_released(self, batch: Batch, runs: Sequence[Run],
                                deadline: float) -> None:
        """Tell each customer what their outage's released remedies gave them, once per
        revision, when the apology went out at once without them."""
        due = [run for run in runs if run.decision.hold is not None
               and not run.decision.hold.apology]
        if not due:
            return
        codes = batch.codes | await self.stores.vouchers.codes_for(
            [a.idempotency_key for run in due for a in run.decision.actions
             if a.kind is RemedyKind.voucher and a.idempotency_key not in batch.codes])
        jobs: list[Job] = []
        waiting: dict[str, Run] = {}
        for run in due:
            remedies = [a for a in run.decision.actions if a.kind is not RemedyKind.apology]
            given, states = confirmed_of(remedies, {
                a.idempotency_key: _status(a.idempotency_key, {}, batch) for a in remedies})
            if not given:
                continue
            key = follow_up_key(run.decision)
            try:
                jobs.append(self._follow_up(run, key, given, codes=codes, states=states,
                                            now=batch.now, released=True))
            except PermanentError as error:
                detail = f"the follow-up cannot be delivered: {error}"
                batch.follow_ups[key] = (run, Done(ActionStatus.failed, detail, batch.now,
                                                   detail))
                continue
            waiting[key] = run
        done = await self.effects.run(self.stores.messages, jobs, batch.now, deadline=deadline)
        for key, result in done.items():
            batch.follow_ups[key] = (waiting[key], result)

    # --- follow-ups ------------------------------------------------------------------------

    async def _follow_ups(self, batch: Batch, runs: Sequence[Run],
                          known: Mapping[str, Outcome], deadline: float) -> None:
        """Tell the customer what a later revision gave them (their choice, the default
        after the deadline, a reviewer's approval), once per revision, when the apology went
        out with an earlier one; an apology sent with this revision has said it already."""
        confirming = {run.ref: run for run in runs if confirms(run.decision)}
        apologies = {ref: key for ref, run in confirming.items()
                     if (key := apology_key(run.decision)) is not None}
        if not apologies:
            return
        # Which revision each apology went out with (only revisions after the first read
        # this: they are the customers' choices and the reviews, not the stream's bulk).
        sent_with = {effect.key: effect.decision_ref for effect in
                     await self.stores.messages.get(sorted(set(apologies.values())))}
        due = [confirming[ref] for ref, key in apologies.items()
               if key in sent_with and sent_with[key] != ref]
        if not due:
            return
        codes = batch.codes | await self.stores.vouchers.codes_for(
            [a.idempotency_key for run in due for a in brought(run.decision)
             if a.kind is RemedyKind.voucher and a.idempotency_key not in batch.codes])
        jobs: list[Job] = []
        waiting: dict[str, Run] = {}
        for run in due:
            given, states = confirmed(run.decision, {
                a.idempotency_key: _status(a.idempotency_key, known, batch)
                for a in brought(run.decision)})
            key = follow_up_key(run.decision)
            if not given:  # all it brought failed: dead-lettered, nothing true to confirm
                log.warning("no follow-up for %s: nothing it brought was carried out", key)
                continue
            try:
                job = self._follow_up(run, key, given, codes=codes, states=states,
                                      now=batch.now)
            except PermanentError as error:
                detail = f"the follow-up cannot be delivered: {error}"
                batch.follow_ups[key] = (run, Done(ActionStatus.failed, detail, batch.now,
                                                   detail))
                continue
            jobs.append(job)
            waiting[key] = run
        done = await self.effects.run(self.stores.messages, jobs, batch.now, deadline=deadline)
        for key, result in done.items():
            batch.follow_ups[key] = (waiting[key], result)

    def _follow_up(self, run: Run, key: str, given: Sequence[Action], *,
                   codes: Mapping[str, str], states: Mapping[str, str], now: datetime,
                   released: bool = False) -> Job:
        decision = run.decision
        customer = decision.incident.customer
        path = route(customer.contact, self.channels)
        page, token = self._page(decision, now)
        rendered = render_follow_up(decision, given, extras=MessageExtras(
            voucher_codes=codes, signature=self.settings.message_signature, now=now,
            states=states, page_url=page), released=released)
        effect = Effect(key=key, customer_id=customer.id, tenant=decision.incident.tenant,
                        decision_id=decision.decision_id, decision_ref=run.ref,
                        kind=FOLLOW_UP, revision=decision.revision, origin=_origin(run.record),
                        created_at=now, incident_type=decision.incident.type.value,
                        channel=path.name, locale=rendered.locale, subject=rendered.subject,
                        text=_at_rest(rendered.text, token),
                        html=_at_rest(rendered.html, token))
        if path.channel is None:
            detail = "follow-up recorded (no delivery channel is configured)"
            return Job(key, effect.changed({"status": EffectState.succeeded.value,
                                            "detail": detail, "settled_at": now,
                                            "sent_at": now}))
        message = OutgoingMessage.of(rendered, idempotency_key=key, recipient=path.recipient,
                                     customer_id=customer.id, kind=FOLLOW_UP,
                                     metadata={"decision_id": decision.decision_id,
                                               "incident_id": decision.incident.incident_id})
        return Job(key, effect, perform=self._sender(path, message, "follow-up"))

    def _stored_message(self, run: Run, effect: Effect) -> Job:
        """A message as rendered before (a follow-up), sent again by whichever channel now
        reaches the customer."""
        incident = run.decision.incident
        try:
            path = route(incident.customer.contact, self.channels)
        except PermanentError as error:
            detail = f"the follow-up cannot be delivered: {error}"
            now = self.clock()
            return Job(effect.key, effect, perform=_already(
                Done(ActionStatus.failed, detail, now, detail),
                {"status": EffectState.failed.value, "detail": detail, "settled_at": now}))
        if path.channel is None:
            now = self.clock()
            detail = "follow-up recorded (no delivery channel is configured)"
            return Job(effect.key, effect, perform=_already(
                Done(ActionStatus.succeeded, detail, now),
                {"status": EffectState.succeeded.value, "detail": detail, "settled_at": now,
                 "sent_at": now, "channel": path.name}))
        message = OutgoingMessage(
            idempotency_key=effect.key, recipient=path.recipient, subject=effect.subject or "",
            text=self._to_send(effect.text or "", run.decision),
            html=self._to_send(effect.html or "", run.decision), locale=effect.locale or "en",
            customer_id=incident.customer.id, kind=FOLLOW_UP,
            metadata={"decision_id": run.decision.decision_id,
                      "incident_id": incident.incident_id})
        return Job(effect.key, effect, perform=self._sender(path, message, "follow-up"))

    # --- the sweep ---------------------------------------------------------------------------

    def _logs(self) -> tuple[EffectLog, EffectLog]:
        return self.stores.refunds, self.stores.messages

    async def recall_unfinished(self) -> None:
        """Have the effect logs learn afresh which effects are unfinished, those of other
        processes included (a scan of each log where the adapter keeps them in memory)."""
        self._recalled_at = self.clock()
        started = time.monotonic()
        for kept in self._logs():
            await kept.recall()
        self._recall_took = timedelta(seconds=time.monotonic() - started)
        if self._recall_took > timedelta(seconds=1):
            log.info("scanned the refunds and messages for unfinished effects in %.1f s",
                     self._recall_took.total_seconds())

    async def finish_unfinished(self, limit: int = 200) -> list[Outcome]:
        """Try again the refunds and messages that a transient failure, a pending gateway or
        a dead process left unfinished; report those that now have a final answer. Every
        `full_sweep_seconds` the logs are scanned whole first (see `recall_unfinished`)."""
        now = self.clock()
        # A scan grows with what is stored (on FerretDB, minutes at a million): it may take
        # at most a tenth of the time, whatever the setting.
        every = max(timedelta(seconds=self.settings.full_sweep_seconds),
                    self._recall_took * FULL_SWEEP_SHARE_INVERSE)
        if self._recalled_at is None or now - self._recalled_at >= every:
            await self.recall_unfinished()
        token = new_claim()
        claimed: list[tuple[EffectLog, Effect]] = []
        for kept in self._logs():
            for effect in await self.effects.due(kept, now, limit):
                taken = await self.effects.reclaim(kept, effect, now, token)
                if taken is not None:
                    claimed.append((kept, taken))
        return await self._finish(claimed, now)

    async def _redrive(self, runs: Sequence[Run], now: datetime) -> list[Outcome]:
        """An operator redrove a dead letter of these decisions: their failed refunds and
        messages are tried again now, each once per dead letter, as a new round (a refund
        under a new gateway key: the failed one is final at the gateway)."""
        token = new_claim()
        claimed: list[tuple[EffectLog, Effect]] = []
        for run in runs:
            letter = redrive_of(run.record) or ""
            keys = [a.idempotency_key for a in run.decision.actions]
            keys.append(follow_up_key(run.decision))
            for kept in self._logs():
                for effect in await kept.failed(keys):
                    round_ = effect.round + 1
                    again: Change = {"status": EffectState.claimed.value, "claimed_at": now,
                                     "claim": token, "round": round_, "redriven_by": letter,
                                     "detail": f"tried again: dead letter {letter} redriven"}
                    if kept is self.stores.refunds:
                        again["gateway_key"] = in_round(effect.key, round_)
                    if await kept.take_over(effect, again):
                        claimed.append((kept, replace(effect.changed(again), gateway_id=None)))
            log.info("redrive of decision %s: %d failed effects tried again",
                     run.decision.decision_id, len(claimed))
        return await self._finish(claimed, now)

    async def _finish(self, claimed: Sequence[tuple[EffectLog, Effect]],
                      now: datetime) -> list[Outcome]:
        """Perform the claimed effects from where their records stand; report them."""
        if not claimed:
            return []
        runs = await self._runs_of({effect.decision_ref for _, effect in claimed})
        batch = Batch(now)
        batch.rounds = {effect.key: effect.round for _, effect in claimed}
        codes = await self.stores.vouchers.codes_for(
            [a.idempotency_key for run in runs.values() for a in run.decision.actions
             if a.kind is RemedyKind.voucher])
        jobs: dict[int, list[tuple[Job, Effect]]] = {}
        follow_ups: dict[str, Run] = {}
        for kept, effect in claimed:
            run = runs.get(effect.decision_ref)
            if run is not None and effect.kind == FOLLOW_UP:
                follow_ups[effect.key] = run
                jobs.setdefault(id(kept), []).append((self._stored_message(run, effect),
                                                      effect))
                continue
            action = next((a for a in run.decision.actions
                           if a.idempotency_key == effect.key), None) if run else None
            if run is None or action is None:
                log.error("unfinished effect %s has no decision %s", effect.key,
                          effect.decision_ref)
                continue
            job = self._resumed(run, action, effect, codes)
            if job is None:
                continue
            batch.waiting[action.idempotency_key] = (run, action)
            jobs.setdefault(id(kept), []).append((job, effect))
        for kept in self._logs():
            done = await self.effects.perform(kept, jobs.get(id(kept), []))
            for key in follow_ups.keys() & done.keys():
                batch.follow_ups[key] = (follow_ups[key], done.pop(key))
            batch.settle(done)
        return await self._report(batch, [])

    def _resumed(self, run: Run, action: Action, effect: Effect,
                 codes: Mapping[str, str]) -> Job | None:
        incident = run.decision.incident
        if action.kind is RemedyKind.refund:
            if action.amount is None:
                return None
            request = RefundRequest(
                idempotency_key=effect.gateway_key or action.idempotency_key,
                order_id=incident.order_id or incident.incident_id, payment_ref=None,
                amount=action.amount, reason=incident.type.value)
            return Job(action.idempotency_key, effect, perform=self._refunder(request))
        try:
            path = route(incident.customer.contact, self.channels)
        except PermanentError:
            path = Route(RECORD_ONLY, None)
        if path.channel is None or path.name != effect.channel:
            # The channel it was queued for is no longer configured: render anew for this one.
            job = self._message(run, action, run.decision.actions, codes, self.clock())
            if job.perform is None:
                return Job(action.idempotency_key, effect,
                           perform=_already(Done.of(job.effect), _rendered(job.effect)))
            return Job(action.idempotency_key, effect, perform=job.perform)
        message = OutgoingMessage(
            idempotency_key=action.idempotency_key, recipient=path.recipient,
            subject=effect.subject or "", text=self._to_send(effect.text or "", run.decision),
            html=self._to_send(effect.html or "", run.decision), locale=effect.locale or "en",
            customer_id=incident.customer.id,
            metadata={"decision_id": run.decision.decision_id,
                      "incident_id": incident.incident_id})
        return Job(action.idempotency_key, effect, perform=self._sender(path, message))

    async def _runs_of(self, refs: set[str]) -> dict[str, Run]:
        runs: dict[str, Run] = {}
        for ref, received in (await self.stores.decisions.revisions(sorted(refs))).items():
            decision = received.decision
            topic, partition, offset = received.origin
            record = Record(topic, partition, offset, decision.incident.customer.id.encode(),
                            json.dumps(decision.model_dump(mode="json")).encode())
            runs[ref] = Run(decision, record)
        return runs

    # --- outcomes ----------------------------------------------------------------------------

    async def _publish(self, outcomes: Sequence[Outcome], now: datetime,
                       rounds: Mapping[str, int],
                       tenants: Mapping[str, str | None] | None = None) -> set[str]:
        """Record and publish each outcome once; an effect tried again after a redrive has
        one more outcome per round. Returns the ids of those new now."""
        items: list[tuple[str, KeptOutcome, Outgoing]] = []
        ids: list[str] = []
        for outcome in outcomes:
            record_id = in_round(outcome.idempotency_key,
                                  rounds.get(outcome.idempotency_key, 0))
            tenant = (tenants or {}).get(outcome.decision_id)
            event = OutcomeRecorded(id=record_id, source="amends/fulfilment", time=now,
                                    subject=outcome.customer_id, tenant=tenant, data=outcome)
            items.append((record_id, KeptOutcome(outcome, tenant, now),
                          outgoing(self.settings.outcomes_topic, event)))
            ids.append(record_id)
        new = await record_then_publish(self.stores.outcomes, self.publisher, items)
        for outcome, record_id in zip(outcomes, ids, strict=True):
            if record_id in new:
                self.metrics.actions.labels(outcome.kind.value, outcome.status.value).inc()
                if outcome.status is ActionStatus.succeeded and outcome.value.amount > 0:
                    amount = float(outcome.value.amount)
                    if outcome.restitution:
                        self.metrics.restitution.labels(outcome.value.currency).inc(amount)
                    else:
                        self.metrics.compensation.labels(outcome.kind.value,
                                                         outcome.value.currency).inc(amount)
                if outcome.time_to_apology_seconds is not None:
                    self.metrics.time_to_apology.observe(outcome.time_to_apology_seconds)
        return new

    @staticmethod
    def _outcome(decision: Decision, action: Action, done: Done, now: datetime) -> Outcome:
        status = done.status or ActionStatus.failed
        completed = done.at or now
        latency = time_to_apology(decision, action, status, completed)
        return Outcome(idempotency_key=action.idempotency_key, decision_id=decision.decision_id,
                       incident_id=decision.incident.incident_id,
                       customer_id=decision.incident.customer.id, position=action.position,
                       kind=action.kind, status=status, value=action.value,
                       restitution=action.restitution, completed_at=completed,
                       detail=done.detail[:1000],
                       time_to_apology_seconds=latency)


# Where a stored message's link had its token: a customer link is a bearer secret, so it is
# not kept at rest; a message sent again gets a fresh one.
LINK_MARK = "{customer_link_token}"


def _at_rest(text: str, token: str | None) -> str:
    return text.replace(token, LINK_MARK) if token else text


def redrive_of(record: Record) -> str | None:
    """The dead letter an operator redrove this record from, if it was."""
    for key, value in record.headers:
        if key == REDRIVE_HEADER:
            return value.decode(errors="replace")
    return None


def _status(key: str, known: Mapping[str, Outcome], batch: Batch) -> ActionStatus | None:
    """What is known of an action now: its outcome, or None while it is under way."""
    if key in known:
        return known[key].status
    result = batch.results.get(key)
    return result[2].status if result is not None else None


def _apology_now(run: Run, holding: frozenset[str], released: frozenset[str]) -> bool:
    """Whether a revision's apology goes out in this pass: at once unless the policy makes it
    wait for the window, and on release only if it waited."""
    waits = run.decision.hold is not None and run.decision.hold.apology
    if run.ref in holding:
        return not waits
    if run.ref in released:
        return waits
    return True


def _origin(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _already(done: Done, change: Change) -> Callable[[Effect], Awaitable[tuple[Done, Change]]]:
    async def perform(_: Effect) -> tuple[Done, Change]:
        return done, change
    return perform


def _rendered(effect: Effect) -> Change:
    """A message rendered and settled anew, as a change to the record it replaces."""
    change: Change = {"status": effect.status or EffectState.succeeded.value,
                      "detail": effect.detail or "", "channel": effect.channel or "",
                      "locale": effect.locale or "", "subject": effect.subject or "",
                      "text": effect.text or "", "html": effect.html or "",
                      "incident_type": effect.incident_type or ""}
    if effect.settled_at is not None:
        change["settled_at"] = effect.settled_at
    if effect.sent_at is not None:
        change["sent_at"] = effect.sent_at
    return change


LocalEffect = Callable[[FulfilmentService, Batch, Run, Action], "Done | None"]
# Fulfilment's handler per effect a remedy kind names (`RemedyEntry.effect`): the effects
# written in bulk here; "refund" goes to the gateway and "message" (the apology) comes last,
# so that it can name what the others gave.
LOCAL_EFFECTS: dict[EffectKind, LocalEffect] = {
    "ledger": FulfilmentService._ledger,
    "voucher": FulfilmentService._voucher,
    "perk": FulfilmentService._perk,
    "task": FulfilmentService._task,
}
EFFECT_HANDLERS: frozenset[EffectKind] = frozenset({"message", "refund", *LOCAL_EFFECTS})
