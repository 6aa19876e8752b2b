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
    ) -> WindowFacts:
        if not history.incidents:
            return _NOTHING
        window = _WINDOWS.get(window_days)
        if window is None:
            window = _WINDOWS[window_days] = timedelta(days=window_days)
        since = now - window
        incidents = same_type = claims = 0
        compensation = ZERO
        for past in history.incidents:
            if past.incident_id == incident_id or not since < past.decided_at <= now:
                continue
            incidents += 1
            same_type += past.type is incident_type
            claims += past.detection is not _PROACTIVE
            compensation += past.value
        return cls(incidents, same_type, claims, compensation)


_NOTHING = WindowFacts(0, 0, 0, ZERO)  # the facts of an empty history
_WINDOWS: dict[int, timedelta] = {}
