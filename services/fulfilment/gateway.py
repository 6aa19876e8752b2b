"""Payment gateways: give money back for an action, at most once per idempotency key.

`PaymentGateway` is the port. `LedgerGateway` is the embedded default: it records nothing
outside Amends and succeeds at once (the refund document in fulfilment's own database is
the ledger). `HttpGateway` talks to a Stripe-style REST API: `POST /v1/refunds` with an
`Idempotency-Key` header and a bearer key, `GET /v1/refunds/{id}` to follow a pending one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.common import Money, deterministic_id
from services.fulfilment.errors import (
    PermanentError,
    TransientError,
    refusal,
)
from services.fulfilment.retry import Sleep


class RefundStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True, slots=True)
class RefundRequest:
    idempotency_key: str
    order_id: str
    payment_ref: str | None
    amount: Money
    reason: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    status: RefundStatus
    gateway_id: str
    detail: str = ""


class PaymentGateway(Protocol):
    # Whether a refund is final as soon as it is asked for, with nothing outside to call.
    @property
    def settles_at_once(self) -> bool: ...

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Ask for the refund; the same key always yields the same refund."""
        ...

    async def refund_status(self, gateway_id: str) -> RefundResult:
        """Where a refund stands now (a pending one settles later)."""
        ...


async def until_settled(gateway: PaymentGateway, result: RefundResult, *, polls: int,
                        interval_s: float, sleep: Sleep = asyncio.sleep) -> RefundResult:
    """Follow a pending refund: ask for its status up to `polls` times, `interval_s` apart,
    and return the last answer (still `pending` if it did not settle in that time)."""
    for _ in range(polls):
        if result.status is not RefundStatus.pending:
            break
        await sleep(interval_s)
        result = await gateway.refund_status(result.gateway_id)
    return result


LEDGER_PREFIX = "ledger_"


class LedgerGateway:
    """No gateway: the refund is a ledger entry in Amends, done as soon as it is asked for.
    The id is derived from the idempotency key, so asking twice gives the same refund."""

    settles_at_once = True

    async def refund(self, request: RefundRequest) -> RefundResult:
        if request.amount.amount <= 0:
            raise PermanentError("a refund must be for more than nothing", code="amount_invalid")
        gateway_id = LEDGER_PREFIX + deterministic_id("ledger-refund", request.idempotency_key)
        return RefundResult(RefundStatus.succeeded, gateway_id,
                            f"refund of {request.amount} recorded in the ledger")

    async def refund_status(self, gateway_id: str) -> RefundResult:
        if not gateway_id.startswith(LEDGER_PREFIX):
            raise PermanentError(f"not a ledger refund: {gateway_id}", code="resource_missing")
        return RefundResult(RefundStatus.succeeded, gateway_id, "recorded in the ledger")


class _Refund(BaseModel):
    """The part of the gateway's refund object we read."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: RefundStatus
    failure_reason: str | None = None


class HttpGateway:
    """A Stripe-style refunds API over HTTPS.

    Failures are sorted for `retry()`: timeouts, connection errors, 5xx and 408/425/429 are
    transient (retrying with the same key is safe); other 4xx are permanent and carry the
    gateway's own message — including 409, a key reused with a different request, and the
    refusal of a refund above what is left of the payment. 401 and 403 are the credentials'
    fault, not the refund's (`CredentialsError`).
    """

    settles_at_once = False

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 10.0,
                 client: httpx.AsyncClient | None = None) -> None:
        if not api_key:
            raise ValueError("the payment gateway needs an API key")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout_s = timeout_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None

    def __repr__(self) -> str:
        return f"HttpGateway({self.base_url!r})"

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json",
                   "User-Agent": "amends-fulfilment"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def refund(self, request: RefundRequest) -> RefundResult:
        body = {"order_id": request.order_id, "payment_ref": request.payment_ref,
                "amount": request.amount.model_dump(mode="json"), "reason": request.reason,
                "metadata": {"idempotency_key": request.idempotency_key}}
        return await self._call("POST", "/v1/refunds", json=body,
                                headers=self._headers(request.idempotency_key))

    async def refund_status(self, gateway_id: str) -> RefundResult:
        return await self._call("GET", f"/v1/refunds/{quote(gateway_id, safe='')}",
                                headers=self._headers())

    async def _call(self, method: str, path: str, *, headers: dict[str, str],
                    json: object = None) -> RefundResult:
        try:
            response = await self._client.request(method, self.base_url + path, json=json,
                                                  headers=headers, timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise TransientError("the payment gateway did not answer in time") from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"cannot reach the payment gateway: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                refund = _Refund.model_validate_json(response.content)
            except ValidationError:
                # The refund may exist; asking again with the same key is safe and tells us.
                raise TransientError("the payment gateway's answer was not a refund",
                                     status=status) from None
            return RefundResult(refund.status, refund.id, refund.failure_reason or "")
        code, message = _error(response)
        reason = f"the payment gateway answered {status}" + (f" ({code})" if code else "")
        if message:
            reason += f": {message}"
        raise refusal(status, reason, response.headers.get("Retry-After"), code=code)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


def _error(response: httpx.Response) -> tuple[str | None, str]:
    """The gateway's `{"error": {"code", "message"}}`, or the start of whatever it said."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None, response.text[:200]
    if not isinstance(error, dict):
        return None, response.text[:200]
    code = error.get("code")
    return (str(code) if code else None), str(error.get("message", ""))[:500]
