"""One order is one failure, and so is one outage: a worse stage of the same failure is topped
up by the difference, never granted in full again and never counted as a repeat failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decision import Choice, Decision, DecisionStatus, RemedyKind
from schemas.incident import Detection, Incident, IncidentType, incident_id
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory, PastIncident, WindowFacts
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.topup import given_by
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


DEFAULT = load_policy("deploy/policy/default.yaml")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return DEFAULT


def delay(minutes: int, band: str, order: str = "o-1", **fields: Any) -> Incident:
    body = incident("delivery_delayed", delay_minutes=minutes, delay_band=band,
                    order_id=order, **fields)
    body["incident_id"] = incident_id(IncidentType.delivery_delayed, order, band)
    return Incident.model_validate(body)


def past(decision: Decision, at: datetime) -> PastIncident:
    i = decision.incident
    return PastIncident(i.incident_id, i.type, i.detection, at, decision.total_value.amount,
                        i.order_id, tuple(given_by(decision).items()), outage_id=i.outage_id)


def remedies(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in decision.actions:
        match a.kind:
            case RemedyKind.points:
                out["points"] = a.points
            case RemedyKind.free_delivery:
                out["free_delivery"] = a.quantity
            case RemedyKind.voucher:
                out["voucher"] = a.amount.amount if a.amount else a.percent
            case RemedyKind.apology:
                pass
            case _:
                out[a.kind.value] = a.value.amount
    return out


def stages(policy: Policy, *steps: tuple[int, str]) -> list[Decision]:
    history = CustomerHistory()
    made = []
    for n, (minutes, band) in enumerate(steps):
        at = NOW + timedelta(minutes=n)
        decision = decide(delay(minutes, band), history, policy, at)
        made.append(decision)
        history = history.plus(past(decision, at))
    return made


def test_a_95_minute_delay_is_an_apology_then_a_top_up_to_what_95_minutes_grant(
        policy: Policy) -> None:
    first, second = stages(policy, (1, "late"), (93, "late_30m"))
    fresh = decide(delay(95, "late_30m", order="o-fresh"), CustomerHistory(), policy, NOW)
    assert remedies(first) == {}
    assert remedies(second) == remedies(fresh) == {"points": 200}
    assert second.top_up_of == [first.decision_id]
    assert first.top_up_of == []
    assert "repeat-failure" not in second.explanation
    assert "adds to what we gave before for order o-1" in second.explanation
    assert second.total_value.amount == Decimal("2.00")


def test_each_worse_band_adds_only_the_difference_per_remedy(policy: Policy) -> None:
    made = stages(policy, (35, "late_30m"), (130, "late_2h"), (500, "late_8h"))
    assert [remedies(d) for d in made] == [
        {"points": 200},
        {"points": 300, "free_delivery": 1},        # 500 and 1, less 200 given
        {"voucher": Decimal("10.00")},              # 10.00 and 1 delivery, less 1 given
    ]
    assert [d.total_value.amount for d in made] == [Decimal("2.00"), Decimal("7.90"),
                                                    Decimal("10.00")]
    assert made[2].top_up_of == [made[0].decision_id, made[1].decision_id]


def test_a_top_up_into_a_band_with_an_offer_offers_it_once_less_what_was_given(
        policy: Policy) -> None:
    made = stages(policy, (500, "late_8h"), (1500, "late_1d"), (4400, "lost"))
    assert remedies(made[0]) == {"voucher": Decimal("10.00"), "free_delivery": 1}
    assert made[1].status is DecisionStatus.awaiting_choice
    assert remedies(made[1]) == {"free_delivery": 1}
    assert made[1].offer is not None
    options = [[(a.kind, a.amount.amount if a.amount else a.points) for a in o.actions]
               for o in made[1].offer.options]
    assert options == [[(RemedyKind.voucher, Decimal("5.00"))],  # 15.00 less the 10.00
                       [(RemedyKind.points, 2000)]]
    # The order is lost three days on: the offer made for the day is not made again.
    assert made[2].offer is None
    assert remedies(made[2]) == {}


def test_another_order_is_a_repeat_failure_the_same_order_is_not(policy: Policy) -> None:
    first = decide(delay(35, "late_30m"), CustomerHistory(), policy, NOW)
    history = CustomerHistory((past(first, NOW),))
    same = decide(delay(130, "late_2h"), history, policy, NOW + timedelta(hours=2))
    other = decide(delay(130, "late_2h", order="o-2"), history, policy,
                   NOW + timedelta(hours=2))
    assert "repeat-failure" not in same.explanation
    assert remedies(same) == {"points": 300, "free_delivery": 1}
    assert "repeat-failure" in other.explanation
    assert remedies(other) == {"points": 800, "free_delivery": 2}
    assert other.top_up_of == []


def _measures(decision: Decision) -> dict[str, Decimal]:
    return {k: v for k, v in given_by(decision).items() if k != "offer"}


@given(st.lists(st.integers(min_value=1, max_value=1439), min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_the_stages_of_one_delay_add_up_to_what_its_worst_stage_grants_and_no_more(
        delays: list[int]) -> None:
    """Whatever stages a delay under a day is decided in, and in whatever order they come,
    the customer ends up with, per measure, the most any single stage grants: never a second
    grant, never less than the worst stage."""
    policy = DEFAULT
    history = CustomerHistory()
    total: dict[str, Decimal] = {}
    most: dict[str, Decimal] = {}
    for n, minutes in enumerate(delays):
        at = NOW + timedelta(minutes=n)
        stage = delay(minutes, f"band-{n}")
        decision = decide(stage, history, policy, at)
        history = history.plus(past(decision, at))
        for key, value in _measures(decision).items():
            total[key] = total.get(key, Decimal(0)) + value
        fresh = decide(delay(minutes, "fresh", order=f"o-fresh-{n}"), CustomerHistory(),
                       policy, at)
        for key, value in _measures(fresh).items():
            most[key] = max(most.get(key, Decimal(0)), value)
    assert total == most


def test_a_backtest_tops_up_the_stages_of_one_order_as_production_does(policy: Policy) -> None:
    from services.decision.backtest import backtest

    stages_ = [delay(1, "late"), delay(95, "late_30m"), delay(300, "late_2h")]
    [tally] = backtest(stages_, [policy])
    # 200 points, then 300 more and a free delivery: 5.00 + 4.90; no repeat-failure extra.
    assert tally.cost == Decimal("9.90")
    assert tally.remedy_value == {"points": Decimal("5.00"), "free_delivery": Decimal("4.90")}
    assert tally.apology_only == 1


def test_an_offer_chosen_counts_what_was_chosen_and_is_not_made_again(policy: Policy) -> None:
    first = decide(delay(1500, "late_1d"), CustomerHistory(), policy, NOW)
    assert first.offer is not None
    voucher = first.offer.options[0]
    chosen = first.model_copy(update={
        "revision": 1, "status": DecisionStatus.approved,
        "choice": Choice(option=0, label=voucher.label, by="customer", at=NOW),
        "actions": [*first.actions, *voucher.actions]})
    assert given_by(chosen) == {"free_delivery": Decimal(2), "voucher": Decimal("15.00"),
                                "offer": Decimal(1)}
    later = decide(delay(4400, "lost"), CustomerHistory((past(chosen, NOW),)), policy,
                   NOW + timedelta(days=2))
    assert later.offer is None
    assert remedies(later) == {}


# --- one outage is one failure ---------------------------------------------------------------


def outage(minutes: int | None, stage: str, outage_id: str = "out-1", **fields: Any
           ) -> Incident:
    body = incident("service_outage", order_id=None, outage_id=outage_id,
                    outage_minutes=minutes, **fields)
    body["incident_id"] = incident_id(IncidentType.service_outage, outage_id, "c-1", stage)
    return Incident.model_validate(body)


def outage_stages(policy: Policy, *steps: Incident) -> list[Decision]:
    history = CustomerHistory()
    made = []
    for n, stage in enumerate(steps):
        at = NOW + timedelta(minutes=75 * n)
        decision = decide(stage, history, policy, at)
        made.append(decision)
        history = history.plus(past(decision, at))
    return made


def test_an_outage_resolved_after_its_fan_out_is_topped_up_to_what_its_duration_grants(
        policy: Policy) -> None:
    ongoing, resolved = outage_stages(policy, outage(None, "declared"),
                                      outage(75, "resolved"))
    fresh = decide(outage(75, "fresh", outage_id="out-fresh"), CustomerHistory(), policy, NOW)
    assert remedies(ongoing) == {"points": 100}
    assert remedies(fresh) == {"points": 300}
    assert remedies(resolved) == {"points": 200}
    assert resolved.top_up_of == [ongoing.decision_id]
    assert ongoing.top_up_of == []
    assert "repeat-failure" not in resolved.explanation
    assert "adds to what we gave before for outage out-1" in resolved.explanation


def test_an_outage_over_four_hours_adds_its_voucher_and_the_points_not_yet_given(
        policy: Policy) -> None:
    _, resolved = outage_stages(policy, outage(None, "declared"), outage(300, "resolved"))
    assert remedies(resolved) == {"voucher": Decimal("5.00"), "points": 200}


def test_a_short_outage_resolved_later_adds_nothing_and_takes_nothing_back(
        policy: Policy) -> None:
    ongoing, resolved = outage_stages(policy, outage(None, "declared"), outage(10, "resolved"))
    assert remedies(ongoing) == remedies(
        decide(outage(10, "fresh", outage_id="out-fresh"), CustomerHistory(), policy, NOW))
    assert remedies(resolved) == {}
    assert resolved.top_up_of == [ongoing.decision_id]
    assert resolved.total_value.amount == 0


def test_another_outage_is_a_repeat_failure_the_same_outage_is_not(policy: Policy) -> None:
    first = decide(outage(None, "declared"), CustomerHistory(), policy, NOW)
    history = CustomerHistory((past(first, NOW),))
    later = NOW + timedelta(minutes=75)
    same = decide(outage(75, "resolved"), history, policy, later)
    other = decide(outage(75, "declared", outage_id="out-2"), history, policy, later)
    assert "repeat-failure" not in same.explanation
    assert "repeat-failure" in other.explanation
    assert other.top_up_of == []
    assert remedies(other) == {"points": 600, "free_delivery": 1}


def test_the_stages_of_one_outage_count_once_in_the_window_facts() -> None:
    stages_ = [PastIncident(f"i-{stage}", IncidentType.service_outage, Detection.proactive,
                            NOW - timedelta(hours=1), Decimal(1), outage_id="out-1")
               for stage in ("declared", "resolved")]
    history = CustomerHistory((*stages_, PastIncident(
        "i-other", IncidentType.service_outage, Detection.proactive, NOW - timedelta(hours=1),
        outage_id="out-2")))
    facts = WindowFacts.of(history, "i-now", IncidentType.service_outage, NOW, 30)
    assert (facts.incidents, facts.same_type, facts.compensation) == (2, 2, Decimal(2))
    # A stage of out-1 itself: its earlier stages are the same failure, not a repeat.
    own = WindowFacts.of(history, "i-now", IncidentType.service_outage, NOW, 30,
                         outage_id="out-1")
    assert (own.incidents, own.same_type, own.compensation) == (1, 1, Decimal(2))


def test_an_outage_and_an_order_of_the_same_name_are_different_failures(
        policy: Policy) -> None:
    first = decide(outage(None, "declared", outage_id="o-1"), CustomerHistory(), policy, NOW)
    later = decide(delay(95, "late_30m"), CustomerHistory((past(first, NOW),)), policy,
                   NOW + timedelta(minutes=5))
    assert later.top_up_of == []
    assert "repeat-failure" in later.explanation


def test_a_backtest_tops_up_the_stages_of_one_outage_as_production_does(
        policy: Policy) -> None:
    from services.decision.backtest import backtest

    [tally] = backtest([outage(None, "declared"), outage(75, "resolved")], [policy])
    assert tally.remedy_value == {"points": Decimal("3.00")}
