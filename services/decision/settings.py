"""Decision's settings (`AMENDS_DECISION_*`, falling back to the shared `AMENDS_*`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
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
    four_eyes_above: Decimal | None = Field(
        default=Decimal("250.00"), ge=0,
        description="a held decision whose goodwill is worth more than this (in the policy's "
                    "currency) needs two approvals by different reviewers; none: one suffices")
    four_eyes_manual_voucher_above: Decimal = Field(
        default=Decimal("50.00"), ge=0,
        description="a manual voucher worth more than this (in the policy's currency) is "
                    "held until a reviewer other than its creator approves it")
    manual_voucher_max: Decimal = Field(
        default=Decimal("500.00"), gt=0,
        description="the most a manual voucher may be worth; the policy's caps still apply")
    manual_voucher_max_days: int = Field(
        default=365, ge=1, le=3650, description="the longest a manual voucher may stay valid")
    fulfilment_url: str = Field(
        default="http://127.0.0.1:8003", description="fulfilment's HTTP API: the console "
        "reads a customer's case there, with the operator's own credentials")
    fulfilment_timeout_s: float = Field(default=10.0, gt=0)
    console_session_key: SecretStr | None = Field(
        default=None, repr=False, description="encrypts and signs the console's session "
        "cookies; give every instance the same one (none: a key made at start, so sessions "
        "end when the process does and hold on one instance only)")
    console_session_hours: float = Field(default=8.0, gt=0, le=24,
                                         description="how long a console sign-in lasts")
    outage_abort_window_s: float = Field(
        default=600.0, ge=0, description="an outage's remedies wait this long after each "
        "decision, so that an operator can abort or change them (ADR 0015); 0: no window")
    outage_abort_margin_s: float = Field(
        default=30.0, ge=0, description="an abort or change is refused this close to the "
        "window's end: its revisions must reach fulfilment before the remedies go out")
    ops_db: str = Field(default="amends_ops", description="where the operators' tools record "
                        "which dead letters were redriven (shared with `amends dlq`)")
