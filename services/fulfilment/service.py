"""Fulfilment's service layer: carry out each action of a decision once, publish outcomes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import TypeAdapter, ValidationError

from schemas.deadletter import DeadLetterReason
from schemas.decision import Action, Decision, DecisionMade, DecisionStatus, RemedyKind
from schemas.outcome import ActionStatus, Outcome, OutcomeRecorded
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import DeadLetters, Outgoing, Publisher, Record, outgoing
from services.common.mongo import Doc
from services.common.outbox import record_then_publish
from services.fulfilment.adapters.mongo import FulfilmentStore
from services.fulfilment.settings import FulfilmentSettings

_decision_event: TypeAdapter[DecisionMade] = TypeAdapter(DecisionMade)

# Seconds to hours: automated apologies take seconds, the promise is "never more than a day".
APOLOGY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)


class FulfilmentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter("amends_actions_total", "Actions carried out",
                               ["kind", "result"], registry=registry)
        self.time_to_apology = Histogram(
            "amends_time_to_apology_seconds",
            "From the incident's occurrence to the apology being sent",
            buckets=APOLOGY_BUCKETS, registry=registry)


@dataclass
class FulfilmentService:
    settings: FulfilmentSettings
    store: FulfilmentStore
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
        runnable = [d for d in decisions if d.status is DecisionStatus.approved]
        outcomes = await self._execute(runnable, now)
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
                if outcome.time_to_apology_seconds is not None:
                    self.metrics.time_to_apology.observe(outcome.time_to_apology_seconds)
        return outcomes

    async def _execute(self, decisions: Sequence[Decision], now: datetime) -> list[Outcome]:
        credits: list[Doc] = []
        messages: list[Doc] = []
        results: list[tuple[Decision, Action, ActionStatus, str]] = []
        for decision in decisions:
            customer = decision.incident.customer
            for action in decision.actions:
                base = {"_id": action.idempotency_key, "customer_id": customer.id,
                        "decision_id": decision.decision_id, "created_at": now}
                if action.kind is RemedyKind.points:
                    credits.append({**base, "points": action.points or 0,
                                    "expires_at": now + timedelta(
                                        days=self.settings.points_expiry_days),
                                    "reason": decision.incident.type.value})
                    results.append((decision, action, ActionStatus.succeeded,
                                    f"{action.points} points credited"))
                elif action.kind is RemedyKind.apology:
                    messages.append({**base, "incident_type": decision.incident.type.value,
                                     "channel": customer.contact.preferred_channel.value,
                                     "locale": customer.locale, "text": decision.explanation,
                                     "sent_at": now})
                    results.append((decision, action, ActionStatus.succeeded, "apology sent"))
                else:
                    results.append((decision, action, ActionStatus.failed,
                                    f"no executor for {action.kind.value} yet"))
        # Effects first, keyed by idempotency key: a redelivery finds them and adds nothing.
        await self.store.credit_points(credits)
        await self.store.record_messages(messages)
        return [self._outcome(d, a, status, detail, now) for d, a, status, detail in results]

    @staticmethod
    def _outcome(decision: Decision, action: Action, status: ActionStatus, detail: str,
                 now: datetime) -> Outcome:
        latency = None
        if action.kind is RemedyKind.apology and status is ActionStatus.succeeded:
            latency = max(0.0, (now - decision.incident.occurred_at).total_seconds())
        return Outcome(idempotency_key=action.idempotency_key, decision_id=decision.decision_id,
                       incident_id=decision.incident.incident_id,
                       customer_id=decision.incident.customer.id, position=action.position,
                       kind=action.kind, status=status, value=action.value, completed_at=now,
                       detail=detail, time_to_apology_seconds=latency)
