"""Decision's settings (`AMENDS_DECISION_*`, falling back to the shared `AMENDS_*`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
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
    outage_previews_topic: str = Field(
        default=topics.OUTAGE_PREVIEWS, description="where each outage's cost preview goes")
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
    reply_sla_target_hours: float = Field(
        default=4.0, gt=0, description="a public reply to a negative review should be posted "
        "within this many hours of the review; past it the reply is overdue and escalated")
    reply_sla_max_hours: float = Field(
        default=24.0, gt=0, description="the most a public reply may take (the overdue alert "
        "turns critical past it)")
    reply_sweep_seconds: float = Field(
        default=60.0, gt=0, description="how often the reply queue's gauges are brought up to "
        "date (overdue replies, the oldest open one)")

    @model_validator(mode="after")
    def _reply_sla_in_order(self) -> Self:
        if self.reply_sla_max_hours < self.reply_sla_target_hours:
            raise ValueError("reply_sla_max_hours must be at least reply_sla_target_hours")
        return self
    status_posts_topic: str = Field(
        default=topics.STATUS_POSTS, description="where status posts cleared for publishing "
        "go (fulfilment publishes them to the status page)")
    status_post_url: str = Field(
        default="", description="the public address of a status post, with `{subject_id}` "
        "for the outage id (shown with each draft; the apologies' link is fulfilment's "
        "`status_page_url`)")
    status_post_sweep_seconds: float = Field(
        default=30.0, gt=0, description="how often posts cleared but not yet on the topic "
        "(a crash in between) are put there")

    # --- the console's Retention page (ADR 0019) -------------------------------------------
    retention_intake_db: str = Field(
        default="amends_intake", description="intake's database, where the aftermath of "
        "incidents is kept: the Retention page reads it as `amends report retention` does")
    retention_windows_days: list[int] = Field(
        default=[7, 30, 90], min_length=1, description="the aftermath windows, in days: "
        "the same as intake's `aftermath_windows_days`")
    retention_since_days: int = Field(
        default=180, ge=1, le=3650, description="the Retention page's incidents: those of "
        "the last this many days")

    # --- fairness (ADR 0019) ---------------------------------------------------------------
    findings_topic: str = topics.FINDINGS
    fairness_days: int = Field(default=30, ge=1, le=3650,
                               description="the fairness check compares the decisions of the "
                                           "last this many days")
    fairness_tolerance: Decimal = Field(
        default=Decimal("0.25"), gt=0, description="the relative difference in mean goodwill "
        "per decision, between a group and the rest of its type and severity band, beyond "
        "which (and beyond chance) the group is flagged")
    fairness_min_decisions: int = Field(
        default=30, ge=2, description="decisions needed on each side of a comparison before "
        "it may be flagged")
    fairness_flag: list[Literal["locale", "tier", "tenant"]] = Field(
        default=["locale", "tenant"], description="the dimensions whose differences are "
        "findings; the others are compared and reported (the default policy grants loyal "
        "tiers more on purpose)")
    fairness_hour: int = Field(default=3, ge=0, le=23,
                               description="the nightly check runs at the first sweep past "
                                           "this hour (UTC), once a day")
    fairness_sweep_seconds: float = Field(
        default=600.0, gt=0, description="how often the service looks whether the nightly "
        "fairness check is due")
