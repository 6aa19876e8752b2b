"""Which gateway and channels a fulfilment process talks to, from its settings, and which
channel carries a given customer's apology."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.common import Channel, Contact
from services.common.clock import Clock
from services.fulfilment.channels import MessageChannel, SmtpChannel, WebhookChannel
from services.fulfilment.errors import PermanentError
from services.fulfilment.gateway import HttpGateway, LedgerGateway, PaymentGateway
from services.fulfilment.settings import FulfilmentSettings

RECORD_ONLY = "record"


def payment_gateway(settings: FulfilmentSettings) -> PaymentGateway:
    if not settings.payment_gateway_url or settings.payment_gateway_api_key is None:
        return LedgerGateway()
    return HttpGateway(settings.payment_gateway_url,
                       settings.payment_gateway_api_key.get_secret_value(),
                       timeout_s=settings.payment_gateway_timeout_s)


def message_channels(settings: FulfilmentSettings,
                     clock: Clock) -> dict[Channel, MessageChannel]:
    """The channels configured; none means apologies are recorded, not delivered."""
    channels: dict[Channel, MessageChannel] = {}
    if settings.smtp_host:
        channels[Channel.email] = SmtpChannel(
            settings.smtp_host, settings.smtp_port, settings.smtp_from, clock=clock,
            starttls=settings.smtp_starttls, username=settings.smtp_username,
            password=(settings.smtp_password.get_secret_value()
                      if settings.smtp_password is not None else None),
            timeout_s=settings.smtp_timeout_s)
    if settings.webhook_url and settings.webhook_secret is not None:
        channels[Channel.webhook] = WebhookChannel(
            settings.webhook_url, settings.webhook_secret.get_secret_value(), clock=clock)
    return channels


@dataclass(frozen=True, slots=True)
class Route:
    """How one apology travels: the channel's name, the channel (None: recorded only) and
    the address it goes to (kept out of repr: it is personal data)."""

    name: str
    channel: MessageChannel | None
    recipient: str = ""

    def __repr__(self) -> str:
        return f"Route({self.name!r})"


def route(contact: Contact, channels: Mapping[Channel, MessageChannel]) -> Route:
    """The customer's preferred channel when it is configured and we have the address, else
    the first other configured one that can reach them (e-mail, then webhook; there is no SMS
    channel). Raises `PermanentError` when channels exist but none can reach the customer."""
    if not channels:
        return Route(RECORD_ONLY, None)
    order = [contact.preferred_channel, Channel.email, Channel.webhook]
    for name in dict.fromkeys(order):
        channel = channels.get(name)
        if channel is None:
            continue
        if name is Channel.email:
            if contact.email:
                return Route(name.value, channel, contact.email)
            continue
        # The webhook's receiver routes by customer id; it gets whatever address we have.
        return Route(name.value, channel, contact.webhook_url or contact.email or "")
    raise PermanentError(
        "the customer has no e-mail address and no other configured channel reaches them",
        code="no_channel")
