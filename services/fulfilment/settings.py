"""Fulfilment's settings (`AMENDS_FULFILMENT_*`, falling back to the shared `AMENDS_*`).

Refunds go through the embedded ledger unless `payment_gateway_url` names a gateway; apology
messages are recorded only (shown in the case view) unless `smtp_host` or `webhook_url`
configures a channel that delivers them.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from schemas import topics
from services.common.settings import ServiceSettings

# What can be paced: message channels, the payment gateway, and the local effects that
# `services.registry.remedy_kinds` names.
PAYMENTS = "payments"
PACED_PROVIDERS = frozenset({"email", "sms", "webhook", PAYMENTS, "ledger", "voucher", "perk",
                             "task"})

# Time a batch's database writes and publishing may take after its last call.
BATCH_WRITES_S = 30.0


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
    voucher_expiry_days: int = Field(default=90, ge=1,
                                     description="when the decision gives no expiry")

    # Refunds: a Stripe-style gateway when a URL is given, else the embedded ledger.
    payment_gateway_url: str | None = None
    payment_gateway_api_key: SecretStr | None = Field(default=None, repr=False)
    payment_gateway_timeout_s: float = Field(default=10.0, gt=0)
    refund_polls: int = Field(default=3, ge=0,
                              description="status queries for a pending refund, per attempt")
    refund_poll_interval_s: float = Field(default=1.0, ge=0)

    # Apology messages: e-mail when an SMTP relay is given, a signed webhook when a URL is.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = Field(default=None, repr=False)
    smtp_from: str = "Customer care <care@amends.invalid>"
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = Field(default=None, repr=False)
    message_signature: str | None = Field(default=None, max_length=80,
                                          description="the sign-off under every apology")
    customer_page_url: str = Field(
        default="http://127.0.0.1:8003/v1/customer/decisions/{decision_id}?token={token}",
        description="the customer's page, linked from every message that offers a choice or "
        "shows what they got: {decision_id} and {token} (a signed, expiring customer link) "
        "are replaced; no link is sent while no customer_link_keys are configured")
    decision_url: str = Field(
        default="http://127.0.0.1:8002", description="decision's HTTP API: the customer's "
        "page hands a choice made on it to decision, which owns the offer")
    decision_timeout_s: float = Field(default=10.0, gt=0)
    feedback_topic: str = Field(default=topics.SUPPORT, description="where a rating given on "
                                "the customer's page goes, as an upstream remedy.rated event")
    send_concurrency: int = Field(default=16, ge=1,
                                  description="messages and refunds in flight at once")

    # Pacing (ADR 0015): an outage's remedies and messages go out at these rates, not at once.
    pace_per_second: dict[str, float] = Field(
        default_factory=dict, description="issues a second per provider, for all fulfilment "
        "instances together: a message channel (email, webhook), payments (refunds at the "
        "gateway), or a remedy's local effect (ledger, voucher, perk, task); a provider not "
        "named is not paced")
    pace_instances: int = Field(default=1, ge=1, description="fulfilment instances sharing "
                                "the rates: each paces at its share")
    release_seconds: float = Field(default=1.0, gt=0, description="how often remedies held "
                                   "for an outage's abort window are looked at for release")
    held_recall_hours: float = Field(
        default=24.0, gt=0, description="at start, the held remedies of decisions held "
        "until at most this long ago are taken up again (those released before add nothing)")

    # Transient failures: retried with backoff in the batch, then by the sweep.
    retry_attempts: int = Field(default=4, ge=1)
    retry_base_s: float = Field(default=0.2, ge=0)
    retry_cap_s: float = Field(default=5.0, ge=0)
    sweep_seconds: float = Field(default=30.0, gt=0,
                                 description="how often unfinished refunds and messages "
                                 "are tried again")
    full_sweep_seconds: float = Field(
        default=600.0, gt=0, description="how often the whole refunds and messages logs are "
        "scanned for effects another process left unfinished (it died and did not come "
        "back), on a store whose adapter keeps the unfinished ones in memory (FerretDB); "
        "also done once at start. Never more often than ten times the last scan's own "
        "duration (a scan grows with what is stored)")
    claim_lease_seconds: float = Field(
        default=300.0, gt=0, description="after this, an effect claimed by a process that "
        "died is taken over by the sweep")
    give_up_after_hours: float = Field(default=24.0, gt=0,
                                       description="a transient failure this old is final")
    paused_retry_cap_s: float = Field(
        default=900.0, gt=0, description="the longest pause between two tries of an effect "
        "whose remote refused our credentials (it never gives up: an alert fires)")
    batch_deadline_s: float = Field(
        default=120.0, gt=0, description="no call is started after this in a batch; what is "
        "left waits for the sweep (a batch must end within max_poll_interval_ms)")

    def slowest_call_s(self) -> float:
        """The longest one call in flight can take: a refund with its status queries, or a
        message (the webhook's client waits 10 s)."""
        refund = (self.payment_gateway_timeout_s * (1 + self.refund_polls)
                  + self.refund_poll_interval_s * self.refund_polls)
        return max(refund, self.smtp_timeout_s, 10.0)

    # Public status posts (ADR 0016): where they are published, and the link in apologies.
    status_posts_topic: str = topics.STATUS_POSTS
    status_page: Literal["none", "webhook", "statuspage"] = Field(
        default="none", description="where status posts go: a signed webhook, an Atlassian "
        "Statuspage-compatible API, or nowhere (recorded only)")
    status_webhook_url: str | None = None
    status_webhook_secret: SecretStr | None = Field(default=None, repr=False)
    statuspage_api_url: str = "https://api.statuspage.io/v1"
    statuspage_page_id: str = ""
    statuspage_api_key: SecretStr | None = Field(default=None, repr=False)
    statuspage_locale: str = Field(default="en", description="the one language of the page")
    status_page_url: str = Field(
        default="", description="the public address of an outage's status post, with "
        "`{outage_id}`: every apology of the outage links to it (none: no link)")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.status_page == "webhook" and not (self.status_webhook_url
                                                  and self.status_webhook_secret):
            raise ValueError("status_webhook_url and status_webhook_secret: required with "
                             "status_page=webhook")
        if self.status_page == "statuspage" and not (self.statuspage_page_id
                                                     and self.statuspage_api_key):
            raise ValueError("statuspage_page_id and statuspage_api_key: required with "
                             "status_page=statuspage")
        if self.status_page_url and ("{outage_id}" not in self.status_page_url or any(
                c in self.status_page_url for c in "&<>\"' \t\r\n")):
            raise ValueError("status_page_url: must contain {outage_id}, and no &, <, >, "
                             "quotes or spaces")
        unknown = set(self.pace_per_second) - PACED_PROVIDERS
        if unknown:
            raise ValueError(f"pace_per_second: unknown providers {sorted(unknown)}; known: "
                             f"{sorted(PACED_PROVIDERS)}")
        if any(rate <= 0 for rate in self.pace_per_second.values()):
            raise ValueError("pace_per_second: rates must be positive")
        if self.payment_gateway_url and self.payment_gateway_api_key is None:
            raise ValueError("payment_gateway_api_key: required with payment_gateway_url")
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("webhook_secret: required with webhook_url")
        page = self.customer_page_url
        if "{token}" not in page or "{decision_id}" not in page:
            raise ValueError("customer_page_url: must contain {decision_id} and {token}")
        if any(c in page for c in "&<>\"' \t\r\n"):
            # Messages escape these (a plain-text message keeps `&` as `&amp;`): a link with
            # one would not open. One query parameter is enough, the decision goes in the path.
            raise ValueError("customer_page_url: no &, <, >, quotes or spaces")
        if self.smtp_username and self.smtp_password is None:
            raise ValueError("smtp_password: required with smtp_username")
        # A batch stops starting calls at its deadline; the calls then in flight end within
        # their timeouts, and the batch's writes follow. All of it must fit in the poll
        # interval, or the consumer is dropped from its group and the batch redelivered.
        worst = self.batch_deadline_s + self.slowest_call_s() + BATCH_WRITES_S
        if worst * 1000 >= self.max_poll_interval_ms:
            raise ValueError(
                f"batch_deadline_s: a batch may last {worst:.0f} s (deadline, slowest call, "
                f"writes), not under max_poll_interval_ms={self.max_poll_interval_ms}")
        return self
