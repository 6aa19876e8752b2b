"""Fulfilment's HTTP API: vouchers (issue, look up, redeem) and a customer's case."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from schemas.common import Currency, DecimalText, Money
from schemas.common import deterministic_id as make_id
from services.common.clock import Clock
from services.common.mongo import stored
from services.fulfilment.adapters.mongo import FulfilmentStore
from services.fulfilment.vouchers import Redemption, Voucher, VoucherError, VoucherStore

CustomerId = Annotated[str, Path(min_length=1, max_length=128)]
_STATUS = {"not_found": 404, "redeemed": 409, "expired": 410, "currency": 422, "value": 422}


class VoucherRequest(BaseModel):
    """A voucher issued by hand (e.g. by a support agent); `request_id` makes a retry safe."""

    request_id: str = Field(min_length=1, max_length=128)
    customer_id: str = Field(min_length=1, max_length=128)
    amount: Money | None = None
    percent: DecimalText | None = Field(default=None, gt=0, le=100)
    currency: Currency
    expires_in_days: int = Field(default=90, ge=1, le=3650)
    reason: str = Field(default="", max_length=500)


class RedeemRequest(BaseModel):
    order_id: str = Field(min_length=1, max_length=128)
    order_total: Money | None = None


class Case(BaseModel):
    customer_id: str
    points_balance: int
    incidents: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    vouchers: list[Voucher]
    messages: list[dict[str, Any]]


def _refused(exc: VoucherError) -> HTTPException:
    return HTTPException(_STATUS.get(exc.problem, 400),
                         detail={"problem": exc.problem, "message": str(exc)})


def router(store: FulfilmentStore, vouchers: VoucherStore, clock: Clock) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["fulfilment"])

    @api.post("/vouchers", status_code=201, summary="Issue a voucher")
    async def issue_voucher(request: VoucherRequest) -> Voucher:
        now = clock()
        if request.amount is not None and request.amount.currency != request.currency:
            raise HTTPException(422, detail={"problem": "currency",
                                             "message": "amount.currency differs from currency"})
        try:
            return await vouchers.issue(
                action_key=make_id("manual-voucher", request.request_id),
                customer_id=request.customer_id, amount=request.amount,
                percent=Decimal(request.percent) if request.percent is not None else None,
                currency=request.currency, issued_at=now,
                expires_at=now + timedelta(days=request.expires_in_days), reason=request.reason)
        except VoucherError as exc:
            raise _refused(exc) from None

    @api.get("/vouchers/{code}", summary="Look up a voucher")
    async def get_voucher(code: Annotated[str, Path(max_length=64)]) -> Voucher:
        voucher = await vouchers.get(code, clock())
        if voucher is None:
            raise HTTPException(404, detail={"problem": "not_found",
                                             "message": f"no voucher {code!r}"})
        return voucher

    @api.post("/vouchers/{code}/redeem", summary="Redeem a voucher (once)")
    async def redeem_voucher(code: Annotated[str, Path(max_length=64)],
                             request: RedeemRequest) -> Redemption:
        try:
            return await vouchers.redeem(code, request.order_id, request.order_total, clock())
        except VoucherError as exc:
            raise _refused(exc) from None

    @api.get("/customers/{customer_id}/case", summary="Everything done for a customer")
    async def case(customer_id: CustomerId) -> Case:
        return await customer_case(store, vouchers, customer_id, clock)

    return api


# Bookkeeping of delivery, and the HTML twin of the text: not part of the case.
INTERNAL_MESSAGE_FIELDS = frozenset({"_id", "html", "origin", "decision_ref", "claimed_at",
                                     "claim", "next_attempt_at", "attempts", "paused",
                                     "round", "redriven_by", "remote"})


async def customer_case(store: FulfilmentStore, vouchers: VoucherStore, customer_id: str,
                        clock: Clock) -> Case:
    now = clock()
    query = {"customer_id": customer_id}
    newest: dict[str, dict[str, Any]] = {}
    async for doc in store.decisions.find(query):
        decision = stored(doc["decision"])
        have = newest.get(decision["decision_id"])
        if have is None or decision.get("revision", 0) > have.get("revision", 0):
            newest[decision["decision_id"]] = decision
    decisions = sorted(newest.values(), key=lambda d: d["decided_at"], reverse=True)
    outcomes = [stored(o["outcome"]) async for o in store.outcomes.collection.find(query)]
    outcomes.sort(key=lambda o: (o["completed_at"], o["position"]), reverse=True)
    messages = [{k: v for k, v in m.items() if k not in INTERNAL_MESSAGE_FIELDS} | {
        "idempotency_key": m["_id"]} async for m in store.messages.find(query)]
    messages.sort(key=lambda m: m["created_at"], reverse=True)
    return Case(
        customer_id=customer_id,
        points_balance=await store.points_balance(customer_id, now),
        incidents=[d["incident"] for d in decisions],
        decisions=[{k: v for k, v in d.items() if k != "incident"} for d in decisions],
        actions=outcomes,
        vouchers=await vouchers.for_customer(customer_id, now),
        messages=messages,
    )
