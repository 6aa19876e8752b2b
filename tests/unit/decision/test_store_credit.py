"""Store credit in the policy: a grant gives an amount or a percent of the order (of
`values.typical_order` without one), grants of it add up, a cap reduces it, it is goodwill
(never restitution) worth its amount, and the fast path decides as the reference does."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.common import Money
from schemas.decision import Decision, RemedyKind
from schemas.incident import Incident
from services.decision.domain import engine as reference
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import Policy, load_policy
from services.decision.fast import engine as fast
from tests.factories import eur, incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")
FIXED = {"id": "fixed", "when": {"type": ["item_defective"]},
         "grant": [{"store_credit": {"amount": 5}}]}
SHARE = {"id": "share", "extra": True, "when": {"type": ["item_defective"]},
         "grant": [{"store_credit": {"percent": 10}}]}


def defective(**fields: Any) -> Incident:
    return Incident.model_validate(incident("item_defective", **fields))


def policy(*rules: dict[str, Any], cap: str | None = None) -> Policy:
    data = DEFAULT.model_dump(mode="json")
    data["guards"]["review"] = []
    if cap is not None:
        data["guards"]["incident_cap"] = cap
    data["rules"] = list(rules)
    return Policy.model_validate(data)


def decided(one: Incident, chosen: Policy) -> Decision:
    made = reference.decide(one, CustomerHistory(), chosen, NOW)
    assert fast.decide(one, CustomerHistory(), chosen, NOW).model_dump_json() \
        == made.model_dump_json()
    return made


def credits(decision: Decision) -> list[Decimal]:
    return [a.amount.amount for a in decision.actions
            if a.kind is RemedyKind.store_credit and a.amount is not None]


def test_a_fixed_grant_is_goodwill_worth_its_amount_and_explained() -> None:
    decision = decided(defective(), policy(FIXED))
    assert [a.kind for a in decision.actions] == [RemedyKind.apology, RemedyKind.store_credit]
    assert credits(decision) == [Decimal("5.00")]
    [credit] = decision.actions[1:]
    assert (credit.value, credit.restitution) == (Money.of("5.00", "EUR"), False)
    assert (decision.goodwill_value, decision.restitution_value) == (
        Money.of("5.00", "EUR"), Money.of("0.00", "EUR"))
    assert "5.00 EUR of store credit on your account" in decision.explanation


def test_grants_add_up_and_a_percent_is_of_the_order_or_the_typical_order() -> None:
    with_order = decided(defective(order_value=eur("42.00")), policy(FIXED, SHARE))
    assert credits(with_order) == [Decimal("9.20")]
    without = decided(defective(order_value=None), policy(SHARE))
    assert credits(without) == [Decimal("4.50")]  # 10% of the typical order, 45.00


def test_a_cap_reduces_store_credit() -> None:
    decision = decided(defective(), policy(FIXED, cap="3.50"))
    assert credits(decision) == [Decimal("3.50")]
    [cap] = decision.caps
    assert (cap.cap, cap.cut) == ("incident", Money.of("1.50", "EUR"))


def test_a_grant_must_give_an_amount_or_a_percent() -> None:
    with pytest.raises(ValueError, match="either amount or percent"):
        policy({"id": "none", "when": {"type": ["item_defective"]},
                "grant": [{"store_credit": {}}]})
