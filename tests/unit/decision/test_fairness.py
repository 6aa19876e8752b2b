"""Fairness: within a type and severity band, a locale (or tenant) granted less than the
others beyond the tolerance and beyond chance is flagged; fair data, small groups and
differences within the tolerance are not; tiers are compared but flagged only when asked."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from schemas.decision import Decision, RemedyKind
from services.decision.domain.fairness import Comparison, compare, findings, granted
from tests.decisions import decided, eur, grant, made_incident

pytestmark = pytest.mark.unit

TOLERANCE = Decimal("0.2")


def _decision(n: int, amount: Decimal, *, locale: str = "en", tier: str = "standard",
              tenant: str | None = None, severity: str = "medium") -> Decision:
    made = made_incident("delivery_delayed", customer_id=f"c-{n}", locale=locale, paid=None,
                         tenant=tenant, severity=severity, delay_minutes=150,
                         delay_band="late_2h", tier=tier)
    money = eur(f"{amount:.2f}")
    return decided(made, grant(RemedyKind.store_credit, amount=money, value=money))


def _population(unfair: Decimal = Decimal(1), *, n: int = 300, seed: int = 1
                ) -> list[Decision]:
    """Grants around 10.00 with noise, for en/ro/ru customers of two tiers; Romanian
    customers' grants multiplied by `unfair`."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        locale = ("en", "ro", "ru")[i % 3]
        base = Decimal(rng.randrange(700, 1300)) / 100
        out.append(_decision(i, base * (unfair if locale == "ro" else 1), locale=locale,
                             tier=("standard", "gold")[i % 2]))
    return out


def _flagged(decisions: list[Decision], **options: object) -> list[Comparison]:
    return findings(compare(granted(decisions), tolerance=TOLERANCE, min_decisions=20,
                            **options))  # type: ignore[arg-type]


def test_a_locale_granted_half_as_much_is_found() -> None:
    found = _flagged(_population(Decimal("0.5")))
    ro = [f for f in found if (f.dimension, f.group) == ("locale", "ro")]
    assert len(ro) == 1
    [finding] = ro
    assert (finding.incident_type, finding.band) == ("delivery_delayed", "medium/late_2h")
    assert finding.n == 100
    assert finding.others_n == 200
    assert finding.ratio is not None
    assert Decimal("0.4") < finding.ratio < Decimal("0.6")
    assert {f.dimension for f in found} == {"locale"}


def test_fair_grants_are_not_flagged() -> None:
    for seed in range(5):
        assert _flagged(_population(seed=seed)) == [], seed


def test_a_difference_within_the_tolerance_is_not_flagged() -> None:
    assert _flagged(_population(Decimal("0.9"))) == []


def test_a_difference_beyond_the_tolerance_but_not_beyond_chance_is_not_flagged() -> None:
    # Wildly spread grants: the same planted halving cannot be told from noise in 30 each.
    rng = random.Random(3)
    decisions = [_decision(i, Decimal(rng.randrange(0, 10000)) / 100
                           * (Decimal("0.7") if i % 2 else 1), locale=("en", "ro")[i % 2])
                 for i in range(60)]
    comparisons = compare(granted(decisions), tolerance=TOLERANCE, min_decisions=20)
    ro = next(c for c in comparisons if c.group == "ro")
    assert abs(ro.difference) < ro.half_width
    assert findings(comparisons) == []


def test_too_few_decisions_are_compared_but_not_flagged() -> None:
    decisions = _population(Decimal("0.5"), n=45)  # 15 per locale
    comparisons = compare(granted(decisions), tolerance=TOLERANCE, min_decisions=20)
    assert any(c.group == "ro" for c in comparisons)
    assert findings(comparisons) == []


def test_tiers_are_compared_and_flagged_only_when_asked() -> None:
    decisions = [_decision(i, Decimal(20 if i % 2 else 10) + Decimal(i % 7) / 10,
                           tier=("standard", "gold")[i % 2]) for i in range(200)]
    assert _flagged(decisions) == []
    assert {f.group for f in _flagged(decisions, flag=("tier",))} == {"standard", "gold"}


def test_only_similar_incidents_are_compared_and_tenants_count() -> None:
    # High-severity incidents get more, for every tenant alike: not a finding. One tenant
    # granted a third of the others' in the medium band is.
    decisions = [_decision(i, Decimal(30), severity="high", tenant=("shop-a", "shop-b")[i % 2])
                 for i in range(100)]
    decisions += [_decision(1000 + i, Decimal(10) + Decimal(i % 5) / 10,
                            tenant=("shop-a", "shop-b")[i % 2]) for i in range(100)]
    assert _flagged(decisions) == []
    decisions += [_decision(2000 + i, Decimal(3) + Decimal(i % 5) / 10, tenant="shop-c")
                  for i in range(50)]
    found = _flagged(decisions)
    assert {(f.band, f.dimension, f.group) for f in found} >= {
        ("medium/late_2h", "tenant", "shop-c")}
    assert all(f.band == "medium/late_2h" for f in found)


def test_restitution_and_top_ups_are_left_out() -> None:
    made = made_incident("double_charge", customer_id="c-r", paid="20.00")
    refund = decided(made, grant(RemedyKind.refund, amount=eur("20.00")), restitution=[0],
                     goodwill_value=eur("0"), restitution_value=eur("20.00"))
    top_up = _decision(7, Decimal(5)).model_copy(update={"top_up_of": ["d-earlier"]})
    kept = granted([refund, top_up])
    assert [(g.incident_type, g.grant) for g in kept] == [("double_charge", Decimal(0))]
