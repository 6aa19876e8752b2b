"""Tone checks over every message template and draft, in every locale (`services.common.tone`
holds the words). Templates are found by scanning the services for template folders named by
locale, so a new template (a status post, a new message) is checked without being listed:

- every template, partials included: its own words blame no one;
- every message template (one no other template extends or imports) with the templates it
  builds on: it apologises, owns the failure and thanks the customer, in its locale;
- rendered, for every message the services send or draft: the same, no blame, the remedy
  named where the message carries one, and no claim the incident does not support (no
  duration when none is known, no refund when none was decided, no fix unless the incident
  says it is fixed, no number at all when the incident brings none).

When a check fails, fix the template, not the check."""


from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.decision import Choice, Decision, DecisionStatus, RemedyKind
from schemas.incident import IncidentType
from services.common import tone
from services.decision.domain import replies
from services.fulfilment.messages import render_apology, render_follow_up
from tests.decisions import APOLOGY, CREDIT, T0, decided, eur, grant, made_incident, offered

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[2] / "services"
REFERENCE = re.compile(r"""\{%-?\s*(?:extends|include|import|from)\s+["']([^"']+)["']""")
TAGS = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)


@dataclass(frozen=True)
class Template:
    root: Path  # the template folder the loader reads (its names are "<locale>/<file>")
    path: Path

    @property
    def locale(self) -> str:
        return self.path.parent.name

    @property
    def name(self) -> str:
        return self.path.relative_to(self.root).as_posix()

    @property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def references(self) -> list[str]:
        return REFERENCE.findall(self.source)

    def __str__(self) -> str:
        return self.path.relative_to(SERVICES.parent).as_posix()


def templates() -> list[Template]:
    """Every template under a folder named by a locale, anywhere in the services."""
    found = [Template(path.parent.parent, path) for path in SERVICES.rglob("*.j2")
             if path.parent.name in tone.LOCALES]
    return sorted(found, key=str)


def messages() -> list[Template]:
    """The templates no other template of their folder builds on: whole messages."""
    every = templates()
    used = {(t.root, name) for t in every for name in t.references()}
    return [t for t in every if (t.root, t.name) not in used]


def family(template: Template) -> Iterator[Template]:
    """The template and every template it extends, includes or imports, transitively."""
    seen: set[str] = set()
    todo = [template.name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        member = Template(template.root, template.root / name)
        yield member
        todo += member.references()


def words_of(source: str) -> str:
    """What a template says itself: its text outside tags, comments and expressions."""
    return TAGS.sub(" ", source)


def test_the_scan_finds_every_kind_of_message_in_every_locale() -> None:
    found = {(t.path.parent.parent.parent.name, t.path.name, t.locale) for t in messages()}
    for locale in tone.LOCALES:
        assert ("fulfilment", "delivery_delayed.txt.j2", locale) in found
        assert ("fulfilment", "_followup.txt.j2", locale) in found
        assert ("decision", replies.TEMPLATE, locale) in found
        # partials are not messages
        assert ("fulfilment", "_layout.txt.j2", locale) not in found
        assert ("fulfilment", "_remedies.txt.j2", locale) not in found
    # every message in every locale, so no language is left behind
    for root_name in {t.path.parent.parent.parent.name for t in messages()}:
        names = {(t.path.name, t.locale) for t in messages()
                 if t.path.parent.parent.parent.name == root_name}
        assert names == {(n, loc) for n, _ in names for loc in tone.LOCALES}, root_name


@pytest.mark.parametrize("template", templates(), ids=str)
def test_no_template_blames_anyone(template: Template) -> None:
    said = words_of(template.source)
    assert tone.blame_words(said, template.locale) == [], template


@pytest.mark.parametrize("template", messages(), ids=str)
def test_every_message_apologises_owns_it_and_thanks(template: Template) -> None:
    said = "\n".join(words_of(t.source) for t in family(template))
    problems = [p for p in tone.problems(said, template.locale) if "blames" not in p]
    assert problems == [], f"{template}: {problems}"


# --- rendered ------------------------------------------------------------------------------

FACTS: dict[IncidentType, dict[str, Any]] = {
    IncidentType.delivery_delayed: {"delay_minutes": 300},
    IncidentType.item_defective: {"item_value": {"amount": "60.00", "currency": "EUR"}},
    IncidentType.wrong_item: {"item_value": {"amount": "25.00", "currency": "EUR"}},
    IncidentType.item_missing: {"item_value": {"amount": "12.00", "currency": "EUR"}},
    IncidentType.order_cancelled: {"order_value": {"amount": "80.00", "currency": "EUR"}},
    IncidentType.double_charge: {"charged_amount": {"amount": "49.90", "currency": "EUR"}},
    IncidentType.support_wait_exceeded: {"wait_minutes": 2000, "ticket_id": "T-42"},
    IncidentType.service_outage: {"outage_minutes": 90},
    IncidentType.negative_review: {"rating": 1, "review_platform": "trustpilot",
                                   "review_url": "https://reviews.example/r/1"},
}
# Words a message uses only when it claims these; a message may use them only when it may.
REFUND = {"en": "refund", "ru": "возврат", "ro": "rambursare"}
FIXED = {  # each type's prevention sentence starts with one of these, per locale
    "en": ("We have ", "We now ", "Every low rating is now"),
    "ru": ("Мы ", "Теперь "),
    "ro": ("Am ", "Acum "),
}
LOOKING = {"en": "We are looking into the cause", "ru": "Мы разбираемся в причинах",
           "ro": "Analizăm cauza"}
REPLY_LOOKING = {"en": "We are finding out", "ru": "Мы выясняем причину", "ro": "Aflăm ce"}
DURATION = {"en": re.compile(r"\b(minutes?|hours?|days?)\b"),
            "ru": re.compile(r"(минут|час|дн[еяё]|сутк)"),
            "ro": re.compile(r"\b(minut|or[eă]|zi(le)?)\b")}
REFUND_GRANT = grant(RemedyKind.refund, amount=eur("20.00"), value=eur("20.00"))
POINTS = grant(RemedyKind.points, points=500, value=eur("5.00"))


def incident_of(kind: IncidentType, locale: str, *, bare: bool = False,
                fixed: bool = False) -> Any:
    """`bare`: the incident brings no figure at all (no order, no amount, no duration)."""
    facts = {} if bare else dict(FACTS[kind])
    if bare and kind is IncidentType.negative_review:
        facts = {"review_platform": "trustpilot", "review_url": "https://reviews.example/r"}
    return made_incident(kind.value, locale=locale, paid=None, cause_fixed=fixed,
                         order_id=None if bare else f"order-{kind.value}", **facts)


def assert_tone(text: str, locale: str, *, public: bool = False) -> None:
    problems = tone.problems(text, locale, public=public)
    assert problems == [], f"{problems}\n{text}"


CASES = [(kind, locale) for kind in IncidentType for locale in tone.LOCALES]


@pytest.mark.parametrize(("kind", "locale"), CASES)
def test_every_apology_keeps_the_tone_and_names_its_remedies(kind: IncidentType,
                                                             locale: str) -> None:
    for grants in ((APOLOGY,), (APOLOGY, CREDIT), (APOLOGY, POINTS, REFUND_GRANT)):
        message = render_apology(decided(incident_of(kind, locale), *grants))
        assert_tone(f"{message.subject}\n{message.text}", locale)
        named = REFUND[locale] in message.text.lower()
        assert named == (REFUND_GRANT in grants), f"refund claimed or left out\n{message.text}"
        if CREDIT in grants:
            assert "10,00" in message.text or "10.00" in message.text, message.text


@pytest.mark.parametrize("locale", tone.LOCALES)
def test_an_apology_with_an_offer_keeps_the_tone(locale: str) -> None:
    made = decided(incident_of(IncidentType.item_defective, locale), APOLOGY)
    message = render_apology(offered(made, [REFUND_GRANT], [CREDIT], default=1))
    assert_tone(f"{message.subject}\n{message.text}", locale)
    assert REFUND[locale] in message.text.lower()  # an option offered is named as one


@pytest.mark.parametrize(("kind", "locale"), CASES)
def test_an_apology_claims_nothing_the_incident_does_not_bring(kind: IncidentType,
                                                               locale: str) -> None:
    bare = render_apology(decided(incident_of(kind, locale, bare=True), APOLOGY)).text
    assert not re.search(r"\d", bare.replace("trustpilot", "")), (
        f"a figure the incident does not bring\n{bare}")
    assert not DURATION[locale].search(bare), f"a duration none is known of\n{bare}"
    assert LOOKING[locale] in bare, f"a fix the incident does not report\n{bare}"
    fixed = render_apology(decided(incident_of(kind, locale, fixed=True), APOLOGY)).text
    assert LOOKING[locale] not in fixed
    prevention = fixed.split("\n\n")[-2]
    assert prevention.startswith(FIXED[locale]), prevention


@pytest.mark.parametrize("locale", tone.LOCALES)
@pytest.mark.parametrize("by", ["customer", "default", "review"])
def test_every_follow_up_keeps_the_tone(locale: str, by: str) -> None:
    made = decided(incident_of(IncidentType.delivery_delayed, locale), APOLOGY, CREDIT)
    if by == "review":
        revision = made.model_copy(update={"revision": 1})
    else:
        revision = made.model_copy(update={"revision": 1, "choice": Choice(
            option=0, label="store credit", by=by, at=T0 + timedelta(hours=1))})  # type: ignore[arg-type]
    message = render_follow_up(revision, revision.actions[1:])
    assert_tone(f"{message.subject}\n{message.text}", locale)
    assert REFUND[locale] not in message.text.lower()


def reply_cases() -> Iterator[tuple[str, Decision]]:
    for locale in tone.LOCALES:
        for grants in ((APOLOGY,), (APOLOGY, CREDIT), (APOLOGY, POINTS, REFUND_GRANT)):
            for fixed in (False, True):
                yield locale, decided(incident_of(IncidentType.negative_review, locale,
                                                  fixed=fixed), *grants)
        held = decided(incident_of(IncidentType.negative_review, locale), APOLOGY, CREDIT)
        yield locale, held.model_copy(update={"status": DecisionStatus.held})


@pytest.mark.parametrize(("locale", "decision"), list(reply_cases()))
def test_every_review_reply_keeps_the_tone_and_says_only_what_was_done(
        locale: str, decision: Decision) -> None:
    draft = replies.draft(decision, T0)
    assert draft is not None
    assert_tone(draft.draft, locale, public=True)
    claims_refund = REFUND[locale] in draft.draft.lower()
    refunded = decision.status.executable and any(
        a.kind is RemedyKind.refund for a in decision.actions)
    assert claims_refund == refunded, draft.draft
    # The only figures: the rating and its scale (never an amount, an order or a time).
    assert set(re.findall(r"\d+", draft.draft)) <= {str(draft.rating), "5"}, draft.draft
    assert (REPLY_LOOKING[locale] in draft.draft) is not decision.incident.cause_fixed


def test_the_checks_catch_what_they_look_for() -> None:
    """The tone checks are not vacuous: each kind of fault is caught in each locale."""
    good = {"en": "We're sorry: it was our mistake. Thank you.",
            "ru": "Приносим извинения: это наша ошибка. Спасибо.",
            "ro": "Ne cerem scuze: este greșeala noastră. Vă mulțumim."}
    blame = {"en": "The courier was late.", "ru": "Курьер опоздал.", "ro": "Curierul a întârziat."}
    removal = {"en": "Please delete your review.", "ru": "Пожалуйста, удалите отзыв.",
               "ro": "Vă rugăm să ștergeți recenzia."}
    for locale in tone.LOCALES:
        assert tone.problems(good[locale], locale) == []
        assert tone.problems(f"{good[locale]} {blame[locale]}", locale)
        assert tone.problems(f"{good[locale]} {removal[locale]}", locale, public=True)
        assert tone.problems(good[locale].split(":")[0], locale)  # no ownership, no thanks
    assert "force majeure" in tone.blame_words("Due to force majeure.", "en")
    assert tone.blame_words("по техническим причинам", "ru")
    assert tone.blame_words("din motive tehnice", "ro")
