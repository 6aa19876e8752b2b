"""The decision's state changes (`services/decision/domain/lifecycle.py`), pure: review with
the four-eyes rule, the settling of an offer, and the budget each change moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.decision import Approval, Decision, DecisionStatus, RemedyKind, Review
from schemas.incident import Incident
from services.decision.domain import lifecycle
from services.decision.domain.engine import decide
from services.decision.domain.history import CustomerHistory
from services.decision.domain.lifecycle import (
    DecisionConflictError,
    FourEyesError,
    goodwill,
    reservation,
)
from services.decision.domain.policy import load_policy
from tests.factories import incident

pytestmark = pytest.mark.unit

POLICY = load_policy("deploy/policy/default.yaml")
T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def decided(incident_type: str = "delivery_delayed", **fields: Any) -> Decision:
    body = incident(incident_type, at=T0, **fields)
    return decide(Incident.model_validate(body), CustomerHistory(), POLICY, T0)


def held(decision: Decision) -> Decision:
    return decision.model_copy(update={"status": DecisionStatus.held,
                                       "review_reason": "a test holds it"})


def review(verdict: str, at: datetime = T0, who: str = "rita") -> Review:
    return Review.model_validate({"verdict": verdict, "reviewer": who, "reason": "checked",
                                  "at": at})


def test_an_approval_lets_the_actions_out_and_reserves_the_goodwill_under_the_review_key(
        ) -> None:
    current = held(decided(delay_minutes=95))
    approval = Approval(reviewer="rita", reason="checked", at=T0)
    revision = lifecycle.approve(current, review("approved"), [approval])
    assert revision.status is DecisionStatus.approved
    assert revision.revision == current.revision + 1
    assert revision.explanation == f"{current.explanation} Approved by rita: checked"
    assert reservation(revision) == f"{current.decision_id}:review"
    hold = lifecycle.approval_reservation(current)
    assert hold is not None
    assert (hold.key, hold.amount.amount, hold.owed) == (
        f"{current.decision_id}:review", Decimal("2.00"), False)


def test_an_approved_offer_gives_the_customer_the_whole_window_from_the_approval() -> None:
    current = held(decided(delay_minutes=1500))
    assert current.offer is not None
    later = T0 + timedelta(days=2)
    revision = lifecycle.approve(current, review("approved", at=later), [])
    assert revision.status is DecisionStatus.awaiting_choice
    assert revision.offer is not None
    assert revision.offer.deadline == later + (current.offer.deadline - current.decided_at)


def test_a_rejection_keeps_only_the_apology_and_books_nothing() -> None:
    current = held(decided(delay_minutes=95))
    revision = lifecycle.reject(current, review("rejected"))
    assert revision.status is DecisionStatus.rejected
    assert [a.kind for a in revision.actions] == [RemedyKind.apology]
    assert revision.total_value.amount == revision.goodwill_value.amount == 0  # type: ignore[union-attr]
    assert revision.offer is None
    assert reservation(revision) is None
    assert revision.explanation.endswith("After review only the apology is sent: checked")


def test_a_verdict_repeated_is_the_same_revision_and_the_other_verdict_is_refused() -> None:
    current = held(decided(delay_minutes=95))
    assert lifecycle.reviewed(current, "approved") is None
    approved = lifecycle.approve(current, review("approved"), [])
    assert lifecycle.reviewed(approved, "approved") is approved
    with pytest.raises(DecisionConflictError, match="already approved by rita"):
        lifecycle.reviewed(approved, "rejected")
    with pytest.raises(DecisionConflictError, match="not held for review"):
        lifecycle.reviewed(decided(delay_minutes=95), "approved")


def test_four_eyes_refuses_the_creator_and_the_same_reviewer_twice() -> None:
    current = held(decided(delay_minutes=1500))  # worth 29.80
    with pytest.raises(FourEyesError, match="made this manual voucher"):
        lifecycle.check_approver(current.model_copy(update={"requested_by": "sam"}), "sam",
                                 None)
    assert lifecycle.check_approver(current, "rita", None) == 1
    assert lifecycle.check_approver(current, "rita", Decimal("29.80")) == 1
    assert lifecycle.check_approver(current, "rita", Decimal("29.79")) == 2
    first = Approval(reviewer="rita", reason="fine", at=T0)
    waiting = lifecycle.first_approval(current, first, [first], Decimal(10), "EUR")
    assert waiting.status is DecisionStatus.held
    assert waiting.approvals == [first]
    assert waiting.explanation.endswith(
        "Approved by rita: fine; worth more than 10 EUR, it waits for a second reviewer.")
    with pytest.raises(FourEyesError, match="needs a second") as refused:
        lifecycle.check_approver(waiting, "rita", Decimal(10))
    assert (refused.value.status, refused.value.check) == (403, "four_eyes")
    assert lifecycle.check_approver(waiting, "otto", Decimal(10)) == 2


def test_a_restitution_approval_is_owed_whatever_the_budget() -> None:
    current = held(decided("order_cancelled", order_value={"amount": "80.00",
                                                           "currency": "EUR"},
                           charged_amount={"amount": "80.00", "currency": "EUR"}))
    hold = lifecycle.approval_reservation(current)
    assert hold is not None
    assert hold.owed


def test_a_cheaper_choice_gives_back_what_was_kept_for_the_dearer_option() -> None:
    current = decided(delay_minutes=1500)  # 9.80 free delivery + at most 20.00 of points
    assert reservation(current) == current.decision_id
    assert lifecycle.chosen(current, 0, "customer", T0) is None
    revision, release = lifecycle.choose(current, 0, "customer", T0)
    assert revision.status is DecisionStatus.approved
    assert revision.choice is not None
    assert (revision.choice.option, revision.choice.label) == (0, "a 15.00 EUR voucher")
    assert goodwill(revision) == Decimal("24.80")
    assert revision.explanation.endswith("You chose a 15.00 EUR voucher.")
    assert release is not None
    assert (release.key, release.reason, release.amount.amount) == (
        current.decision_id, f"{current.decision_id}:choice", Decimal("5.00"))
    dearer, nothing = lifecycle.choose(current, 1, "default", T0, None)
    assert nothing is None
    assert dearer.explanation.endswith("Without a choice by the deadline you get 2000 "
                                       "loyalty points.")
    by_support, _ = lifecycle.choose(current, 1, "support", T0, "sam")
    assert by_support.choice is not None
    assert by_support.choice.chosen_by == "sam"


def test_a_choice_is_refused_when_it_cannot_be_taken() -> None:
    current = decided(delay_minutes=1500)
    assert current.offer is not None
    with pytest.raises(DecisionConflictError, match="option must be 0 to 1"):
        lifecycle.chosen(current, 2, "customer", T0)
    late = current.offer.deadline + timedelta(seconds=1)
    with pytest.raises(DecisionConflictError, match="has passed"):
        lifecycle.chosen(current, 0, "customer", late)
    assert lifecycle.chosen(current, 0, "default", late) is None
    settled, _ = lifecycle.choose(current, 1, "customer", T0)
    assert lifecycle.chosen(settled, 1, "customer", late) is settled
    with pytest.raises(DecisionConflictError,
                       match=r"option 1 \(2000 loyalty points\) was chosen already"):
        lifecycle.chosen(settled, 0, "customer", T0)
    with pytest.raises(DecisionConflictError, match="not awaiting a choice"):
        lifecycle.chosen(decided(delay_minutes=95), 0, "customer", T0)


def test_restitution_is_never_booked_so_never_released() -> None:
    current = decided("item_missing", item_value={"amount": "30.00", "currency": "EUR"})
    assert current.offer is not None
    refund = current.offer.options[1].actions[0]
    assert lifecycle.restitution_keys(current) == [refund.idempotency_key]
    assert reservation(decided(delay_minutes=10)) is None  # an apology books nothing
