"""Late-delivery detection for the walking skeleton (replaced by `detection` when it lands)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.incident import Detection, Incident, IncidentType, Severity, incident_id
from schemas.upstream import OrderDeliveredEvent, UpstreamEvent


@dataclass(frozen=True)
class DelayBands:
    bands: Sequence[tuple[str, int]]
    grace_minutes: int = 0

    def band(self, minutes_late: int) -> str:
        name = self.bands[0][0]
        for band, start in self.bands:
            if minutes_late >= start:
                name = band
        return name


_SEVERITY = {0: Severity.low, 1: Severity.medium, 2: Severity.high}


def detect(event: UpstreamEvent, now: datetime, bands: DelayBands) -> list[Incident]:
    if not isinstance(event, OrderDeliveredEvent):
        return []
    data = event.data
    promised = data.promised_delivery_at
    if promised is None or data.delivered_at <= promised + timedelta(minutes=bands.grace_minutes):
        return []
    minutes = int((data.delivered_at - promised).total_seconds() // 60)
    band = bands.band(minutes)
    rank = [b for b, _ in bands.bands].index(band)
    return [Incident(
        incident_id=incident_id(IncidentType.delivery_delayed, data.order_id, band),
        type=IncidentType.delivery_delayed, detection=Detection.proactive,
        severity=_SEVERITY.get(rank, Severity.critical), customer=data.customer,
        tenant=event.tenant, occurred_at=promised, detected_at=now, source=event.source,
        source_event_id=event.id, order_id=data.order_id, order_value=data.total,
        delay_minutes=minutes, delay_band=band,
        summary=f"order {data.order_id} delivered {minutes} minutes after the promised time",
    )]
