"""Intake's settings (`AMENDS_INTAKE_*`, falling back to the shared `AMENDS_*`).

HTTP sources are configured in two variables so that only the secrets need a secret store:

- `AMENDS_INTAKE_HMAC_SECRETS`: a JSON object, source -> its secret, or a list of one or two
  secrets while one is being rotated (`{"shop": ["new", "old"]}`);
- `AMENDS_INTAKE_SOURCES`: a JSON object, source -> what it may send
  (`{"shop": {"event_types": ["order.placed"], "tenants": ["brand-a"], "rate_per_second": 20,
  "burst": 40}}`).

A source with a secret but no entry in `sources` is authenticated and allowed nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    field_validator,
)
from pydantic_settings import SettingsConfigDict

from schemas import topics
from schemas.upstream import UPSTREAM_EVENT_TYPES
from services.common.settings import ServiceSettings
from services.registry.incident_types import INCIDENT_TYPES, threshold_names

ANY = "*"


def _one_or_two(value: Any) -> Any:
    return [value] if isinstance(value, str | SecretStr) else value


Secrets = Annotated[list[SecretStr], BeforeValidator(_one_or_two),
                    Field(min_length=1, max_length=2)]


class SourcePolicy(BaseModel):
    """What one HTTP source may send, and how fast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_types: list[str] = Field(
        default_factory=list, description=f"upstream event types it may send, or {ANY!r}")
    tenants: list[str] = Field(
        default_factory=list,
        description=f"tenants it may send for, or {ANY!r}; empty: only events without one")
    report_incidents: bool = Field(default=False,
                                   description="may it POST /v1/incidents")
    rate_per_second: float = Field(default=50.0, gt=0, description="sustained requests/s")
    burst: int = Field(default=100, ge=1, description="requests allowed at once")

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t != ANY and t not in UPSTREAM_EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; expected some of "
                             f"{', '.join(UPSTREAM_EVENT_TYPES)} or {ANY!r}")
        return value

    def allows_type(self, event_type: str) -> bool:
        return ANY in self.event_types or event_type in self.event_types

    def allows_tenant(self, tenant: str | None) -> bool:
        if ANY in self.tenants:
            return True
        return tenant in self.tenants if tenant is not None else not self.tenants


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AMENDS_INTAKE_", extra="ignore")
    service_name: ClassVar[str] = "intake"

    mongo_db: str = "amends_intake"
    http_port: int = 8001
    orders_topic: str = topics.ORDERS
    support_topic: str = topics.SUPPORT
    payments_topic: str = topics.PAYMENTS
    outages_topic: str = topics.OUTAGES
    incidents_topic: str = topics.INCIDENTS

    # --- detection ---------------------------------------------------------------------------
    delivery_grace_minutes: int = Field(
        default=0, ge=0, description="how long after the promised time a delivery is late")
    delay_bands: list[tuple[str, int]] = Field(
        default=[("late", 0), ("late_30m", 30), ("late_2h", 120), ("late_8h", 480),
                 ("late_1d", 1440), ("lost", 4320)],
        description="(band, minutes late from which it applies), in ascending order; a "
                    "check fires as each band is reached, so the bands must start where the "
                    "policy's delay rules change (those of deploy/policy/default.yaml here)",
    )
    support_first_answer_minutes: int = Field(
        default=240, ge=1, description="the SLA for a ticket's first answer")
    thresholds: dict[str, Any] = Field(
        default_factory=dict,
        description='overrides of the incident types\' detection thresholds by name, '
                    '"<type>.<name>" (JSON, e.g. {"negative_review.max_rating": 2}); the names '
                    "and defaults are those of the registry's entries (services/registry); an "
                    "unknown name is refused at start")
    check_sweep_seconds: float = Field(
        default=5.0, gt=0, description="how often the scheduled checks that are due are run")
    idle_fallback_seconds: float = Field(
        default=120.0, ge=0,
        description="checks fire on event time: once intake has read an order's partition "
                    "past the check's due time. A partition read to its end (no lag, none of "
                    "its records still being processed) counts as read up to the wall clock "
                    "minus this much, so an idle stream fires its checks at most this late; "
                    "upstream must publish an event within this time of its occurrence")
    event_lateness_seconds: float = Field(
        default=60.0, ge=0,
        description="how far out of order events may arrive on one partition: the watermark "
                    "from the events' own times trails the newest of them by this much")
    check_sweep_limit: int = Field(default=1000, ge=1, le=1000,
                                   description="checks run per database round trip")
    write_chunk: int = Field(default=1000, ge=1, le=1000,
                             description="documents per bulk write (outage fan-out)")

    # --- the aftermath of incidents (ADR 0013) ---------------------------------------------
    aftermath_windows_days: list[int] = Field(
        default=[7, 30, 90], min_length=1,
        description="the windows, in days from an incident's occurred_at, over which what "
                    "the customer did afterwards is counted; each incident is followed for "
                    "the longest")
    aftermath_prune_seconds: float = Field(
        default=3600.0, gt=0, description="how often incidents past their longest window "
        "are dropped from memory")
    aftermath_gauge_seconds: float = Field(
        default=300.0, gt=0, description="how often the retention gauges (reordered and "
        "complained again, per incident type and window) are counted again from memory")

    erased_refresh_seconds: float = Field(
        default=30.0, gt=0, description="how often the erased customers are read again (an "
        "erasure another instance handled is known here within this time)")

    # --- HTTP intake ---------------------------------------------------------------------------
    hmac_secrets: dict[str, Secrets] = Field(default_factory=dict, repr=False)
    sources: dict[str, SourcePolicy] = Field(default_factory=dict)
    signature_tolerance_seconds: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_events: int = Field(default=1000, ge=1, le=1000)
    receipt_wait_seconds: float = Field(
        default=10.0, ge=0,
        description="how long a request waits for another instance processing the same "
                    "event before processing it itself")

    @field_validator("delay_bands")
    @classmethod
    def _ascending(cls, value: list[tuple[str, int]]) -> list[tuple[str, int]]:
        starts = [start for _, start in value]
        if not value or starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("delay bands must be non-empty and in strictly ascending order")
        return value

    @field_validator("aftermath_windows_days")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if any(days < 1 for days in value):
            raise ValueError("aftermath windows are whole days, at least 1")
        return sorted(set(value))

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = threshold_names(INCIDENT_TYPES)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown thresholds {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known)) or 'none'}")
        # Each takes its default's type, so "2" from the environment is the number 2.
        return {name: TypeAdapter(type(known[name])).validate_python(v, strict=False)
                for name, v in value.items()}

    @property
    def upstream_topics(self) -> list[str]:
        return [self.orders_topic, self.support_topic, self.payments_topic, self.outages_topic]
