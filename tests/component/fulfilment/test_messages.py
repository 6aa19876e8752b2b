"""Apologies and follow-ups in memory: in the customer's locale, by the channel that reaches
them, once per revision, naming only what the customer has; and the remotes that are slow,
refuse our credentials or fail for a while."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from schemas.common import Channel
from schemas.decision import RemedyKind
from services.fulfilment.domain.effects import EffectState
from services.fulfilment.errors import CredentialsError, PermanentError, TransientError
from services.fulfilment.messages import MessageExtras, render_apology
from services.fulfilment.service import LINK_MARK
from tests.component.fulfilment.harness import Fulfilment, settings
from tests.decisions import APOLOGY, approved, chosen, decided, eur, grant, made_incident, offered
from tests.fakes.fulfilment import FakeChannel

pytestmark = pytest.mark.component

POINTS = grant(RemedyKind.points, points=100, value=eur("1.00"))


@pytest.mark.parametrize("locale", ["en", "ru", "ro"])
async def test_the_apology_is_the_rendered_message_in_the_customers_locale(
        locale: str) -> None:
    f = Fulfilment.with_email()
    decision = decided(made_incident(locale=locale), APOLOGY, POINTS)
    await f.deliver(decision)
    [mail] = f.email.sent
    expected = render_apology(decision, extras=MessageExtras(now=f.clock()))
    assert (mail.subject, mail.locale) == (expected.subject, locale)
    assert mail.recipient == "c-1@example.org"
    # The stored copy keeps no link token (a bearer secret at rest); the sent one has it.
    [kept] = f.fakes.messages.effects.values()
    assert kept.text is not None
    assert LINK_MARK in kept.text
    assert "token=eyJ" in mail.text
    assert "token=eyJ" not in kept.text


async def test_the_customers_preferred_channel_carries_it_when_it_can(f: Fulfilment) -> None:
    webhook = FakeChannel("webhook", f.clock)
    f.service.channels = {**f.service.channels, Channel.webhook: webhook}
    await f.deliver(decided(made_incident(preferred="webhook"), APOLOGY))
    assert (len(webhook.sent), len(f.email.sent)) == (1, 0)
    # No address any configured channel can use: the apology fails, and says why.
    g = Fulfilment.with_email()
    unreachable = made_incident(customer_id="c-2", email="")
    decision = decided(unreachable, APOLOGY)
    await g.deliver(decision)
    outcome = g.outcome(decision.actions[0].idempotency_key)
    assert outcome["status"] == "failed"
    assert outcome["detail"].startswith("the apology cannot be delivered")


async def test_a_choice_is_confirmed_in_one_follow_up_per_revision(f: Fulfilment) -> None:
    first = offered(decided(made_incident(locale="ru"), APOLOGY, POINTS),
                    [grant(RemedyKind.voucher, amount=eur("15.00"))],
                    [grant(RemedyKind.points, points=500, value=eur("5.00"))], default=1)
    await f.deliver(first)
    assert len(f.email.sent) == 1
    then = chosen(first, 0)
    await f.deliver(then)
    await f.deliver(then)  # redelivered: no second follow-up
    assert len(f.email.sent) == 2
    follow_up = f.email.sent[1]
    assert follow_up.subject == "Ваш выбор подтверждён"
    assert follow_up.kind == "follow_up"
    [voucher] = f.fakes.vouchers.vouchers.values()
    assert f"промокод {voucher.code}" in follow_up.text
    # The other option is not what they have (the random code itself may hold "500").
    assert "500" not in follow_up.text.replace(voucher.code, "")
    chosen_key = then.actions[-1].idempotency_key
    assert f.outcome(chosen_key)["status"] == "succeeded"


async def test_an_approval_after_the_apology_is_confirmed_and_one_with_it_is_not(
        f: Fulfilment) -> None:
    held = decided(made_incident(locale="ro"), APOLOGY, POINTS, status="held")
    await f.deliver(held)
    assert f.email.sent == []
    await f.deliver(approved(held))  # the apology goes out with the approval: it says all
    assert len(f.email.sent) == 1
    # A decision whose apology went out first, then a reviewer approved more.
    g = Fulfilment.with_email()
    decision = decided(made_incident(customer_id="c-2"), APOLOGY, POINTS)
    await g.deliver(decision)
    await g.deliver(approved(decision))
    assert [m.kind for m in g.email.sent] == ["apology", "follow_up"]


async def test_a_channel_failing_for_a_while_is_retried_within_the_batch(f: Fulfilment) -> None:
    f.email.failures.extend([TransientError("busy"), TransientError("busy")])
    decision = decided(made_incident(), APOLOGY)
    [outcome] = await f.deliver(decision)
    assert outcome.status.value == "succeeded"
    assert len(f.email.sent) == 1


async def test_a_transient_failure_past_the_retries_is_left_for_the_sweep(f: Fulfilment) -> None:
    f.email.failures.extend([TransientError("down")] * f.settings.retry_attempts)
    decision = decided(made_incident(), APOLOGY)
    assert await f.deliver(decision) == []
    key = decision.actions[0].idempotency_key
    assert f.fakes.messages[key].status == EffectState.retry.value
    f.clock.advance(timedelta(seconds=f.settings.sweep_seconds))
    [outcome] = await f.service.finish_unfinished()
    assert (outcome.idempotency_key, outcome.status.value) == (key, "succeeded")
    assert len(f.email.sent) == 1


async def test_transient_failures_for_a_day_fail_the_action(f: Fulfilment) -> None:
    f.email.failures.extend([TransientError("down")] * f.settings.retry_attempts * 2)
    decision = decided(made_incident(), APOLOGY)
    await f.deliver(decision)
    f.clock.advance(timedelta(hours=f.settings.give_up_after_hours))
    [outcome] = await f.service.finish_unfinished()
    assert outcome.status.value == "failed"
    assert outcome.detail.startswith("the apology gave up after 24.0 h")
    assert len(f.dead_letters()) == 1


async def test_a_permanent_refusal_fails_the_action_at_once(f: Fulfilment) -> None:
    f.email.failures.append(PermanentError("mailbox unknown", code="recipient"))
    decision = decided(made_incident(), APOLOGY)
    [outcome] = await f.deliver(decision)
    assert outcome.status.value == "failed"
    assert outcome.detail == "the apology refused: mailbox unknown"


async def test_a_remote_refusing_our_credentials_pauses_its_effects_until_it_accepts() -> None:
    # A remote that refused is not called again for half a sweep (real time): short here.
    f = Fulfilment.with_email(settings=settings(sweep_seconds=0.05))
    f.email.failures.append(CredentialsError("535 authentication failed"))
    one = decided(made_incident(), APOLOGY)
    two = decided(made_incident(customer_id="c-2"), APOLOGY)
    assert await f.deliver(one) == []
    key = one.actions[0].idempotency_key
    assert f.fakes.messages[key].status == EffectState.paused.value
    assert f.metric("amends_remote_credentials_valid", remote="email") == 0.0
    assert f.metric("amends_effects_paused_total", remote="email") == 1.0
    assert await f.deliver(two) == []  # not called: it refused moments ago
    assert f.email.sent == []
    assert f.fakes.messages[two.actions[0].idempotency_key].status == "paused"
    assert f.dead_letters() == []  # the operator's problem, not the customer's: alerted
    await asyncio.sleep(0.05)
    f.clock.advance(timedelta(seconds=f.settings.paused_retry_cap_s))
    finished = await f.service.finish_unfinished()
    assert {o.idempotency_key for o in finished} == {key, two.actions[0].idempotency_key}
    assert {o.status.value for o in finished} == {"succeeded"}
    assert f.metric("amends_remote_credentials_valid", remote="email") == 1.0


async def test_a_batch_stops_starting_calls_at_its_deadline() -> None:
    f = Fulfilment.with_email(settings=settings(batch_deadline_s=0.2, send_concurrency=1))
    f.email.delay_s = 0.1
    decisions = [decided(made_incident(customer_id=f"c-{i}"), APOLOGY) for i in range(6)]
    outcomes = await f.deliver(*decisions)
    sent = len(f.email.sent)
    assert 1 <= sent < 6
    assert len(outcomes) == sent
    left = f.fakes.messages.with_status(EffectState.retry.value)
    assert len(left) == 6 - sent
    assert all(e.next_attempt_at is not None and e.next_attempt_at <= f.clock() for e in left)
    f.email.delay_s = 0.0
    finished = await f.service.finish_unfinished()
    assert len(finished) == 6 - sent
    assert len(f.email.sent) == 6
