"""The in-memory view of customers' histories (`history_view.py`) and how the follower reads a
decision event's id without decoding it (`follower.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.decision import DecisionMade
from services.decision.adapters.follower import event_revision
from services.decision.adapters.history_view import HistoryView
from tests.decisions import APOLOGY, CREDIT, approved, decided, eur, made_incident

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, 0, 987654, tzinfo=UTC)


def test_a_newer_revision_replaces_an_older_one_never_the_reverse() -> None:
    held = decided(made_incident("item_missing", customer_id="c-1"), APOLOGY, CREDIT,
                   status="held", decided_at=T0)
    view = HistoryView()
    view.apply([held])
    assert view.knows(held.decision_id, 0)
    assert not view.knows(held.decision_id, 1)
    rejected = approved(held).model_copy(update={"goodwill_value": eur("0")})
    view.apply([rejected, held])  # the older one, arriving late, is ignored
    [past] = view.histories(["c-1"], T0 - timedelta(days=1), [], [])["c-1"].incidents
    assert past.value == 0
    assert held.goodwill_value == eur("10.00")
    assert view.knows(held.decision_id, 1)
    # Times as the store keeps them: milliseconds.
    assert past.decided_at == T0.replace(microsecond=987000)


def test_entries_of_no_order_leave_after_the_window_those_of_an_order_stay() -> None:
    view = HistoryView()
    old_order = decided(made_incident("delivery_delayed", customer_id="c-1"), APOLOGY,
                        decided_at=T0 - timedelta(days=90))
    no_order = made_incident("delivery_delayed", customer_id="c-1").model_copy(
        update={"order_id": None, "incident_id": "i-no-order"})
    old_plain = decided(no_order, APOLOGY, decided_at=T0 - timedelta(days=90))
    view.apply([old_order, old_plain])
    assert len(view) == 2
    since = T0 - timedelta(days=30)
    found = view.histories(["c-1"], since, [old_order.incident.order_id or ""], [])
    assert [p.incident_id for p in found["c-1"].incidents] == [old_order.incident.incident_id]
    assert len(view) == 1  # the one no history can select any more is gone


def test_an_erased_customer_s_entries_go_to_the_pseudonym() -> None:
    view = HistoryView()
    mine = decided(made_incident("double_charge", customer_id="c-1"), APOLOGY, decided_at=T0)
    view.apply([mine])
    assert view.rename("c-1", "p-1") == 1
    since = T0 - timedelta(days=1)
    assert view.histories(["c-1"], since, [], [])["c-1"].incidents == ()
    assert len(view.histories(["p-1"], since, [], [])["p-1"].incidents) == 1
    # A revision read later under the pseudonym replaces the entry, not doubling it.
    view.apply([approved(mine.model_copy(update={"incident": mine.incident.model_copy(
        update={"customer": mine.incident.customer.model_copy(update={"id": "p-1"})})}))])
    assert len(view) == 1
    assert len(view.histories(["p-1"], since, [], [])["p-1"].incidents) == 1


def test_the_follower_reads_the_decision_and_revision_from_the_event_s_head() -> None:
    decision = decided(made_incident("double_charge"), APOLOGY, decided_at=T0)
    first = DecisionMade(id=decision.decision_id, source="amends/decision", time=T0,
                         subject="c-1", data=decision).model_dump_json().encode()
    assert event_revision(first) == (decision.decision_id, 0)
    later = DecisionMade(id=f"{decision.decision_id}:3", source="amends/decision", time=T0,
                         subject="c-1", data=decision).model_dump_json().encode()
    assert event_revision(later) == (decision.decision_id, 3)
    assert event_revision(b'{"source":"amends/decision"}') is None
