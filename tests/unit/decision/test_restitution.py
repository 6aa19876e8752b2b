"""Restitution and the refund ceiling in the engine: money taken by mistake goes back in full,
whatever the caps, the budget and size-based review say; no order is refunded more than was
captured for it, across all its incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decision import Decision, DecisionStatus, RemedyKind
from schemas.incident import Detection, Incident, IncidentType
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, PolicyError, load_policy, parse_policy
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")


def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


def double_charge(amount: str, *, fact: str = "o-1", **fields: Any) -> Incident:
    return Incident.model_validate(incident(
        "double_charge", charged_amount=eur(amount), order_value=eur(amount), fact=fact,
        **fields))


def refunds(decision: Decision) -> list[tuple[Decimal, bool]]:
    return [(a.value.amount, a.restitution) for a in decision.actions
            if a.kind is RemedyKind.refund]


def past(incident_: Incident, refunded: str, *, hours: int = 1) -> PastIncident:
    return PastIncident(incident_id=f"other-{incident_.incident_id}", type=incident_.type,
                        detection=Detection.proactive, decided_at=NOW - timedelta(hours=hours),
                        order_id=incident_.order_id, refunded=Decimal(refunded))


def test_a_double_charge_is_refunded_in_full_with_the_budget_used_up() -> None:
    made = decide(double_charge("129.00"), CustomerHistory(), DEFAULT, NOW,
                  budget_remaining=Decimal(0))
    assert made.status is DecisionStatus.approved
    assert refunds(made) == [(Decimal("129.00"), True)]
    # The points are goodwill: the empty budget cut them, and only them.
    assert [a.kind for a in made.actions] == [RemedyKind.apology, RemedyKind.refund]
    assert [(c.cap, c.cut.amount) for c in made.caps] == [("budget", Decimal("5.00"))]
    assert made.restitution_value is not None
    assert made.goodwill_value is not None
    assert made.restitution_value.amount == Decimal("129.00")
    assert made.goodwill_value.amount == Decimal(0)
    assert made.total_value.amount == Decimal("129.00")


@pytest.mark.parametrize("detection", ["proactive", "agent_reported", "customer_reported"])
def test_a_large_double_charge_is_neither_capped_nor_held_for_its_size(detection: str) -> None:
    made = decide(double_charge("640.00", detection=detection), CustomerHistory(), DEFAULT,
                  NOW)
    assert made.status is DecisionStatus.approved, made.review_reason
    assert refunds(made) == [(Decimal("640.00"), True)]
    assert not made.caps  # above the 500.00 incident cap, and above the review thresholds
    assert made.goodwill_value is not None
    assert made.goodwill_value.amount == Decimal("5.00")  # the 500 points


def test_restitution_is_above_the_customer_cap_too() -> None:
    spent = CustomerHistory((PastIncident("earlier", IncidentType.delivery_delayed,
                                          Detection.proactive, NOW - timedelta(days=2),
                                          value=Decimal("800.00")),))
    made = decide(double_charge("300.00"), spent, DEFAULT, NOW)
    assert refunds(made) == [(Decimal("300.00"), True)]
    assert [c.cap for c in made.caps] == ["customer"]
    assert made.goodwill_value is not None
    assert made.goodwill_value.amount == 0


def test_fraud_signals_still_hold_restitution() -> None:
    claims = CustomerHistory(tuple(
        PastIncident(f"claim-{n}", IncidentType.item_missing, Detection.customer_reported,
                     NOW - timedelta(days=n + 1)) for n in range(3)))
    made = decide(double_charge("40.00", detection="customer_reported"), claims, DEFAULT, NOW)
    assert made.status is DecisionStatus.held
    assert made.review_reason is not None
    assert "frequent-claims" in made.review_reason


def test_a_goodwill_refund_is_still_capped_and_held_for_its_size() -> None:
    defective = Incident.model_validate(incident(
        "item_defective", item_value=eur("900.00"), detection="customer_reported"))
    made = decide(defective, CustomerHistory(), DEFAULT, NOW)
    assert made.offer is not None
    refund = next(a for o in made.offer.options for a in o.actions
                  if a.kind is RemedyKind.refund)
    assert not refund.restitution
    assert refund.value.amount < Decimal("900.00")  # cut to the incident cap
    assert made.status is DecisionStatus.held


def test_a_paid_order_we_cancelled_is_refunded_up_to_what_was_captured() -> None:
    cancelled = Incident.model_validate(incident(
        "order_cancelled", order_value=eur("80.00"), captured_amount=eur("30.00")))
    made = decide(cancelled, CustomerHistory(), DEFAULT, NOW)
    assert refunds(made) == [(Decimal("30.00"), True)]
    # With nothing captured known, the order's value is what was paid.
    whole = decide(cancelled.model_copy(update={"captured_amount": None}), CustomerHistory(),
                   DEFAULT, NOW)
    assert refunds(whole) == [(Decimal("80.00"), True)]


def test_the_same_double_charge_reported_again_is_not_refunded_twice() -> None:
    detected = double_charge("129.00", fact="o-7", captured_amount=eur("258.00"))
    # Reported by an agent: an incident of its own (its id comes from the report).
    reported = double_charge("129.00", fact="o-7", detection="agent_reported").model_copy(
        update={"incident_id": "reported-r-1"})
    first = decide(detected, CustomerHistory(), DEFAULT, NOW)
    assert refunds(first) == [(Decimal("129.00"), True)]
    history = CustomerHistory((past(detected, "129.00"),))
    again = decide(reported, history, DEFAULT, NOW)
    assert refunds(again) == []
    assert "Not given: double-charge: 129.00 EUR of a refund of 129.00 EUR" in (
        again.explanation)
    assert again.restitution_value is not None
    assert again.restitution_value.amount == 0
    # Another order of the customer is another matter.
    other = decide(double_charge("129.00", fact="o-8"), history, DEFAULT, NOW)
    assert refunds(other) == [(Decimal("129.00"), True)]


def test_refunds_of_an_order_never_pass_what_was_captured_however_long_ago() -> None:
    cancelled = Incident.model_validate(incident(
        "order_cancelled", order_value=eur("80.00"), captured_amount=eur("80.00"), fact="o-9"))
    # An item of the order was refunded (50.00) long before the window.
    item = Incident.model_validate(incident("item_missing", fact="o-9"))
    made = decide(cancelled, CustomerHistory((past(item, "50.00", hours=24 * 90),)), DEFAULT,
                  NOW)
    assert refunds(made) == [(Decimal("30.00"), True)]
    assert "50.00 EUR of the 80.00 EUR paid for order o-9 is refunded already" in (
        made.explanation)


def test_a_refunded_duplicate_charge_leaves_the_order_itself_refundable() -> None:
    charged = double_charge("80.00", fact="o-4")
    missing = Incident.model_validate(incident(
        "item_missing", item_value=eur("20.00"), order_value=eur("80.00"), fact="o-4"))
    made = decide(missing, CustomerHistory((past(charged, "80.00"),)), DEFAULT, NOW)
    assert made.offer is not None
    option = {o.label: o.actions for o in made.offer.options}["a refund of the item"]
    assert [(a.value.amount, a.restitution) for a in option] == [(Decimal("20.00"), True)]


def test_an_offered_refund_respects_the_ceiling_too() -> None:
    missing = Incident.model_validate(incident(
        "item_missing", item_value=eur("60.00"), order_value=eur("60.00"), fact="o-3"))
    earlier = Incident.model_validate(incident("item_defective", fact="o-3"))
    made = decide(missing, CustomerHistory((past(earlier, "45.00"),)), DEFAULT, NOW)
    assert made.offer is not None
    option = {o.label: o.actions for o in made.offer.options}["a refund of the item"]
    assert [(a.value.amount, a.restitution) for a in option] == [(Decimal("15.00"), True)]


def test_restitution_and_goodwill_refunds_are_never_merged() -> None:
    data = DEFAULT.model_dump(mode="json")
    data["rules"].append({"id": "sorry-refund", "when": {"type": ["double_charge"]},
                          "grant": [{"refund": {"fixed": "3.00"}}]})
    policy = Policy.model_validate(data)
    charged = double_charge("20.00", captured_amount=eur("50.00"))
    made = decide(charged, CustomerHistory(), policy, NOW, budget_remaining=Decimal(0))
    # The goodwill refund is cut by the budget; the restitution stays whole.
    assert refunds(made) == [(Decimal("20.00"), True)]
    roomy = decide(charged, CustomerHistory(), policy, NOW)
    assert sorted(refunds(roomy)) == [(Decimal("3.00"), False), (Decimal("20.00"), True)]


def test_a_restitution_must_give_back_in_full() -> None:
    text = Path("deploy/policy/default.yaml").read_text(encoding="utf-8").replace(
        "{percent: 100, of: charge, restitution: true}",
        "{percent: 100, of: charge, restitution: true, max: 100}")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    assert any("restitution gives back in full" in p for p in caught.value.problems)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 50_000), st.integers(0, 50_000),
       st.lists(st.tuples(st.sampled_from(["double_charge", "order_cancelled", "item_missing",
                                           "item_defective", "wrong_item"]),
                          st.sampled_from(["proactive", "agent_reported"]),
                          st.integers(1, 100)), min_size=1, max_size=6))
def test_no_order_is_ever_refunded_more_than_was_captured(
        order_cents: int, extra_cents: int, reports: list[tuple[str, str, int]]) -> None:
    order, extra = Decimal(order_cents).scaleb(-2), Decimal(extra_cents).scaleb(-2)
    history = CustomerHistory()
    refunded = duplicates = Decimal(0)
    for n, (kind, detection, share) in enumerate(reports):
        fields: dict[str, Any] = {"order_value": eur(str(order)),
                                  "captured_amount": eur(str(order + extra))}
        if kind == "double_charge":
            fields["charged_amount"] = eur(str(extra or order))
        else:
            fields["item_value"] = eur(str((order * share / 100).quantize(Decimal("0.01"))))
        one = Incident.model_validate(incident(kind, detection=detection, fact="o-1",
                                               **fields)).model_copy(
            update={"incident_id": f"i-{n}"})
        made = decide(one, history, DEFAULT, NOW + timedelta(minutes=n))
        # The most this decision may refund: its refunds and the option refunding the most.
        options = made.offer.options if made.offer else []
        most = sum((a.value.amount for a in made.actions if a.kind is RemedyKind.refund),
                   Decimal(0)) + max((sum((a.value.amount for a in o.actions
                                           if a.kind is RemedyKind.refund), Decimal(0))
                                      for o in options), default=Decimal(0))
        refunded += most
        if kind == "double_charge":
            duplicates += most
        history = history.plus(PastIncident(
            incident_id=one.incident_id, type=one.type, detection=one.detection,
            decided_at=NOW + timedelta(minutes=n), order_id="o-1", refunded=most))
    assert refunded <= order + extra
    assert duplicates <= extra
