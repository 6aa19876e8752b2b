"""The demo's table is read from fulfilment's case API (as `amends case` reads it): one row per
customer from the case's newest incident and decision and its first message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.demo import row

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
