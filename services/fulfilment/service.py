"""Fulfilment's service layer: carry out each action of a decision once, publish outcomes.

Every effect is a document keyed by the action's idempotency key (a points credit, a refund,
a voucher, a message), written before its outcome is recorded: a redelivered decision finds
its effects and adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from schemas.deadletter import DeadLetterReason
from schemas.decision import Action, Decision, DecisionMade, RemedyKind
from schemas.outcome import ActionStatus, Outcome, OutcomeRecorded
from schemas.task import HumanTask, TaskCreated
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import DeadLetters, Outgoing, Publisher, Record, outgoing
from services.common.mongo import Doc, insert_new
from services.common.outbox import record_then_publish
from services.fulfilment.adapters.mongo import FulfilmentStore
from services.fulfilment.settings import FulfilmentSettings
from services.fulfilment.vouchers import VoucherStore

_decision_event: TypeAdapter[DecisionMade] = TypeAdapter(DecisionMade)

# Seconds to hours: automated apologies take seconds, the promise is "never more than a day".
APOLOGY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


class FulfilmentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter("amends_actions_total", "Actions carried out",
                               ["kind", "result"], registry=registry)
        self.compensation = Counter(
            "amends_compensation_issued_total",
            "Money equivalent of the remedies carried out, in the currency's units",
            ["kind", "currency"], registry=registry)
        self.time_to_apology = Histogram(
            "amends_time_to_apology_seconds",
            "From the incident's occurrence to the apology being sent",
            buckets=APOLOGY_BUCKETS, registry=registry)


# What a person is asked to do, and by when (hours) unless the decision says.
TASK_WORDS: dict[RemedyKind, str] = {
    RemedyKind.personal_call: "Call the customer to apologise in person: {note}.",
    RemedyKind.priority_support: "Route the customer's requests to the priority queue: {note}.",
    RemedyKind.free_upgrade: "Give the customer {note}.",
    RemedyKind.replacement: "Ship {note} for the affected item, at no charge.",
    RemedyKind.gift: "Send the customer {note} with a handwritten thank-you.",
}
TASK_HOURS: dict[RemedyKind, int] = {RemedyKind.priority_support: 1,
                                     RemedyKind.replacement: 24, RemedyKind.gift: 72}


@dataclass
class Done:
    """What happened to one action."""

    status: ActionStatus
    detail: str


@dataclass
class Batch:
    """The effects of one batch of decisions, written in bulk."""

    now: datetime
    credits: list[Doc] = field(default_factory=list)
    messages: list[Doc] = field(default_factory=list)
    refunds: list[Doc] = field(default_factory=list)
    perks: list[Doc] = field(default_factory=list)
    tasks: list[tuple[Doc, Outgoing]] = field(default_factory=list)
    results: list[tuple[Decision, Action, Done]] = field(default_factory=list)


@dataclass
class FulfilmentService:
    settings: FulfilmentSettings
    store: FulfilmentStore
    vouchers: VoucherStore
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: FulfilmentMetrics

    async def handle_decisions(self, records: Sequence[Record]) -> list[Outcome]:
        now = self.clock()
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        decisions: list[Decision] = []
        for record in records:
            try:
                decisions.append(_decision_event.validate_json(record.value).data)
            except ValidationError as exc:
                rejected.append((record, DeadLetterReason.invalid, describe(exc)))
        await self.dead_letters.send(rejected)
        # Each revision of a decision is kept (a review or a choice adds one); effects are
        # keyed by action, so actions repeated in a later revision happen once.
        await self.store.record_decisions([
            {"_id": f"{d.decision_id}:{d.revision}", "decision_id": d.decision_id,
             "revision": d.revision, "customer_id": d.incident.customer.id,
             "created_at": now, "decision": d.model_dump(mode="json")} for d in decisions])
        runnable = [d for d in decisions if d.status.executable]
        outcomes = await self._execute(runnable, now)
        await self._publish(outcomes, now)
        return outcomes

    async def _publish(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        items: list[tuple[Doc, Outgoing]] = []
        for outcome in outcomes:
            event = OutcomeRecorded(id=outcome.idempotency_key, source="amends/fulfilment",
                                    time=now, subject=outcome.customer_id, data=outcome)
            doc = {"_id": outcome.idempotency_key, "customer_id": outcome.customer_id,
                   "created_at": now, "outcome": outcome.model_dump(mode="json")}
            items.append((doc, outgoing(self.settings.outcomes_topic, event)))
        new = await record_then_publish(self.store.outcomes, self.publisher, items)
        for outcome in outcomes:
            if outcome.idempotency_key in new:
                self.metrics.actions.labels(outcome.kind.value, outcome.status.value).inc()
                if outcome.status is ActionStatus.succeeded and outcome.value.amount > 0:
                    self.metrics.compensation.labels(outcome.kind.value, outcome.value.currency
                                                     ).inc(float(outcome.value.amount))
                if outcome.time_to_apology_seconds is not None:
                    self.metrics.time_to_apology.observe(outcome.time_to_apology_seconds)

    async def _execute(self, decisions: Sequence[Decision], now: datetime) -> list[Outcome]:
        batch = Batch(now)
        for decision in decisions:
            # The apology goes last, so that it can name what the other actions gave.
            for action in sorted(decision.actions, key=lambda a: a.kind is RemedyKind.apology):
                done = await self._plan(batch, decision, action)
                batch.results.append((decision, action, done))
        # Effects first, keyed by idempotency key: a redelivery finds them and adds nothing.
        await self.store.credit_points(batch.credits)
        await insert_new(self.store.refunds, batch.refunds)
        await insert_new(self.store.perks, batch.perks)
        await record_then_publish(self.store.tasks, self.publisher, batch.tasks)
        await self.store.record_messages(batch.messages)
        return [self._outcome(d, a, done, now) for d, a, done in batch.results]

    async def _plan(self, batch: Batch, decision: Decision, action: Action) -> Done:
        customer = decision.incident.customer
        base = {"_id": action.idempotency_key, "customer_id": customer.id,
                "decision_id": decision.decision_id, "created_at": batch.now}
        match action.kind:
            case RemedyKind.points:
                batch.credits.append({**base, "points": action.points or 0,
                                      "reason": decision.incident.type.value,
                                      "expires_at": batch.now + timedelta(
                                          days=self.settings.points_expiry_days)})
                return Done(ActionStatus.succeeded, f"{action.points} points credited")
            case RemedyKind.voucher:
                voucher = await self.vouchers.issue(
                    action_key=action.idempotency_key, customer_id=customer.id,
                    amount=action.amount, percent=action.percent,
                    currency=(action.amount or action.value).currency, issued_at=batch.now,
                    expires_at=action.expires_at or batch.now + timedelta(days=90),
                    reason=decision.incident.type.value)
                # The code is a bearer secret: it goes to the customer, not into outcomes.
                return Done(ActionStatus.succeeded,
                            f"voucher issued, valid until {voucher.expires_at.date()}")
            case RemedyKind.refund:
                return self._refund(batch, decision, action, base)
            case RemedyKind.apology:
                batch.messages.append({**base, "incident_type": decision.incident.type.value,
                                       "channel": customer.contact.preferred_channel.value,
                                       "locale": customer.locale,
                                       "text": decision.explanation, "sent_at": batch.now})
                return Done(ActionStatus.succeeded, "apology sent")
            case RemedyKind.free_delivery:
                batch.perks.append({**base, "kind": action.kind.value,
                                    "orders": action.quantity or 1,
                                    "expires_at": batch.now + timedelta(
                                        days=self.settings.perk_expiry_days)})
                return Done(ActionStatus.succeeded,
                            f"free delivery on the next {action.quantity or 1} order(s)")
            case _:
                task = self._task(decision, action, batch.now)
                batch.tasks.append(({**base, "kind": action.kind.value,
                                     "due_by": task.due_by},
                                    outgoing(self.settings.tasks_topic, TaskCreated(
                                        id=task.task_id, source="amends/fulfilment",
                                        time=batch.now, subject=customer.id,
                                        tenant=decision.incident.tenant, data=task))))
                return Done(ActionStatus.succeeded,
                            f"task for a person, due {task.due_by:%Y-%m-%d %H:%M} UTC")

    def _task(self, decision: Decision, action: Action, now: datetime) -> HumanTask:
        incident = decision.incident
        hours = TASK_HOURS.get(action.kind, 24)
        return HumanTask(
            task_id=action.idempotency_key, kind=action.kind, decision_id=decision.decision_id,
            incident_id=incident.incident_id, customer_id=incident.customer.id,
            order_id=incident.order_id, what=TASK_WORDS[action.kind].format(note=action.note),
            due_by=action.due_by or now + timedelta(hours=hours),
            priority="high" if action.kind in {RemedyKind.personal_call,
                                               RemedyKind.replacement} else "normal",
            value=action.value, context=decision.explanation[:2000])

    @staticmethod
    def _refund(batch: Batch, decision: Decision, action: Action, base: Doc) -> Done:
        incident = decision.incident
        paid = incident.charged_amount or incident.order_value
        if action.amount is None or paid is None:
            return Done(ActionStatus.failed, "refund without an amount or a known payment")
        if action.amount.currency != paid.currency or action.amount.amount > paid.amount:
            return Done(ActionStatus.failed,
                        f"refund of {action.amount} exceeds what was paid ({paid})")
        batch.refunds.append({**base, "amount": str(action.amount.amount),
                              "currency": action.amount.currency, "order_id": incident.order_id,
                              "gateway": "ledger", "status": "succeeded"})
        return Done(ActionStatus.succeeded, f"refund of {action.amount} recorded")

    @staticmethod
    def _outcome(decision: Decision, action: Action, done: Done, now: datetime) -> Outcome:
        latency = None
        if action.kind is RemedyKind.apology and done.status is ActionStatus.succeeded:
            latency = max(0.0, (now - decision.incident.occurred_at).total_seconds())
        return Outcome(idempotency_key=action.idempotency_key, decision_id=decision.decision_id,
                       incident_id=decision.incident.incident_id,
                       customer_id=decision.incident.customer.id, position=action.position,
                       kind=action.kind, status=done.status, value=action.value,
                       completed_at=now, detail=done.detail, time_to_apology_seconds=latency)
