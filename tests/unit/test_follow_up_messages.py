"""The follow-up message after a revision, in every locale: what the customer now has
(the remedies with their numbers, a voucher's code, a refund on its way), why they get it
(their choice, the default after the deadline, a review), thanks, and nothing that blames."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from typing import Literal

import pytest

from schemas.decision import Choice, Decision, DecisionStatus, RemedyKind, Review
from schemas.incident import IncidentType
from services.fulfilment.messages import (
    LOCALES,
    MessageExtras,
    format_date,
    render_follow_up,
)
from tests.unit.test_apology_templates import (
    FORBIDDEN,
    NOW,
    REMEDIES,
    THANKS,
    decision,
    make_incident,
)

ON_ITS_WAY = {"en": "on its way", "ru": "уже в пути", "ro": "este pe drum"}
CODE_WORD = {"en": "code", "ru": "промокод", "ro": "cod"}


def chosen(option: int, by: Literal["customer", "default"]) -> Decision:
    """A decision whose offer (a voucher, or a refund) was settled by `by`."""
    made = decision(make_incident(IncidentType.item_defective), [RemedyKind.points],
                    offer=[[RemedyKind.voucher], [RemedyKind.refund]])
    assert made.offer is not None
    picked = made.offer.options[option].actions
    return made.model_copy(update={
        "revision": 1, "status": DecisionStatus.approved, "actions": [*made.actions, *picked],
        "choice": Choice(option=option, label="x", by=by, at=NOW + timedelta(hours=1))})


@pytest.mark.parametrize("locale", LOCALES)
def test_a_chosen_voucher_is_confirmed_with_its_code(locale: str) -> None:
    made = chosen(0, "customer")
    voucher = made.actions[-1]
    message = render_follow_up(made, [voucher], locale, MessageExtras(
        voucher_codes={voucher.idempotency_key: "AMD-7K2P-9QXM"}))
    assert REMEDIES[RemedyKind.voucher][1][locale] in message.text
    assert f"{CODE_WORD[locale]} AMD-7K2P-9QXM" in message.text
    assert "AMD-7K2P-9QXM" in message.html
    assert THANKS[locale] in message.text
    assert not [w for w in FORBIDDEN[locale] if w in message.text.lower()]
    assert "None" not in message.text
    assert "{" not in message.text
    assert message.subject
    assert message.subject not in message.text
    HTMLParser().feed(message.html)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_defaulted_refund_says_the_deadline_and_that_it_is_on_its_way(locale: str) -> None:
    made = chosen(1, "default")
    refund = made.actions[-1]
    assert made.offer is not None
    pending = render_follow_up(made, [refund], locale, MessageExtras(
        states={refund.idempotency_key: "pending"}))
    assert format_date(made.offer.deadline, locale) in pending.text
    assert REMEDIES[RemedyKind.refund][1][locale] in pending.text
    assert ON_ITS_WAY[locale] in pending.text
    done = render_follow_up(made, [refund], locale, MessageExtras(
        states={refund.idempotency_key: "done"}))
    assert ON_ITS_WAY[locale] not in done.text


@pytest.mark.parametrize("locale", LOCALES)
def test_an_approval_names_everything_granted(locale: str) -> None:
    made = decision(make_incident(IncidentType.item_missing),
                    [RemedyKind.points, RemedyKind.free_delivery])
    approved = made.model_copy(update={
        "revision": 1, "review": Review(verdict="approved", reviewer="ana", reason="ok",
                                        at=NOW)})
    message = render_follow_up(approved, approved.actions[1:], locale)
    for kind in (RemedyKind.points, RemedyKind.free_delivery):
        assert REMEDIES[kind][1][locale] in message.text
    assert message.locale == locale
