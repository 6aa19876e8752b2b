"""The default policy, incident type by tier: the remedies a CX lead signed off."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.decision import Decision, DecisionStatus, RemedyKind
from schemas.incident import Incident, IncidentType
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import Policy, load_policy
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
EUR = "EUR"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("deploy/policy/default.yaml")


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": EUR}


# incident type, its facts, the remedies for a standard customer (kind: value), and what the
# offer's options are (None: no offer).
CASES: list[tuple[str, dict[str, Any], dict[str, str], list[dict[str, str]] | None]] = [
    ("delivery_delayed", {"delay_minutes": 20}, {}, None),
    ("delivery_delayed", {"delay_minutes": 95}, {"points": "2.00"}, None),
    ("delivery_delayed", {"delay_minutes": 300}, {"points": "5.00", "free_delivery": "4.90"},
     None),
    ("delivery_delayed", {"delay_minutes": 600}, {"voucher": "10.00", "free_delivery": "4.90"},
     None),
    ("delivery_delayed", {"delay_minutes": 2000}, {"free_delivery": "9.80"},
     [{"voucher": "15.00"}, {"points": "20.00"}]),
    ("item_defective", {"item_value": money("60.00")}, {"points": "3.00"},
     [{"replacement": "60.00"}, {"refund": "60.00"}]),
    ("wrong_item", {"item_value": money("25.00")}, {"points": "3.00"},
     [{"replacement": "25.00"}, {"refund": "25.00"}]),
    ("item_missing", {"item_value": money("12.00")}, {"points": "2.00"},
     [{"replacement": "12.00"}, {"refund": "12.00"}]),
    ("order_cancelled", {"order_value": money("80.00")},
     {"refund": "80.00", "voucher": "12.00"}, None),
    ("double_charge", {"charged_amount": money("49.90"), "order_value": money("49.90")},
     {"refund": "49.90", "points": "5.00"}, None),
    ("support_wait_exceeded", {"wait_minutes": 300}, {"points": "2.00"}, None),
    ("support_wait_exceeded", {"wait_minutes": 2000},
     {"points": "5.00", "priority_support": "0.00"}, None),
    ("service_outage", {}, {"points": "1.00"}, None),
    ("service_outage", {"outage_minutes": 90}, {"points": "3.00"}, None),
    ("service_outage", {"outage_minutes": 300}, {"voucher": "5.00", "points": "3.00"}, None),
    ("negative_review", {"rating": 2, "review_platform": "trustpilot",
                         "review_url": "https://reviews.example/r"},
     {"store_credit": "10.00"}, None),
]
# What each tier adds on top (kind: extra value), for types the loyalty rule covers.
LOYAL = {"gold": {"points": "5.00"}, "platinum": {"points": "5.00"}}
LOYAL_TYPES = {"delivery_delayed", "item_defective", "wrong_item", "item_missing",
               "order_cancelled", "double_charge"}


def remedies(decision: Decision) -> dict[str, str]:
    return {a.kind.value: str(a.value.amount) for a in decision.actions
            if a.kind is not RemedyKind.apology}


def test_every_incident_type_is_covered(policy: Policy) -> None:
    assert {case[0] for case in CASES} == {t.value for t in IncidentType}
    for incident_type in IncidentType:
        made = decide(Incident.model_validate(incident(incident_type.value)),
                      CustomerHistory(), policy, NOW)
        assert any(t.matched for t in made.rules), f"no rule covers {incident_type}"


@pytest.mark.parametrize("tier", ["standard", "silver", "gold", "platinum"])
@pytest.mark.parametrize(("incident_type", "facts", "expected", "options"), CASES)
def test_remedies_by_type_and_tier(policy: Policy, tier: str, incident_type: str,  # noqa: PLR0917
                                   facts: dict[str, Any], expected: dict[str, str],
                                   options: list[dict[str, str]] | None) -> None:
    made = decide(Incident.model_validate(incident(incident_type, tier=tier, **facts)),
                  CustomerHistory(), policy, NOW)
    want = dict(expected)
    if incident_type in LOYAL_TYPES:
        for kind, extra in LOYAL.get(tier, {}).items():
            want[kind] = f"{float(want.get(kind, '0')) + float(extra):.2f}"
    assert made.actions[0].kind is RemedyKind.apology
    assert remedies(made) == want
    if options is None:
        assert made.offer is None
        assert made.status is DecisionStatus.approved
    else:
        assert made.offer is not None
        assert made.status is DecisionStatus.awaiting_choice
        assert [{a.kind.value: str(a.value.amount) for a in o.actions}
                for o in made.offer.options] == options
    assert made.policy_version == policy.version
    assert made.explanation.startswith("We are sorry")


def test_platinum_customers_get_a_call_when_it_is_serious(policy: Policy) -> None:
    made = decide(Incident.model_validate(incident("item_defective", tier="platinum",
                                                   severity="high")),
                  CustomerHistory(), policy, NOW)
    call = next(a for a in made.actions if a.kind is RemedyKind.personal_call)
    assert call.due_by is not None
    assert (call.due_by - NOW).total_seconds() == 24 * 3600
