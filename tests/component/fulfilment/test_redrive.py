"""A dead letter of fulfilment redriven by an operator, in memory: its failed effects are
tried once more, as a new round with its own outcome (and, for a refund, a new gateway key),
once per dead letter."""

from __future__ import annotations

import pytest

from schemas.decision import RemedyKind
from services.fulfilment.errors import PermanentError
from services.fulfilment.gateway import RefundResult, RefundStatus
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, decided, eur, grant, made_incident

pytestmark = pytest.mark.component


async def test_a_redriven_dead_letter_retries_its_failed_refund_once(f: Fulfilment) -> None:
    f.gateway.answers.append(RefundResult(RefundStatus.failed, "re_1", "issuer declined"))
    decision = decided(made_incident(), APOLOGY, grant(RemedyKind.refund, amount=eur("20.00")),
                       grant(RemedyKind.points, points=100), restitution=[1])
    await f.deliver(decision)
    key = decision.actions[1].idempotency_key
    [letter] = f.dead_letters()
    [outcome_event] = [b for b in f.publisher.bodies(f.settings.outcomes_topic)
                       if b["data"]["idempotency_key"] == key]
    assert outcome_event["id"] == key

    again = await f.deliver(decision, redrive=letter["dead_letter_id"])
    retried = [o for o in again if o.idempotency_key == key and o.status.value == "succeeded"]
    assert len(retried) == 1
    assert [r.idempotency_key for r in f.gateway.requests] == [key, f"{key}#1"]
    ids = [b["id"] for b in f.publisher.bodies(f.settings.outcomes_topic)
           if b["data"]["idempotency_key"] == key]
    assert ids == [key, f"{key}#1"]
    refund = f.fakes.refunds[key]
    assert (refund.status, refund.round, refund.gateway_key) == ("succeeded", 1, f"{key}#1")

    # The same letter redriven again: the refund succeeded, nothing is tried a third time.
    await f.deliver(decision, redrive=letter["dead_letter_id"])
    assert len(f.gateway.requests) == 2
    assert len(f.dead_letters()) == 1
    assert len(f.email.sent) == 1  # the apology went out once, the redrive sends nothing


async def test_a_redrive_that_fails_again_is_a_new_dead_letter_of_its_round(f: Fulfilment) -> None:
    f.email.failures.extend([PermanentError("relay refused", code="relay")] * 2)
    decision = decided(made_incident(), APOLOGY)
    await f.deliver(decision)
    [letter] = f.dead_letters()
    await f.deliver(decision, redrive=letter["dead_letter_id"])
    key = decision.actions[0].idempotency_key
    assert f.fakes.messages[key].round == 1
    letters = f.dead_letters()
    assert len(letters) == 2
    assert letters[0]["dead_letter_id"] != letters[1]["dead_letter_id"]
    # A third letter's redrive, once the relay accepts: the apology goes out.
    await f.deliver(decision, redrive=letters[1]["dead_letter_id"])
    assert len(f.email.sent) == 1
    assert f.fakes.messages[key].status == "succeeded"
