"""The demo's table is read from fulfilment's case API (as `amends case` reads it): one row per
customer from the case's newest incident and decision and its first message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from devtools.demo import Row, customer_link, row
from services.common.links import CustomerLinks

pytestmark = pytest.mark.unit

SENT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _case(**parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"customer_id": "ana-1", "points_balance": 0, "incidents": [], "decisions": [],
            "actions": [], "vouchers": [], "messages": [], **parts}


def test_a_customer_with_nothing_recorded_has_an_empty_row() -> None:
    shown = row("boris-1", "standard", "delivered on time", _case(), SENT.timestamp())
    assert (shown.incident, shown.decision, shown.remedies, shown.apology,
            shown.event_to_apology_ms) == ("-", "-", "-", "-", None)


def test_a_row_names_the_incident_the_remedies_and_the_first_message() -> None:
    case = _case(
        incidents=[{"type": "delivery_delayed", "detection": "proactive"}],
        decisions=[{"status": "decided", "actions": [
            {"kind": "apology"}, {"kind": "points", "points": 200},
            {"kind": "voucher", "amount": {"amount": "5", "currency": "EUR"}},
            {"kind": "free_delivery", "quantity": 2}, {"kind": "personal_call"}],
            "offer": {"options": [{"actions": [{"kind": "refund", "percent": "10"}]},
                                  {"actions": [{"kind": "points", "points": 50}]}]},
            "choice": None}],
        messages=[{"channel": "email", "locale": "ro", "sent_at": "2026-12-07T09:00:03+00:00"},
                  {"channel": "record", "locale": "en",
                   "sent_at": "2026-12-07T09:00:01.250000+00:00"}])
    shown = row("ana-1", "gold", "delivered 95 minutes late", case, SENT.timestamp())
    assert shown.incident == "delivery_delayed (proactive)"
    assert shown.decision == "decided"
    assert shown.remedies == ("200 points, voucher 5.00 EUR, free delivery x2, personal call, "
                              "choice: refund 10% or 50 points")
    assert shown.apology == "recorded (en)"
    assert shown.event_to_apology_ms == pytest.approx(1250)


def test_an_offer_already_chosen_is_not_shown_as_a_choice() -> None:
    case = _case(decisions=[{"status": "decided", "actions": [{"kind": "apology"}],
                             "offer": {"options": [{"actions": [{"kind": "gift"}]}]},
                             "choice": {"option": 0}}],
                 messages=[{"channel": "email", "locale": "en", "sent_at": None}])
    shown = row("c-1", "silver", "x", case, SENT.timestamp())
    assert (shown.remedies, shown.apology, shown.event_to_apology_ms) == (
        "-", "sent by email (en)", None)


def test_the_printed_customer_link_opens_an_open_offer_first() -> None:
    """The link `make demo` prints is signed as an apology's is: it verifies for its customer
    and decision, and it goes to a customer who still has a choice to make."""
    def made(customer: str, decision: str, *, offer: bool) -> Row:
        return Row(customer, "gold", "late", "delivery_delayed (proactive)", "approved", "-",
                   "sent by email (en)", 10.0, decision_id=decision, offer_open=offer)

    rows = [Row("boris-1", "standard", "fine", "-", "-", "-", "-", None),
            made("ana-1", "d-ana", offer=False), made("greta-1", "d-greta", offer=True)]
    url = customer_link(rows, "http://pages/v1/customer/decisions/{decision_id}?token={token}",
                        {"k1": "link-key-for-the-demo-test-00001"}, "k1", SENT)
    assert url is not None
    assert url.startswith("http://pages/v1/customer/decisions/d-greta?token=")
    links = CustomerLinks({"k1": SecretStr("link-key-for-the-demo-test-00001")}, "k1",
                          timedelta(days=30))
    grant = links.verify(url.split("token=", 1)[1], "d-greta", SENT)
    assert grant.customer_id == "greta-1"
    assert customer_link(rows[:1], "{decision_id}{token}", {"k1": "x" * 32}, "k1", SENT) is None
