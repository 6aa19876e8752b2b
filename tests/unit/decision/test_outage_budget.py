"""An outage's own budget: every customer's share computed from the outage's size alone
(even, or tiers in order), rounded to the currency and never over the budget in total; both
engines cap the grant at that share instead of the day's budget, explain it, and agree."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.common import Tier
from schemas.decision import Decision
from schemas.incident import Incident, IncidentType, incident_id
from services.decision.domain import engine as reference
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.lifecycle import goodwill
from services.decision.domain.outages import applies, share_out
from services.decision.domain.policy import Outages, Policy, PolicyError, load_policy, parse_policy
from services.decision.domain.topup import given_by
from services.decision.fast import engine as fast
from tests.factories import customer

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 7, 12, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")
CENT = Decimal("0.01")


def with_outages(outages: dict[str, Any], base: Policy = DEFAULT, rules: list[Any] | None = None
                 ) -> Policy:
    data = base.model_dump(mode="json")
    data["outages"] = outages
    data["rules"] = (rules or []) + data["rules"]
    return Policy.model_validate(data)


def outage(customer_id: str, *, tier: str = "standard", minutes: int | None = None,
           tiers: dict[str, int] | None = None, outage_id: str = "out-1",
           severity: str = "high") -> Incident:
    counts = tiers or {"standard": 400}
    stage = () if minutes is None else ("resolved",)
    return Incident.model_validate({
        "incident_id": incident_id(IncidentType.service_outage, outage_id, customer_id, *stage),
        "type": "service_outage", "detection": "proactive", "severity": severity,
        "customer": customer(customer_id, tier=tier), "occurred_at": AT.isoformat(),
        "detected_at": AT.isoformat(), "source": "status", "outage_id": outage_id,
        "outage_minutes": minutes, "outage_affected": sum(counts.values()),
        "outage_tiers": counts})


def even() -> Outages:
    return Outages.model_validate({"budget": {"total": 1}, "partial": "even"})


# --- the shares ---------------------------------------------------------------------------


def test_even_scales_every_share_by_budget_over_full_cost() -> None:
    needs = dict.fromkeys(Tier, Decimal("3.00"))
    counts = {**dict.fromkeys(Tier, 0), Tier.standard: 300, Tier.gold: 100}
    shares = share_out(needs, counts, Decimal("1000.00"), even(), CENT)
    assert shares[Tier.standard] == shares[Tier.gold] == Decimal("2.50")  # 1000 / 1200


def test_a_budget_that_covers_everyone_leaves_the_policys_amounts() -> None:
    needs = dict.fromkeys(Tier, Decimal("3.00"))
    counts = {**dict.fromkeys(Tier, 0), Tier.standard: 100}
    assert share_out(needs, counts, Decimal("300.00"), even(), CENT) == needs


def test_tiers_are_covered_in_order_and_the_first_short_one_is_split_evenly() -> None:
    policy = Outages.model_validate({"budget": {"total": 1}, "partial": "tiers",
                                     "tier_order": ["gold", "platinum", "silver", "standard"]})
    needs = dict.fromkeys(Tier, Decimal("3.00"))
    counts = {Tier.platinum: 10, Tier.gold: 100, Tier.silver: 200, Tier.standard: 400}
    shares = share_out(needs, counts, Decimal("500.00"), policy, CENT)
    # gold 300, platinum 30 in full; silver gets the 170 left, split among 200; standard none
    assert shares == {Tier.gold: Decimal("3.00"), Tier.platinum: Decimal("3.00"),
                      Tier.silver: Decimal("0.85"), Tier.standard: Decimal("0.00")}


@pytest.mark.parametrize("partial", ["even", "tiers"])
def test_shares_never_pass_the_budget_nor_the_currencys_decimals(partial: str) -> None:
    draw = random.Random(7)
    policy = Outages.model_validate({"budget": {"total": 1}, "partial": partial})
    for _ in range(500):
        needs = {t: Decimal(draw.randint(0, 5000)) / 100 for t in Tier}
        counts = {t: draw.choice([0, 1, 3, 7, draw.randint(1, 50_000)]) for t in Tier}
        budget = Decimal(draw.randint(0, 2_000_000)) / 100
        shares = share_out(needs, counts, budget, policy, CENT)
        assert sum(shares[t] * counts[t] for t in Tier) <= budget
        assert all(Decimal(0) <= shares[t] <= needs[t] for t in Tier)
        assert all(shares[t] == shares[t].quantize(CENT) for t in Tier)


# --- the policy ---------------------------------------------------------------------------


def test_the_policy_names_the_field_at_fault() -> None:
    text = Path("deploy/policy/default.yaml").read_text(encoding="utf-8")
    both = text.replace('budget: {per_customer: "5.00"}',
                        'budget: {per_customer: "5.00", total: "100.00"}')
    with pytest.raises(PolicyError, match=r"outages\.budget: give exactly one of total or "
                                          r"per_customer"):
        parse_policy(both)
    short = text.replace("tier_order: [platinum, gold, silver, standard]",
                         "tier_order: [gold, silver]")
    with pytest.raises(PolicyError, match=r"outages: tier_order: must list every tier; "
                                          r"missing standard, platinum"):
        parse_policy(short)
    with pytest.raises(PolicyError, match=r"outages\.partial"):
        parse_policy(text.replace("partial: tiers", "partial: first_come"))


# --- the engines --------------------------------------------------------------------------


def test_an_outage_grant_is_scaled_and_never_meets_the_days_budget() -> None:
    policy = with_outages({"budget": {"per_customer": "0.50"}, "partial": "even"})
    one = outage("c-1")
    decision = reference.decide(one, CustomerHistory(), policy, AT,
                                budget_remaining=Decimal(0))
    assert applies(policy, one)
    points = [a for a in decision.actions if a.kind.value == "points"]
    assert [a.points for a in points] == [50]  # 100 points scaled to half a euro
    assert [c.cap for c in decision.caps] == ["outage"]  # the day's budget (0) cut nothing
    assert "an outage budget of 200.00 EUR for 400 customers" in decision.explanation
    assert "every grant scaled by the same factor" in decision.explanation


def test_without_an_outages_section_the_days_budget_cuts_as_before() -> None:
    data = DEFAULT.model_dump(mode="json")
    data.pop("outages")
    policy = Policy.model_validate(data)
    decision = reference.decide(outage("c-1"), CustomerHistory(), policy, AT,
                                budget_remaining=Decimal(0))
    assert [c.cap for c in decision.caps] == ["budget"]


TIERED = [{"id": "outage-gold", "extra": True, "because": "for your loyalty",
           "when": {"type": ["service_outage"], "tier": ["gold"],
                    "outage_minutes": {"gte": 240}},
           "grant": [{"points": 900}]}]


def _stages(policy: Policy, counts: dict[str, int], minutes: int,
            decide: Any) -> list[tuple[Decision, Decision]]:
    """Both stages of one outage for a customer of each tier that it affects."""
    made = []
    for tier in counts:
        first = decide(outage(f"c-{tier}", tier=tier, tiers=counts), CustomerHistory(),
                       policy, AT)
        past = PastIncident(first.incident.incident_id, first.incident.type,
                            first.incident.detection, AT, goodwill(first),
                            outage_id="out-1", given=tuple(given_by(first).items()))
        then = decide(outage(f"c-{tier}", tier=tier, tiers=counts, minutes=minutes),
                      CustomerHistory((past,)), policy, AT)
        made.append((first, then))
    return made


@pytest.mark.parametrize("partial", ["even", "tiers"])
def test_the_top_up_at_resolution_keeps_the_outage_within_its_budget(partial: str) -> None:
    counts = {"gold": 100, "standard": 300}
    policy = with_outages({"budget": {"total": "1500.00"}, "partial": partial}, rules=TIERED)
    spent = Decimal(0)
    for first, then in _stages(policy, counts, 300, reference.decide):
        assert then.top_up_of == [first.decision_id]
        per_customer = goodwill(first) + goodwill(then)
        spent += per_customer * counts[first.incident.customer.tier.value]
    # the policy's full grant: 8.00 for everyone, 9.00 more for gold: 3,300.00
    assert Decimal("1400.00") < spent <= Decimal("1500.00")


@pytest.mark.parametrize("partial", ["even", "tiers"])
def test_the_fast_path_shares_an_outage_as_the_reference_does(partial: str) -> None:
    counts = {"platinum": 5, "gold": 100, "silver": 40, "standard": 300}
    for budget in ("1500.00", "99.99", "0", "100000"):
        policy = with_outages({"budget": {"total": budget}, "partial": partial}, rules=TIERED)
        for minutes in (30, 300):
            slow = _stages(policy, counts, minutes, reference.decide)
            quick = _stages(policy, counts, minutes, fast.decide)
            assert [(a.model_dump_json(), b.model_dump_json()) for a, b in slow] == \
                [(a.model_dump_json(), b.model_dump_json()) for a, b in quick]
