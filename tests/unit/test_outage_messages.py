"""Outage messages tell the truth: while the outage goes on they do not say how long it lasted
or that it is over; once it is resolved after its customers were told, the top-up says how
long it lasted and that it adds to what was given. Each remedy is on a line of its own."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.decision import Decision
from schemas.incident import Incident, IncidentType, incident_id
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.topup import given_by
from services.fulfilment.messages import LOCALES, render_apology
from tests.factories import incident
from tests.unit.test_apology_templates import WORD_LIMIT, assert_follows_principles

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
LASTED = {"en": "it lasted 75\u00a0minutes", "ru": "длился 75\u00a0минут",
          "ro": "a durat în total 75\u00a0de minute"}
OVER = {"en": "is over", "ru": "закончился", "ro": "s-a încheiat"}
TOP_UP = {"en": "On top of what we gave you before, you now also get:",
          "ru": "В дополнение к тому, что мы уже предоставили, вы получаете:",
          "ro": "Pe lângă ce v-am oferit deja, mai primiți:"}
STANDS = {"en": "What we gave you before stands", "ru": "остаётся в силе",
          "ro": "rămâne valabil"}
POINTS = {"en": "- 200\u00a0loyalty points", "ru": "- 200\u00a0бонусных баллов",
          "ro": "- 200\u00a0de puncte de fidelitate"}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("deploy/policy/default.yaml")


def outage(minutes: int | None, stage: str) -> Incident:
    body = incident("service_outage", order_id=None, outage_id="out-1", outage_minutes=minutes)
    body["incident_id"] = incident_id(IncidentType.service_outage, "out-1", "c-1", stage)
    return Incident.model_validate(body)


def stages(policy: Policy, minutes: int) -> tuple[Decision, Decision]:
    first = decide(outage(None, "declared"), CustomerHistory(), policy, NOW)
    i = first.incident
    history = CustomerHistory((PastIncident(
        i.incident_id, i.type, i.detection, NOW, first.total_value.amount,
        given=tuple(given_by(first).items()), outage_id=i.outage_id),))
    return first, decide(outage(minutes, "resolved"), history, policy,
                         NOW + timedelta(minutes=minutes))


@pytest.mark.parametrize("locale", LOCALES)
def test_the_resolved_stage_says_how_long_it_lasted_and_adds_to_what_was_given(
        policy: Policy, locale: str) -> None:
    first, second = stages(policy, 75)
    ongoing, resolved = render_apology(first, locale), render_apology(second, locale)
    assert_follows_principles(ongoing, locale)
    assert_follows_principles(resolved, locale)
    assert LASTED[locale] in resolved.text
    assert OVER[locale] in resolved.text
    assert f"{TOP_UP[locale]}\n{POINTS[locale]}" in resolved.text
    assert "<li>200\u00a0" in resolved.html
    # While it goes on: no duration, not over, nothing "on top".
    assert "75" not in ongoing.text
    assert OVER[locale] not in ongoing.text
    assert TOP_UP[locale] not in ongoing.text
    assert "<li>100\u00a0" in ongoing.html
    assert ongoing.subject != resolved.subject
    assert len(resolved.text.split()) < WORD_LIMIT


@pytest.mark.parametrize("locale", LOCALES)
def test_a_short_outage_resolved_later_says_so_and_that_what_was_given_stands(
        policy: Policy, locale: str) -> None:
    _, second = stages(policy, 10)
    assert [a.kind.value for a in second.actions] == ["apology"]
    text = render_apology(second, locale).text
    assert OVER[locale] in text
    assert STANDS[locale] in text


STATUS_LINE = {"en": "What happened, for everyone", "ru": "Что случилось и что мы делаем",
               "ro": "Ce s-a întâmplat și ce facem"}


@pytest.mark.parametrize("locale", LOCALES)
def test_an_outage_apology_links_the_public_status_post(policy: Policy, locale: str) -> None:
    from services.fulfilment.messages import MessageExtras

    first, _ = stages(policy, 75)
    url = "https://status.example.org/outages/out-1"
    message = render_apology(first, locale, MessageExtras(status_url=url))
    without = render_apology(first, locale)
    [line] = [ln for ln in message.text.splitlines() if STATUS_LINE[locale] in ln]
    assert line.endswith(f": {url}")
    assert f'<a href="{url}">{url}</a>' in message.html
    assert STATUS_LINE[locale] not in without.text
    assert_follows_principles(message, locale)
