"""A payment gateway on this machine, to refund against in tests and demos.

    python -m devtools.gateway_peer --port 8090 --payment o-1=42.00:EUR

It speaks the Stripe-style API `HttpGateway` expects and behaves like a careful gateway:

- a bearer API key, or 401 (also while the key is revoked: `Peer.revoked`, which a test
  or the demo turns on and off as an operator would at the gateway's dashboard);
- payments per order (given up front, or `POST /v1/payments`), and refunds of at most what
  is left of them (paid minus refunded so far), or 400 `amount_too_large`;
- refunds keyed by `Idempotency-Key`: the same key with the same body replays the first
  reply, the same key with another body is 409;
- a refund is `pending` and settles on its `settle_after_polls`-th status query (0: at once);
- the first `transient_failures` calls to the refunds API answer 503, as a gateway in
  trouble does.

State lives in memory, per app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import secrets
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.common import Money

DEFAULT_API_KEY = "sk_test_amends_peer"  # a local test peer's well-known key
Reply = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Behaviour:
    """How the peer behaves; tests set what they exercise."""

    api_key: str = DEFAULT_API_KEY
    payments: Mapping[str, Money] = field(default_factory=dict)
    settle_after_polls: int = 2
    transient_failures: int = 0
    transient_status: int = 503
    failing_orders: frozenset[str] = frozenset()
    revoked: bool = False


@dataclass
class StoredRefund:
    id: str
    order_id: str
    payment_ref: str | None
    amount: Money
    reason: str
    status: str
    polls: int = 0
    failure_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "refund", "order_id": self.order_id,
                "payment_ref": self.payment_ref, "amount": self.amount.model_dump(mode="json"),
                "reason": self.reason, "status": self.status,
                "failure_reason": self.failure_reason}


class RefundBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=128)
    payment_ref: str | None = Field(default=None, max_length=128)
    amount: Money
    reason: str = Field(default="", max_length=500)
    metadata: dict[str, str] = Field(default_factory=dict)


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=128)
    amount: Money


class PeerError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.kind = status, code, message, kind

    def reply(self) -> Reply:
        return self.status, {"error": {"type": self.kind, "code": self.code,
                                       "message": self.message}}


def _reply(reply: Reply) -> JSONResponse:
    return JSONResponse(reply[1], status_code=reply[0])


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise PeerError(400, "parameter_invalid", problems) from None


class Peer:
    """The gateway's state and rules; the routes in `create_app` only parse and delegate."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.payments: dict[str, Money] = dict(behaviour.payments)
        self.refunds: dict[str, StoredRefund] = {}
        self.replies: dict[str, tuple[str, Reply]] = {}  # idempotency key → (body hash, reply)
        self.refund_calls = 0
        self._transient_left = behaviour.transient_failures
        self.revoked = behaviour.revoked
        self.failing_orders = set(behaviour.failing_orders)
        self.refused_calls = 0

    def authorise(self, request: Request) -> None:
        given = request.headers.get("Authorization", "")
        if self.revoked or not hmac.compare_digest(
                given.encode(), f"Bearer {self.behaviour.api_key}".encode()):
            self.refused_calls += 1
            raise PeerError(401, "api_key_invalid", "Invalid API key provided",
                            "authentication_error")

    def enter_refunds_api(self, request: Request) -> None:
        self.authorise(request)
        self.refund_calls += 1
        if self._transient_left > 0:
            self._transient_left -= 1
            raise PeerError(self.behaviour.transient_status, "temporarily_unavailable",
                            "The gateway is temporarily unavailable; retry", "api_error")

    def refunded(self, order_id: str) -> Decimal:
        return sum((r.amount.amount for r in self.refunds.values()
                    if r.order_id == order_id and r.status != "failed"), Decimal(0))

    def settle(self, refund: StoredRefund) -> None:
        if refund.order_id in self.failing_orders:
            refund.status, refund.failure_reason = "failed", "the card issuer declined it"
        else:
            refund.status = "succeeded"

    def register_payment(self, body: PaymentBody) -> None:
        known = self.payments.get(body.order_id)
        if known is not None and known != body.amount:
            raise PeerError(409, "payment_exists",
                            f"Order {body.order_id!r} was paid {known}, not {body.amount}")
        self.payments[body.order_id] = body.amount

    def payment(self, order_id: str) -> dict[str, Any]:
        paid = self.payments.get(order_id)
        if paid is None:
            raise PeerError(404, "resource_missing", f"No payment for order {order_id!r}")
        refunded = self.refunded(order_id)
        return {"order_id": order_id, "amount": paid.model_dump(mode="json"),
                "refunded": Money(amount=refunded, currency=paid.currency).model_dump(mode="json"),
                "remaining": Money(amount=paid.amount - refunded,
                                   currency=paid.currency).model_dump(mode="json")}

    def refund(self, key: str, body: RefundBody) -> tuple[Reply, bool]:
        """The reply to a refund request, and whether it replays an earlier one."""
        if not key:
            raise PeerError(400, "idempotency_key_missing", "An Idempotency-Key is required")
        fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        if key in self.replies:
            seen, reply = self.replies[key]
            if seen != fingerprint:
                raise PeerError(409, "idempotency_key_in_use",
                                "Keys for idempotent requests can only be used with the same "
                                "parameters they were first used with", "idempotency_error")
            return reply, True
        reply = self._create_refund(body)
        self.replies[key] = (fingerprint, reply)
        return reply, False

    def _create_refund(self, body: RefundBody) -> Reply:
        paid = self.payments.get(body.order_id)
        if paid is None:
            return PeerError(404, "resource_missing",
                             f"No payment for order {body.order_id!r}").reply()
        if body.amount.currency != paid.currency:
            return PeerError(400, "currency_mismatch", f"The payment is in {paid.currency}, "
                                                       f"not {body.amount.currency}").reply()
        if body.amount.amount <= 0:
            return PeerError(400, "amount_invalid", "A refund must be positive").reply()
        remaining = paid.amount - self.refunded(body.order_id)
        if body.amount.amount > remaining:
            return PeerError(400, "amount_too_large",
                             f"Refund amount {body.amount} is greater than the {remaining} "
                             f"{paid.currency} left of the payment").reply()
        refund = StoredRefund(id=f"re_{secrets.token_hex(12)}", order_id=body.order_id,
                              payment_ref=body.payment_ref, amount=body.amount,
                              reason=body.reason, status="pending")
        if self.behaviour.settle_after_polls <= 0:
            self.settle(refund)
        self.refunds[refund.id] = refund
        return 200, refund.as_json()

    def status(self, refund_id: str) -> dict[str, Any]:
        found = self.refunds.get(refund_id)
        if found is None:
            raise PeerError(404, "resource_missing", f"No such refund: {refund_id!r}")
        if found.status == "pending":
            found.polls += 1
            if found.polls >= self.behaviour.settle_after_polls:
                self.settle(found)
        return found.as_json()


def create_app(behaviour: Behaviour | None = None) -> FastAPI:
    """The peer's app; `app.state.peer` is its `Peer`, for a test to look into."""
    peer = Peer(behaviour or Behaviour())
    app = FastAPI(title="Amends payment gateway peer", docs_url=None, redoc_url=None)
    app.state.peer = peer

    @app.exception_handler(PeerError)
    async def peer_error(_request: Request, exc: PeerError) -> JSONResponse:
        return _reply(exc.reply())

    @app.post("/v1/payments", status_code=201)
    async def register_payment(request: Request) -> JSONResponse:
        peer.authorise(request)
        body = _parse(PaymentBody, await request.body())
        peer.register_payment(body)
        return JSONResponse({"order_id": body.order_id,
                             "amount": body.amount.model_dump(mode="json")}, status_code=201)

    @app.get("/v1/payments/{order_id}")
    async def payment(order_id: str, request: Request) -> dict[str, Any]:
        peer.authorise(request)
        return peer.payment(order_id)

    @app.post("/v1/refunds")
    async def refund(request: Request) -> JSONResponse:
        peer.enter_refunds_api(request)
        body = _parse(RefundBody, await request.body())
        # No await from here on: a concurrent request with the same key sees this one done.
        reply, replayed = peer.refund(request.headers.get("Idempotency-Key", ""), body)
        response = _reply(reply)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    @app.get("/v1/refunds/{refund_id}")
    async def refund_status(refund_id: str, request: Request) -> dict[str, Any]:
        peer.enter_refunds_api(request)
        return peer.status(refund_id)

    @app.get("/v1/refunds")
    async def list_refunds(order_id: str, request: Request) -> dict[str, Any]:
        peer.enter_refunds_api(request)
        return {"object": "list", "data": [r.as_json() for r in peer.refunds.values()
                                           if r.order_id == order_id]}

    return app


@contextlib.asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve an ASGI app on a free port inside the running event loop; yields its base URL."""
    sock = socket.socket()
    sock.bind((host, 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None,
                                           access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if task.done():
                raise RuntimeError("the server stopped before it started")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start within 10 s")
            await asyncio.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _payment(text: str) -> tuple[str, Money]:
    """`ORDER=AMOUNT:CURRENCY`, e.g. `o-1=42.00:EUR`."""
    order_id, _, price = text.partition("=")
    amount, _, currency = price.partition(":")
    if not order_id or not amount or not currency:
        raise argparse.ArgumentTypeError(f"expected ORDER=AMOUNT:CURRENCY, got {text!r}")
    try:
        return order_id, Money.model_validate({"amount": amount, "currency": currency})
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc.errors()[0]['msg']}") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.gateway_peer",
                                     description="A local payment gateway to refund against.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--payment", type=_payment, action="append", default=[],
                        metavar="ORDER=AMOUNT:CURRENCY", help="a payment to refund against")
    parser.add_argument("--settle-after-polls", type=int, default=2,
                        help="status queries until a refund settles (0: at once)")
    parser.add_argument("--transient-failures", type=int, default=0,
                        help="answer 503 to this many refund calls first")
    parser.add_argument("--failing-order", action="append", default=[],
                        help="refunds for this order end as failed")
    parser.add_argument("--revoked", action="store_true",
                        help="refuse the API key (401) to every call")
    args = parser.parse_args(argv)
    behaviour = Behaviour(api_key=args.api_key, payments=dict(args.payment),
                          settle_after_polls=args.settle_after_polls,
                          transient_failures=args.transient_failures,
                          failing_orders=frozenset(args.failing_order), revoked=args.revoked)
    uvicorn.run(create_app(behaviour), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
