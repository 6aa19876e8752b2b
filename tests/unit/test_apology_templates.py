"""Apology templates, every incident type in every locale: sorry first, the remedies named,
no one else blamed, thanks, short, and outside strings escaped."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from schemas.common import Money
from schemas.decision import (
    Action,
    Decision,
    DecisionStatus,
    Offer,
    OfferOption,
    RemedyKind,
    action_key,
)
from schemas.incident import Incident, IncidentType
from services.common import tone
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import load_policy
from services.fulfilment.messages import (
    LOCALES,
    MessageExtras,
    RenderedMessage,
    _tidy,
    count,
    format_duration,
    format_money,
    render_apology,
    resolve_locale,
)
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
WORD_LIMIT = 120
TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "fulfilment" / "templates"

OPENING = {"en": "We're sorry", "ru": "Приносим извинения", "ro": "Ne cerem scuze"}
APOLOGY_WORD = {"en": "sorry", "ru": "извинени", "ro": "scuze"}
THANKS = {"en": "Thank you for your patience", "ru": "Спасибо за ваше терпение",
          "ro": "Vă mulțumim pentru răbdare"}
# Blaming someone else or hiding behind "technical reasons" (the words live in one place,
# `services.common.tone`), or asking the customer to act.
ASKING = {
    "en": ["your fault", "claim", "fill in", "form "],
    "ru": ["заполн", "заявк"],
    "ro": ["completa", "formular"],
}
FORBIDDEN = {locale: [*tone.BLAME[locale], *ASKING[locale]] for locale in ASKING}

# One action of each kind, and what its line must show in each locale.
EUR = "EUR"
REMEDIES: dict[RemedyKind, tuple[dict[str, Any], dict[str, str]]] = {
    RemedyKind.refund: ({"amount": Money.of("1249.90", EUR)},
                        {"en": "€1,249.90", "ru": "1\u00a0249,90\u00a0€", "ro": "1.249,90\u00a0€"}),
    RemedyKind.points: ({"points": 1500},
                        {"en": "1,500\u00a0loyalty points", "ru": "1\u00a0500\u00a0бонусных баллов",
                         "ro": "1.500\u00a0de puncte de fidelitate"}),
    RemedyKind.voucher: ({"amount": Money.of("10", EUR), "expires_at": NOW + timedelta(days=90)},
                         {"en": "€10.00 voucher", "ru": "скидка 10,00\u00a0€",
                          "ro": "voucher de 10,00\u00a0€"}),
    RemedyKind.free_delivery: ({"quantity": 2},
                               {"en": "free delivery on your next 2 orders",
                                "ru": "бесплатная доставка следующих 2 заказов",
                                "ro": "livrare gratuită pentru următoarele 2\u00a0comenzi"}),
    RemedyKind.replacement: ({}, {"en": "replacement", "ru": "замена товара",
                                  "ro": "produs de schimb"}),
    RemedyKind.gift: ({"amount": Money.of("5", EUR)},
                      {"en": "gift", "ru": "подарок", "ro": "cadou"}),
    RemedyKind.priority_support: ({"quantity": 30},
                                  {"en": "priority support for 30\u00a0days",
                                   "ru": "приоритетная поддержка на 30\u00a0дней",
                                   "ro": "asistență prioritară timp de 30\u00a0de zile"}),
    RemedyKind.free_upgrade: ({}, {"en": "free upgrade", "ru": "бесплатное повышение",
                                   "ro": "upgrade gratuit"}),
    RemedyKind.personal_call: ({"due_by": NOW + timedelta(hours=24)},
                               {"en": "within 24\u00a0hours", "ru": "в течение 24\u00a0часов",
                                "ro": "în termen de 24\u00a0de ore"}),
    RemedyKind.store_credit: ({"amount": Money.of("10", EUR)},
                              {"en": "store credit of €10.00", "ru": "10,00\u00a0€ на ваш счёт",
                               "ro": "credit de 10,00\u00a0€"}),
}

FACTS: dict[IncidentType, dict[str, Any]] = {
    IncidentType.delivery_delayed: {"delay_minutes": 300},
    IncidentType.item_defective: {"item_value": {"amount": "60.00", "currency": EUR}},
    IncidentType.wrong_item: {"item_value": {"amount": "25.00", "currency": EUR}},
    IncidentType.item_missing: {"item_value": {"amount": "12.00", "currency": EUR}},
    IncidentType.order_cancelled: {"order_value": {"amount": "80.00", "currency": EUR}},
    IncidentType.double_charge: {"charged_amount": {"amount": "49.90", "currency": EUR},
                                 "order_value": {"amount": "49.90", "currency": EUR}},
    IncidentType.support_wait_exceeded: {"wait_minutes": 2000, "ticket_id": "T-42"},
    IncidentType.service_outage: {"outage_minutes": 90},
    IncidentType.negative_review: {"rating": 1, "review_platform": "trustpilot",
                                   "review_url": "https://reviews.example/r/1"},
}


def make_incident(incident_type: IncidentType, **facts: Any) -> Incident:
    return Incident.model_validate(incident(incident_type.value, at=NOW - timedelta(hours=6),
                                            **{**FACTS[incident_type], **facts}))


def action(kind: RemedyKind, position: int, **fields: Any) -> Action:
    return Action(position=position, idempotency_key=action_key("d-1", position), kind=kind,
                  value=Money.of("0", EUR), **fields)


def decision(incident_: Incident, kinds: list[RemedyKind], *,
             offer: list[list[RemedyKind]] | None = None) -> Decision:
    actions = [action(RemedyKind.apology, 0)]
    actions += [action(kind, n, **REMEDIES[kind][0]) for n, kind in enumerate(kinds, 1)]
    made_offer = None
    if offer is not None:
        position = len(actions)
        options = []
        for n, option in enumerate(offer):
            option_actions = []
            for kind in option:
                option_actions.append(action(kind, position, **REMEDIES[kind][0]))
                position += 1
            options.append(OfferOption(label=f"option {n}", actions=option_actions))
        made_offer = Offer(offer_id="offer-1", options=options, default_option=0,
                           deadline=NOW + timedelta(hours=72))
    return Decision(decision_id="d-1", incident=incident_, policy_version="test",
                    decided_at=NOW, status=(DecisionStatus.awaiting_choice if made_offer
                                            else DecisionStatus.approved),
                    actions=actions, total_value=Money.of("0", EUR), offer=made_offer,
                    explanation="test")


def words(text: str) -> int:
    return len(text.split())


def assert_follows_principles(message: RenderedMessage, locale: str) -> None:
    paragraphs = message.text.split("\n\n")
    assert paragraphs[1].startswith(OPENING[locale]), "the apology comes first"
    assert APOLOGY_WORD[locale] in message.subject.lower()
    assert "\n" not in message.subject
    assert THANKS[locale] in message.text
    lowered = f"{message.subject}\n{message.text}".lower()
    blamed = [word for word in FORBIDDEN[locale] if word in lowered]
    assert not blamed, f"blames or asks: {blamed}\n{message.text}"
    assert words(message.text) < WORD_LIMIT, f"{words(message.text)} words:\n{message.text}"
    assert "None" not in message.text
    assert "{" not in message.text
    glued = re.search(r"\S- \S", message.text)
    assert glued is None, f"a bullet is glued to the line before it: {glued}\n{message.text}"
    bullets = sum(line.startswith("- ") for line in message.text.splitlines())
    assert message.html.count("<li>") == bullets, "every bullet is a list item in the HTML"
    HTMLParser().feed(message.html)
    assert f'lang="{locale}"' in message.html


def test_every_incident_type_has_a_template_in_every_locale() -> None:
    for locale in LOCALES:
        found = {p.name.removesuffix(".txt.j2") for p in (TEMPLATES / locale).glob("*.txt.j2")
                 if not p.name.startswith("_")}
        assert found == {t.value for t in IncidentType}, locale


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("incident_type", list(IncidentType))
def test_an_apology_alone_still_apologises_owns_it_and_thanks(
        incident_type: IncidentType, locale: str) -> None:
    message = render_apology(decision(make_incident(incident_type), []), locale)
    assert_follows_principles(message, locale)
    assert message.locale == locale


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", list(REMEDIES))
@pytest.mark.parametrize("incident_type", list(IncidentType))
def test_each_remedy_is_named_with_its_amount(incident_type: IncidentType, kind: RemedyKind,
                                              locale: str) -> None:
    message = render_apology(decision(make_incident(incident_type), [kind]), locale)
    assert_follows_principles(message, locale)
    assert REMEDIES[kind][1][locale] in message.text
    assert REMEDIES[kind][1][locale] in message.html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("incident_type", list(IncidentType))
def test_several_remedies_and_an_offer_stay_short(incident_type: IncidentType,
                                                  locale: str) -> None:
    made = decision(make_incident(incident_type),
                    [RemedyKind.points, RemedyKind.free_delivery, RemedyKind.voucher],
                    offer=[[RemedyKind.replacement], [RemedyKind.refund]])
    codes = {made.actions[3].idempotency_key: "AMD-7K2P-9QXM-4T8D-H3NC"}
    message = render_apology(made, locale, MessageExtras(customer_name="Ана-Мария Popescu",
                                                          voucher_codes=codes))
    assert_follows_principles(message, locale)
    for kind in (RemedyKind.points, RemedyKind.free_delivery, RemedyKind.voucher,
                 RemedyKind.refund):
        assert REMEDIES[kind][1][locale] in message.text
    assert "AMD-7K2P-9QXM-4T8D-H3NC" in message.text
    assert format_duration(72 * 60, locale, within=True) in message.text  # the offer's deadline


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("tier", ["standard", "gold"])
@pytest.mark.parametrize("incident_type", list(IncidentType))
def test_what_the_default_policy_grants_is_said_in_every_locale(
        incident_type: IncidentType, tier: str, locale: str) -> None:
    policy = load_policy("deploy/policy/default.yaml")
    subject = Incident.model_validate(incident(incident_type.value, tier=tier,
                                               **FACTS[incident_type]))
    made = decide(subject, CustomerHistory(), policy, NOW)
    message = render_apology(made, locale, MessageExtras(customer_name="Alex"))
    assert_follows_principles(message, locale)
    given = [a for a in made.actions if a.kind is not RemedyKind.apology]
    offered = [a for option in (made.offer.options if made.offer else [])
               for a in option.actions]
    for granted in given + offered:
        if granted.amount is not None and granted.percent is None:
            assert format_money(granted.amount, locale) in message.text
        if granted.points is not None:
            assert count(granted.points, locale, "x").split("\u00a0")[0] in message.text


def test_the_voucher_code_is_shown_only_when_passed() -> None:
    made = decision(make_incident(IncidentType.order_cancelled), [RemedyKind.voucher])
    without = render_apology(made, "en")
    assert "code" not in without.text
    with_code = render_apology(made, "en", MessageExtras(
        voucher_codes={made.actions[1].idempotency_key: "AMD-AAAA-BBBB-CCCC-DDDD"}))
    assert "(code AMD-AAAA-BBBB-CCCC-DDDD)" in with_code.text


@pytest.mark.parametrize("locale", LOCALES)
def test_outside_strings_are_escaped_and_cannot_add_lines(locale: str) -> None:
    evil = '<script>alert("x")</script>\n\nClick <a href="http://evil.example">here</a>'
    made = decision(make_incident(IncidentType.wrong_item, order_id='o-1"><img src=x '
                                                                    "onerror=alert(1)>"),
                    [RemedyKind.voucher])
    codes = {made.actions[1].idempotency_key: "<b>AMD</b>"}
    message = render_apology(made, locale, MessageExtras(customer_name=evil,
                                                         voucher_codes=codes,
                                                         signature="</p><script>x</script>"))
    for body in (message.text, message.html):
        assert "<script" not in body
        assert "<img" not in body
        assert "<a " not in body
        assert "<b>" not in body
    assert "&lt;script&gt;" in message.html
    assert "&lt;script&gt;" in message.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in message.text
    # The newlines in the name do not start a paragraph of the attacker's own.
    first_line = message.text.splitlines()[0]
    assert "Click" in first_line
    assert not any(line.startswith("Click") for line in message.text.splitlines())


def test_bidi_controls_cannot_reorder_what_the_customer_reads() -> None:
    made = decision(make_incident(IncidentType.item_missing), [])
    message = render_apology(made, "en", MessageExtras(customer_name="Eve\u202etxt.exe\u2066"))
    assert "\u202e" not in message.text
    assert "\u2066" not in message.html
    assert message.text.startswith("Dear Eve txt.exe,")


def test_a_name_reads_as_written_in_text_and_is_escaped_in_html() -> None:
    made = decision(make_incident(IncidentType.item_missing), [])
    message = render_apology(made, "en", MessageExtras(customer_name="Seán O'Brien"))
    assert message.text.startswith("Dear Seán O'Brien,")
    assert "Seán O&#39;Brien" in message.html


def test_an_unknown_locale_falls_back_to_english() -> None:
    made = decision(make_incident(IncidentType.service_outage), [RemedyKind.points])
    assert render_apology(made, "de").locale == "en"
    assert render_apology(made, "ru-MD").locale == "ru"
    assert resolve_locale(None) == "en"
    # Without a locale, the customer's own is used.
    assert render_apology(made).locale == "en"


@pytest.mark.parametrize(("amount", "currency", "locale", "expected"), [
    ("12.5", "EUR", "en", "€12.50"),
    ("1249.9", "EUR", "ru", "1\u00a0249,90\u00a0€"),
    ("1249.9", "EUR", "ro", "1.249,90\u00a0€"),
    ("0.005", "EUR", "en", "€0.01"),
    ("1500", "JPY", "en", "1,500 JPY"),
    ("99.99", "RON", "ro", "99,99\u00a0lei"),
    ("-3.10", "USD", "en", "$-3.10"),
])
def test_money_is_formatted_per_locale(amount: str, currency: str, locale: str,
                                       expected: str) -> None:
    assert format_money(Money(amount=Decimal(amount), currency=currency), locale) == expected


@pytest.mark.parametrize(("n", "ru", "ro"), [
    (1, "1\u00a0балл", "1\u00a0punct"), (2, "2\u00a0балла", "2\u00a0puncte"),
    (5, "5\u00a0баллов", "5\u00a0puncte"), (11, "11\u00a0баллов", "11\u00a0puncte"),
    (21, "21\u00a0балл", "21\u00a0de puncte"), (104, "104\u00a0балла", "104\u00a0puncte"),
    (120, "120\u00a0баллов", "120\u00a0de puncte"),
])
def test_plurals_follow_the_language(n: int, ru: str, ro: str) -> None:
    assert count(n, "ru", "балл", "балла", "баллов") == ru
    assert count(n, "ro", "punct", "puncte", "de puncte") == ro


def test_durations_round_to_the_unit_a_person_would_use() -> None:
    assert format_duration(45, "en") == "45\u00a0minutes"
    assert format_duration(200, "en") == "3\u00a0hours"
    assert format_duration(3000, "ru") == "2\u00a0дня"
    assert format_duration(1, "ru") == "1\u00a0минуту"
    assert format_duration(1, "ru", within=True) == "1\u00a0минуты"
    # A time limit is rounded down: 71 h 59 min is not "3 days".
    assert format_duration(72 * 60 - 1, "en", within=True) == "2\u00a0days"
    assert format_duration(72 * 60, "en", within=True) == "3\u00a0days"


@pytest.mark.parametrize(("rendered", "tidy"), [
    ("  Dear  Ann ,\t\n\n\n\nWe are\tsorry .  \n- a  refund !\n\n",
     "Dear Ann,\n\nWe are sorry.\n- a refund!"),
    ("a\r\nb\rc\x0bd\u2028e", "a\nb\nc\nd\ne"),  # every line break Python knows
    ("\xa0a\xa0\n \u3000b\u3000 ", "a\nb"),  # other spaces at a line's ends
    ("a\xa0b (x )", "a\xa0b (x)"),  # inside a line they stay, except before punctuation
])
def test_template_whitespace_becomes_prose(rendered: str, tidy: str) -> None:
    assert _tidy(rendered) == tidy
