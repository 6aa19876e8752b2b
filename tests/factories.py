"""Builders of upstream events as the JSON an upstream system would send."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from schemas.common import deterministic_id


def customer(customer_id: str, *, tier: str = "standard", locale: str = "en",
             email: str | None = None) -> dict[str, Any]:
    return {"id": customer_id, "tier": tier, "locale": locale,
            "lifetime_value": {"amount": "250.00", "currency": "EUR"},
            "contact": {"email": email or f"{customer_id}@example.org",
                        "preferred_channel": "email"}}


def order_delivered(customer_id: str, order_id: str, *, promised: datetime,
                    delivered: datetime, tier: str = "standard", total: str = "42.00",
                    source: str = "shop/orders") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": deterministic_id("test-event", "order.delivered", order_id),
        "source": source,
        "type": "order.delivered",
        "time": delivered.isoformat(),
        "subject": customer_id,
        "data": {
            "order_id": order_id,
            "customer": customer(customer_id, tier=tier),
            "delivered_at": delivered.isoformat(),
            "promised_delivery_at": promised.isoformat(),
            "total": {"amount": total, "currency": "EUR"},
        },
    }


def late_and_on_time(run: str, base: datetime, late: int, on_time: int
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`late` deliveries 30..N minutes late and `on_time` ones, each for its own customer."""
    tiers = ["standard", "silver", "gold", "platinum"]
    late_events = [
        order_delivered(f"{run}-late-{i}", f"{run}-o-late-{i}", promised=base,
                        delivered=base + timedelta(minutes=30 + 97 * i), tier=tiers[i % 4])
        for i in range(late)
    ]
    on_time_events = [
        order_delivered(f"{run}-ok-{i}", f"{run}-o-ok-{i}", promised=base,
                        delivered=base - timedelta(minutes=5 + i), tier=tiers[i % 4])
        for i in range(on_time)
    ]
    return late_events, on_time_events


def incident(incident_type: str = "delivery_delayed", *, customer_id: str = "c-1",
             tier: str = "standard", detection: str = "proactive", severity: str = "medium",
             at: datetime | None = None, fact: str = "o-1", **fields: Any) -> dict[str, Any]:
    """An incident as intake publishes it (the `data` of an amends.incident.detected event)."""
    from schemas.incident import IncidentType, incident_id

    at = at or datetime.fromisoformat("2026-11-23T12:00:00+00:00")
    return {"incident_id": incident_id(IncidentType(incident_type), customer_id, fact),
            "type": incident_type, "detection": detection, "severity": severity,
            "customer": customer(customer_id, tier=tier), "occurred_at": at.isoformat(),
            "detected_at": at.isoformat(), "source": "tests", "order_id": fact, **fields}
