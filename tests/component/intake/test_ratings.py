"""A customer's rating from their page (remedy.rated) through intake in memory: accepted and
left for the learning loop, no incident and no dead letter; a malformed one is dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests import factories as f
from tests.component.intake.harness import intake

pytestmark = pytest.mark.component

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def rated(event_id: str, rating: Any, customer: str = "c-1") -> dict[str, Any]:
    made = f.event("remedy.rated", {
        "decision_id": f"d-{event_id}", "incident_id": f"i-{event_id}",
        "incident_type": "support_wait_exceeded", "customer": f.customer(customer),
        "rated_at": T0.isoformat(), "rating": rating, "comment": "Quick, thanks"},
        subject=customer, at=T0)
    made["id"] = event_id
    return made


async def test_a_rating_makes_no_incident_and_is_not_dead_lettered() -> None:
    app = intake(T0)
    await app.consume([rated("e-1", 5), rated("e-2", 1, "c-2")], "support")
    assert app.incidents() == []
    assert app.dead_letters() == []


async def test_a_rating_out_of_range_is_dead_lettered() -> None:
    app = intake(T0)
    await app.consume([rated("e-3", 6)], "support")
    [letter] = app.dead_letters()
    assert letter["reason"] == "invalid"
    assert "data.rating" in letter["error"]
