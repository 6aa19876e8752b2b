"""The apology for a poor review, in memory: in every locale it names the rating, the
platform and the store credit, and never quotes the review's address or text."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose
from __future__ import annotations

from decimal import Decimal

import pytest

from services.fulfilment.messages import LOCALES, format_money
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, CREDIT, STORE_CREDIT_WORDS, decided, eur, made_incident

pytestmark = pytest.mark.component

FACTS = {"en": "2-star review on trustpilot", "ru": "с оценкой 2 из 5 на trustpilot",
         "ro": "de 2 din 5 pe trustpilot"}


@pytest.mark.parametrize("locale", LOCALES)
async def test_the_apology_names_the_review_and_the_store_credit(
        locale: str, f: Fulfilment) -> None:
    review = made_incident("negative_review", locale=locale, paid=None, detection="proactive",
                           rating=2, review_platform="trustpilot",
                           review_url="https://reviews.example/r-1")
    decision = decided(review, APOLOGY, CREDIT)
    await f.deliver(decision, decision)
    [message] = f.email.sent
    assert FACTS[locale] in message.text
    assert STORE_CREDIT_WORDS[locale].format(format_money(eur("10.00"), locale)) in message.text
    assert "reviews.example" not in message.text
    [entry] = f.fakes.ledger.entries.values()
    assert (entry.quantity, entry.unit, entry.reason) == (Decimal(10), "EUR", "negative_review")
