"""Kafka TLS and SASL settings become the broker's security."""

from __future__ import annotations

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from pydantic import SecretStr

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
