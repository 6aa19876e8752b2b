"""Intake's settings (`AMENDS_INTAKE_*`, falling back to the shared `AMENDS_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas import topics
from services.common.settings import ServiceSettings


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
    delivery_grace_minutes: int = Field(default=0, ge=0)
    delay_bands: list[tuple[str, int]] = Field(
        default=[("late", 0), ("very_late", 240), ("severely_late", 1440), ("lost", 4320)],
        description="(band, minutes late from which it applies), in ascending order",
    )

    @property
    def upstream_topics(self) -> list[str]:
        return [self.orders_topic, self.support_topic, self.payments_topic, self.outages_topic]
