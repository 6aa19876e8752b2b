"""Which effects are unfinished, from memory (`adapters/unfinished_view.py`) and through the
FerretDB adapter's `TrackedEffectLog` over the fake log: what this process writes keeps the
view, the sweep reads only the effects the view says are due, and a full scan finds what
others left and drops what others finished."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.fulfilment.adapters.ferretdb import TrackedEffectLog
from services.fulfilment.adapters.unfinished_view import UnfinishedView
from services.fulfilment.domain.effects import Effect
from tests.fakes.fulfilment import FakeEffectLog

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, 5, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)


def effect(key: str, status: str, **fields: object) -> Effect:
    return Effect(key=key, customer_id="c-1", tenant=None, decision_id="d-1",
                  decision_ref="d-1@0", created_at=NOW, status=status,
                  **fields)  # type: ignore[arg-type]


def due_by(now: datetime) -> Callable[[Effect], bool]:
    """What `RemoteEffects.due` asks, with a lease of 300 s."""
    def ready(e: Effect) -> bool:
        if e.status == "claimed":
            return (e.claimed_at or now) <= now - timedelta(seconds=300)
        return (e.next_attempt_at or now) <= now
    return ready


def test_only_unfinished_effects_are_kept_and_a_final_answer_drops_one() -> None:
    view = UnfinishedView()
    view.note([effect("k-1", "claimed", claim="t", claimed_at=NOW),
               effect("k-2", "succeeded"), effect("k-3", "retry", next_attempt_at=LATER)])
    assert sorted(view.due(None, 0)) == ["k-1", "k-3"]
    view.note([effect("k-1", "failed")])
    assert view.due(None, 0) == ["k-3"]
    assert len(view) == 1


def test_due_chooses_by_what_it_remembers_those_waiting_longest_first() -> None:
    view = UnfinishedView()
    view.note([effect("late", "retry", next_attempt_at=LATER),
               effect("early", "pending", next_attempt_at=NOW - timedelta(seconds=5)),
               effect("now", "paused", next_attempt_at=NOW),
               effect("held", "claimed", claim="t", claimed_at=NOW)])
    assert view.due(due_by(NOW), 0) == ["early", "now"]
    assert view.due(due_by(NOW), 1) == ["early"]
    assert view.due(due_by(NOW + timedelta(seconds=301)), 0) == ["early", "now", "held",
                                                                 "late"]


def test_renewals_and_wake_ups_change_only_what_they_guard() -> None:
    view = UnfinishedView()
    view.note([effect("mine", "claimed", claim="t-1", claimed_at=NOW),
               effect("theirs", "claimed", claim="t-2", claimed_at=NOW),
               effect("paused-a", "paused", remote="gateway", next_attempt_at=LATER),
               effect("paused-b", "paused", remote="webhook", next_attempt_at=LATER)])
    renewed_at = NOW + timedelta(seconds=301)
    view.renewed(["mine", "theirs"], "t-1", renewed_at)
    view.woken("gateway", NOW)
    assert view.due(due_by(NOW), 0) == ["paused-a"]
    assert "mine" not in view.due(due_by(renewed_at), 0)
    assert "theirs" in view.due(due_by(renewed_at), 0)


def test_a_full_scan_adds_what_others_left_and_drops_what_they_finished() -> None:
    view = UnfinishedView()
    view.note([effect("finished-elsewhere", "retry", next_attempt_at=NOW)])
    started = view.scan_started()
    # Written by this process while the scan ran: newer than what the scan saw.
    view.note([effect("mine", "claimed", claim="t", claimed_at=NOW)])
    view.load([effect("left-by-dead", "claimed", claim="x", claimed_at=NOW),
               effect("mine", "retry", next_attempt_at=NOW)], started)
    assert view.loaded
    assert sorted(view.due(None, 0)) == ["left-by-dead", "mine"]
    assert view.due(due_by(NOW), 0) == []  # "mine" is still claimed, as last written


async def loaded(inner: FakeEffectLog) -> TrackedEffectLog:
    log = TrackedEffectLog(inner)
    await log.recall()
    inner.reads = 0
    return log


async def test_the_sweep_reads_nothing_while_nothing_is_unfinished() -> None:
    inner = FakeEffectLog()
    log = await loaded(inner)
    claimed = effect("k-1", "claimed", claim="t", claimed_at=NOW)
    assert await log.add_new([claimed, effect("k-2", "succeeded")]) == {"k-1", "k-2"}
    assert await log.settle([(claimed, {"status": "succeeded", "settled_at": NOW})]) == 1
    assert await log.unfinished(10, due_by(NOW + timedelta(days=1))) == []
    assert inner.reads == 0
    assert len(log.view) == 0


async def test_an_effect_left_for_later_is_read_only_once_it_is_due() -> None:
    inner = FakeEffectLog()
    log = await loaded(inner)
    claimed = effect("k-1", "claimed", claim="t", claimed_at=NOW)
    await log.add_new([claimed])
    await log.settle([(claimed, {"status": "retry", "next_attempt_at": LATER})])
    assert await log.unfinished(10, due_by(NOW)) == []
    assert inner.reads == 0
    [due] = await log.unfinished(10, due_by(LATER))
    assert (due.key, due.status, due.attempts) == ("k-1", "retry", 1)
    assert inner.reads == 1


async def test_a_claim_another_process_left_is_found_by_the_full_scan_only() -> None:
    inner = FakeEffectLog()
    log = await loaded(inner)
    await inner.add_new([effect("k-1", "claimed", claim="dead", claimed_at=NOW)])
    after_lease = due_by(NOW + timedelta(seconds=301))
    assert await log.unfinished(10, after_lease) == []
    await log.recall()
    [found] = await log.unfinished(10, after_lease)
    assert found.claim == "dead"
    assert await log.take_over(found, {"status": "claimed", "claim": "t-2",
                                       "claimed_at": NOW + timedelta(seconds=301)})
    assert await log.unfinished(10, after_lease) == []  # ours now, its lease renewed


async def test_what_changed_behind_its_back_is_read_and_corrected() -> None:
    inner = FakeEffectLog()
    log = await loaded(inner)
    claimed = effect("k-1", "claimed", claim="t", claimed_at=NOW)
    gone = effect("k-2", "retry", next_attempt_at=NOW)
    await log.add_new([claimed, gone])
    # Another process took k-1 over and finished it; retention deleted k-2.
    inner.effects["k-1"] = effect("k-1", "succeeded", claim="t-2")
    del inner.effects["k-2"]
    assert await log.settle([(claimed, {"status": "failed"})]) == 0
    assert not await log.take_over(claimed, {"status": "claimed", "claim": "t-3"})
    assert sorted(log.view.due(None, 0)) == ["k-1", "k-2"]  # not known which: kept
    assert await log.unfinished(10, due_by(NOW + timedelta(seconds=301))) == []
    assert len(log.view) == 0


async def test_a_redriven_effect_is_watched_until_it_has_an_answer_again() -> None:
    inner = FakeEffectLog()
    log = await loaded(inner)
    failed = effect("k-1", "failed", gateway_id="re_1")
    await log.add_new([failed])
    assert len(log.view) == 0
    [again] = await log.failed(["k-1"])
    assert await log.take_over(again, {"status": "claimed", "claim": "t", "claimed_at": NOW,
                                       "redriven_by": "letter-1"})
    assert "k-1" in log.view
    assert await log.unfinished(0) != []
    assert (await log.unfinished(0))[0].gateway_id is None
