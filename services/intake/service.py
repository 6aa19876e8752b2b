"""Intake's service layer: parse upstream events, detect incidents, record and publish them."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from schemas.deadletter import DeadLetterReason
from schemas.incident import Incident, IncidentDetected
from schemas.upstream import UPSTREAM_EVENT_TYPES, UpstreamEvent, upstream_event_adapter
from services.common.clock import Clock
from services.common.errors import describe
from services.common.messaging import DeadLetters, Outgoing, Publisher, Record, outgoing
from services.common.mongo import Doc
from services.common.outbox import Outbox, record_then_publish
from services.intake.domain.skeleton import DelayBands, detect
from services.intake.settings import IntakeSettings

log = logging.getLogger(__name__)


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("amends_upstream_events_total", "Upstream events accepted",
                              ["type"], registry=registry)
        self.incidents = Counter("amends_incidents_detected_total",
                                 "Incidents detected (new ones only)", ["type", "detection"],
                                 registry=registry)


@dataclass
class IntakeService:
    settings: IntakeSettings
    incidents: Outbox
    publisher: Publisher
    dead_letters: DeadLetters
    clock: Clock
    metrics: IntakeMetrics

    def parse(self, record: Record) -> UpstreamEvent | tuple[DeadLetterReason, str]:
        try:
            return upstream_event_adapter.validate_json(record.value)
        except ValidationError as exc:
            return self._rejection(record.value, exc)

    @staticmethod
    def _rejection(raw: bytes, exc: ValidationError) -> tuple[DeadLetterReason, str]:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return DeadLetterReason.undecodable, f"not a JSON CloudEvent: {first['msg']}"
        if first["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            try:
                event_type = json.loads(raw).get("type")
            except (ValueError, AttributeError):
                event_type = None
            return DeadLetterReason.unknown_type, (
                f"type: unknown event type {event_type!r}; expected one of "
                f"{', '.join(UPSTREAM_EVENT_TYPES)}")
        return DeadLetterReason.invalid, describe(exc)

    async def handle_upstream(self, records: Sequence[Record]) -> list[Incident]:
        """Process one batch of upstream records; returns the incidents that are new."""
        now = self.clock()
        bands = DelayBands(self.settings.delay_bands, self.settings.delivery_grace_minutes)
        rejected: list[tuple[Record, DeadLetterReason, str]] = []
        detected: list[Incident] = []
        for record in records:
            parsed = self.parse(record)
            if isinstance(parsed, tuple):
                rejected.append((record, *parsed))
                continue
            self.metrics.events.labels(parsed.type).inc()
            detected.extend(detect(parsed, now, bands))
        await self.dead_letters.send(rejected)
        new = await self.publish(detected)
        return [i for i in detected if i.incident_id in new]

    async def publish(self, incidents: Sequence[Incident]) -> set[str]:
        now = self.clock()
        items: list[tuple[Doc, Outgoing]] = []
        for incident in incidents:
            event = IncidentDetected(id=incident.incident_id, source="amends/intake", time=now,
                                     subject=incident.customer.id, tenant=incident.tenant,
                                     data=incident)
            doc = {"_id": incident.incident_id, "customer_id": incident.customer.id,
                   "type": incident.type.value, "detected_at": incident.detected_at,
                   "incident": incident.model_dump(mode="json")}
            items.append((doc, outgoing(self.settings.incidents_topic, event)))
        new = await record_then_publish(self.incidents, self.publisher, items)
        for incident in incidents:
            if incident.incident_id in new:
                self.metrics.incidents.labels(incident.type.value,
                                              incident.detection.value).inc()
        return new
