"""The fast path decides as the reference engine does, byte for byte, on thousands of generated
incidents under several policies; and what makes it fast changes nothing it decides: the
compiled policy and what it keeps (traces, combined remedies), the ids made without `uuid`,
generated incidents built from their draws, the rules found beforehand and the backtest in two
processes."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.common import Money
from schemas.common import deterministic_id as schema_id
from schemas.decision import RemedyKind, RuleTrace, decision_id
from schemas.incident import Incident, IncidentType, incident_id
from services.decision.backtest import (
    Tally,
    backtest,
    backtest_generated,
    generate_incidents,
    generated,
    processes,
)
from services.decision.domain import engine as reference
from services.decision.domain import ids
from services.decision.domain import remedies as reference_remedies
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy, load_policy
from services.decision.domain.topup import given_by
from services.decision.fast import compiled as compiled_policies
from services.decision.fast.engine import (
    applying_rules,
    cut_to,
    decide,
    evaluate,
    rules_read_compensation,
)
from services.decision.fast.remedies import Item, built
from services.registry.incident_types import INCIDENT_TYPES, share
from tests.factories import incident
from tests.golden import policies as golden_policies

pytestmark = pytest.mark.unit

START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")


def variant(base: Policy = DEFAULT, **changes: Any) -> Policy:
    """`base` (the default policy) with other guards (`guards`), extra rules (`rules`) or an
    experiment (`experiment`)."""
    data = base.model_dump(mode="json")
    data["guards"].update(changes.get("guards", {}))
    data["rules"] += changes.get("rules", [])
    if "experiment" in changes:
        data["experiment"] = changes["experiment"]
    return Policy.model_validate(data)


def cases(policy: Policy, count: int) -> list[tuple[Incident, CustomerHistory, Decimal]]:
    """Generated incidents with the histories and the budget left they meet (one day)."""
    histories: dict[str, CustomerHistory] = {}
    left = policy.guards.daily_budget
    made = []
    for one in generate_incidents(count, start=START, days=1, seed=11):
        history = histories.get(one.customer.id, CustomerHistory())
        made.append((one, history, left))
        result = evaluate(one, history, policy, one.detected_at, budget_remaining=left)
        left -= result.value
        histories[one.customer.id] = history.plus(
            PastIncident(one.incident_id, one.type, one.detection, one.detected_at, result.value)
        )
    return made


def signature(tally: Tally) -> tuple[object, ...]:
    return (
        tally.decisions,
        str(tally.goodwill),
        str(tally.restitution),
        tally.held,
        str(tally.held_value),
        tally.offers,
        tally.apology_only,
        sorted(tally.remedies.items()),
        sorted((kind, str(value)) for kind, value in tally.remedy_value.items()),
        sorted(tally.caps.items()),
        str(tally.cut),
        sorted((arm, t.decisions, str(t.cost), t.held) for arm, t in tally.arms.items()),
    )


# --- ids ---------------------------------------------------------------------------------


def test_ids_are_those_of_the_contracts() -> None:
    rng = random.Random(3)
    for n in range(3000):
        parts = [str(n), "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(9)))]
        assert ids.deterministic_id("kind", *parts) == schema_id("kind", *parts)
        assert ids.decision_id(parts[1]) == decision_id(parts[1])


def test_generated_incidents_have_the_ids_of_their_facts() -> None:
    for n, made in enumerate(generate_incidents(300, start=START, seed=5)):
        assert made.incident_id == incident_id(made.type, "generated", "5", str(n))


# --- generated incidents -------------------------------------------------------------------


def test_an_item_is_worth_its_share_of_the_order_as_decimals_would_round_it() -> None:
    for cents in range(500, 30_000, 37):
        for percent in range(10, 100):
            exact = (Decimal(cents).scaleb(-2) * percent / 100).quantize(Decimal("0.01"))
            assert Decimal(share(cents, percent)).scaleb(-2) == exact


def test_generated_incidents_are_the_same_for_the_same_seed() -> None:
    first = list(generate_incidents(500, start=START, days=2, seed=9))
    again = list(generate_incidents(500, start=START, days=2, seed=9))
    assert [i.model_dump_json() for i in first] == [i.model_dump_json() for i in again]
    # every type but those of weight 0 (generated only when asked: negative_review)
    assert {i.type for i in first} == {t for t, e in INCIDENT_TYPES.items()
                                       if e.generated.weight > 0}


# --- the fast path against the reference ---------------------------------------------------

BUSY = variant(
    guards={"incident_cap": "12.00", "customer_cap": "25.00", "daily_budget": "400.00",
            "review": [{"id": "many-claims", "when": {"claims_in_window": {"gte": 2}},
                        "reason": "several claims"},
                       {"id": "big", "total_above": "15.00", "reason": "a large grant"}]},
    rules=[
        {"id": "loyal-gift", "group": "extras", "when": {"tier": ["gold", "platinum"]},
         "grant": [{"gift": {"item": "mug", "value": "4.00"}},
                   {"voucher": {"percent": 10, "expires_days": 30}}]},
        {"id": "loyal-upgrade", "group": "extras", "when": {"tier": ["silver"]},
         "grant": [{"free_upgrade": {"to": "express", "value": "3.00"}}]},
        {"id": "repeat", "when": {"incidents_in_window": {"gte": 1}},
         "grant": [{"points": 250}, {"voucher": {"amount": "3.00", "expires_days": 60}}]},
        {"id": "granted-before", "when": {"compensation_in_window": {"gte": 5}},
         "grant": [{"free_delivery": {"orders": 2}}]},
        {"id": "dear-order", "when": {"order_value": {"gte": 150}},
         "offer": {"options": [
             {"label": "refund", "grant": [{"refund": {"fixed": "7.50", "max": "5.00"}}]},
             {"label": "points", "grant": [{"points": 900}]}], "default": 1}},
        {"id": "late-call", "when": {"delay_minutes": {"gte": 300}},
         "grant": [{"personal_call": {"within_hours": 4}},
                   {"priority_support": {"days": 10}}]},
    ],
)


# BUSY with an experiment on a rule that makes an offer: its holdout gets neither the rule's
# points nor its offer, so a later rule's offer is made instead.
BUSY_EXPERIMENT = variant(BUSY, experiment={
    "id": "defective-extras", "rule": "item-defective",
    "variants": [{"id": "more-points", "share": "0.4", "grant": [{"points": 900}]},
                 {"id": "voucher", "share": "0.4",
                  "grant": [{"voucher": {"amount": "6.00", "expires_days": 30}}]}],
    "holdout": {"share": "0.2", "gets": "apology"}})


def _with_later_stages(made: list[Incident]) -> list[Incident]:
    """The generated incidents, every third delay followed by a worse stage of it (the same
    order, later): a top-up."""
    out = []
    for n, one in enumerate(made):
        out.append(one)
        if one.type is IncidentType.delivery_delayed and n % 3 == 0:
            out.append(one.model_copy(update={
                "incident_id": f"{one.incident_id}-worse",
                "delay_minutes": (one.delay_minutes or 0) * 2 + 240,
                "detected_at": one.detected_at + timedelta(seconds=1)}))
    return out


def _equivalence(policy: Policy, count: int, seed: int) -> set[str]:
    """Decides `count` generated incidents (and later stages of some) with both engines, each
    seeing the histories and budget the reference's decisions left; returns what they met."""
    histories: dict[str, CustomerHistory] = {}
    spent = Decimal(0)
    seen: set[str] = set()
    made_here = list(generate_incidents(count, start=START, days=1, seed=seed,
                                        customers=count // 4))
    for one in _with_later_stages(made_here):
        history = histories.get(one.customer.id, CustomerHistory())
        left = policy.guards.daily_budget - spent
        made = reference.decide(one, history, policy, one.detected_at, budget_remaining=left)
        fast = decide(one, history, policy, one.detected_at, budget_remaining=left)
        assert fast.model_dump_json() == made.model_dump_json(), one.incident_id
        assert_validated(fast)
        seen |= {name for name, met in (
            ("caps", made.caps), ("offer", made.offer), ("held", made.review_reason),
            ("top-up", made.top_up_of), ("experiment", made.experiment),
            ("group", any("group" in r.reason for r in made.rules))) if met}
        if made.experiment is not None:
            seen.add(f"arm {made.experiment.arm}")
        goodwill = (made.goodwill_value or made.total_value).amount
        if made.status.executable:
            spent += goodwill
        histories[one.customer.id] = history.plus(PastIncident(
            one.incident_id, one.type, one.detection, one.detected_at, goodwill,
            order_id=one.order_id, outage_id=one.outage_id,
            given=tuple(given_by(made).items())))
    return seen


def assert_validated(built_model: BaseModel) -> None:
    """The fast path builds its models without validation (`built`): each must be what
    validation makes of its own fields, with the same types all the way down (an int where
    a Decimal belongs would compare equal, and dump differently)."""
    validated = type(built_model).model_validate(_fields(built_model))
    _same(built_model, validated, type(built_model).__name__)


def _fields(value: object) -> object:
    """`value` with every model the engine made in it as a dict of its fields, so that
    validation sees all of them (a dump would hide contact details, and a model given as is
    is not checked). The incident is the engine's input, passed on as it is."""
    if isinstance(value, BaseModel) and not isinstance(value, Incident):
        return {name: _fields(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, list):
        return [_fields(v) for v in value]
    return value


def _same(made: object, valid: object, where: str) -> None:
    assert type(made) is type(valid), f"{where}: {type(made).__name__} is not {type(valid)}"
    if isinstance(made, BaseModel):
        assert isinstance(valid, BaseModel)
        assert made.model_fields_set == valid.model_fields_set, where
        for name in type(made).model_fields:
            _same(getattr(made, name), getattr(valid, name), f"{where}.{name}")
    elif isinstance(made, list | tuple):
        assert isinstance(valid, list | tuple)
        assert len(made) == len(valid), where
        for n, (a, b) in enumerate(zip(made, valid, strict=True)):
            _same(a, b, f"{where}[{n}]")
    elif isinstance(made, Decimal):
        assert str(made) == str(valid), where  # the same digits, not only the same number
    else:
        assert made == valid, where


def test_a_built_model_with_a_wrong_type_is_caught() -> None:
    assert_validated(built(Money, amount=Decimal("1.50"), currency="EUR"))
    with pytest.raises(AssertionError, match=r"RuleTrace\.matched"):  # 1 validates as True
        assert_validated(built(RuleTrace, rule_id="r", matched=1, reason="why"))


@pytest.mark.parametrize("name", ["default", "tight", "busy", "experiment", "busy-experiment"])
def test_the_fast_path_decides_as_the_reference_does(name: str) -> None:
    policy = {**golden_policies(), "busy": BUSY, "busy-experiment": BUSY_EXPERIMENT}[name]
    seen = _equivalence(policy, 2500, seed=31)
    # the comparison took the paths it is meant to cover
    assert {"caps", "top-up", "group"} <= seen
    arms = {name for name in seen if name.startswith("arm ")}
    if policy.experiment is not None:  # every arm, the holdout too
        assert arms == {f"arm {v.id}" for v in policy.experiment.variants} | {"arm holdout"}
        assert "experiment" in seen
    else:
        assert not arms
        assert "experiment" not in seen
    if name in {"tight", "busy", "busy-experiment"}:
        assert seen - arms - {"experiment"} == {"caps", "offer", "held", "top-up", "group"}


# --- the engine --------------------------------------------------------------------------


def test_decisions_do_not_depend_on_what_the_engine_kept() -> None:
    policy = variant(guards={"daily_budget": "300.00", "customer_cap": "40.00"})
    made = [cases(policy, 600)]
    first = [decide(i, h, policy, i.detected_at, budget_remaining=b) for i, h, b in made[0]]
    compiled_policies._COMPILED.clear()
    fresh = Policy.model_validate(policy.model_dump(mode="json"))  # another object, compiled anew
    again = [decide(i, h, fresh, i.detected_at, budget_remaining=b) for i, h, b in made[0]]
    assert [d.model_dump_json() for d in first] == [d.model_dump_json() for d in again]
    assert any(d.caps for d in first)
    assert any(d.offer for d in first)


def test_rules_found_beforehand_give_the_same_evaluation() -> None:
    policy = variant(guards={"daily_budget": "500.00"})
    for one, history, left in cases(policy, 800):
        found = applying_rules(one, history, policy, one.detected_at)
        # the rules do not need the values granted before: a history without them will do
        bare = CustomerHistory(
            tuple(
                PastIncident(p.incident_id, p.type, p.detection, p.decided_at)
                for p in history.incidents
            )
        )
        assert applying_rules(one, bare, policy, one.detected_at) == found
        plain = evaluate(one, history, policy, one.detected_at, budget_remaining=left, trace=False)
        given = evaluate(
            one,
            history,
            policy,
            one.detected_at,
            budget_remaining=left,
            trace=False,
            applying=found,
        )
        assert (given.value, given.review_reason, given.status) == (
            plain.value,
            plain.review_reason,
            plain.status,
        )
        assert given.draft.base == plain.draft.base
        assert given.draft.options == plain.draft.options
        assert given.draft.cuts == plain.draft.cuts


def test_rules_found_beforehand_have_no_traces() -> None:
    one, history, _ = cases(DEFAULT, 1)[0]
    found = applying_rules(one, history, DEFAULT, one.detected_at)
    with pytest.raises(ValueError, match="trace=False"):
        evaluate(one, history, DEFAULT, one.detected_at, applying=found)


def test_a_policy_whose_rules_look_at_compensation_is_known() -> None:
    assert not rules_read_compensation(DEFAULT)
    assert rules_read_compensation(
        variant(rules=[{"id": "much-granted", "when": {"compensation_in_window": {"gte": 50}}}])
    )


def test_an_offer_of_remedies_worth_nothing_totals_in_cents() -> None:
    """The value of the dearest option is that of the first of equals (`max`), so a decision
    whose only remedies are options worth 0.00 is worth 0.00, not 0."""
    policy = variant(
        rules=[
            {
                "id": "zero-offer",
                "when": {"tenant": ["t-zero"]},
                "offer": {
                    "options": [
                        {"label": "support", "grant": [{"priority_support": {"days": 5}}]},
                        {"label": "a call", "grant": [{"personal_call": {"within_hours": 5}}]},
                    ]
                },
            }
        ]
    )
    one = Incident.model_validate(
        incident("delivery_delayed", delay_minutes=10, tenant="t-zero", fact="zero")
    )
    for engine in (decide, reference.decide):
        made = engine(one, CustomerHistory(), policy, one.detected_at)
        assert made.offer is not None
        assert made.total_value.model_dump(mode="json") == {"amount": "0.00", "currency": "EUR"}


def test_a_cap_at_zero_cuts_around_a_negative_amount_as_the_cut_order_says() -> None:
    """With nothing left, everything a cap can cut is cut whole, unless an item is worth less
    than nothing: then the general rule applies (here the voucher is only reduced)."""
    plan = compiled_policies.compiled(DEFAULT)
    voucher = Item(RemedyKind.voucher, Decimal("10.00"), "r", amount=Decimal("10.00"))
    refund = Item(RemedyKind.refund, Decimal("-8.00"), "r", amount=Decimal("-8.00"))
    kept, cut = cut_to([voucher, refund], Decimal(0), plan)
    assert [(i.kind, i.value) for i in kept] == [
        (RemedyKind.voucher, Decimal("8.00")),
        (RemedyKind.refund, Decimal("-8.00")),
    ]
    assert cut == Decimal("2.00")
    assert voucher.value == Decimal("10.00")  # the item cut is a copy
    points = Item(RemedyKind.points, Decimal("3.00"), "r", points=300)
    call = Item(RemedyKind.personal_call, Decimal("0.00"), "r", due_hours=24)
    kept, cut = cut_to([points, call], Decimal(0), plan)
    assert kept == [call]
    assert cut == Decimal("3.00")
    # the reference, which has no shortcut for a limit of zero, cuts the same
    mine = [reference_remedies.Item(i.kind, i.value, i.rule_id, amount=i.amount)
            for i in (voucher, refund)]
    kept_here, cut_here = reference.cut_to(mine, Decimal(0), DEFAULT)
    assert [(i.kind, i.value) for i in kept_here] == [
        (RemedyKind.voucher, Decimal("8.00")), (RemedyKind.refund, Decimal("-8.00"))]
    assert cut_here == Decimal("2.00")


def test_a_model_built_without_validation_needs_every_field() -> None:
    assert built(Money, amount=Decimal("1.50"), currency="EUR") == Money.of("1.50", "EUR")
    with pytest.raises(TypeError, match="currency"):
        built(Money, amount=Decimal("1.50"))


# --- backtests -----------------------------------------------------------------------------


def test_a_backtest_in_two_processes_tallies_as_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    policies = [DEFAULT, variant(guards={"daily_budget": "900.00", "customer_cap": "30.00"})]
    alone = backtest(generate_incidents(3000, start=START, days=2, seed=4), policies)

    def not_here(_: object) -> None:
        raise AssertionError("the incidents were drawn in this process")

    monkeypatch.setattr(processes, "_WORTH_A_PROCESS", 0)
    monkeypatch.setattr(generated.GeneratedIncidents, "incidents", not_here)
    advanced: list[int] = []
    shared = backtest_generated(
        3000, policies, start=START, days=2, seed=4, progress=advanced.append, every=500
    )
    assert [signature(t) for t in shared] == [signature(t) for t in alone]
    assert sum(advanced) == 3000
    assert alone[1].caps
    assert alone[1].held


def test_a_backtest_tallies_the_arms_of_an_experiment_in_two_processes_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = golden_policies()["experiment"]
    alone = backtest(generate_incidents(3000, start=START, days=2, seed=4), [policy, DEFAULT])
    monkeypatch.setattr(processes, "_WORTH_A_PROCESS", 0)
    shared = backtest_generated(3000, [policy, DEFAULT], start=START, days=2, seed=4)
    assert [signature(t) for t in shared] == [signature(t) for t in alone]
    arms = alone[0].arms
    assert set(arms) == {"points-300", "points-600", "holdout"}
    assert not alone[1].arms  # the default policy has no experiment
    # each arm costs what it grants: the holdout only what the other rules add
    per = {name: arm.cost_per_decision for name, arm in arms.items()}
    assert per["holdout"] < per["points-300"] < per["points-600"]
    assert sum(a.decisions for a in arms.values()) == sum(
        1 for i in generate_incidents(3000, start=START, days=2, seed=4)
        if i.type is IncidentType.delivery_delayed and i.delay_minutes is not None
        and 30 <= i.delay_minutes < 120)


def test_a_backtest_of_rules_that_look_at_compensation_stays_in_one_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "_WORTH_A_PROCESS", 0)
    policy = variant(
        rules=[
            {
                "id": "much-granted",
                "when": {"compensation_in_window": {"gte": 5}},
                "grant": [{"points": 100}],
            }
        ]
    )

    def no_process(*_: object, **__: object) -> None:
        raise AssertionError("a second process was started")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    alone = backtest(generate_incidents(1500, start=START, days=1, seed=2), [policy])
    shared = backtest_generated(1500, [policy], start=START, days=1, seed=2)
    assert [signature(t) for t in shared] == [signature(t) for t in alone]
    assert alone[0].remedies["points"] > 0


def test_generated_days_are_spread_evenly() -> None:
    made = list(generate_incidents(10, start=START, days=1))
    assert made[0].detected_at == START
    assert made[-1].detected_at == START + timedelta(days=1) / 10 * 9
