"""The default policy's answer to a poor public review: an apology and 10.00 EUR of store
credit (a 1-star review from a platinum customer also gets a manager's call, as any serious
failure does); the explanation names the review; the fast path agrees."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.decision import Decision, RemedyKind
from schemas.incident import Incident
from services.decision.domain import engine as reference
from services.decision.domain.history import CustomerHistory
from services.decision.domain.policy import load_policy
from services.decision.fast import engine as fast
from tests.factories import incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
DEFAULT = load_policy("deploy/policy/default.yaml")


def decided(rating: int, tier: str = "standard") -> Decision:
    one = Incident.model_validate(incident(
        "negative_review", detection="proactive", tier=tier,
        severity="high" if rating == 1 else "medium", rating=rating,
        review_platform="trustpilot", review_url="https://reviews.example/r"))
    made = reference.decide(one, CustomerHistory(), DEFAULT, NOW)
    assert fast.decide(one, CustomerHistory(), DEFAULT, NOW).model_dump_json() \
        == made.model_dump_json()
    return made


@pytest.mark.parametrize("rating", [1, 2])
def test_a_poor_review_gets_an_apology_and_store_credit(rating: int) -> None:
    decision = decided(rating)
    assert [(a.kind, a.amount.amount if a.amount else None) for a in decision.actions] == [
        (RemedyKind.apology, None), (RemedyKind.store_credit, Decimal("10.00"))]
    assert decision.explanation.startswith(
        f"We are sorry: your experience with us earned a {rating}-star review, and rightly.")
    assert "10.00 EUR of store credit on your account" in decision.explanation


def test_a_platinum_customers_one_star_review_also_gets_a_call() -> None:
    kinds = [a.kind for a in decided(1, "platinum").actions]
    assert kinds == [RemedyKind.apology, RemedyKind.store_credit, RemedyKind.personal_call]
