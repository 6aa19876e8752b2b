"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from schemas import topics
from services.common.access import ApiKey, AuthSettings
from services.common.web import Brand


class ServiceSettings(BaseSettings):
    """Connection, topic and batching settings.

    A value is read from the service's own prefix first (`AMENDS_INTAKE_KAFKA_BOOTSTRAP`),
    then from the shared `AMENDS_` prefix (`AMENDS_KAFKA_BOOTSTRAP`), then the default.
    """

    model_config = SettingsConfigDict(env_prefix="AMENDS_SERVICE_", extra="ignore")
    service_name: ClassVar[str] = "service"

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(default=None, repr=False)
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle for the broker's TLS (default: the system's)")
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "amends"
    store_backend: Literal["auto", "ferretdb", "mongodb"] = Field(
        default="auto", description="which storage adapter the service uses: the one for "
        "FerretDB (marks instead of updates, bodies as JSON text) or the one for MongoDB "
        "(nested documents, conditional updates, transactions on a replica set); `auto` asks "
        "the server what it is")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    create_topics: bool = Field(default=True, description="create missing topics at start")
    topic_partitions: int = topics.DEFAULT_PARTITIONS
    topic_replication: int = Field(default=1, ge=1)
    deadletter_topic: str = topics.DEADLETTER
    audit_topic: str = topics.AUDIT
    batch_max_records: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    batch_quiet_pause_ms: int = Field(
        default=0, ge=0, le=1000,
        description="a pause after a poll that found nothing, so that records gather into "
        "fewer, larger batches: 0 hands the first record on at once (lowest latency); 50 "
        "(FastStream's own pause) gave about 15% more pipeline throughput when every "
        "service, the broker and the database shared two cores (docs/performance.md)")
    max_poll_interval_ms: int = Field(
        default=300_000, ge=1000, description="the longest a batch may take before the "
        "consumer is taken out of its group (Kafka's max.poll.interval.ms)")
    batch_attempts: int = Field(
        default=3, ge=1, le=10,
        description="attempts of a failing batch, and then of each record of it alone, "
        "before the record is dead-lettered (processing_failed); an unreachable database "
        "or broker is retried without limit instead")
    log_level: str = "INFO"
    auth_jwt_key: SecretStr | None = Field(
        default=None, repr=False, description="verifies operator JWTs: an HMAC secret, or "
        "the issuer's PEM public key (use auth_jwks_url for an OIDC issuer)")
    auth_jwks_url: str | None = Field(
        default=None, description="the OIDC issuer's JWKS URL; keys are cached and fetched "
        "again for an unknown key id")
    auth_issuer: str | None = Field(default=None, description="the `iss` a JWT must carry")
    auth_audience: str | None = Field(default=None, description="the `aud` a JWT must carry")
    auth_roles_claim: str = Field(default="roles", description="the claim with the roles "
                                  "(a dotted path reaches nested claims)")
    auth_tenant_claim: str = "tenant"
    auth_subject_claim: str = "sub"
    auth_api_keys: list[ApiKey] = Field(default_factory=list, repr=False,
                                        description="API keys for scripts, by SHA-256")
    auth_api_keys_file: Path | None = Field(default=None,
                                            description="a JSON list of more API keys")
    auth_default_tenant: str = Field(default="default",
                                     description="the tenant of records that name none")
    customer_link_keys: dict[str, SecretStr] = Field(
        default_factory=dict, repr=False, description="key id -> HMAC key for customer "
        "links; every listed key verifies")
    customer_link_kid: str | None = Field(
        default=None, description="the key id that signs new links (default: the greatest)")
    customer_link_ttl_days: int = Field(default=30, ge=1, le=365)
    brand_name: str = Field(default="Customer care", min_length=1, max_length=80,
                            description="the company's name on its pages")
    brand_color: str = Field(default="#1f4e8c", description="the pages' colour (#rrggbb, "
                             "white text on it must meet WCAG AA contrast)")
    brands: dict[str, Brand] = Field(default_factory=dict, description="tenant -> "
                                     '{"name": ..., "color": ...}, for several brands')
    erasures_topic: str = topics.ERASURES
    erasure_pseudonym_key: SecretStr | None = Field(
        default=None, repr=False, description="HMAC key of the pseudonym an erased "
        "customer's money records keep (the same in every service); erasure is refused "
        "without one")
    retention_receipts_days: float = Field(
        default=30, gt=0, description="HTTP receipts and dedup claims (webhook retries)")
    retention_marks_days: float = Field(
        default=400, gt=0, description="settled-subject and published marks, customers seen")
    retention_messages_days: float = Field(
        default=90, gt=0, description="messages sent to customers (recipients and bodies)")
    retention_dead_letters_days: float = Field(
        default=30, gt=0, description="dead letters (the dead-letter topic's retention.ms)")
    retention_records_days: float = Field(
        default=400, gt=0, description="incidents and the decisions' working records")
    retention_money_days: float = Field(
        default=3650, gt=0, description="money records: decisions, ledgers, refunds, "
        "vouchers, outcomes (bookkeeping law)")
    retention_audit_days: float = Field(default=3650, gt=0,
                                        description="the audit trail")
    retention_sweep_seconds: float = Field(default=3600, gt=0,
                                           description="how often the retention sweep runs")
    tracing: Literal["auto", "file", "otlp", "off"] = Field(
        default="auto", description="spans per incident across the hops: `otlp` exports by "
        "OTLP/HTTP (the standard OTEL_EXPORTER_OTLP_* variables say where), `file` writes "
        "OTLP/JSON lines to trace_dir (what `amends trace` reads), `auto` is otlp when "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else file; "
        "`off` (or OTEL_SDK_DISABLED=true) records nothing")
    trace_dir: Path = Field(default=Path(".amends/traces"),
                            description="where the file exporter writes, a file per service")
    trace_file_max_mb: int = Field(
        default=64, ge=1, description="a trace file past this size is moved to `<name>.1` "
        "and a new one begun (the two are what is kept)")
    trace_sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="the share of incidents traced, decided by the "
        "trace id, so every hop keeps or drops the same incidents")
    consumer_group: str | None = Field(
        default=None, description="the Kafka consumer group (default: the service's name); "
        "give each environment sharing a cluster its own")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = EnvSettingsSource(settings_cls, env_prefix="AMENDS_")
        return init_settings, env_settings, shared, dotenv_settings, file_secret_settings

    @property
    def auth(self) -> AuthSettings:
        return AuthSettings(
            jwt_key=self.auth_jwt_key, jwks_url=self.auth_jwks_url, issuer=self.auth_issuer,
            audience=self.auth_audience, roles_claim=self.auth_roles_claim,
            tenant_claim=self.auth_tenant_claim, subject_claim=self.auth_subject_claim,
            api_keys=self.auth_api_keys, api_keys_file=self.auth_api_keys_file,
            default_tenant=self.auth_default_tenant)

    @property
    def brand(self) -> Brand:
        """The deployment's brand (the colour checked for contrast when settings load)."""
        return Brand(name=self.brand_name, color=self.brand_color)

    @model_validator(mode="after")
    def _brand_readable(self) -> Self:
        Brand(name=self.brand_name, color=self.brand_color)
        return self

    @property
    def group_id(self) -> str:
        """Every consumer of a service is in one consumer group: `consumer_group`, else the
        service's name."""
        return self.consumer_group or self.service_name
