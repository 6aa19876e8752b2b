"""A real SMTP server for tests (aiosmtpd) that keeps what it accepts, and helpers to read it."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.processes import free_port


@dataclass
class Inbox:
    """An SMTP handler that keeps what it accepts; `replies_to_data` answer DATA first;
    `delay_s` makes it a slow relay (it waits that long before accepting each message)."""

    envelopes: list[Envelope] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    replies_to_data: list[str] = field(default_factory=list)
    authenticated: list[str] = field(default_factory=list)
    delay_s: float = 0.0

    async def handle_RCPT(self, _server: SMTP, _session: Session,  # noqa: N802 - aiosmtpd's
                          envelope: Envelope, address: str, _options: list[str]) -> str:
        if address in self.refused:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session,  # noqa: N802 - aiosmtpd's
                          envelope: Envelope) -> str:
        if self.replies_to_data:
            return self.replies_to_data.pop(0)
        await asyncio.sleep(self.delay_s)
        self.envelopes.append(envelope)
        return "250 2.0.0 queued"

    def __call__(self, _server: SMTP, _session: Session, _envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        """The authenticator: one user, one password."""
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"amends"
              and auth_data.password == b"s3cret")
        if ok:
            self.authenticated.append(mechanism)
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535


def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on a free port, and what it received."""
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def parsed(envelope: Envelope) -> EmailMessage:
    content = envelope.original_content or b""
    message = email.message_from_bytes(content, policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content

