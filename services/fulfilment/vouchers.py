"""Vouchers: unguessable single-use codes for an amount or a percentage off the next order.

A voucher is issued at most once per action (a unique index on the action's idempotency
key) and redeemed at most once (the redemption is an insert keyed by the code: of two
racing redemptions exactly one wins, on every server — see docs/adr/0002).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.common import DecimalText, Money
from services.common.adapters.mongo import Doc, insert_new

# Crockford-style alphabet: no I, L, O, U, so codes survive being read over the phone.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_GROUPS = 4
GROUP_LENGTH = 4  # 16 symbols of 5 bits: 80 bits, far beyond guessing


def new_code() -> str:
    symbols = "".join(secrets.choice(ALPHABET) for _ in range(CODE_GROUPS * GROUP_LENGTH))
    groups = [symbols[i:i + GROUP_LENGTH] for i in range(0, len(symbols), GROUP_LENGTH)]
    return "AMD-" + "-".join(groups)


def normalise(code: str) -> str:
    return code.strip().upper().replace("O", "0").replace("I", "1").replace("L", "1")


class VoucherStatus(StrEnum):
    active = "active"
    redeemed = "redeemed"
    expired = "expired"


class Voucher(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    customer_id: str
    action_key: str
    amount: Money | None = None
    percent: DecimalText | None = None
    currency: str
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    reason: str = ""
    tenant: str | None = None
    status: VoucherStatus = VoucherStatus.active
    redeemed_at: AwareDatetime | None = None
    redeemed_order_id: str | None = None

    def discount_on(self, order_total: Money) -> Money:
        if order_total.currency != self.currency:
            raise VoucherError("currency", f"the voucher is in {self.currency}, the order in "
                                           f"{order_total.currency}")
        if self.amount is not None:
            off = min(self.amount.amount, order_total.amount)
        else:
            assert self.percent is not None
            off = (order_total.amount * self.percent / 100).quantize(Decimal("0.01"))
        return Money(amount=off, currency=self.currency)


class Redemption(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    order_id: str = Field(min_length=1, max_length=128)
    discount: Money | None
    redeemed_at: AwareDatetime


class VoucherError(Exception):
    """A voucher operation refused: `problem` is a short code, the message says why."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


class VoucherStore:
    """`vouchers` (by code; unique per action key) and `voucher_redemptions` (by code)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.vouchers = db["vouchers"]
        self.redemptions = db["voucher_redemptions"]

    async def create_indexes(self) -> None:
        await self.vouchers.create_index([("action_key", ASCENDING)], unique=True)
        await self.vouchers.create_index([("customer_id", ASCENDING)])

    async def issue(self, *, action_key: str, customer_id: str, amount: Money | None,
                    percent: Decimal | None, currency: str, issued_at: datetime,
                    expires_at: datetime, reason: str, tenant: str | None = None) -> Voucher:
        """Issue the voucher of an action, or return the one issued for it before."""
        request = Voucher(code="", customer_id=customer_id, action_key=action_key,
                          amount=amount, percent=percent, currency=currency,
                          issued_at=issued_at, expires_at=expires_at, reason=reason,
                          tenant=tenant)
        return (await self.issue_all([request]))[action_key]

    async def issue_all(self, requests: Sequence[Voucher]) -> dict[str, Voucher]:
        """Issue a voucher for each request (a voucher whose code is yet to be drawn), in
        one insert; returns the voucher of each action key, issued now or before.

        The unique index on the action key refuses a second voucher for an action, so only
        the refused ones are looked up (a lookup that is not by `_id` reads the whole
        collection on FerretDB v1)."""
        for request in requests:
            if (request.amount is None) == (request.percent is None):
                raise VoucherError("value", "a voucher has either an amount or a percent")
        issued: dict[str, Voucher] = {}
        todo = list({r.action_key: r for r in requests}.values())
        for _ in range(3):  # a refused insert that is not a second voucher is a code collision
            drawn = [r.model_copy(update={"code": new_code()}) for r in todo]
            new = await insert_new(self.vouchers, [self._doc(v) for v in drawn])
            issued |= {v.action_key: v for v in drawn if v.code in new}
            refused = [v.action_key for v in drawn if v.code not in new]
            if refused:
                async for doc in self.vouchers.find({"action_key": {"$in": refused}}):
                    issued[doc["action_key"]] = self._voucher(doc, None)
            todo = [r for r in todo if r.action_key not in issued]
            if not todo:
                return issued
        raise VoucherError("code", f"no free voucher code for {todo[0].action_key}")

    @staticmethod
    def _doc(voucher: Voucher) -> Doc:
        doc = voucher.model_dump(mode="json", exclude={"status", "redeemed_at",
                                                       "redeemed_order_id"})
        doc.update(_id=voucher.code, issued_at=voucher.issued_at,
                   expires_at=voucher.expires_at)
        return doc

    async def get(self, code: str, now: datetime) -> Voucher | None:
        doc = await self.vouchers.find_one({"_id": normalise(code)})
        if doc is None:
            return None
        redemption = await self.redemptions.find_one({"_id": doc["_id"]})
        return self._voucher(doc, redemption, now)

    async def codes_for(self, action_keys: Sequence[str]) -> dict[str, str]:
        """The codes issued for these voucher actions, by action key (for the apology)."""
        if not action_keys:
            return {}
        return {d["action_key"]: d["_id"] async for d in self.vouchers.find(
            {"action_key": {"$in": list(set(action_keys))}}, {"action_key": 1})}

    async def for_customer(self, customer_id: str, now: datetime) -> list[Voucher]:
        docs = await self.vouchers.find({"customer_id": customer_id}).to_list()
        codes = [d["_id"] for d in docs]
        used = {r["_id"]: r async for r in self.redemptions.find({"_id": {"$in": codes}})}
        vouchers = [self._voucher(d, used.get(d["_id"]), now) for d in docs]
        return sorted(vouchers, key=lambda v: v.issued_at, reverse=True)

    async def redeem(self, code: str, order_id: str, order_total: Money | None,
                     now: datetime) -> Redemption:
        voucher = await self.get(code, now)
        if voucher is None:
            raise VoucherError("not_found", f"no voucher {code!r}")
        if voucher.status is VoucherStatus.redeemed:
            raise VoucherError("redeemed", f"voucher {voucher.code} was redeemed already")
        if voucher.status is VoucherStatus.expired:
            raise VoucherError("expired", f"voucher {voucher.code} expired on "
                                          f"{voucher.expires_at.date().isoformat()}")
        discount = voucher.discount_on(order_total) if order_total is not None else None
        redemption = Redemption(code=voucher.code, order_id=order_id, discount=discount,
                                redeemed_at=now)
        try:
            await self.redemptions.insert_one({"_id": voucher.code, "order_id": order_id,
                                               "redeemed_at": now})
        except DuplicateKeyError:
            raise VoucherError("redeemed", f"voucher {voucher.code} was redeemed "
                                           "already") from None
        return redemption

    @staticmethod
    def _voucher(doc: Doc, redemption: Doc | None, now: datetime | None = None) -> Voucher:
        fields: dict[str, Any] = {k: v for k, v in doc.items() if k != "_id"}
        status = VoucherStatus.active
        if redemption is not None:
            status = VoucherStatus.redeemed
            fields.update(redeemed_at=redemption["redeemed_at"],
                          redeemed_order_id=redemption["order_id"])
        elif now is not None and doc["expires_at"] <= now:
            status = VoucherStatus.expired
        return Voucher.model_validate({**fields, "code": doc["_id"], "status": status})
