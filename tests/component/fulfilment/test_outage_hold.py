"""An outage's abort window in fulfilment: the apology goes at once, the remedies wait until
the window ends and then go out at their providers' pace with a follow-up naming them; a
revision that aborted or changed them inside the window is what gets issued."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.decision import Amendment, Decision, Hold, RemedyKind
from services.fulfilment.domain.pace import TokenBucket
from services.fulfilment.pacing import Pacer
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, decided, eur, grant, made_incident

pytestmark = pytest.mark.component

POINTS = grant(RemedyKind.points, points=100, value=eur("1.00"))


def outage_decision(f: Fulfilment, customer: str, *, apology_waits: bool = False,
                    window: timedelta = timedelta(minutes=10)) -> Decision:
    made = made_incident("service_outage", customer_id=customer, email=f"{customer}@x.test",
                         outage_id="out-1", order_id=None, paid=None)
    return decided(made, APOLOGY, POINTS,
                   hold=Hold(until=f.clock() + window, apology=apology_waits))


def aborted(decision: Decision, f: Fulfilment) -> Decision:
    return decision.model_copy(update={
        "revision": decision.revision + 1,
        "actions": [a for a in decision.actions if a.kind is RemedyKind.apology],
        "amended": Amendment(kind="aborted", by="ops", reason="wrong list", at=f.clock())})


async def test_the_apology_goes_at_once_and_the_points_when_the_window_ends() -> None:
    f = Fulfilment.with_email()
    decision = outage_decision(f, "c-1")
    await f.deliver(decision)
    [apology] = f.email.sent
    assert "100" not in apology.text  # it names nothing that could still be aborted
    assert f.fakes.ledger.entries == {}
    assert await f.service.release_held() == 0  # the window is open
    f.clock.advance(timedelta(minutes=10))
    assert await f.service.release_held() == 1
    [credit] = f.fakes.ledger.entries.values()
    assert credit.quantity == 100
    follow_up = f.email.sent[-1]
    assert len(f.email.sent) == 2
    assert "interruption" in follow_up.text
    assert "100" in follow_up.text
    assert {o["kind"] for o in f.outcomes()} == {"apology", "points"}
    assert f.service.held.progress("out-1") == {"decisions": 1, "held": 0, "released": 1,
                                                "cancelled": 0}
    assert await f.service.release_held() == 0  # released once


async def test_an_abort_inside_the_window_leaves_the_apology_alone() -> None:
    f = Fulfilment.with_email()
    decisions = [outage_decision(f, f"c-{i}") for i in range(3)]
    await f.deliver(*decisions)
    f.clock.advance(timedelta(minutes=2))
    await f.deliver(*(aborted(d, f) for d in decisions))
    f.clock.advance(timedelta(minutes=10))
    assert await f.service.release_held() == 0
    assert f.fakes.ledger.entries == {}
    assert len(f.email.sent) == 3  # the apologies, and no follow-up
    assert {o["kind"] for o in f.outcomes()} == {"apology"}
    assert f.service.held.progress("out-1")["cancelled"] == 3
    assert f.metric("amends_outage_decisions_total", state="cancelled") == 3


async def test_when_the_policy_makes_the_apology_wait_it_names_the_remedies() -> None:
    f = Fulfilment.with_email()
    decision = outage_decision(f, "c-1", apology_waits=True)
    await f.deliver(decision)
    assert f.email.sent == []
    f.clock.advance(timedelta(minutes=10))
    await f.service.release_held()
    [apology] = f.email.sent
    assert "100" in apology.text
    await f.deliver(aborted(decision, f))  # too late: decision refuses it; nothing changes
    assert len(f.email.sent) == 1


async def test_an_aborted_decision_whose_apology_waits_still_apologises() -> None:
    f = Fulfilment.with_email()
    decision = outage_decision(f, "c-1", apology_waits=True)
    await f.deliver(decision)
    await f.deliver(aborted(decision, f))
    f.clock.advance(timedelta(minutes=10))
    await f.service.release_held()
    [apology] = f.email.sent
    assert "100" not in apology.text
    assert f.fakes.ledger.entries == {}


async def test_held_remedies_are_taken_up_again_after_a_restart() -> None:
    f = Fulfilment.with_email()
    await f.deliver(outage_decision(f, "c-1"))
    restarted = Fulfilment.with_email(fakes=f.fakes, clock=f.clock)
    await restarted.service.recall_held()
    f.clock.advance(timedelta(minutes=10))
    assert await restarted.service.release_held() == 1
    assert len(f.fakes.ledger.entries) == 1


async def test_released_remedies_and_their_messages_go_at_the_set_pace() -> None:
    f = Fulfilment.with_email()

    async def sleep(seconds: float) -> None:
        f.clock.advance(timedelta(seconds=seconds))

    f.service.effects.pacer = Pacer({"ledger": TokenBucket.at_rate(20),
                                     "email": TokenBucket.at_rate(20)}, f.clock, sleep)
    await f.deliver(*(outage_decision(f, f"c-{i}") for i in range(200)))
    f.clock.advance(timedelta(minutes=10))
    start = f.clock()
    assert await f.service.release_held() == 200
    times = sorted(e.at for e in f.fakes.ledger.entries.values())
    took = (times[-1] - times[0]).total_seconds()
    assert took == pytest.approx(198 / 20, rel=0.1)  # after a burst of 2, 20 a second
    assert (f.clock() - start).total_seconds() >= took


async def test_remedies_arriving_after_their_window_still_wait_for_their_turn() -> None:
    """A consumer lagging behind the window sends them through the paced release too."""
    f = Fulfilment.with_email()
    decision = outage_decision(f, "c-1", window=timedelta(0))
    f.clock.advance(timedelta(minutes=1))
    await f.deliver(decision)
    assert len(f.email.sent) == 1
    assert f.fakes.ledger.entries == {}
    assert await f.service.release_held() == 1
    assert len(f.fakes.ledger.entries) == 1
