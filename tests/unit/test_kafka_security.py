"""Kafka TLS and SASL settings become the broker's security."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from pydantic import SecretStr

from amends import ops
from amends.cli_ops import OpsSettings
from schemas.audit import AuditAction, AuditEntry
from services.common import topic_reader
from services.common.messaging import kafka_security
from services.decision.settings import DecisionSettings

pytestmark = pytest.mark.unit


def test_plaintext_has_no_security() -> None:
    assert kafka_security(DecisionSettings()) is None


def test_scram_over_tls_and_plain_sasl() -> None:
    scram = kafka_security(DecisionSettings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="amends",
        kafka_sasl_password=SecretStr("s3cret")))
    assert isinstance(scram, SASLScram512)
    assert scram.use_ssl
    assert scram.ssl_context is not None
    plain = kafka_security(DecisionSettings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="amends", kafka_sasl_password=SecretStr("s3cret")))
    assert isinstance(plain, SASLPlaintext)
    assert not plain.use_ssl
    tls = kafka_security(DecisionSettings(kafka_security_protocol="SSL"))
    assert type(tls) is BaseSecurity


def test_sasl_without_credentials_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="needs kafka_sasl_username and kafka_sasl_password"):
        kafka_security(DecisionSettings(kafka_security_protocol="SASL_SSL"))


def test_the_password_is_not_in_the_settings_repr() -> None:
    settings = DecisionSettings(kafka_sasl_password=SecretStr("s3cret"))
    assert "s3cret" not in repr(settings)


async def test_the_operators_tools_reach_kafka_as_the_services_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "amends",
                        "KAFKA_SASL_PASSWORD": "s3cret",
                        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}.items():
        monkeypatch.setenv(f"AMENDS_{name}", value)
    kafka = OpsSettings().kafka
    clients = [kafka.producer().client,
               kafka.consumer()._client, kafka.admin()._client]
    for client in clients:
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert client._sasl_plain_username == "amends"
        assert client._sasl_plain_password == "s3cret"
        assert isinstance(client._ssl_context, ssl.SSLContext)


def test_the_operators_tools_refuse_sasl_without_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(typer.Exit):
        _ = OpsSettings().kafka


class _MadeError(Exception):
    """Stops a tool right after it made its Kafka client."""


async def test_the_audit_trail_is_read_and_written_as_the_services_reach_kafka(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "amends",
                        "KAFKA_SASL_PASSWORD": "s3cret"}.items():
        monkeypatch.setenv(f"AMENDS_{name}", value)
    made: list[Any] = []

    def keep(make: Any, attribute: str) -> Any:
        def made_one(self: ops.Kafka, **options: Any) -> Any:
            made.append(getattr(make(self, **options), attribute))
            raise _MadeError

        return made_one

    def admin(**options: Any) -> Any:
        made.append(AIOKafkaAdminClient(**options)._client)
        raise _MadeError

    # The trail is read by the whole-topic reader the services share; written by the tool.
    monkeypatch.setattr(topic_reader, "AIOKafkaAdminClient", admin)
    monkeypatch.setattr(ops.Kafka, "producer", keep(ops.Kafka.producer, "client"))
    kafka = OpsSettings().kafka
    with pytest.raises(_MadeError):
        await ops.read_audit(kafka, "amends.audit.v1")
    entry = AuditEntry(audit_id="a-1", action=AuditAction.replay, actor="ops", tenant="*",
                       at=datetime.now(UTC), service="ops", target="t")
    with pytest.raises(_MadeError):
        await ops.publish_audit(kafka, "amends.audit.v1", entry)
    assert len(made) == 2
    for client in made:
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_plain_username == "amends"
