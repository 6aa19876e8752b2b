"""The abort window's rules: which decisions hold, what an abort or a change leaves, that a
change never raises and never touches restitution, and when it is too late."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from schemas.decision import Decision, Hold, RemedyKind
from services.decision.domain.lifecycle import DecisionRefusedError
from services.decision.domain.outage_window import (
    ABORT,
    Change,
    amend,
    check_window,
    given_back,
    hold_of,
)
from tests.decisions import APOLOGY, T0, decided, eur, grant, made_incident

pytestmark = pytest.mark.unit

WINDOW = timedelta(minutes=10)
MARGIN = timedelta(seconds=30)


def outage(*grants: dict[str, object], restitution: tuple[int, ...] = (),
           **fields: object) -> Decision:
    made = made_incident("service_outage", outage_id="out-1", order_id=None)
    decision = decided(made, *grants, restitution=restitution, **fields)
    hold = hold_of(decision, WINDOW, apology_at_once=True)
    return decision.model_copy(update={"hold": hold})


def test_only_outages_hold_and_the_policy_says_whether_the_apology_waits() -> None:
    late = decided(made_incident("delivery_delayed"), APOLOGY)
    assert hold_of(late, WINDOW, apology_at_once=True) is None
    decision = outage(APOLOGY)
    assert decision.hold == Hold(until=decision.decided_at + WINDOW, apology=False)
    assert hold_of(decision, timedelta(0), apology_at_once=False) == Hold(
        until=decision.decided_at, apology=True)


def test_an_abort_keeps_the_apology_and_restitution_and_gives_the_goodwill_back() -> None:
    decision = outage(APOLOGY, grant(RemedyKind.points, points=300, value=eur("3.00")),
                      grant(RemedyKind.refund, amount=eur("9.99")), restitution=(2,),
                      goodwill_value=eur("3.00"))
    aborted = amend(decision, ABORT, kind="aborted", by="ops", reason="wrong list", at=T0)
    assert aborted is not None
    assert [a.kind for a in aborted.actions] == [RemedyKind.apology, RemedyKind.refund]
    assert aborted.revision == 1
    assert aborted.hold == decision.hold
    assert given_back(decision, aborted) == Decimal("3.00")
    assert amend(aborted, ABORT, kind="aborted", by="ops", reason="again", at=T0) is None


def test_a_change_lowers_in_proportion_and_zero_removes() -> None:
    decision = outage(APOLOGY, grant(RemedyKind.points, points=300, value=eur("3.00")),
                      grant(RemedyKind.voucher, amount=eur("5.00")))
    changed = amend(decision, Change(points=100, amount=Decimal(0)), kind="changed",
                    by="ops", reason="too generous", at=T0)
    assert changed is not None
    [apology, points] = changed.actions
    assert apology.kind is RemedyKind.apology
    assert (points.points, points.value) == (100, eur("1.00"))
    assert given_back(decision, changed) == Decimal("7.00")
    assert changed.amended is not None
    assert changed.amended.kind == "changed"


def test_a_change_never_raises_and_needs_something_to_change() -> None:
    decision = outage(APOLOGY, grant(RemedyKind.points, points=300, value=eur("3.00")))
    with pytest.raises(DecisionRefusedError, match="not raise"):
        amend(decision, Change(points=301), kind="changed", by="ops", reason="x", at=T0)
    with pytest.raises(DecisionRefusedError, match="needs"):
        Change()


def test_too_late_once_the_first_window_ends_less_the_margin() -> None:
    first, second = outage(APOLOGY), outage(APOLOGY)
    second = second.model_copy(update={"hold": Hold(until=first.decided_at + 2 * WINDOW)})
    assert first.hold is not None
    ends = first.hold.until
    check_window([first, second], ends - MARGIN - timedelta(seconds=1), MARGIN, "out-1")
    with pytest.raises(DecisionRefusedError, match="too late") as late:
        check_window([first, second], ends - MARGIN, MARGIN, "out-1")
    assert late.value.check == "window"
    with pytest.raises(DecisionRefusedError) as none:
        check_window([], T0, MARGIN, "out-9")
    assert none.value.status == 404
