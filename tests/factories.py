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
