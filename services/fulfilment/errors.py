"""How an effect at the edge failed: worth retrying with the same idempotency key, or not.

Channels (SMTP, webhook) and payment gateways raise only these two, so the caller decides
what to do with a failure without knowing which protocol produced it. Messages name the
remote's status and reason, never a customer's contact details.
"""

from __future__ import annotations

from services.common import errors


class TransientError(errors.TransientError):
    """The remote may succeed later: a timeout, a dropped connection, a 5xx, an SMTP 4xx.
    Should one leave a handler, its batch is redelivered, never dead-lettered.

    `retry_after_s` is how long the remote asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class PermanentError(Exception):
    """Retrying the same request cannot succeed: a 4xx, an SMTP 5xx, a refused recipient,
    a refund above what was paid, an idempotency key reused with another request."""

    def __init__(self, message: str, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CredentialsError(Exception):
    """The remote refused our credentials (HTTP 401/403, SMTP 535): nothing is wrong with the
    request, and retrying it cannot help until an operator fixes the key or password. The
    action waits ("paused") and is tried again, slowly, until the credentials work."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


CREDENTIALS_STATUSES = frozenset({401, 403})

# Too many requests, request timeout, too early: the remote is busy, not refusing.
RETRYABLE_4XX = frozenset({408, 425, 429})


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status means "try again later": 5xx and the busy 4xx above."""
    return status >= 500 or status in RETRYABLE_4XX


def retry_after_s(header: str | None) -> float | None:
    """A `Retry-After` header given in seconds (an HTTP date is ignored)."""
    value = (header or "").strip()
    return float(value) if value.isdigit() else None


def refusal(status: int, reason: str, retry_after: str | None = None, *,
            code: str | None = None) -> Exception:
    """The error a remote's non-2xx answer means: try again later (5xx, the busy 4xx), the
    credentials are refused (401, 403), or the request is refused for good."""
    if is_transient_status(status):
        return TransientError(reason, status=status, retry_after_s=retry_after_s(retry_after))
    if status in CREDENTIALS_STATUSES:
        return CredentialsError(reason, status=status)
    return PermanentError(reason, status=status, code=code)
