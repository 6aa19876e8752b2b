"""A customer's earlier incidents and what they were granted: the input of the history
conditions and of the per-customer cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.incident import Detection, IncidentType

ZERO = Decimal(0)
_PROACTIVE = Detection.proactive
_DOUBLE_CHARGE = IncidentType.double_charge


def failure_of(order_id: str | None, outage_id: str | None) -> str | None:
    """The one failure an incident is part of, whatever its stages: its order's, else its
    outage's (an outage is one failure for each customer it reached)."""
    if order_id is not None:
        return f"order:{order_id}"
    if outage_id is not None:
        return f"outage:{outage_id}"
    return None


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
    outage_id: str | None = None  # one outage is one failure, however many stages
    # `failure_of` the two, computed once: the window facts read it for every past incident.
    failure: str | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failure", failure_of(self.order_id, self.outage_id))


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
        outage_id: str | None = None,
    ) -> WindowFacts:
        """One failure (an order, an outage) is one failure: the earlier incidents of the
        current incident's failure are not counted, and the others of one failure count
        once; what they were granted still counts in full."""
        if not history.incidents:
            return _NOTHING
        window = _WINDOWS.get(window_days)
        if window is None:
            window = _WINDOWS[window_days] = timedelta(days=window_days)
        since = now - window
        current = failure_of(order_id, outage_id)
        incidents = same_type = claims = 0
        compensation = ZERO
        failures: set[str] = set()
        typed_failures: set[str] = set()
        for past in history.incidents:
            if past.incident_id == incident_id or not since < past.decided_at <= now:
                continue
            compensation += past.value
            claims += past.detection is not _PROACTIVE
            failure = past.failure
            if failure is not None:
                if failure == current:
                    continue
                if past.type is incident_type and failure not in typed_failures:
                    typed_failures.add(failure)
                    same_type += 1
                if failure in failures:
                    continue
                failures.add(failure)
                incidents += 1
                continue
            incidents += 1
            same_type += past.type is incident_type
        return cls(incidents, same_type, claims, compensation)


_NOTHING = WindowFacts(0, 0, 0, ZERO)  # the facts of an empty history
_WINDOWS: dict[int, timedelta] = {}
