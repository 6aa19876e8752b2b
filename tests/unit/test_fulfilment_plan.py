"""Fulfilment's plan of effects (services/fulfilment/domain/plan.py): pure rules over
decisions, tested without a store, a broker or a remote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.common import Money
from schemas.decision import Decision, DecisionStatus, RemedyKind
from schemas.outcome import ActionStatus
from services.fulfilment.domain import plan
from services.registry.remedy_kinds import REMEDY_KINDS
from tests import decisions
from tests.decisions import decided, grant, made_incident

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _decision(*kinds: RemedyKind, revision: int = 0, paid: str | None = "40.00",
              **fields: Any) -> Decision:
    made = made_incident("order_cancelled", customer_id="c-plan", paid=paid,
                         at=NOW - timedelta(hours=1))
    # No rule: the plan tests give an action its rule where it matters.
    return decided(made, *(grant(kind, rule_id=None) for kind in kinds), revision=revision,
                   decided_at=NOW, **fields)


def test_keys_of_revisions_rounds_and_follow_ups() -> None:
    decision = _decision(RemedyKind.apology, revision=2)
    assert plan.ref_of(decision) == f"{decision.decision_id}:2"
    assert plan.follow_up_key(decision) == f"{decision.decision_id}:follow-up:2"
    assert plan.in_round("k", 0) == "k"
    assert plan.in_round("k", 3) == "k#3"


@pytest.mark.parametrize(("amount", "problem"), [
    ("40.00", None),
    ("40.01", "refund of 40.01 EUR exceeds what was paid (40.00 EUR)"),
    ("0", "refund of 0 EUR is not a refund"),
])
def test_a_refund_is_refused_when_it_cannot_be_right(amount: str, problem: str | None) -> None:
    decision = _decision(RemedyKind.refund)
    action = decision.actions[0].model_copy(update={"amount": Money.of(amount, "EUR")})
    assert plan.refund_problem(decision, action) == problem


def test_a_refund_without_a_known_payment_is_refused() -> None:
    decision = _decision(RemedyKind.refund, paid=None)
    action = decision.actions[0].model_copy(update={"amount": Money.of("5", "EUR")})
    assert plan.refund_problem(decision, action) == "refund without an amount or a known payment"


def test_local_effects_take_their_expiry_from_the_clock_unless_the_decision_gives_one() -> None:
    decision = _decision(RemedyKind.points, RemedyKind.free_delivery, RemedyKind.voucher)
    points = decision.actions[0].model_copy(update={"points": 250})
    credit = plan.ledger_entry(decision, points, NOW, 365)
    assert (credit.quantity, credit.unit, credit.reason, credit.expires_at) == (
        Decimal(250), "points", "order_cancelled", NOW + timedelta(days=365))
    assert plan.ledger_detail(points) == "250 points credited"
    granted = plan.perk(decision, decision.actions[1].model_copy(update={"quantity": 2}), NOW, 180)
    assert (granted.orders, granted.detail) == (2, "free delivery on the next 2 order(s)")
    voucher = decision.actions[2].model_copy(update={"amount": Money.of("10", "EUR"),
                                                      "rule_id": "r"})
    grant = plan.voucher_grant(decision, voucher, NOW, 90)
    assert (grant.currency, grant.expires_at, grant.reason) == (
        "EUR", NOW + timedelta(days=90), "order_cancelled")
    given = NOW + timedelta(days=7)
    grant = plan.voucher_grant(decision, voucher.model_copy(update={"expires_at": given}),
                               NOW, 90)
    assert grant.expires_at == given


def test_a_manual_voucher_gives_the_operators_note_as_its_reason() -> None:
    decision = _decision(RemedyKind.voucher)
    manual = decision.actions[0].model_copy(update={"note": "goodwill after a call"})
    assert plan.voucher_reason(decision, manual) == "goodwill after a call"
    ruled = manual.model_copy(update={"rule_id": "wait"})
    assert plan.voucher_reason(decision, ruled) == "order_cancelled"


@pytest.mark.parametrize("kind", sorted(k for k, e in REMEDY_KINDS.items() if e.effect == "task"))
def test_every_task_kind_has_words_a_due_time_and_a_priority(kind: RemedyKind) -> None:
    decision = _decision(kind)
    action = decision.actions[0].model_copy(update={"note": "a note"})
    task = plan.task_of(decision, action, NOW)
    assert "a note" in task.what
    hours = {RemedyKind.priority_support: 1, RemedyKind.gift: 72}.get(kind, 24)
    assert task.due_by == NOW + timedelta(hours=hours)
    urgent = {RemedyKind.personal_call, RemedyKind.replacement}
    assert task.priority == ("high" if kind in urgent else "normal")
    assert plan.task_detail(task).startswith("task for a person, due ")


def test_a_task_due_by_the_decision_keeps_that_time() -> None:
    decision = _decision(RemedyKind.gift)
    due = NOW + timedelta(hours=5)
    task = plan.task_of(decision, decision.actions[0].model_copy(update={"due_by": due}), NOW)
    assert task.due_by == due


def test_only_a_later_settling_revision_confirms() -> None:
    first = _decision(RemedyKind.apology, RemedyKind.points)
    assert not plan.confirms(first)
    approved = decisions.approved(first)
    assert plan.confirms(approved)
    assert [a.kind for a in plan.brought(approved)] == [RemedyKind.points]
    assert approved.review is not None
    rejected = _decision(RemedyKind.apology, revision=1, status=DecisionStatus.rejected,
                         review=approved.review.model_copy(update={"verdict": "rejected"}))
    assert not plan.confirms(rejected)


def test_a_choice_brings_the_chosen_options_remedies_and_refunds_say_their_state() -> None:
    offer = decisions.offered(_decision(RemedyKind.apology),
                              [grant(RemedyKind.points), grant(RemedyKind.refund)],
                              [grant(RemedyKind.apology)])
    chosen = decisions.chosen(offer, 0)
    points, refund = chosen.actions[1:]
    assert plan.confirms(chosen)
    assert plan.brought(chosen) == [points, refund]
    given, states = plan.confirmed(chosen, {refund.idempotency_key: None})
    assert given == [points, refund]
    assert states == {refund.idempotency_key: "pending"}
    given, states = plan.confirmed(chosen, {refund.idempotency_key: ActionStatus.succeeded,
                                            points.idempotency_key: ActionStatus.failed})
    assert given == [refund]
    assert states == {refund.idempotency_key: "done"}


def test_time_to_apology_counts_only_apologies_that_went_out() -> None:
    decision = _decision(RemedyKind.apology, RemedyKind.points)
    apology, points = decision.actions
    assert plan.time_to_apology(decision, apology, ActionStatus.succeeded, NOW) == 3600.0
    assert plan.time_to_apology(decision, apology, ActionStatus.failed, NOW) is None
    assert plan.time_to_apology(decision, points, ActionStatus.succeeded, NOW) is None
    assert plan.apology_key(decision) == apology.idempotency_key


def test_the_domain_imports_no_driver_broker_or_http_client() -> None:
    import ast
    from pathlib import Path

    from services.fulfilment import domain

    banned = {"pymongo", "aiokafka", "faststream", "httpx", "bson", "motor"}
    modules = sorted(Path(domain.__file__).parent.glob("*.py"))
    assert len(modules) >= 2
    for module in modules:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in banned, f"{module.name} imports {name}"
