"""Store credit in fulfilment, in memory: the generic ledger credits the amount in its
currency once however often the decision arrives, the outcome says what was credited, and
the apology names the store credit in every locale."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.fulfilment.messages import LOCALES, format_money
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, CREDIT, STORE_CREDIT_WORDS, decided, eur, made_incident

pytestmark = pytest.mark.component


async def test_the_ledger_is_credited_once_in_the_currency(f: Fulfilment) -> None:
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
async def test_the_apology_names_the_store_credit_in_each_locale(
        locale: str, f: Fulfilment) -> None:
    await f.deliver(decided(made_incident("item_defective", locale=locale), APOLOGY, CREDIT))
    [message] = f.email.sent
    assert STORE_CREDIT_WORDS[locale].format(format_money(eur("10.00"), locale)) in message.text
