"""A customer's earlier incidents and what they were granted: the input of the history
conditions and of the per-customer cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.incident import Detection, IncidentType

ZERO = Decimal(0)
_PROACTIVE = Detection.proactive
_DOUBLE_CHARGE = IncidentType.double_charge


@dataclass(frozen=True, slots=True)
class PastIncident:
    incident_id: str
    type: IncidentType
    detection: Detection
    decided_at: datetime
    value: Decimal = ZERO  # money equivalent granted, in the policy's currency
    order_id: str | None = None  # one order is one failure, whatever its incidents
    given: tuple[tuple[str, Decimal], ...] = ()  # what it granted, by measure (`topup.py`)
    refunded: Decimal = ZERO  # refunds granted (or that its open offer or review may grant)


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    incidents: tuple[PastIncident, ...] = ()

    def plus(self, incident: PastIncident) -> CustomerHistory:
        return CustomerHistory((*self.incidents, incident))

    def refunded(self, order_id: str, incident_id: str) -> tuple[Decimal, Decimal]:
        """What the other incidents of `order_id` refunded, in all and for duplicate charges
        (however long ago: a refund ceiling has no window)."""
        everything = duplicates = ZERO
        for past in self.incidents:
            if past.order_id != order_id or past.incident_id == incident_id:
                continue
            everything += past.refunded
            if past.type is _DOUBLE_CHARGE:
                duplicates += past.refunded
        return everything, duplicates


@dataclass(frozen=True, slots=True)
class WindowFacts:
    """What the history says within the policy's window before `now`."""

    incidents: int
    same_type: int
    claims: int
    compensation: Decimal

    @classmethod
    def of(
        cls,
        history: CustomerHistory,
        incident_id: str,
        incident_type: IncidentType,
        now: datetime,
        window_days: int,
        *,
        order_id: str | None = None,
    ) -> WindowFacts:
        """One order is one failure: the earlier incidents of the order `order_id` (the
        current incident's) are not counted, and the others of one order count once; what
        they were granted still counts in full."""
        if not history.incidents:
            return _NOTHING
        window = _WINDOWS.get(window_days)
        if window is None:
            window = _WINDOWS[window_days] = timedelta(days=window_days)
        since = now - window
        incidents = same_type = claims = 0
        compensation = ZERO
        orders: set[str] = set()
        typed_orders: set[str] = set()
        for past in history.incidents:
            if past.incident_id == incident_id or not since < past.decided_at <= now:
                continue
            compensation += past.value
            claims += past.detection is not _PROACTIVE
            order = past.order_id
            if order is not None:
                if order == order_id:
                    continue
                if past.type is incident_type and order not in typed_orders:
                    typed_orders.add(order)
                    same_type += 1
                if order in orders:
                    continue
                orders.add(order)
                incidents += 1
                continue
            incidents += 1
            same_type += past.type is incident_type
        return cls(incidents, same_type, claims, compensation)


_NOTHING = WindowFacts(0, 0, 0, ZERO)  # the facts of an empty history
_WINDOWS: dict[int, timedelta] = {}
