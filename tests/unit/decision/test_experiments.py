"""Policy experiments: the arm is sticky per customer and follows the shares; the policy file
refuses shares that do not add up, naming the field; the decision records the arm and its
probability, says it in the explanation, and the arm's remedies are capped like any rule's."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml

from schemas.incident import Incident
from services.decision.domain import engine as reference
from services.decision.domain.experiments import arms, pick, place
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import Policy, PolicyError, load_policy, parse_policy
from services.decision.fast import engine as fast
from tests.factories import incident
from tests.golden import EXPERIMENT

pytestmark = pytest.mark.unit

DEFAULT = load_policy("deploy/policy/default.yaml")
ENGINES = [pytest.param(reference.decide, id="reference"), pytest.param(fast.decide, id="fast")]


def with_experiment(**changes: Any) -> Policy:
    """The default policy with the golden experiment (200, 300 or 600 points for a
    30-minute-to-2-hour delay, a 10% holdout with the apology only), changed by `changes`."""
    data = DEFAULT.model_dump(mode="json")
    data["experiment"] = EXPERIMENT | changes
    return Policy.model_validate(data)


POLICY = with_experiment()


def late(customer: str, minutes: int = 95, **fields: Any) -> Incident:
    return Incident.model_validate(incident("delivery_delayed", customer_id=customer,
                                            delay_minutes=minutes, fact=f"o-{customer}",
                                            **fields))


def customer_in(arm: str, policy: Policy = POLICY) -> str:
    """The first of c-0, c-1, ... that the policy's experiment puts in `arm`."""
    experiment = policy.experiment
    assert experiment is not None
    made = arms(experiment, next(r for r in policy.rules if r.id == experiment.rule))
    return next(f"c-{n}" for n in range(10_000)
                if pick(made, experiment.id, f"c-{n}").id == arm)


# --- assignment --------------------------------------------------------------------------


def test_customers_land_in_the_arms_in_their_shares() -> None:
    experiment = POLICY.experiment
    assert experiment is not None
    made = arms(experiment, POLICY.rules[0])
    counted = Counter(pick(made, experiment.id, f"customer-{n}").id for n in range(100_000))
    shares = {"points-300": 0.45, "points-600": 0.45, "holdout": 0.10}
    for arm, share in shares.items():
        assert abs(counted[arm] / 100_000 - share) < 0.01, counted


def test_an_arm_with_no_share_gets_no_one_and_one_with_all_gets_everyone() -> None:
    policy = with_experiment(variants=[{"id": "a", "share": 0, "grant": []},
                                       {"id": "b", "share": 1, "grant": []}], holdout=None)
    experiment = policy.experiment
    assert experiment is not None
    made = arms(experiment, policy.rules[0])
    assert {pick(made, experiment.id, f"c-{n}").id for n in range(5000)} == {"b"}


def test_a_customer_always_gets_the_same_arm() -> None:
    experiment = POLICY.experiment
    assert experiment is not None
    made = arms(experiment, POLICY.rules[0])
    first = [pick(made, experiment.id, f"c-{n}").id for n in range(2000)]
    assert [pick(made, experiment.id, f"c-{n}").id for n in range(2000)] == first
    # and in every decision, whatever the incident and the time
    customer = customer_in("points-600")
    for n, minutes in enumerate((35, 60, 95, 119)):
        one = late(customer, minutes, at=datetime(2026, 11, 1 + n, 9, tzinfo=UTC))
        made_decision = fast.decide(one, CustomerHistory(), POLICY, one.detected_at)
        assert made_decision.experiment is not None
        assert made_decision.experiment.arm == "points-600"


def test_another_experiment_shuffles_the_customers_anew() -> None:
    places = [(place("delay-points", f"c-{n}"), place("delay-points-2", f"c-{n}"))
              for n in range(20_000)]
    # in the same arm of two 45/45/10 experiments by chance: 0.45² + 0.45² + 0.1² = 0.415
    span = 1 << 64
    bounds = (0.45 * span, 0.9 * span)

    def arm(at: int) -> int:
        return sum(at >= b for b in bounds)

    together = sum(arm(a) == arm(b) for a, b in places) / len(places)
    assert 0.40 < together < 0.43


# --- the policy file -----------------------------------------------------------------------


def _problems(experiment: dict[str, Any]) -> list[str]:
    data = DEFAULT.model_dump(mode="json")
    data["experiment"] = experiment
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_dump(data, sort_keys=False))
    return caught.value.problems


def test_shares_that_do_not_add_up_to_one_are_refused_with_the_sum() -> None:
    [problem] = _problems(EXPERIMENT | {"holdout": {"share": "0.05"}})
    assert problem.endswith("experiment: the shares of the variants and the holdout must add "
                            "up to 1; they add up to 0.95 (0.45 + 0.45 + holdout 0.05)")
    assert problem.startswith("line ")


def test_a_share_outside_zero_to_one_names_its_field() -> None:
    variants = [{"id": "a", "share": "1.5", "grant": []}, {"id": "b", "share": "-0.5"}]
    problems = _problems(EXPERIMENT | {"variants": variants, "holdout": None})
    assert any(": experiment.variants.0.share: Input should be less than or equal to 1" in p
               for p in problems), problems
    assert any(": experiment.variants.1.share: Input should be greater than or equal to 0" in p
               for p in problems), problems


def test_an_experiment_on_a_rule_the_policy_lacks_is_refused() -> None:
    [problem] = _problems(EXPERIMENT | {"rule": "delay-forever"})
    assert problem.endswith("experiment.rule: the policy has no rule 'delay-forever'")
    assert not problem.startswith("line ?")


@pytest.mark.parametrize(("variants", "words"), [
    ([{"id": "a", "share": "0.45"}, {"id": "a", "share": "0.45"}], "variant id 'a' is used twice"),
    ([{"id": "holdout", "share": "0.45"}, {"id": "b", "share": "0.45"}], "names the holdout"),
    ([{"id": "only", "share": "0.9"}], "at least 2 items"),
])
def test_variants_are_two_or_more_with_their_own_names(variants: list[dict[str, Any]],
                                                         words: str) -> None:
    problems = _problems(EXPERIMENT | {"variants": variants})
    assert any(words in p for p in problems), problems


def test_shares_may_be_written_as_plain_numbers() -> None:
    policy = with_experiment(variants=[{"id": "a", "share": 0.3, "grant": []},
                                       {"id": "b", "share": 0.6, "grant": []}],
                             holdout={"share": 0.1})
    assert policy.experiment is not None
    assert [v.share for v in policy.experiment.variants] == [Decimal("0.3"), Decimal("0.6")]


# --- decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize("decide", ENGINES)
@pytest.mark.parametrize(("arm", "points", "words"), [
    ("points-300", 300, "rule delay-30min-to-2h granted what its variant points-300 grants "
                        "(45% of customers)"),
    ("points-600", 600, "rule delay-30min-to-2h granted what its variant points-600 grants "
                        "(45% of customers)"),
    ("holdout", None, "this customer is in its holdout (10% of customers), so rule "
                      "delay-30min-to-2h granted nothing beyond the apology"),
])
def test_the_decision_records_the_arm_and_says_it(decide: Any, arm: str, points: int | None,
                                                   words: str) -> None:
    one = late(customer_in(arm))
    made = decide(one, CustomerHistory(), POLICY, one.detected_at)
    assert made.experiment is not None
    assert made.experiment.model_dump(mode="json") == {
        "id": "delay-points", "rule_id": "delay-30min-to-2h", "arm": arm,
        "probability": "0.10" if arm == "holdout" else "0.45"}
    assert [a.points for a in made.actions[1:]] == ([points] if points else [])
    assert f"Experiment delay-points: {words}." in made.explanation
    assert made.model_dump(mode="json")["experiment"]["arm"] == arm


@pytest.mark.parametrize("decide", ENGINES)
def test_a_holdout_that_gets_the_rule_gets_its_own_remedies(decide: Any) -> None:
    policy = with_experiment(holdout={"share": "0.10", "gets": "rule"})
    one = late(customer_in("holdout", policy))
    made = decide(one, CustomerHistory(), policy, one.detected_at)
    assert [a.points for a in made.actions[1:]] == [200]
    assert made.experiment is not None
    assert made.experiment.arm == "holdout"
    assert "rule delay-30min-to-2h granted its own remedies." in made.explanation


@pytest.mark.parametrize("decide", ENGINES)
def test_no_arm_is_recorded_when_the_varied_rule_does_not_apply(decide: Any) -> None:
    one = late(customer_in("points-600"), minutes=300)  # the 2-to-8-hour band
    made = decide(one, CustomerHistory(), POLICY, one.detected_at)
    assert made.experiment is None
    assert "experiment" not in made.model_dump(mode="json")
    assert "Experiment" not in made.explanation
    assert [a.points for a in made.actions[1:] if a.points] == [500]


@pytest.mark.parametrize("decide", ENGINES)
@pytest.mark.parametrize("change", [{"stopped": True},
                                    {"until": "2026-11-23T12:00:00+00:00"}])
def test_a_stopped_experiment_assigns_no_one(decide: Any, change: dict[str, Any]) -> None:
    policy = with_experiment(**change)
    one = late(customer_in("points-600"))  # detected at 2026-11-23 12:00, `until` itself
    made = decide(one, CustomerHistory(), policy, one.detected_at)
    assert made.experiment is None
    assert [a.points for a in made.actions[1:]] == [200]
    before = decide(one, CustomerHistory(), with_experiment(until="2026-11-23T12:00:01+00:00"),
                    one.detected_at)
    assert before.experiment is not None


@pytest.mark.parametrize("decide", ENGINES)
def test_an_arm_is_capped_like_any_rule(decide: Any) -> None:
    policy = with_experiment(variants=[
        {"id": "lavish", "share": "0.5", "grant": [{"points": 90_000}]},
        {"id": "modest", "share": "0.5", "grant": [{"points": 100}]}], holdout=None)
    one = late(customer_in("lavish", policy))
    made = decide(one, CustomerHistory(), policy, one.detected_at)
    assert made.experiment is not None
    assert made.experiment.arm == "lavish"
    assert [c.cap for c in made.caps] == ["incident"]
    assert made.goodwill_value is not None
    assert made.goodwill_value.amount == policy.guards.incident_cap
    assert made.status.value == "held"  # and above 400.00 goodwill a person looks at it
