"""Vouchers: unguessable single-use codes for an amount or a percentage off the next order
(the rules; their storage is `adapters/vouchers.py`).

A voucher is issued at most once per action (a unique index on the action's idempotency
key) and redeemed at most once (the redemption is an insert keyed by the code: of two
racing redemptions exactly one wins, on every server — see docs/adr/0002).
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.common import DecimalText, Money

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
