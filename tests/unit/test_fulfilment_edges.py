"""Which channel carries an apology, and settings that cannot work are refused at start."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from schemas.common import Channel, Contact
from services.fulfilment.channels import MessageChannel, SmtpChannel, WebhookChannel
from services.fulfilment.edges import RECORD_ONLY, message_channels, payment_gateway, route
from services.fulfilment.errors import PermanentError
from services.fulfilment.gateway import HttpGateway, LedgerGateway
from services.fulfilment.settings import FulfilmentSettings
from tests.clock import FakeClock

pytestmark = pytest.mark.unit

CLOCK = FakeClock(datetime(2026, 11, 23, tzinfo=UTC))
BOTH = message_channels(FulfilmentSettings(
    smtp_host="127.0.0.1", webhook_url="http://127.0.0.1:9/hook",
    webhook_secret=SecretStr("s")), CLOCK)


def test_without_channels_apologies_are_recorded() -> None:
    path = route(Contact(email="a@example.org"), {})
    assert (path.name, path.channel) == (RECORD_ONLY, None)


def test_the_preferred_channel_wins_when_it_can_reach_the_customer() -> None:
    by_hook = route(Contact(email="a@example.org", webhook_url="https://x.example/h",
                            preferred_channel=Channel.webhook), BOTH)
    assert isinstance(by_hook.channel, WebhookChannel)
    assert by_hook.recipient == "https://x.example/h"
    by_mail = route(Contact(email="a@example.org"), BOTH)
    assert isinstance(by_mail.channel, SmtpChannel)
    assert by_mail.recipient == "a@example.org"


def test_sms_and_missing_addresses_fall_back_to_what_reaches_the_customer() -> None:
    sms = route(Contact(email="a@example.org", preferred_channel=Channel.sms), BOTH)
    assert sms.name == "email"
    no_mail = route(Contact(), BOTH)
    assert no_mail.name == "webhook"
    email_only: dict[Channel, MessageChannel] = {Channel.email: BOTH[Channel.email]}
    with pytest.raises(PermanentError, match="no e-mail address"):
        route(Contact(phone="+40 700 000 000"), email_only)


def test_a_route_keeps_the_address_out_of_its_repr() -> None:
    assert "a@example.org" not in repr(route(Contact(email="a@example.org"), BOTH))


def test_the_gateway_is_the_ledger_unless_a_url_is_given() -> None:
    assert isinstance(payment_gateway(FulfilmentSettings()), LedgerGateway)
    http = payment_gateway(FulfilmentSettings(payment_gateway_url="https://pay.example",
                                              payment_gateway_api_key=SecretStr("sk_1")))
    assert isinstance(http, HttpGateway)
    assert "sk_1" not in repr(http)


@pytest.mark.parametrize(("fields", "named"), [
    ({"payment_gateway_url": "https://pay.example"}, "payment_gateway_api_key"),
    ({"webhook_url": "https://hooks.example"}, "webhook_secret"),
    ({"smtp_host": "mail", "smtp_username": "amends"}, "smtp_password"),
])
def test_incomplete_settings_name_what_is_missing(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        FulfilmentSettings.model_validate(fields)
