"""Fulfilment's settings (`AMENDS_FULFILMENT_*`, falling back to the shared `AMENDS_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas import topics
from services.common.settings import ServiceSettings


class FulfilmentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AMENDS_FULFILMENT_", extra="ignore")
    service_name: ClassVar[str] = "fulfilment"

    mongo_db: str = "amends_fulfilment"
    http_port: int = 8003
    decisions_topic: str = topics.DECISIONS
    outcomes_topic: str = topics.OUTCOMES
    tasks_topic: str = topics.TASKS
    points_expiry_days: int = Field(default=365, ge=1)
    perk_expiry_days: int = Field(default=180, ge=1, description="free delivery lasts")
