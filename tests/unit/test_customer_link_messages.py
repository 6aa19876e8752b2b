"""The customer's page in messages, in every locale: an offer is chosen there, a message
that shows what the customer got links to it, a follow-up too; without a page (no key to
sign links with) no message mentions one, and none asks for a reply that nobody reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from schemas.decision import RemedyKind
from schemas.incident import IncidentType
from services.fulfilment.messages import (
    LOCALES,
    MessageExtras,
    render_apology,
    render_follow_up,
)
from services.fulfilment.settings import FulfilmentSettings
from tests.unit.test_apology_templates import (
    NOW,
    WORD_LIMIT,
    decision,
    make_incident,
    words,
)
from tests.unit.test_follow_up_messages import chosen

# A page link as the service builds it: a signed token is some 250 characters.
URL = ("https://care.example/v1/customer/decisions/d-1?token=eyJhbGciOiJIUzI1NiJ9."
       + "x" * 180 + ".sig_nature-43-characters-of-base64url-aaaaa")
PAGE = MessageExtras(page_url=URL, now=NOW)
# Words that ask the customer to reply, or to answer by mail.
REPLY = {"en": ["reply"], "ru": ["ответьте", "ответ на это письмо"],
         "ro": ["răspundeți", "răspuns la acest mesaj"]}
CARE_TEAM = {"en": "customer care team", "ru": "службе поддержки",
             "ro": "serviciul pentru clienți"}



@pytest.mark.parametrize("locale", LOCALES)
def test_an_offer_is_chosen_on_the_page_and_never_by_reply(locale: str) -> None:
    made = decision(make_incident(IncidentType.delivery_delayed), [RemedyKind.points],
                    offer=[[RemedyKind.voucher], [RemedyKind.refund]])
    linked = render_apology(made, locale=locale, extras=PAGE)
    plain = render_apology(made, locale=locale, extras=MessageExtras(now=NOW))
    assert linked.text.count(URL) == 1, linked.text
    assert f'<a href="{URL}">{URL}</a>' in linked.html
    assert len(linked.text.split()) < WORD_LIMIT
    assert "http" not in plain.text
    assert CARE_TEAM[locale] in plain.text
    for message in (linked, plain):
        lowered = message.text.lower()
        assert not [w for w in REPLY[locale] if w in lowered], message.text


@pytest.mark.parametrize("locale", LOCALES)
def test_what_the_customer_got_links_to_their_page(locale: str) -> None:
    given = decision(make_incident(IncidentType.delivery_delayed),
                     [RemedyKind.points, RemedyKind.voucher])
    apology_only = decision(make_incident(IncidentType.delivery_delayed), [])
    linked = render_apology(given, locale=locale, extras=PAGE)
    assert linked.text.count(URL) == 1, linked.text
    assert words(linked.text) < WORD_LIMIT
    assert "http" not in render_apology(given, locale=locale,
                                        extras=MessageExtras(now=NOW)).text
    # An apology that gives nothing has nothing to show on a page.
    assert URL not in render_apology(apology_only, locale=locale, extras=PAGE).text


@pytest.mark.parametrize("locale", LOCALES)
def test_a_follow_up_links_to_the_page_too(locale: str) -> None:
    settled = chosen(0, "customer")
    given = settled.actions[-1:]
    linked = render_follow_up(settled, given, locale=locale, extras=MessageExtras(
        page_url=URL, now=NOW + timedelta(hours=1)))
    plain = render_follow_up(settled, given, locale=locale)
    assert linked.text.count(URL) == 1, linked.text
    assert URL in linked.html
    assert "http" not in plain.text


def test_the_link_is_not_in_the_extras_repr() -> None:
    assert "token" not in repr(PAGE)


@pytest.mark.parametrize("url", [
    "https://care.example/page/{decision_id}",  # no token
    "https://care.example/page?t={token}",  # no decision
    "https://care.example/page?d={decision_id}&t={token}",  # `&` is escaped in messages
])
def test_a_page_url_that_would_not_open_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="customer_page_url"):
        FulfilmentSettings(customer_page_url=url)
    assert FulfilmentSettings(
        customer_page_url="https://care.example/d/{decision_id}?t={token}").customer_page_url


def test_only_the_page_is_a_link_in_the_html() -> None:
    made = decision(make_incident(IncidentType.delivery_delayed, order_id="https://evil.example/x"),
                    [RemedyKind.points])
    html = render_apology(made, extras=PAGE).html
    assert html.count("<a href=") == 1
    assert "https://evil.example/x" in html
