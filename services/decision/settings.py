"""Decision's settings (`AMENDS_DECISION_*`, falling back to the shared `AMENDS_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from schemas import topics
from services.common.settings import ServiceSettings


class DecisionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AMENDS_DECISION_", extra="ignore")
    service_name: ClassVar[str] = "decision"

    mongo_db: str = "amends_decision"
    http_port: int = 8002
    incidents_topic: str = topics.INCIDENTS
    decisions_topic: str = topics.DECISIONS
    outcomes_topic: str = topics.OUTCOMES
