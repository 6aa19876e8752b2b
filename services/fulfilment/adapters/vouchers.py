"""Vouchers on MongoDB or FerretDB: `vouchers` (by code; unique per action key) and
`voucher_redemptions` (by code).

One adapter serves both servers: a redemption is an insert keyed by the code, which both
make atomic (of two racing redemptions exactly one wins, see docs/adr/0002), and a second
voucher for an action is refused by a unique index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas.common import Money
from services.common.adapters.mongo import Doc, insert_new
from services.fulfilment.vouchers import (
    Redemption,
    Voucher,
    VoucherError,
    VoucherStatus,
    new_code,
    normalise,
)


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
        the refused ones are looked up (every lookup reads the whole collection on
        FerretDB v1, one by `_id` too)."""
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
