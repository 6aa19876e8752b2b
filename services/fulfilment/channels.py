"""Message channels: deliver a rendered apology by e-mail (SMTP) or to a signed webhook.

A channel makes one attempt and reports it as a `Delivery`, a `TransientError` (try again
with the same message) or a `PermanentError`; `retry()` decides about trying again. Every
message carries its action's idempotency key, so a repeated attempt is recognisable at the
other end: the e-mail's Message-ID and the webhook's `Idempotency-Key` derive from it.

Contact details (the recipient) are used to deliver and never put in errors or reprs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from types import TracebackType
from typing import Protocol, Self

import httpx

from services.common.clock import Clock
from services.fulfilment.errors import (
    CredentialsError,
    PermanentError,
    TransientError,
    refusal,
)
from services.fulfilment.messages import RenderedMessage

SIGNATURE_HEADER = "Amends-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_TOLERANCE_S = 300

# Bodies as quoted-printable or base64, never raw 8-bit: any relay can carry them.
_MAIL_POLICY = SMTP_POLICY.clone(cte_type="7bit")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One apology to deliver. `recipient` is the e-mail address for SMTP; a webhook gets it
    in its payload (where the receiver routes it)."""

    idempotency_key: str
    recipient: str = field(repr=False)
    subject: str
    text: str
    html: str
    locale: str
    customer_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    kind: str = "apology"  # or "follow_up": what a webhook's receiver is told it gets

    @classmethod
    def of(cls, rendered: RenderedMessage, *, idempotency_key: str, recipient: str,
           customer_id: str, metadata: Mapping[str, str] | None = None,
           kind: str = "apology") -> OutgoingMessage:
        return cls(idempotency_key=idempotency_key, recipient=recipient,
                   subject=rendered.subject, text=rendered.text, html=rendered.html,
                   locale=rendered.locale, customer_id=customer_id,
                   metadata=dict(metadata or {}), kind=kind)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message the other end accepted."""

    channel: str
    idempotency_key: str
    message_id: str
    delivered_at: datetime
    detail: str = ""


class MessageChannel(Protocol):
    async def send(self, message: OutgoingMessage) -> Delivery:
        """Deliver once; raise `TransientError` or `PermanentError` when it was not."""
        ...


def message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of the e-mail for an action: the same key always gives the same id,
    so a retried send is recognisable as the same message (and internal ids stay inside)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


# --- SMTP ----------------------------------------------------------------------------------

class SmtpChannel:
    """E-mail through an SMTP relay: multipart text + HTML, one connection per message.

    smtplib runs in a worker thread (aiosmtplib is not a dependency); `timeout_s` bounds
    every network operation. Without `starttls` nothing is encrypted, so only use that with a
    relay on the same host or network.
    """

    channel = "email"

    def __init__(self, host: str, port: int, sender: str, *, clock: Clock,
                 starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0,
                 tls_context: ssl.SSLContext | None = None,
                 message_id_domain: str | None = None) -> None:
        _, sender_address = parseaddr(sender)
        if not _ADDRESS.match(sender_address):
            raise ValueError("sender must be an e-mail address, e.g. 'Care <care@example.org>'")
        if username is not None and password is None:
            raise ValueError("an SMTP username needs a password")
        self.host = host
        self.port = port
        self.sender = sender
        self.sender_address = sender_address
        self.clock = clock
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self.tls_context = tls_context
        self.domain = message_id_domain or sender_address.rpartition("@")[2]

    def compose(self, message: OutgoingMessage) -> EmailMessage:
        """The e-mail for `message` (multipart/alternative: text, then HTML)."""
        if not _ADDRESS.match(message.recipient):
            raise PermanentError("the recipient is not a valid e-mail address")
        mail = EmailMessage(policy=_MAIL_POLICY)
        try:
            mail["From"] = self.sender
            mail["To"] = message.recipient
            mail["Subject"] = message.subject
        except ValueError as exc:  # a header with a line break in it
            raise PermanentError(f"the message cannot be sent: {exc}") from None
        mail["Date"] = format_datetime(self.clock())
        mail["Message-ID"] = message_id(message.idempotency_key, self.domain)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        # After the body: setting content clears the Content-* headers set before it.
        mail["Content-Language"] = message.locale
        return mail

    async def send(self, message: OutgoingMessage) -> Delivery:
        mail = self.compose(message)
        await asyncio.to_thread(self._deliver, mail, message.recipient)
        return Delivery(channel=self.channel, idempotency_key=message.idempotency_key,
                        message_id=str(mail["Message-ID"]), delivered_at=self.clock(),
                        detail=f"accepted by {self.host}:{self.port}")

    def _deliver(self, mail: EmailMessage, recipient: str) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=self.tls_context or ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(mail, from_addr=self.sender_address, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (550, b""))
            raise _by_code(code, "the recipient was refused", reply, recipient) from None
        except smtplib.SMTPSenderRefused as exc:
            raise _by_code(exc.smtp_code, "the sender was refused", exc.smtp_error,
                           recipient) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise CredentialsError(f"SMTP authentication failed ({exc.smtp_code})",
                                   status=exc.smtp_code) from None
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, "the SMTP server refused the message",
                           exc.smtp_error, recipient) from None
        except smtplib.SMTPServerDisconnected:
            raise TransientError("the SMTP server closed the connection") from None
        except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS, no AUTH
            raise PermanentError(f"the SMTP server does not support it: {exc}") from None
        except smtplib.SMTPException as exc:
            raise PermanentError(f"SMTP failed: {type(exc).__name__}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"the SMTP server's certificate was refused: "
                                 f"{exc.verify_message}") from None
        except OSError as exc:  # refused, reset, timed out, no route, DNS
            raise TransientError(f"cannot reach the SMTP server: {type(exc).__name__}") from None


def _by_code(code: int, what: str, reply: bytes | str, recipient: str
             ) -> TransientError | PermanentError:
    """4xx is "try later", 5xx is "no"; the server's words with the address taken out."""
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    text = re.sub(re.escape(recipient), "<recipient>", text, flags=re.IGNORECASE)
    message = f"{what}: {code} {text}".strip()
    if 400 <= code < 500:
        return TransientError(message, status=code)
    return PermanentError(message, status=code)


# --- webhook -------------------------------------------------------------------------------

def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Amends-Signature` value: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, *, now: datetime,
                     tolerance_s: int = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver checks: the signature matches and is not older than `tolerance_s`
    (so a captured request cannot be replayed later)."""
    parts = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookChannel:
    """POST the message as JSON to one endpoint, signed with a shared secret.

    2xx is delivered; 5xx, 408/425/429, timeouts and connection errors are transient; 401 and
    403 refuse our credentials (`CredentialsError`); any other status (4xx, or a redirect,
    which we do not follow) is permanent. The receiver deduplicates on `Idempotency-Key`,
    which stays the same on every retry.
    """

    channel = "webhook"

    def __init__(self, url: str, secret: str, *, clock: Clock, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if not secret:
            raise ValueError("a webhook needs a signing secret")
        self.url = url
        self._secret = secret
        self.clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None
        self.timeout_s = timeout_s

    def payload(self, message: OutgoingMessage) -> bytes:
        body = {"id": message.idempotency_key, "type": f"amends.{message.kind}",
                "customer_id": message.customer_id, "recipient": message.recipient,
                "locale": message.locale, "subject": message.subject, "text": message.text,
                "html": message.html, "metadata": dict(message.metadata)}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                          sort_keys=True).encode()

    async def send(self, message: OutgoingMessage) -> Delivery:
        body = self.payload(message)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   IDEMPOTENCY_HEADER: message.idempotency_key,
                   SIGNATURE_HEADER: sign(self._secret, int(self.clock().timestamp()), body),
                   "User-Agent": "amends-fulfilment"}
        try:
            response = await self._client.post(self.url, content=body, headers=headers,
                                               timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise TransientError("the webhook did not answer in time") from None
        except httpx.TransportError as exc:
            raise TransientError(f"cannot reach the webhook: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return Delivery(channel=self.channel, idempotency_key=message.idempotency_key,
                            message_id=message.idempotency_key, delivered_at=self.clock(),
                            detail=f"webhook answered {status}")
        raise refusal(status, f"the webhook answered {status} {response.reason_phrase}".strip(),
                      response.headers.get("Retry-After"))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
