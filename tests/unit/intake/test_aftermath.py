"""The aftermath of an incident, computed incrementally: which events are facts of which
incident, the record's windows, and that neither duplicates nor the order of arrival change
the record."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.incident import Incident
from schemas.upstream import UpstreamEvent, upstream_event_adapter
from services.intake.aftermath import AftermathView
from services.intake.domain.aftermath import Fact, FactKind, Followed, Tally, aftermath, facts_of
from tests import factories as f

pytestmark = pytest.mark.unit

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
WINDOWS = (7, 30, 90)
SPAN = timedelta(days=90)


def incident(customer: str = "c-1", order: str = "o-1", at: datetime = T0) -> Incident:
    return Incident.model_validate(f.incident(customer_id=customer, fact=order, at=at,
                                              ticket_id="t-own"))


def parsed(body: dict[str, Any]) -> UpstreamEvent:
    return upstream_event_adapter.validate_python(body)


def placed(order: str, days: float, total: str = "20.00", customer: str = "c-1"
           ) -> UpstreamEvent:
    return parsed(f.order_placed(customer, order, at=T0 + timedelta(days=days), promised=None,
                                 total=total))


def facts(followed: Followed, *events: UpstreamEvent) -> list[Fact]:
    return [fact for e in events for fact in facts_of(followed, e, SPAN)]


def test_an_order_after_the_incident_is_a_fact_and_counts_in_the_windows_it_falls_in() -> None:
    followed = Followed.of(incident())
    record = aftermath(followed, facts(followed, placed("o-2", 10, "20.00")), WINDOWS)
    seven, thirty, ninety = record.windows
    assert (seven.orders, thirty.orders, ninety.orders) == (0, 1, 1)
    assert not seven.reordered
    assert thirty.reordered
    assert thirty.value == {"EUR": Decimal("20.00")}


@pytest.mark.parametrize("event", [
    pytest.param(placed("o-0", -1), id="an order before the incident"),
    pytest.param(placed("o-9", 91), id="an order after the longest window"),
    pytest.param(placed("o-1", 1), id="the failed order itself"),
    pytest.param(parsed(f.order_cancelled("c-1", "o-2", at=T0 + timedelta(days=1))),
                 id="a cancellation by the merchant"),
    pytest.param(parsed(f.ticket_updated("c-1", "t-own", opened=T0 + timedelta(hours=1),
                                         at=T0 + timedelta(hours=2))),
                 id="the incident's own ticket"),
    pytest.param(parsed(f.item_reported("c-1", "o-1", at=T0 + timedelta(hours=1))),
                 id="a report on the failed order"),
])
def test_what_is_not_a_fact_of_the_incident(event: UpstreamEvent) -> None:
    assert facts(Followed.of(incident()), event) == []


def test_complaints_cancellations_ratings_and_churn() -> None:
    followed = Followed.of(incident())
    rating = parsed(f.event("remedy.rated", {
        "decision_id": "d-1", "incident_id": followed.incident_id,
        "incident_type": "delivery_delayed", "customer": f.customer("c-1"),
        "rated_at": (T0 + timedelta(days=2)).isoformat(), "rating": 4},
        subject="c-1", at=T0 + timedelta(days=2)))
    later_rating = parsed(f.event("remedy.rated", {
        "decision_id": "d-1", "incident_id": followed.incident_id,
        "incident_type": "delivery_delayed", "customer": f.customer("c-1"),
        "rated_at": (T0 + timedelta(days=3)).isoformat(), "rating": 2},
        subject="c-1", at=T0 + timedelta(days=3)))
    other_rating = parsed(f.event("remedy.rated", {
        "decision_id": "d-2", "incident_id": "another-incident",
        "incident_type": "delivery_delayed", "customer": f.customer("c-1"),
        "rated_at": (T0 + timedelta(days=3)).isoformat(), "rating": 5},
        subject="c-1", at=T0 + timedelta(days=3)))
    churned = parsed(f.event("customer.churned", {
        "customer": f.customer("c-1"), "churned_at": (T0 + timedelta(days=40)).isoformat(),
        "reason": "account_closed"}, subject="c-1", at=T0 + timedelta(days=40)))
    ticket = parsed(f.ticket_updated("c-1", "t-2", opened=T0 + timedelta(days=5),
                                     at=T0 + timedelta(days=6)))
    ticket_again = parsed(f.ticket_updated("c-1", "t-2", opened=T0 + timedelta(days=5),
                                           at=T0 + timedelta(days=8), status="answered"))
    cancelled = parsed(f.order_cancelled("c-1", "o-2", at=T0 + timedelta(days=12),
                                         by="customer"))
    record = aftermath(followed, facts(
        followed, placed("o-2", 10, "20.00"), placed("o-3", 20, "5.00"), cancelled, ticket,
        ticket_again, later_rating, rating, other_rating, churned), WINDOWS)
    seven, thirty, ninety = record.windows
    assert (seven.complaints, thirty.complaints) == (1, 1)  # one ticket, updated twice
    assert (thirty.orders, thirty.cancelled, thirty.value) == (2, 1, {"EUR": Decimal("5.00")})
    assert not thirty.churned
    assert ninety.churned
    assert record.rating == 2  # the latest of this incident's own ratings


def test_duplicates_and_the_order_of_arrival_leave_the_record_as_it_is() -> None:
    followed = Followed.of(incident())
    events = [placed("o-2", 3, "20.00"), placed("o-3", 12, "7.50"),
              parsed(f.ticket_updated("c-1", "t-2", opened=T0 + timedelta(days=1),
                                      at=T0 + timedelta(days=1))),
              parsed(f.order_cancelled("c-1", "o-3", at=T0 + timedelta(days=13),
                                       by="customer"))]
    expected = aftermath(followed, facts(followed, *events), WINDOWS)
    for order in itertools.permutations(events):
        tally = Tally(followed)
        for event in [*order, *order[:2]]:  # and a redelivery of two of them
            tally.add(facts(followed, event))
        assert tally.record(WINDOWS) == expected
    assert expected.facts == 4


def test_the_view_follows_each_incident_once_and_keeps_only_new_facts() -> None:
    view = AftermathView(WINDOWS)
    first, second = incident(), incident(order="o-7")
    new = view.unfollowed([first, first, second])
    assert [f.incident_id for f in new] == [first.incident_id, second.incident_id]
    view.follow(new)
    assert view.unfollowed([first]) == []
    events = [placed("o-2", 3), placed("o-8", 4, customer="c-2")]
    found = view.facts(events)
    assert {f.incident_id for f in found} == {first.incident_id, second.incident_id}
    assert all(f.kind is FactKind.order for f in found)
    view.keep(found)
    assert view.facts(events) == []  # a redelivery adds nothing
    record = view.record("c-1", first.incident_id)
    assert record is not None
    assert record.window(7).orders == 1


def test_the_view_forgets_incidents_past_their_longest_window_and_renames_erased() -> None:
    view = AftermathView(WINDOWS)
    old, recent = incident(at=T0 - timedelta(days=100)), incident(order="o-5")
    view.follow(view.unfollowed([old, recent]))
    assert view.prune(T0 + timedelta(days=1)) == 1
    assert len(view) == 1
    assert view.rename_customer("c-1", "p-1") == 1
    assert view.record("p-1", recent.incident_id) is not None
    assert view.facts([placed("o-2", 3)]) == []  # the id is gone from memory
