"""Decision's service layer: parse incidents, decide, record and publish decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from pydantic import TypeAdapter, ValidationError

from schemas.deadletter import DeadLetterReason
from schemas.decision import Decision, DecisionMade
from schemas.incident import IncidentDetected
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import DeadLetters, Outgoing, Publisher, Record, outgoing
from services.common.mongo import Doc
from services.common.outbox import Outbox, record_then_publish
from services.decision import minimal
from services.decision.settings import DecisionSettings

_incident_event: TypeAdapter[IncidentDetected] = TypeAdapter(IncidentDetected)


class DecisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter("amends_decisions_total", "Decisions made (new ones only)",
                                 ["status"], registry=registry)


@dataclass
class DecisionService:
    settings: DecisionSettings
    decisions: Outbox
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: DecisionMetrics

    async def handle_incidents(self, records: Sequence[Record]) -> list[Decision]:
        now = self.clock()
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        made: list[Decision] = []
        for record in records:
            try:
                event = _incident_event.validate_json(record.value)
            except ValidationError as exc:
                rejected.append((record, DeadLetterReason.invalid, describe(exc)))
                continue
            made.append(minimal.decide(event.data, now))
        await self.dead_letters.send(rejected)
        items: list[tuple[Doc, Outgoing]] = []
        for decision in made:
            made_event = DecisionMade(id=decision.decision_id, source="amends/decision",
                                      time=now, subject=decision.incident.customer.id,
                                      tenant=decision.incident.tenant, data=decision)
            doc = {"_id": decision.decision_id, "incident_id": decision.incident.incident_id,
                   "customer_id": decision.incident.customer.id,
                   "status": decision.status.value, "decided_at": decision.decided_at,
                   "decision": decision.model_dump(mode="json")}
            items.append((doc, outgoing(self.settings.decisions_topic, made_event)))
        new = await record_then_publish(self.decisions, self.publisher, items)
        for decision in made:
            if decision.decision_id in new:
                self.metrics.decisions.labels(decision.status.value).inc()
        return [d for d in made if d.decision_id in new]
