"""Properties of the engine that hold for any incident, history, caps and budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decision import Action, Decision, DecisionStatus, RemedyKind
from schemas.incident import Detection, Incident, IncidentType, Severity
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident, WindowFacts
from services.decision.domain.policy import Policy, load_policy
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")

cents = st.integers(min_value=0, max_value=200_000).map(lambda c: Decimal(c).scaleb(-2))


def money(amount: Decimal) -> dict[str, str]:
    return {"amount": format(amount, "f"), "currency": "EUR"}


@st.composite
def incidents(draw: st.DrawFn) -> Incident:
    facts: dict[str, Any] = {}
    for name in ("delay_minutes", "wait_minutes", "outage_minutes"):
        if draw(st.booleans()):
            facts[name] = draw(st.integers(min_value=0, max_value=5000))
    for name in ("order_value", "item_value", "charged_amount"):
        if draw(st.booleans()):
            facts[name] = money(draw(cents))
    return Incident.model_validate(incident(
        draw(st.sampled_from(list(IncidentType))).value,
        customer_id=draw(st.sampled_from(["c-1", "c-2"])),
        tier=draw(st.sampled_from(["standard", "silver", "gold", "platinum"])),
        detection=draw(st.sampled_from(list(Detection))).value,
        severity=draw(st.sampled_from(list(Severity))).value,
        fact=draw(st.text(alphabet="abc123", min_size=1, max_size=6)), **facts))


@st.composite
def histories(draw: st.DrawFn) -> CustomerHistory:
    n = draw(st.integers(min_value=0, max_value=8))
    return CustomerHistory(tuple(
        PastIncident(incident_id=f"past-{i}", type=draw(st.sampled_from(list(IncidentType))),
                     detection=draw(st.sampled_from(list(Detection))),
                     decided_at=NOW - timedelta(hours=draw(st.integers(1, 24 * 60))),
                     value=draw(cents))
        for i in range(n)))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    guards = DEFAULT.guards.model_copy(update={
        "incident_cap": draw(cents), "customer_cap": draw(cents),
        "review": draw(st.sampled_from([DEFAULT.guards.review, []]))})
    return DEFAULT.model_copy(update={"guards": guards})


def executable_value(decision: Decision, *, restitution: bool | None = None) -> Decimal:
    """What the decision may cost: its actions and the dearest option of its offer (only
    its restitution, or only its goodwill, when told)."""
    def worth(actions: list[Action]) -> Decimal:
        return sum((a.value.amount for a in actions
                    if restitution is None or a.restitution is restitution), Decimal(0))

    options = [worth(o.actions) for o in (decision.offer.options if decision.offer else [])]
    return worth(decision.actions) + max(options, default=Decimal(0))


@settings(max_examples=400, deadline=None)
@given(incidents(), histories(), policies(), st.none() | cents)
def test_caps_and_budget_are_never_exceeded(incident_: Incident, history: CustomerHistory,
                                            policy: Policy, budget: Decimal | None) -> None:
    made = decide(incident_, history, policy, NOW, budget_remaining=budget)
    value = executable_value(made, restitution=False)
    facts = WindowFacts.of(history, incident_.incident_id, incident_.type, NOW,
                           policy.window_days)
    assert executable_value(made) == made.total_value.amount
    assert made.goodwill_value is not None
    assert value == made.goodwill_value.amount
    # Caps and budgets govern goodwill; restitution is given back whatever they say.
    assert value <= policy.guards.incident_cap
    assert value <= max(Decimal(0), policy.guards.customer_cap - facts.compensation)
    if budget is not None:
        assert value <= budget
    for cap in made.caps:
        assert cap.cut.amount > 0


@settings(max_examples=300, deadline=None)
@given(incidents(), histories(), policies(), st.none() | cents)
def test_restitution_is_never_cut_by_caps_or_budget(
        incident_: Incident, history: CustomerHistory, policy: Policy,
        budget: Decimal | None) -> None:
    made = decide(incident_, history, policy, NOW, budget_remaining=budget)
    uncapped = decide(incident_, history, DEFAULT, NOW, budget_remaining=None)
    assert made.restitution_value == uncapped.restitution_value
    assert made.restitution_value is not None
    assert made.restitution_value.amount == executable_value(made, restitution=True)
    refunds = [a for a in made.actions if a.kind is RemedyKind.refund]
    if incident_.type is IncidentType.double_charge and incident_.charged_amount:
        assert [a.restitution for a in refunds] == [True]


@settings(max_examples=200, deadline=None)
@given(incidents(), histories(), policies(), st.none() | cents)
def test_the_same_input_gives_the_same_decision(incident_: Incident, history: CustomerHistory,
                                               policy: Policy, budget: Decimal | None) -> None:
    first = decide(incident_, history, policy, NOW, budget_remaining=budget)
    again = decide(incident_, history, policy, NOW, budget_remaining=budget)
    assert first.model_dump(mode="json") == again.model_dump(mode="json")
    # ... and it survives the wire unchanged.
    assert Decision.model_validate_json(first.model_dump_json()) == Decision.model_validate(
        first.model_dump())


@settings(max_examples=300, deadline=None)
@given(incidents(), histories(), policies(), st.none() | cents)
def test_every_incident_gets_an_apology_unless_held(incident_: Incident,
                                                   history: CustomerHistory, policy: Policy,
                                                   budget: Decimal | None) -> None:
    made = decide(incident_, history, policy, NOW, budget_remaining=budget)
    apologies = [a for a in made.actions if a.kind is RemedyKind.apology]
    assert len(apologies) == 1
    assert apologies[0].position == 0
    if made.status is DecisionStatus.held:
        assert made.review_reason
    else:
        assert made.status.executable
    keys = [a.idempotency_key for a in made.actions] + [
        a.idempotency_key for o in (made.offer.options if made.offer else []) for a in o.actions]
    assert len(keys) == len(set(keys))
    paid = incident_.charged_amount or incident_.order_value
    for action in made.actions:
        if action.kind is RemedyKind.refund and paid is not None:
            assert action.value.amount <= paid.amount
