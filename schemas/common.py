"""Shared value types of every contract: money, the customer snapshot, deterministic ids."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

# All deterministic ids are UUIDv5 in this namespace, so a redelivery or a replay of the same
# fact always lands on the same record.
AMENDS_NAMESPACE = uuid.UUID("6f1d3c0e-2a55-5b8e-9a7e-0d5c4a1e7b21")

_DECIMAL_RE = re.compile(r"^-?\d+(\.\d+)?$")


def deterministic_id(kind: str, *parts: str) -> str:
    """A stable id for a fact: the same kind and parts always give the same id."""
    return str(uuid.uuid5(AMENDS_NAMESPACE, "\x1f".join((kind, *parts))))


def trace_id(incident_id: str) -> str:
    """The W3C trace id (32 hex digits) of an incident's trace. Derived from the incident's id
    like every other id, so each hop, a redelivery and `amends trace` name the same trace; a
    hash rather than a UUID, whose fixed version bits would skew trace-id ratio sampling."""
    return hashlib.sha256(f"trace\x1f{incident_id}".encode()).hexdigest()[:32]


def _decimal_from_text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a field error
            'must be a decimal string such as "12.50", not a JSON number')
    if isinstance(value, str):
        if not _DECIMAL_RE.match(value):
            # The value is not quoted: the text may be anything, personal data included, and
            # the error goes to logs and dead letters.
            raise ValueError('must be a decimal string such as "12.50"')
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern rules it out
            raise ValueError("is not a decimal") from exc
    raise ValueError('must be a decimal string such as "12.50"')


DecimalText = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_text),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$",
                    "examples": ["12.50"]}),
]
"""A decimal carried as a JSON string, never as a float."""

_DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: Any) -> Any:
    # Lax parsing would take 1700000000 (or "1700000000") for seconds since 1970: a number
    # where a date-time belongs is refused, not guessed at. The text is parsed here, so that
    # strict validation (intake's) sees a date-time.
    if isinstance(value, bool | int | float | Decimal):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a field error
            'must be an RFC 3339 date-time string such as "2026-11-23T12:00:00Z", '
            "not a JSON number")
    if isinstance(value, str):
        if not _DATE_TIME_RE.match(value):
            raise ValueError('must be an RFC 3339 date-time string such as '
                             '"2026-11-23T12:00:00Z"')
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError('must be an RFC 3339 date-time string such as '
                             '"2026-11-23T12:00:00Z"') from None
    return value


DateTime = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]
"""A date-time with its offset, carried as an RFC 3339 string (never a number)."""

# Validation context of what comes from outside (upstream events, reported incidents): their
# amounts are refused when negative or finer than their currency's minor unit, instead of
# failing later in decision or fulfilment. Contracts Amends writes itself are read without it.
INPUT_CONTEXT: dict[str, Any] = {"amends_input": True}

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code",
                                examples=["EUR"])]


class Contract(BaseModel):
    """Base of every contract model: immutable; unknown fields are ignored so that upstream
    systems can add fields without breaking us."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=False)


# ISO 4217 currencies whose minor unit is not the cent.
_EXPONENTS: dict[str, int] = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0,
                              "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3}


def minor_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 for EUR, 0 for JPY)."""
    return _EXPONENTS.get(currency, 2)


class Money(Contract):
    amount: DecimalText
    currency: Currency

    @classmethod
    def of(cls, amount: str | Decimal, currency: str) -> Money:
        return cls(amount=Decimal(amount), currency=currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    @model_validator(mode="after")
    def _as_input(self, info: ValidationInfo) -> Money:
        if info.context and info.context.get("amends_input"):
            problem = money_problem(self)
            if problem:
                raise ValueError(problem)
        return self


def money_problem(money: Money) -> str | None:
    """Why `money` cannot be an amount we were sent: negative, or with more decimals than
    its currency's minor unit (10.005 EUR); None when it can."""
    if money.amount < 0:
        return f"amount {money.amount} is negative"
    exponent = money.amount.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    allowed = minor_exponent(money.currency)
    if decimals > allowed:
        return (f"amount {money.amount} has more decimals than {money.currency} allows "
                f"({allowed})")
    return None


class Tier(StrEnum):
    standard = "standard"
    silver = "silver"
    gold = "gold"
    platinum = "platinum"


class Channel(StrEnum):
    email = "email"
    sms = "sms"
    webhook = "webhook"


class Contact(Contract):
    """How to reach the customer. Used to deliver messages; never logged (kept out of repr)."""

    email: str | None = Field(default=None, repr=False, max_length=320)
    phone: str | None = Field(default=None, repr=False, max_length=32)
    webhook_url: str | None = Field(default=None, repr=False, max_length=2048)
    preferred_channel: Channel = Channel.email


class CustomerSnapshot(Contract):
    """What an upstream event tells us about the customer; Amends keeps no master data."""

    id: str = Field(min_length=1, max_length=128)
    tier: Tier = Tier.standard
    lifetime_value: Money | None = None
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    contact: Contact = Field(default_factory=Contact)
    customer_since: date | None = None
