"""Decision's settings (`AMENDS_DECISION_*`, falling back to the shared `AMENDS_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from schemas import topics
from services.common.settings import ServiceSettings

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "default.yaml"


class DecisionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AMENDS_DECISION_", extra="ignore")
    service_name: ClassVar[str] = "decision"

    mongo_db: str = "amends_decision"
    http_port: int = 8002
    incidents_topic: str = topics.INCIDENTS
    decisions_topic: str = topics.DECISIONS
    outcomes_topic: str = topics.OUTCOMES
    policy_path: Path = Field(default=DEFAULT_POLICY,
                              description="the compensation policy (YAML) the service applies")
    offer_sweep_seconds: float = Field(
        default=30.0, gt=0, description="how often offers past their deadline get their default")
