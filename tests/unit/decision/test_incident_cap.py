"""The incident cap bounds one failure's goodwill, not each of its stages alone: a later stage
of the same order (or outage) gets what the earlier stages left of the cap, never less than
nothing; restitution is never cut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.common import Money
from schemas.decision import Decision, RemedyKind
from schemas.incident import Detection, Incident, IncidentType, incident_id
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.topup import earlier, given_by
from tests.factories import eur, incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")

# Two delay bands worth 15.00 and 30.00 in amount vouchers, and (from two hours on) the item
# charged and never delivered given back: restitution.
RULES: list[dict[str, Any]] = [
    {"id": "delay-2h", "group": "delay",
     "when": {"type": ["delivery_delayed"], "delay_minutes": {"gte": 120}},
     "grant": [{"voucher": {"amount": 30, "expires_days": 90}}]},
    {"id": "delay-30min", "group": "delay",
     "when": {"type": ["delivery_delayed"], "delay_minutes": {"gte": 30, "lt": 120}},
     "grant": [{"voucher": {"amount": 15, "expires_days": 90}}]},
    {"id": "item-not-delivered",
     "when": {"type": ["delivery_delayed"], "delay_minutes": {"gte": 120},
              "tenant": ["t-item"]},
     "grant": [{"refund": {"percent": 100, "of": "item", "restitution": True}}]},
]


def capped(cap: str, *, default_rules: bool = False) -> Policy:
    """The default policy with an incident cap of `cap`, no review triggers and, unless
    told to keep the default's rules, the rules above as its only rules."""
    data = DEFAULT.model_dump(mode="json")
    data["guards"].update(incident_cap=cap, review=[])
    if not default_rules:
        data["rules"] = RULES
    return Policy.model_validate(data)


def delay(minutes: int, stage: str, order: str = "o-1", **fields: Any) -> Incident:
    body = incident("delivery_delayed", delay_minutes=minutes, delay_band=stage,
                    order_id=order, order_value=eur("42.00"), **fields)
    body["incident_id"] = incident_id(IncidentType.delivery_delayed, order, stage)
    return Incident.model_validate(body)


def past(decision: Decision, at: datetime) -> PastIncident:
    """As the decision service records it: `value` is the goodwill granted."""
    i = decision.incident
    return PastIncident(i.incident_id, i.type, i.detection, at, goodwill(decision),
                        i.order_id, tuple(given_by(decision).items()),
                        refunded=sum((a.amount.amount for a in decision.actions
                                      if a.kind is RemedyKind.refund and a.amount),
                                     Decimal(0)),
                        outage_id=i.outage_id)


def stages(policy: Policy, *steps: Incident) -> list[Decision]:
    history = CustomerHistory()
    made = []
    for n, step in enumerate(steps):
        at = NOW + timedelta(minutes=n)
        decision = decide(step, history, policy, at)
        made.append(decision)
        history = history.plus(past(decision, at))
    return made


def goodwill(decision: Decision) -> Decimal:
    assert decision.goodwill_value is not None  # recorded with every decision made now
    return decision.goodwill_value.amount


def vouchers(decision: Decision) -> Decimal:
    return sum((a.amount.amount for a in decision.actions
                if a.kind is RemedyKind.voucher and a.amount), Decimal(0))


def test_earlier_sums_the_goodwill_of_the_earlier_stages_of_the_failure() -> None:
    proactive = Detection.proactive
    history = CustomerHistory((
        PastIncident("i-1", IncidentType.delivery_delayed, proactive, NOW, Decimal("6.00"),
                     "o-1"),
        PastIncident("i-2", IncidentType.delivery_delayed, proactive, NOW, Decimal("4.50"),
                     "o-1"),
        PastIncident("i-3", IncidentType.delivery_delayed, proactive, NOW, Decimal("9.00"),
                     "o-2"),  # another order: another failure
        PastIncident("i-4", IncidentType.item_missing, proactive, NOW, Decimal("3.00"),
                     "o-1"),  # another failure of the same order
    ))
    found = earlier(history, delay(130, "b"))
    assert found is not None
    assert found.goodwill == Decimal("10.50")


def test_a_top_up_is_cut_to_what_the_earlier_stage_left_of_the_incident_cap() -> None:
    """Cap 20.00: a first stage worth 15.00 and a top-up worth 15.00 would give 30.00."""
    first, second = stages(capped("20.00"), delay(40, "late_30m"), delay(130, "late_2h"))
    assert vouchers(first) == Decimal("15.00")
    assert first.caps == []
    assert vouchers(second) == Decimal("5.00")
    assert goodwill(second) == Decimal("5.00")
    [cap] = second.caps
    assert (cap.cap, cap.limit.amount, cap.cut.amount) == ("incident", Decimal("5.00"),
                                                           Decimal("10.00"))
    assert cap.detail == ("at most 20.00 EUR per incident, 15.00 EUR granted before for the "
                          "same failure")
    assert f"The incident cap ({cap.detail}) cut 10.00 EUR" in second.explanation


def test_a_first_stage_at_the_cap_leaves_a_later_stage_only_its_apology() -> None:
    first, second = stages(capped("15.00"), delay(40, "late_30m"), delay(130, "late_2h"))
    assert vouchers(first) == Decimal("15.00")
    assert first.caps == []
    assert [a.kind for a in second.actions] == [RemedyKind.apology]
    assert goodwill(second) == 0
    [cap] = second.caps
    assert (cap.cap, cap.limit.amount, cap.cut.amount) == ("incident", Decimal(0),
                                                           Decimal("15.00"))
    assert "The incident cap (at most 15.00 EUR per incident, 15.00 EUR granted before " \
           "for the same failure) cut 15.00 EUR" in second.explanation


def test_another_order_has_the_whole_incident_cap() -> None:
    policy = capped("20.00")
    first = decide(delay(40, "late_30m"), CustomerHistory(), policy, NOW)
    other = decide(delay(130, "late_2h", order="o-2"), CustomerHistory((past(first, NOW),)),
                   policy, NOW + timedelta(minutes=1))
    assert other.top_up_of == []
    assert vouchers(other) == Decimal("20.00")
    [cap] = other.caps
    assert cap.detail == "at most 20.00 EUR per incident"


def test_restitution_in_a_later_stage_is_never_cut() -> None:
    first, second = stages(capped("15.00"), delay(40, "late_30m", tenant="t-item"),
                           delay(130, "late_2h", tenant="t-item", item_value=eur("8.00")))
    assert vouchers(first) == Decimal("15.00")
    refunds = [a for a in second.actions if a.kind is RemedyKind.refund]
    assert [(a.amount.amount if a.amount else None, a.restitution) for a in refunds] == [
        (Decimal("8.00"), True)]
    assert vouchers(second) == 0  # the goodwill is cut, the restitution is not
    assert second.restitution_value == Money.of("8.00", "EUR")
    assert goodwill(second) == 0
    assert [c.cap for c in second.caps] == ["incident"]


@settings(max_examples=60, deadline=None)
@given(delays=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=6),
       cents=st.integers(min_value=0, max_value=4000),
       default_rules=st.booleans())
def test_the_stages_of_one_order_never_grant_more_goodwill_than_the_incident_cap(
        delays: list[int], cents: int, default_rules: bool) -> None:
    """Whatever stages one order's delay is decided in, the goodwill summed over them stays
    within the incident cap (under the default policy's delay bands, with their offer, or the
    two voucher bands above)."""
    cap = Decimal(cents).scaleb(-2)
    policy = capped(str(cap), default_rules=default_rules)
    made = stages(policy, *(delay(minutes, f"stage-{n}") for n, minutes in enumerate(delays)))
    assert sum((goodwill(d) for d in made), Decimal(0)) <= cap


def test_a_backtest_caps_the_stages_of_one_order_as_production_does() -> None:
    from services.decision.backtest import backtest

    policy = capped("20.00")
    steps = [delay(40, "late_30m"), delay(130, "late_2h")]
    [tally] = backtest(steps, [policy])
    made = stages(policy, *steps)
    assert tally.goodwill == sum((goodwill(d) for d in made), Decimal(0))
    assert tally.goodwill == Decimal("20.00")
    assert tally.caps["incident"] == 1
    assert tally.cut == Decimal("10.00")
