"""Who may post to intake, and how fast: request signatures and per-source rate limits.

A request is signed with HMAC-SHA256 over `"<timestamp>.<raw body>"` and sent as
`X-Amends-Signature: t=<unix seconds>,v1=<hex digest>` (several `v1=` entries are allowed, so
a sender can sign with both secrets while rotating). Time comes from the injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from services.common.clock import Clock

SOURCE_HEADER = "X-Amends-Source"
SIGNATURE_HEADER = "X-Amends-Signature"


class SignatureError(Exception):
    """Which check of the signature failed; never carries a secret or a digest."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in `X-Amends-Signature`."""
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body,
                    hashlib.sha256).hexdigest()


def parse_signature(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            digests.append(value)
    if timestamp is None:
        raise SignatureError(f"{SIGNATURE_HEADER} has no timestamp (expected t=<unix seconds>)")
    if not digests:
        raise SignatureError(f"{SIGNATURE_HEADER} has no v1= signature")
    return timestamp, digests


@dataclass(frozen=True)
class Verifier:
    """Checks a request's signature against its source's one or two active secrets."""

    secrets: Mapping[str, Sequence[SecretStr]]
    clock: Clock
    tolerance_s: int = 300

    def verify(self, source: str | None, header: str | None, body: bytes) -> str:
        """The authenticated source name, or a `SignatureError` saying which check failed."""
        if not source:
            raise SignatureError(f"the {SOURCE_HEADER} header is missing")
        secrets = self.secrets.get(source)
        if not secrets:
            raise SignatureError(f"unknown source in {SOURCE_HEADER}")
        if not header:
            raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
        timestamp, digests = parse_signature(header)
        skew = abs(self.clock().timestamp() - timestamp)
        if skew > self.tolerance_s:
            raise SignatureError(f"the signature's timestamp is outside the "
                                 f"{self.tolerance_s} s tolerance (stale or from the future)")
        expected = [digest(s.get_secret_value(), timestamp, body) for s in secrets]
        # Every pair is compared, so the time taken says nothing about which one was close.
        matched = False
        for candidate in digests:
            for wanted in expected:
                matched |= hmac.compare_digest(candidate.encode(), wanted.encode())
        if not matched:
            raise SignatureError("the signature does not match the body and timestamp "
                                 "under any active secret of this source")
        return source


class TokenBucket:
    """`rate` requests a second on average, `burst` at once; time from the injected clock."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock().timestamp()

    def take(self) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock().timestamp()
        self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def retry_after(wait_s: float) -> str:
    """The `Retry-After` value: whole seconds, at least one."""
    return str(max(1, math.ceil(wait_s)))
