"""The upstream sources intake's tests configure (their HMAC secrets, event types, tenants
and rates), and requests signed as those sources sign them: one set for the component and the
integration layers."""

from __future__ import annotations

import json
from typing import Any

from services.intake.auth import sign

SECRETS = {"shop": ["shop-secret-1", "shop-secret-0"], "desk": ["desk-secret"],
           "slow": ["slow-secret"]}
SOURCES = {
    "shop": {"event_types": ["order.placed", "order.delivered", "order.cancelled",
                             "order.item_reported", "payment.captured", "outage.declared",
                             "outage.resolved", "support.ticket_updated"],
             "tenants": ["brand-a"], "rate_per_second": 1000, "burst": 1000},
    "desk": {"event_types": ["support.ticket_updated"], "tenants": ["*"],
             "report_incidents": True, "rate_per_second": 1000, "burst": 1000},
    "slow": {"event_types": ["*"], "tenants": ["*"], "rate_per_second": 1, "burst": 2},
}


def signed(source: str, body: Any, at: int, *, secret: str | None = None
           ) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers of a request signed by `source`."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    key = secret or SECRETS[source][0]
    return raw, {"X-Amends-Source": source, "X-Amends-Signature": sign(key, at, raw),
                 "Content-Type": "application/json"}
