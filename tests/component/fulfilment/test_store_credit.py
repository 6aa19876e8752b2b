"""Store credit in fulfilment, in memory: the generic ledger credits the amount in its
currency once however often the decision arrives, the outcome says what was credited, and
the apology names the store credit in every locale."""

from __future__ import annotations

from decimal import Decimal

import pytest

from schemas.decision import RemedyKind
from services.fulfilment.messages import LOCALES, format_money
from tests.component.fulfilment.harness import (
    APOLOGY,
    Fulfilment,
    decided,
    eur,
    grant,
    made_incident,
)

pytestmark = pytest.mark.component

CREDIT = grant(RemedyKind.store_credit, amount=eur("10.00"), value=eur("10.00"))
WORDS = {"en": "store credit of {}", "ru": "{} на ваш счёт в магазине",
         "ro": "credit de {} în contul dumneavoastră"}


async def test_the_ledger_is_credited_once_in_the_currency() -> None:
    f = Fulfilment.with_email()
    decision = decided(made_incident("item_defective"), APOLOGY, CREDIT)
    for _ in range(3):
        await f.deliver(decision)
    await f.deliver(decision, decision)
    [entry] = f.fakes.ledger.entries.values()
    assert (entry.quantity, entry.unit, entry.reason) == (
        Decimal("10.00"), "EUR", "item_defective")
    credited = f.outcome(decision.actions[1].idempotency_key)
    assert (credited["status"], credited["detail"]) == ("succeeded", "10.00 EUR credited")
    assert len(f.email.sent) == 1
    assert f.dead_letters() == []


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_apology_names_the_store_credit_in_each_locale(locale: str) -> None:
    f = Fulfilment.with_email()
    await f.deliver(decided(made_incident("item_defective", locale=locale), APOLOGY, CREDIT))
    [message] = f.email.sent
    assert WORDS[locale].format(format_money(eur("10.00"), locale)) in message.text
