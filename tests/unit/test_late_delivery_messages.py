"""Late-delivery messages tell the truth: "your order is late" while it is on its way,
"arrived N minutes late" once it has, a top-up says it adds to what was given, and no message
claims the cause is fixed unless the incident says so (every type, every locale)."""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.decision import Decision
from schemas.incident import Incident, IncidentType, incident_id
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.topup import given_by
from services.fulfilment.messages import LOCALES, render_apology
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
ON_ITS_WAY = {"en": "still on its way", "ru": "ещё не доставлен", "ro": "nu a ajuns încă"}
ARRIVED = {"en": "arrived 95\u00a0minutes later", "ru": "пришёл на 95\u00a0минут позже",
           "ro": "a ajuns cu 95\u00a0de minute mai târziu"}
ARRIVED_WORD = {"en": "arrived", "ru": "пришёл", "ro": "a ajuns cu"}
TOP_UP = {"en": "On top of what we gave you before", "ru": "В дополнение к тому",
          "ro": "Pe lângă ce v-am oferit deja"}
LOOKING_INTO = {"en": "We are looking into the cause", "ru": "Мы разбираемся в причинах",
                "ro": "Analizăm cauza"}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("deploy/policy/default.yaml")


def delay(minutes: int, band: str, **fields: Any) -> Incident:
    body = incident("delivery_delayed", delay_minutes=minutes, delay_band=band, **fields)
    body["incident_id"] = incident_id(IncidentType.delivery_delayed, "o-1", band)
    return Incident.model_validate(body)


@pytest.mark.parametrize("locale", LOCALES)
def test_before_delivery_the_order_is_late_after_it_it_arrived_late(
        policy: Policy, locale: str) -> None:
    waiting = render_apology(decide(delay(45, "late_30m"), CustomerHistory(), policy, NOW),
                             locale)
    assert ON_ITS_WAY[locale] in waiting.text
    assert ARRIVED_WORD[locale] not in waiting.text
    arrived = render_apology(decide(delay(95, "late_30m", delivered_at=NOW.isoformat()),
                                    CustomerHistory(), policy, NOW), locale)
    assert ARRIVED[locale] in arrived.text
    assert ON_ITS_WAY[locale] not in arrived.text
    assert waiting.subject != arrived.subject


@pytest.mark.parametrize("locale", LOCALES)
def test_a_top_up_says_it_adds_to_what_was_given(policy: Policy, locale: str) -> None:
    first = decide(delay(1, "late"), CustomerHistory(), policy, NOW)
    history = CustomerHistory((PastIncident(
        first.incident.incident_id, first.incident.type, first.incident.detection, NOW,
        first.total_value.amount, "o-1", tuple(given_by(first).items())),))
    second = decide(delay(95, "late_30m", delivered_at=(NOW + timedelta(minutes=95)).isoformat()),
                    history, policy, NOW + timedelta(minutes=95))
    assert second.top_up_of == [first.decision_id]
    text = render_apology(second, locale).text
    assert TOP_UP[locale] in text
    assert ARRIVED[locale] in text
    assert TOP_UP[locale] not in render_apology(first, locale).text


def _any_decision(policy: Policy, kind: IncidentType, cause_fixed: bool) -> Decision:
    fields: dict[str, Any] = {"cause_fixed": cause_fixed, "delay_minutes": 50,
                              "wait_minutes": 300, "outage_minutes": 90,
                              "item_value": {"amount": "20.00", "currency": "EUR"},
                              "order_value": {"amount": "20.00", "currency": "EUR"},
                              "charged_amount": {"amount": "20.00", "currency": "EUR"}}
    return decide(Incident.model_validate(incident(kind.value, **fields)), CustomerHistory(),
                  policy, NOW)


@pytest.mark.parametrize("kind", list(IncidentType))
@pytest.mark.parametrize("locale", LOCALES)
def test_no_message_claims_the_cause_is_fixed_unless_the_incident_says_so(
        policy: Policy, kind: IncidentType, locale: str) -> None:
    unknown = render_apology(_any_decision(policy, kind, cause_fixed=False), locale).text
    fixed = render_apology(_any_decision(policy, kind, cause_fixed=True), locale).text
    assert LOOKING_INTO[locale] in unknown
    assert LOOKING_INTO[locale] not in fixed
    claims = set(fixed.splitlines()) - set(unknown.splitlines())
    assert claims, "the template has no sentence on what was done"
    assert not claims & set(unknown.splitlines())
