"""The apology reaches a real SMTP server and a real webhook: addressed, encoded, signed,
retried on transient failures and not on permanent ones."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request, Response

from devtools.gateway_peer import serving
from schemas.common import Money
from schemas.decision import Action, Decision, DecisionStatus, RemedyKind, action_key
from schemas.incident import Incident
from services.fulfilment.channels import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    OutgoingMessage,
    SmtpChannel,
    WebhookChannel,
    message_id,
    verify_signature,
)
from services.fulfilment.errors import CredentialsError, PermanentError, TransientError
from services.fulfilment.messages import MessageExtras, render_apology
from services.fulfilment.retry import backoff_s, retry
from tests.clock import FakeClock
from tests.factories import incident
from tests.mail import Inbox, body, parsed
from tests.processes import free_port

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
SENDER = "Customer Care <care@shop.example>"
RECIPIENT = "anna@customer.example"
SECRET = "whsec_test_0123456789abcdef"  # the test's own signing secret


def apology(locale: str = "ru") -> OutgoingMessage:
    """A rendered apology for a double charge: a refund and points."""
    subject = Incident.model_validate(incident(
        "double_charge", charged_amount={"amount": "1249.90", "currency": "EUR"},
        order_value={"amount": "1249.90", "currency": "EUR"}, at=NOW - timedelta(hours=1)))
    remedies: list[tuple[RemedyKind, dict[str, Any]]] = [
        (RemedyKind.apology, {}),
        (RemedyKind.refund, {"amount": Money.of("1249.90", "EUR")}),
        (RemedyKind.points, {"points": 500})]
    actions = [Action(position=n, idempotency_key=action_key("d-mail", n), kind=kind,
                      value=Money.of("0", "EUR"), **fields)
               for n, (kind, fields) in enumerate(remedies)]
    decision = Decision(decision_id="d-mail", incident=subject, policy_version="test",
                        decided_at=NOW, status=DecisionStatus.approved, actions=actions,
                        total_value=Money.of("1249.90", "EUR"), explanation="test")
    rendered = render_apology(decision, locale, MessageExtras(customer_name="Анна"))
    return OutgoingMessage.of(rendered, idempotency_key=actions[0].idempotency_key,
                              recipient=RECIPIENT, customer_id=subject.customer.id,
                              metadata={"decision_id": "d-mail", "incident_type": "double_charge"})


class Sleeps:
    """An injected `sleep` that records the waits and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# --- SMTP ----------------------------------------------------------------------------------

async def test_the_apology_arrives_by_email_intact_in_russian(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    clock = FakeClock(NOW)
    channel = SmtpChannel("127.0.0.1", port, SENDER, clock=clock, timeout_s=5)
    message = apology("ru")

    delivery = await channel.send(message)

    [envelope] = handler.envelopes
    assert envelope.mail_from == "care@shop.example"
    assert envelope.rcpt_tos == [RECIPIENT]
    raw = envelope.original_content or b""
    raw.decode("ascii")  # every byte is 7-bit: the Cyrillic went through an encoding
    mail = parsed(envelope)
    assert mail["To"] == RECIPIENT
    assert mail["Subject"] == "Приносим извинения за двойное списание"
    assert mail["Content-Language"] == "ru"
    assert mail["Message-ID"] == message_id(message.idempotency_key, "shop.example")
    assert mail["Message-ID"] == delivery.message_id
    assert delivery.delivered_at == NOW
    assert mail.get_content_type() == "multipart/alternative"
    text, html = body(mail, "plain"), body(mail, "html")
    assert text.startswith("Здравствуйте, Анна!")
    assert "возврат 1\u00a0249,90\u00a0€" in text
    assert "500\u00a0бонусных баллов" in text
    assert "<li>возврат 1\u00a0249,90\u00a0€" in html


async def test_a_resent_message_has_the_same_message_id(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    channel = SmtpChannel("127.0.0.1", port, SENDER, clock=FakeClock(NOW),
                          message_id_domain="mail.shop.example")
    first = await channel.send(apology("en"))
    again = await channel.send(apology("en"))
    assert first.message_id == again.message_id
    assert first.message_id.endswith("@mail.shop.example>")
    assert [parsed(e)["Message-ID"] for e in handler.envelopes] == [first.message_id] * 2
    other = await channel.send(OutgoingMessage.of(render_apology(
        Decision.model_validate({**_decision_json(), "decision_id": "d-other"}), "en"),
        idempotency_key="d-other:0", recipient=RECIPIENT, customer_id="c-1"))
    assert other.message_id != first.message_id


def _decision_json() -> dict[str, Any]:
    subject = incident("item_missing")
    return {"decision_id": "d-x", "incident": subject, "policy_version": "test",
            "decided_at": NOW.isoformat(), "status": "approved", "explanation": "test",
            "total_value": {"amount": "0", "currency": "EUR"},
            "actions": [{"position": 0, "idempotency_key": "d-x:0", "kind": "apology",
                         "value": {"amount": "0", "currency": "EUR"}}]}


async def test_a_busy_server_is_retried_and_a_refused_recipient_is_not(
        inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    channel = SmtpChannel("127.0.0.1", port, SENDER, clock=FakeClock(NOW), timeout_s=5)
    handler.replies_to_data = ["451 4.3.0 Try again later"]
    sleeps = Sleeps()
    delivered = await retry(lambda: channel.send(apology()), attempts=3, base_s=0.5,
                            cap_s=2, sleep=sleeps, rng=random.Random(1))
    assert delivered.channel == "email"
    assert len(handler.envelopes) == 1
    assert len(sleeps.waits) == 1

    handler.refused.add(RECIPIENT)
    sleeps.waits.clear()
    with pytest.raises(PermanentError) as refused:
        await retry(lambda: channel.send(apology()), attempts=3, base_s=0.5, cap_s=2,
                    sleep=sleeps, rng=random.Random(1))
    assert refused.value.status == 550
    assert RECIPIENT not in str(refused.value)  # contact details stay out of errors and logs
    assert "<recipient>" in str(refused.value)
    assert sleeps.waits == []
    assert len(handler.envelopes) == 1


async def test_a_bad_address_is_permanent_and_an_absent_server_transient() -> None:
    channel = SmtpChannel("127.0.0.1", free_port(), SENDER, clock=FakeClock(NOW), timeout_s=2)
    with pytest.raises(PermanentError):
        await channel.send(OutgoingMessage.of(
            render_apology(Decision.model_validate(_decision_json()), "en"),
            idempotency_key="k", recipient="someone@example.org\r\nBcc: x@evil.example",
            customer_id="c-1"))
    with pytest.raises(TransientError):
        await channel.send(apology())


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_starttls_and_login(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            tls_context=server_tls, require_starttls=True,
                            authenticator=handler, auth_require_tls=True)
    controller.start()
    try:
        def channel(**options: Any) -> SmtpChannel:
            return SmtpChannel("127.0.0.1", controller.port, SENDER, clock=FakeClock(NOW),
                               timeout_s=5, tls_context=client_tls, **options)

        await channel(starttls=True, username="amends", password="s3cret").send(apology())
        assert len(handler.envelopes) == 1
        assert handler.authenticated

        # A wrong password is the operator's to fix, not a reason to fail the apology.
        with pytest.raises(CredentialsError) as wrong:
            await channel(starttls=True, username="amends", password="nope").send(apology())
        assert wrong.value.status == 535
        with pytest.raises(PermanentError) as plain:  # the server insists on STARTTLS
            await channel().send(apology())
        assert plain.value.status == 530
        with pytest.raises(PermanentError):  # a certificate we do not trust
            await SmtpChannel("127.0.0.1", controller.port, SENDER, clock=FakeClock(NOW),
                              starttls=True).send(apology())
        assert len(handler.envelopes) == 1
    finally:
        controller.stop()


# --- webhook -------------------------------------------------------------------------------

@dataclass
class Receiver:
    """A webhook endpoint: records each request, answers with the scripted statuses first."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    delay_s: float = 0.0
    retry_after: str | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/apology")
        async def hook(request: Request) -> Response:
            self.requests.append((dict(request.headers), await request.body()))
            await asyncio.sleep(self.delay_s)
            status = self.statuses.pop(0) if self.statuses else 200
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return Response(status_code=status, headers=headers)

        return app


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    async with serving(hook.app()) as base_url:
        yield hook, f"{base_url}/hooks/apology"


async def test_the_webhook_is_signed_and_a_503_is_retried(
        receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.statuses = [503]
    clock = FakeClock(NOW)
    sleeps = Sleeps()
    message = apology("ro")
    async with WebhookChannel(url, SECRET, clock=clock, timeout_s=5) as channel:
        delivery = await retry(lambda: channel.send(message), attempts=4, base_s=0.2, cap_s=1,
                               sleep=sleeps, rng=random.Random(3))

    assert delivery.channel == "webhook"
    assert delivery.idempotency_key == message.idempotency_key
    assert len(hook.requests) == 2
    assert len(sleeps.waits) == 1
    assert {headers[IDEMPOTENCY_HEADER.lower()] for headers, _ in hook.requests} == {
        message.idempotency_key}
    headers, raw = hook.requests[-1]
    signature = headers[SIGNATURE_HEADER.lower()]
    timestamp, _, mac = signature.partition(",")
    assert timestamp == f"t={int(NOW.timestamp())}"
    expected = hmac.new(SECRET.encode(), f"{int(NOW.timestamp())}.".encode() + raw,
                        hashlib.sha256).hexdigest()
    assert mac == f"v1={expected}"
    assert verify_signature(SECRET, signature, raw, now=NOW + timedelta(seconds=30))
    assert not verify_signature(SECRET, signature, raw + b" ", now=NOW)
    assert not verify_signature("another-secret", signature, raw, now=NOW)
    assert not verify_signature(SECRET, signature, raw, now=NOW + timedelta(minutes=10))
    payload = json.loads(raw)
    assert payload["id"] == message.idempotency_key
    assert payload["recipient"] == RECIPIENT
    assert payload["locale"] == "ro"
    assert payload["subject"] == message.subject
    assert "1.249,90\u00a0€" in payload["text"]
    assert payload["metadata"] == {"decision_id": "d-mail", "incident_type": "double_charge"}


async def test_a_400_is_permanent_and_not_retried(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.statuses = [400]
    sleeps = Sleeps()
    async with WebhookChannel(url, SECRET, clock=FakeClock(NOW)) as channel:
        with pytest.raises(PermanentError) as refused:
            await retry(lambda: channel.send(apology()), attempts=4, base_s=0.2, cap_s=1,
                        sleep=sleeps, rng=random.Random(3))
    assert refused.value.status == 400
    assert len(hook.requests) == 1
    assert sleeps.waits == []


async def test_refused_credentials_are_not_retried_nor_permanent(
        receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    for status in (401, 403):
        hook.statuses = [status]
        sleeps = Sleeps()
        async with WebhookChannel(url, SECRET, clock=FakeClock(NOW)) as channel:
            with pytest.raises(CredentialsError) as refused:
                await retry(lambda: channel.send(apology()), attempts=4, base_s=0.2,
                            cap_s=1, sleep=sleeps, rng=random.Random(3))
        assert refused.value.status == status
        assert not isinstance(refused.value, PermanentError)
        assert sleeps.waits == []
    assert len(hook.requests) == 2


async def test_too_many_requests_waits_as_asked_and_a_slow_hook_times_out(
        receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.statuses, hook.retry_after = [429, 429], "7"
    sleeps = Sleeps()
    async with WebhookChannel(url, SECRET, clock=FakeClock(NOW)) as channel:
        await retry(lambda: channel.send(apology()), attempts=3, base_s=0.1, cap_s=5,
                    sleep=sleeps, rng=random.Random(3))
    assert sleeps.waits == [5, 5]  # at least what the hook asked, within the cap
    assert len(hook.requests) == 3

    hook.delay_s, hook.retry_after = 1.0, None
    async with WebhookChannel(url, SECRET, clock=FakeClock(NOW), timeout_s=0.2) as channel:
        with pytest.raises(TransientError, match="in time"):
            await channel.send(apology())
    async with WebhookChannel(f"http://127.0.0.1:{free_port()}/hook", SECRET,
                              clock=FakeClock(NOW)) as channel:
        with pytest.raises(TransientError, match="cannot reach"):
            await channel.send(apology())


# --- retry ---------------------------------------------------------------------------------

async def test_retry_backs_off_with_full_jitter_within_the_cap() -> None:
    sleeps = Sleeps()
    calls = 0

    async def always_busy() -> None:
        nonlocal calls
        calls += 1
        raise TransientError(f"busy {calls}")

    with pytest.raises(TransientError, match="busy 6"):  # the last error is re-raised
        await retry(always_busy, attempts=6, base_s=0.1, cap_s=0.5, sleep=sleeps,
                    rng=random.Random(11))
    assert calls == 6
    assert len(sleeps.waits) == 5
    for n, wait in enumerate(sleeps.waits, 1):
        assert 0 <= wait <= min(0.5, 0.1 * 2 ** (n - 1))
    rng = random.Random(5)
    assert max(backoff_s(1000, base_s=1, cap_s=30, rng=rng) for _ in range(200)) <= 30
    with pytest.raises(ValueError, match="attempts"):
        await retry(always_busy, attempts=0, base_s=0.1, cap_s=1, rng=rng)
