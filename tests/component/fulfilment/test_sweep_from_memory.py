"""Fulfilment's sweep with the effect logs kept as on FerretDB (`TrackedEffectLog` over the
fakes): it reads nothing while nothing is unfinished, finishes what this process left for
later, and finds what another process left only by the full sweep, at its interval."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import pytest

from schemas.decision import RemedyKind
from services.fulfilment import service as service_module
from services.fulfilment.adapters.ferretdb import TrackedEffectLog
from services.fulfilment.domain.effects import EffectState
from tests.component.fulfilment.harness import Fulfilment
from tests.decisions import APOLOGY, decided, eur, grant, made_incident

pytestmark = pytest.mark.component


def tracked(f: Fulfilment) -> Fulfilment:
    f.service.stores = replace(f.fakes.stores, refunds=TrackedEffectLog(f.fakes.refunds),
                               messages=TrackedEffectLog(f.fakes.messages))
    return f


def reads(f: Fulfilment) -> int:
    return f.fakes.refunds.reads + f.fakes.messages.reads


async def test_a_pending_refund_is_finished_from_memory_and_nothing_else_is_read() -> None:
    f = tracked(Fulfilment.with_email(
        settings=Fulfilment().settings.model_copy(update={"refund_polls": 1})))
    await f.service.recall_unfinished()  # as the app does at start
    done = decided(made_incident(customer_id="c-done"), APOLOGY)
    await f.deliver(done)
    before = reads(f)
    assert await f.service.finish_unfinished() == []
    assert reads(f) == before, "nothing unfinished: no read"

    f.gateway.pending = True
    decision = decided(made_incident(), APOLOGY, grant(RemedyKind.refund, amount=eur("20.00")),
                       restitution=[1])
    await f.deliver(decision)
    key = decision.actions[1].idempotency_key
    assert f.fakes.refunds[key].status == EffectState.pending.value
    before = reads(f)
    assert await f.service.finish_unfinished() == []  # not due yet
    assert reads(f) == before
    f.gateway.settle()
    f.clock.advance(timedelta(seconds=f.settings.sweep_seconds))
    [finished] = await f.service.finish_unfinished()
    assert (finished.idempotency_key, finished.status.value) == (key, "succeeded")
    assert f.gateway.made == 1
    before = reads(f)
    assert await f.service.finish_unfinished() == []
    assert reads(f) == before


async def test_a_claim_another_process_left_waits_for_the_full_sweep() -> None:
    survivor = tracked(Fulfilment.with_email())
    await survivor.service.recall_unfinished()  # at its start: nothing unfinished yet
    # Another process on the same stores claims an apology and dies while the relay has it.
    dying = tracked(Fulfilment.with_email(clock=survivor.clock, fakes=survivor.fakes))
    await dying.service.recall_unfinished()
    dying.email.delay_s = 3600.0
    decision = decided(made_incident(), APOLOGY)
    work = asyncio.create_task(dying.deliver(decision))
    key = decision.actions[0].idempotency_key
    for _ in range(100):  # until the claim is written and the relay has the message
        if key in survivor.fakes.messages.effects:
            break
        await asyncio.sleep(0)
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    assert survivor.fakes.messages[key].status == EffectState.claimed.value

    survivor.clock.advance(timedelta(seconds=survivor.settings.claim_lease_seconds + 1))
    assert await survivor.service.finish_unfinished() == []  # never seen by this process
    survivor.clock.advance(timedelta(seconds=survivor.settings.full_sweep_seconds))
    [finished] = await survivor.service.finish_unfinished()
    assert (finished.idempotency_key, finished.status.value) == (key, "succeeded")
    assert [m.idempotency_key for m in survivor.email.sent] == [key]
    assert dying.email.sent == []


async def test_a_slow_full_scan_is_spaced_to_a_tenth_of_the_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    f = tracked(Fulfilment.with_email())
    every = f.settings.full_sweep_seconds
    ticks = iter([0.0, every * 0.2, 1000.0, 1000.0 + every * 0.2])  # each scan: a fifth
    monkeypatch.setattr(service_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    await f.service.recall_unfinished()
    scanned = reads(f)
    f.clock.advance(timedelta(seconds=every))
    assert await f.service.finish_unfinished() == []
    assert reads(f) == scanned, "not before ten times the scan's own time"
    f.clock.advance(timedelta(seconds=every))
    assert await f.service.finish_unfinished() == []
    assert reads(f) > scanned
