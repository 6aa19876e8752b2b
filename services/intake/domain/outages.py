"""An outage as intake remembers it: who declared it and when it started, who resolved it and
when, and whether its customers were told how long it lasted. Either event may come first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.intake.domain.detection import minutes_between


@dataclass(frozen=True, slots=True)
class Declaration:
    """What an `outage.declared` event told."""

    service: str
    severity: str
    started_at: datetime
    tenant: str | None
    event_id: str
    declared_at: datetime


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an `outage.resolved` event told, and by whom (the resolved stage's source)."""

    resolved_at: datetime
    source: str
    event_id: str
    prevention: str | None = None  # what was done so it won't happen again, if it said


@dataclass(frozen=True, slots=True)
class Outage:
    outage_id: str
    declaration: Declaration | None = None
    resolution: Resolution | None = None
    affected_customers: int | None = None
    # Its customers' incidents carry its duration (at the fan-out or by the resolved stage).
    duration_told: bool = False

    @property
    def minutes(self) -> int | None:
        """How long it lasted, once both its start and its end are known."""
        if self.declaration is None or self.resolution is None:
            return None
        return minutes_between(self.declaration.started_at, self.resolution.resolved_at)
