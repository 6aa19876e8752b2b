"""An outage's abort window in decision: its decisions carry the time their remedies may go
out; inside the window an admin aborts or changes them (revisions published, goodwill given
back, one audit entry), after it the API says it is too late."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from schemas.common import Money
from services.common.access import Role
from tests.component.decision.conftest import DEFAULT, T0, Decider, build
from tests.factories import incident

LIMIT = Money(amount=DEFAULT.guards.daily_budget, currency="EUR")


def outage(n: int, *, outage_id: str = "out-1") -> list[dict[str, Any]]:
    return [incident("service_outage", customer_id=f"c-{i}", at=T0, fact=f"{outage_id}-{i}",
                     outage_id=outage_id, order_id=None, outage_minutes=90)
            for i in range(n)]


async def spent(decider: Decider) -> Decimal:
    return (await decider.budget.state(T0.date(), LIMIT)).spent.amount


async def test_outage_decisions_hold_their_remedies_for_the_window() -> None:
    decider = build(outage_abort_window_s=600)
    [made] = await decider.decide(*outage(1))
    assert made.hold is not None
    assert made.hold.until == made.decided_at + timedelta(minutes=10)
    assert not made.hold.apology
    [late] = await decider.decide(incident("delivery_delayed", customer_id="c-9", at=T0))
    assert late.hold is None


async def test_the_policy_can_make_the_apology_wait_too() -> None:
    policy = DEFAULT.model_copy(update={"outages": DEFAULT.outages.model_copy(
        update={"apology_at_once": False})})
    [made] = await build(policy, outage_abort_window_s=0).decide(*outage(1))
    assert made.hold is not None
    assert made.hold.apology
    assert made.hold.until == made.decided_at


async def test_an_abort_inside_the_window_leaves_only_the_apology() -> None:
    decider = build()
    made = await decider.decide(*outage(3))
    before = await spent(decider)
    assert before == sum(d.goodwill_value.amount for d in made if d.goodwill_value)
    decider.clock.advance(timedelta(minutes=5))
    async with decider.api(Role.admin) as admin:
        response = await admin.post("/v1/outages/out-1/abort", json={"reason": "wrong list"})
        again = await admin.post("/v1/outages/out-1/abort", json={"reason": "wrong list"})
        window = (await admin.get("/v1/outages/out-1/window")).json()
    assert response.status_code == 200, response.text
    assert response.json()["revised"] == 3
    assert Decimal(response.json()["released"]) == before
    assert again.json()["revised"] == 0
    assert again.json()["unchanged"] == 3
    assert await spent(decider) == 0
    revisions = [b["data"] for b in decider.published() if b["data"]["revision"] == 1]
    assert len(revisions) == 3
    assert all([a["kind"] for a in r["actions"]] == ["apology"] for r in revisions)
    assert all(r["amended"]["kind"] == "aborted" for r in revisions)
    assert all(r["hold"] is not None for r in revisions)  # fulfilment still holds it
    [entry] = decider.audit.of("outage:out-1")
    assert entry.action == "outage_abort"
    assert window["aborted"] == 3


async def test_a_change_lowers_the_points_and_gives_the_difference_back() -> None:
    decider = build()
    [made] = await decider.decide(*outage(1))
    [points] = [a for a in made.actions if a.points]
    async with decider.api(Role.admin) as admin:
        response = await admin.post("/v1/outages/out-1/change",
                                    json={"reason": "too generous", "points": 100})
        raised = await admin.post("/v1/outages/out-1/change",
                                  json={"reason": "more", "points": 1000})
    assert response.status_code == 200, response.text
    [revision] = [b["data"] for b in decider.published() if b["data"]["revision"] == 1]
    [changed] = [a for a in revision["actions"] if a["kind"] == "points"]
    assert changed["points"] == 100
    assert points.points is not None
    worth = points.value.amount * 100 / points.points
    assert Decimal(changed["value"]["amount"]) == worth
    assert Decimal(response.json()["released"]) == points.value.amount - worth
    assert raised.status_code == 422
    assert raised.json()["check"] == "change"


async def test_after_the_window_it_is_too_late_and_only_admins_may_try() -> None:
    decider = build()
    await decider.decide(*outage(2))
    async with decider.api(Role.reviewer) as reviewer:
        assert (await reviewer.post("/v1/outages/out-1/abort",
                                    json={"reason": "x"})).status_code == 403
    decider.clock.advance(timedelta(minutes=9, seconds=40))  # inside the last 30 s
    async with decider.api(Role.admin) as admin:
        late = await admin.post("/v1/outages/out-1/abort", json={"reason": "x"})
        unknown = await admin.post("/v1/outages/out-2/abort", json={"reason": "x"})
        window = (await admin.get("/v1/outages/out-1/window")).json()
    assert late.status_code == 409
    assert late.json()["check"] == "window"
    assert "too late" in late.json()["detail"]
    assert unknown.status_code == 404
    assert not window["open"]
    assert [b["data"]["revision"] for b in decider.published()] == [0, 0]


async def test_without_a_window_outage_remedies_are_still_marked_for_pacing() -> None:
    [made] = await build(outage_abort_window_s=0).decide(*outage(1))
    assert made.hold is not None
    assert made.hold.until == made.decided_at
