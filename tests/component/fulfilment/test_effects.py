"""Fulfilment's effects in memory: each action carried out exactly once however often its
decision arrives, with what each kind of remedy leaves behind (refunds at the gateway, points,
free delivery, vouchers and their codes, tasks for people) and the outcomes it reports."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from schemas.decision import RemedyKind
from services.fulfilment.domain.effects import EffectState
from services.fulfilment.gateway import RefundResult, RefundStatus
from services.fulfilment.messages import format_money
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, decided, eur, grant, made_incident

pytestmark = pytest.mark.component

EVERYTHING = (APOLOGY, grant(RemedyKind.refund, amount=eur("20.00")),
              grant(RemedyKind.points, points=300, value=eur("3.00")),
              grant(RemedyKind.voucher, amount=eur("10.00")),
              grant(RemedyKind.free_delivery, quantity=2),
              grant(RemedyKind.personal_call, note="the store manager"))


async def test_every_effect_happens_once_however_often_the_decision_arrives(f: Fulfilment) -> None:
    decision = decided(made_incident(), *EVERYTHING, restitution=[1])
    first = await f.deliver(decision)
    assert {o.kind for o in first} == {RemedyKind(g["kind"]) for g in EVERYTHING}
    assert all(o.status.value == "succeeded" for o in first)
    for _ in range(2):  # redelivered, and replayed in a batch with itself
        await f.deliver(decision)
    await f.deliver(decision, decision)
    keys = [a.idempotency_key for a in decision.actions]
    assert sorted(o["idempotency_key"] for o in f.outcomes()) == sorted(keys)
    assert f.gateway.made == 1
    assert len(f.gateway.requests) == 1
    assert len(f.email.sent) == 1
    assert len(f.fakes.ledger.entries) == 1
    assert len(f.fakes.perks.perks) == 1
    assert len(f.fakes.vouchers.vouchers) == 1
    assert [t["kind"] for t in f.tasks()] == ["personal_call"]
    assert f.dead_letters() == []


async def test_points_perks_and_tasks_carry_what_the_decision_says() -> None:
    f = Fulfilment()
    decision = decided(made_incident(tenant="shop-a"), APOLOGY,
                       grant(RemedyKind.points, points=250),
                       grant(RemedyKind.free_delivery, quantity=3),
                       grant(RemedyKind.replacement, note="a new kettle"))
    await f.deliver(decision)
    [credit] = f.fakes.ledger.entries.values()
    assert (credit.quantity, credit.unit, credit.tenant) == (Decimal(250), "points", "shop-a")
    assert credit.expires_at == f.clock() + timedelta(days=f.settings.points_expiry_days)
    [perk] = f.fakes.perks.perks.values()
    assert perk.orders == 3
    [task] = f.tasks()
    assert task["what"] == "Ship a new kettle for the affected item, at no charge."
    assert task["priority"] == "high"
    assert f.outcome(decision.actions[1].idempotency_key)["detail"] == "250 points credited"
    assert f.outcome(decision.actions[2].idempotency_key)["detail"] == (
        "free delivery on the next 3 order(s)")
    # Without a channel the apology is recorded, not sent, and reported as done.
    [message] = f.fakes.messages.effects.values()
    assert (message.status, message.channel) == ("succeeded", "record")


async def test_a_vouchers_code_goes_to_the_customer_and_never_into_an_outcome(
        f: Fulfilment) -> None:
    decision = decided(made_incident("delivery_delayed", paid=None, delay_minutes=90), APOLOGY,
                       grant(RemedyKind.voucher, amount=eur("10.00")))
    await f.deliver(decision)
    [voucher] = f.fakes.vouchers.vouchers.values()
    [mail] = f.email.sent
    assert voucher.code in mail.text
    assert voucher.code in mail.html
    assert voucher.code not in str(f.publisher.sent)
    assert f.outcome(decision.actions[1].idempotency_key)["detail"] == (
        f"voucher issued, valid until {voucher.expires_at.date()}")
    # Redelivered: the same voucher, and its code in nothing new.
    await f.deliver(decision)
    assert list(f.fakes.vouchers.vouchers) == [voucher.code]


async def test_a_refund_the_gateway_makes_is_reported_as_restitution_counted_apart(
        f: Fulfilment) -> None:
    decision = decided(made_incident(), APOLOGY, grant(RemedyKind.refund, amount=eur("20.00")),
                       grant(RemedyKind.points, points=100, value=eur("1.00")), restitution=[1])
    await f.deliver(decision)
    refund = f.outcome(decision.actions[1].idempotency_key)
    assert (refund["status"], refund["restitution"]) == ("succeeded", True)
    assert f.gateway.requests[0].idempotency_key == decision.actions[1].idempotency_key
    assert f.metric("amends_restitution_issued_total", currency="EUR") == 20.0
    assert f.metric("amends_compensation_issued_total", kind="points", currency="EUR") == 1.0
    assert f.metric("amends_compensation_issued_total", kind="refund", currency="EUR") == 0.0
    [mail] = f.email.sent
    assert f"a refund of {format_money(eur('20.00'), 'en')} to the card" in mail.text


async def test_a_refund_the_gateway_fails_fails_its_action_and_is_dead_lettered(
        f: Fulfilment) -> None:
    f.gateway.answers.append(RefundResult(RefundStatus.failed, "re_9", "card expired"))
    decision = decided(made_incident(), APOLOGY, grant(RemedyKind.refund, amount=eur("20.00")),
                       restitution=[1])
    await f.deliver(decision)
    key = decision.actions[1].idempotency_key
    refund = f.outcome(key)
    assert refund["status"] == "failed"
    assert refund["detail"] == "the gateway failed the refund re_9: card expired"
    [letter] = f.dead_letters()
    assert key in letter["error"]
    assert letter["reason"] == "processing_failed"
    # The apology does not promise what failed.
    [mail] = f.email.sent
    assert "a refund of" not in mail.text
    await f.deliver(decision)  # redelivered: reported once, dead-lettered once
    assert len(f.dead_letters()) == 1
    assert [o["idempotency_key"] for o in f.outcomes()].count(key) == 1


async def test_a_refund_above_what_was_paid_is_refused_before_the_gateway() -> None:
    f = Fulfilment()
    decision = decided(made_incident(paid="15.00"), APOLOGY,
                       grant(RemedyKind.refund, amount=eur("20.00")), restitution=[1])
    await f.deliver(decision)
    assert f.gateway.requests == []
    assert f.outcome(decision.actions[1].idempotency_key)["detail"] == (
        "refund of 20.00 EUR exceeds what was paid (15.00 EUR)")


async def test_a_pending_refund_is_finished_by_the_sweep() -> None:
    f = Fulfilment(settings=Fulfilment().settings.model_copy(update={"refund_polls": 1}))
    f.gateway.pending = True
    decision = decided(made_incident(), APOLOGY, grant(RemedyKind.refund, amount=eur("20.00")),
                       restitution=[1])
    first = await f.deliver(decision)
    key = decision.actions[1].idempotency_key
    assert key not in {o.idempotency_key for o in first}  # under way: no outcome yet
    assert f.fakes.refunds[key].status == EffectState.pending.value
    assert f.gateway.status_queries == 1
    assert await f.service.finish_unfinished() == []  # not due yet
    f.gateway.settle()
    f.clock.advance(timedelta(seconds=f.settings.sweep_seconds))
    [finished] = await f.service.finish_unfinished()
    assert (finished.idempotency_key, finished.status.value) == (key, "succeeded")
    assert f.gateway.made == 1
    assert await f.service.finish_unfinished() == []


async def test_the_embedded_ledger_settles_a_refund_at_once() -> None:
    f = Fulfilment()
    f.gateway.settles_at_once = True
    decision = decided(made_incident(), grant(RemedyKind.refund, amount=eur("20.00")),
                       restitution=[0])
    [outcome] = await f.deliver(decision)
    assert outcome.status.value == "succeeded"
    assert f.fakes.refunds[outcome.idempotency_key].claim is None  # nothing to claim


async def test_a_held_decision_waits_and_invalid_records_are_dead_lettered(f: Fulfilment) -> None:
    held = decided(made_incident(), APOLOGY, grant(RemedyKind.points, points=10),
                   status="held")
    assert await f.deliver(held) == []
    assert f.email.sent == []
    assert f.fakes.ledger.entries == {}
    assert len(f.fakes.decisions.kept) == 1  # kept: the customer's page shows it
    bad = f.record(held)
    await f.service.handle_decisions([bad.__class__(bad.topic, 0, 99, b"c-1", b"{}")])
    [letter] = f.dead_letters()
    assert letter["reason"] == "invalid"
