"""Fulfilment's stores: one contract, checked on the hand-written fake (in memory), the
FerretDB adapter and the MongoDB adapter (both against the FerretDB server here: nested
documents, `$in` and conditional updates work there; MongoDB itself cannot be run on this
machine, and the adapters use no transactions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.decision import Decision, Hold, RemedyKind
from schemas.outcome import ActionStatus, Outcome
from services.common.adapters.mongo import make_client
from services.fulfilment.adapters import ferretdb, mongodb
from services.fulfilment.domain.effects import Change, Effect, EffectState
from services.fulfilment.domain.plan import LedgerEntry, Perk
from services.fulfilment.ports import KeptOutcome, Received, Stores
from tests.decisions import APOLOGY, approved, decided, eur, grant, made_incident
from tests.fakes.fulfilment import FakeStores

NOW = datetime(2026, 11, 23, 12, 5, tzinfo=UTC)


@pytest.fixture(params=[pytest.param("fake", marks=pytest.mark.unit),
                        pytest.param("ferretdb", marks=pytest.mark.integration),
                        pytest.param("mongodb", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Which stores, and the server's URL for the adapters."""
    if request.param == "fake":
        return "fake", ""
    infra = request.getfixturevalue("infra")
    return request.param, infra.mongo_url


@pytest.fixture
async def stores(backend: tuple[str, str], suffix: str) -> AsyncIterator[Stores]:
    kind, url = backend
    if kind == "fake":
        yield FakeStores().stores
        return
    client = make_client(url)
    name = f"stores_{kind}_{suffix}"
    build = ferretdb.stores if kind == "ferretdb" else mongodb.stores
    made, create_indexes = build(client[name])
    await create_indexes()
    try:
        yield made
    finally:
        await client.drop_database(name)
        await client.close()


def _effect(key: str, **fields: object) -> Effect:
    return Effect(key=key, customer_id="c-1", tenant="shop-a", decision_id="d-1",
                  decision_ref="d-1:0", created_at=NOW, origin=("decisions", 0, 7),
                  **fields)  # type: ignore[arg-type]


async def test_decisions_are_kept_once_per_revision_and_read_back_whole(stores: Stores) -> None:
    first = decided(made_incident(tenant="shop-a"), APOLOGY,
                    grant(RemedyKind.points, points=10), status="held")
    then = approved(first)
    other = decided(made_incident(customer_id="c-2"), APOLOGY)
    received = [Received(first, ("decisions", 0, 1), NOW), Received(then, ("decisions", 0, 2),
                                                                    NOW)]
    assert await stores.decisions.add_new(received) == {r.ref for r in received}
    assert await stores.decisions.add_new([*received, Received(other, ("d", 1, 1), NOW)]) == {
        f"{other.decision_id}:0"}
    back = await stores.decisions.revisions([received[1].ref, "nothing"])
    assert list(back) == [received[1].ref]
    assert back[received[1].ref].decision == then
    assert back[received[1].ref].origin == ("decisions", 0, 2)
    assert await stores.decisions.newest(first.decision_id) == then
    assert await stores.decisions.newest("none") is None
    assert await stores.decisions.of_customer("c-1") == [then]


async def test_outcomes_are_an_outbox_of_contracts(stores: Stores) -> None:
    outcome = Outcome(idempotency_key="d-1:0", decision_id="d-1", incident_id="i-1",
                      customer_id="c-1", position=0, kind=RemedyKind.points,
                      status=ActionStatus.succeeded, value=eur("1.00"), completed_at=NOW,
                      detail="10 points credited")
    kept = KeptOutcome(outcome, "shop-a", NOW)
    assert await stores.outcomes.add_new([("d-1:0", kept), ("d-1:0#1", kept)]) == {
        "d-1:0", "d-1:0#1"}
    assert await stores.outcomes.add_new([("d-1:0", kept)]) == set()
    assert await stores.outcomes.published(["d-1:0", "d-1:0#1"]) == set()
    await stores.outcomes.mark_published(["d-1:0"])
    assert await stores.outcomes.published(["d-1:0", "d-1:0#1"]) == {"d-1:0"}
    assert await stores.outcomes.outcomes_of(["d-1:0", "nothing"]) == {"d-1:0": outcome}
    assert [k.tenant for k in await stores.outcomes.of_customer("c-1")] == ["shop-a"] * 2
    assert await stores.outcomes.of_customer("c-2") == []


async def test_points_and_perks_are_granted_once_and_points_expire(stores: Stores) -> None:
    credit = LedgerEntry("d-1:1", "c-1", "shop-a", "d-1", 1, Decimal(100), "points",
                         "double_charge", NOW + timedelta(days=365), NOW)
    old = LedgerEntry("d-0:1", "c-1", None, "d-0", 1, Decimal(50), "points", "double_charge",
                      NOW - timedelta(days=1), NOW - timedelta(days=366))
    money = LedgerEntry("d-2:1", "c-1", None, "d-2", 1, Decimal("12.50"), "EUR",
                        "negative_review", NOW + timedelta(days=365), NOW)
    assert await stores.ledger.credit([credit, old, money]) == {"d-1:1", "d-0:1", "d-2:1"}
    assert await stores.ledger.credit([credit, money]) == set()
    assert sorted(await stores.ledger.of_customer("c-1", NOW), key=lambda e: e.key) == [
        credit, money]
    perk = Perk("d-1:2", "c-1", None, "d-1", 2, RemedyKind.free_delivery, 2,
                NOW + timedelta(days=180), NOW)
    assert await stores.perks.grant([perk]) == {"d-1:2"}
    assert await stores.perks.grant([perk]) == set()


async def test_an_effect_is_claimed_once_and_changed_only_under_its_guards(
        stores: Stores) -> None:
    log = stores.messages
    claimed = _effect("k-1", status="claimed", claim="t-1", claimed_at=NOW, text="hello")
    recorded = _effect("k-2", status="succeeded", detail="recorded", settled_at=NOW)
    assert await log.add_new([claimed, recorded]) == {"k-1", "k-2"}
    assert await log.add_new([claimed]) == set()
    assert sorted(e.key for e in await log.get(["k-2", "k-1", "k-9"])) == ["k-1", "k-2"]
    [back] = await log.get(["k-1"])
    assert back == claimed
    # Renewed only while still held by its claim.
    later = NOW + timedelta(minutes=1)
    await log.renew(["k-1"], "t-other", later)
    await log.renew(["k-1"], "t-1", later)
    [renewed] = await log.get(["k-1"])
    assert renewed.claimed_at == later
    # A result is written only under the claim it was performed under.
    stale = claimed.changed({"claim": "t-old"})
    assert await log.settle([(stale, {"status": "failed", "detail": "late"})]) == 0
    assert await log.settle([(claimed, {"status": "retry", "detail": "busy",
                                        "next_attempt_at": later})]) == 1
    [settled] = await log.get(["k-1"])
    assert (settled.status, settled.attempts, settled.next_attempt_at) == ("retry", 1, later)
    assert [e.key for e in await log.unfinished(10)] == ["k-1"]
    # Taken over unless someone changed it since it was read.
    assert not await log.take_over(claimed, {"status": "claimed", "claim": "t-2"})
    assert await log.take_over(settled, {"status": "claimed", "claim": "t-2",
                                         "claimed_at": later})
    [taken] = await log.get(["k-1"])
    assert (taken.status, taken.claim) == ("claimed", "t-2")
    assert [e.key for e in await log.of_customer("c-1")] == ["k-1", "k-2"]


async def test_a_failed_effect_is_redriven_once_per_dead_letter(stores: Stores) -> None:
    log = stores.refunds
    failed = _effect("k-1", status="failed", detail="declined", gateway_id="re_1",
                     amount="20.00", currency="EUR", attempts=1)
    await log.add_new([failed, _effect("k-2", status="succeeded")])
    [found] = await log.failed(["k-1", "k-2"])
    assert found.key == "k-1"
    again: Change = {"status": EffectState.claimed.value, "claim": "t-9", "round": 1,
                     "redriven_by": "letter-1", "gateway_key": "k-1#1"}
    assert await log.take_over(found, again)
    [redriven] = await log.get(["k-1"])
    assert (redriven.round, redriven.gateway_key, redriven.gateway_id) == (1, "k-1#1", None)
    assert await log.settle([(redriven, {"status": "failed", "detail": "again"})]) == 1
    [failed_again] = await log.get(["k-1"])
    assert not await log.take_over(failed_again, again)  # the same letter


async def test_paused_effects_of_a_remote_are_woken(stores: Stores) -> None:
    log = stores.messages
    later = NOW + timedelta(hours=1)
    await log.add_new([_effect("k-1", status="paused", remote="email", next_attempt_at=later),
                       _effect("k-2", status="paused", remote="webhook",
                               next_attempt_at=later)])
    await log.wake_paused("email", NOW)
    woken = {e.key: e.next_attempt_at for e in await log.get(["k-1", "k-2"])}
    assert woken == {"k-1": NOW, "k-2": later}


async def test_vouchers_are_issued_once_per_action(stores: Stores) -> None:
    from services.fulfilment.vouchers import Voucher

    request = Voucher(code="", action_key="d-1:3", customer_id="c-1", amount=eur("10.00"),
                      currency="EUR", issued_at=NOW, expires_at=NOW + timedelta(days=90),
                      reason="late", tenant="shop-a")
    first = await stores.vouchers.issue_all([request])
    again = await stores.vouchers.issue_all([request])
    assert first["d-1:3"].code == again["d-1:3"].code
    assert await stores.vouchers.codes_for(["d-1:3", "x"]) == {"d-1:3": first["d-1:3"].code}
    [mine] = await stores.vouchers.for_customer("c-1", NOW)
    assert mine.code == first["d-1:3"].code
    redeemed = await stores.vouchers.redeem(mine.code.lower(), "o-1", None, NOW)
    assert redeemed.code == mine.code


async def test_decisions_held_for_an_outage_window_are_found_again(stores: Stores) -> None:
    """What a restart recalls: the newest revision of each decision held until `since` or
    later; decisions without a hold, or held until earlier, are not read back."""
    def outage(customer: str, until: datetime) -> Decision:
        made = made_incident("service_outage", customer_id=customer, outage_id="out-1",
                             order_id=None)
        return decided(made, APOLOGY, grant(RemedyKind.points, points=100),
                       hold=Hold(until=until))

    soon = outage("c-1", NOW + timedelta(minutes=10))
    past = outage("c-2", NOW - timedelta(hours=2))
    aborted = soon.model_copy(update={"revision": 1, "actions": soon.actions[:1]})
    plain = decided(made_incident(customer_id="c-3"), APOLOGY)
    await stores.decisions.add_new([Received(d, ("decisions", 0, n), NOW)
                                    for n, d in enumerate([soon, past, aborted, plain])])
    found = await stores.decisions.holding(NOW - timedelta(hours=1))
    assert [(r.decision.incident.customer.id, r.decision.revision, r.origin)
            for r in found.values()] == [("c-1", 1, ("decisions", 0, 2))]
